"""The benchmark harness on tiny configurations, without TensorFlow.

Benchmarks are not assertions: nothing here checks a time, a ratio or a memory figure, only that
the harness runs, reports what it ran (including a compiled path that fell back), writes the
documented JSON, and rejects bad arguments with a clear message.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from benchmarks import cli, data, report, specs
from benchmarks.harness import SCHEMA, run_benchmarks

from .conftest import tiny

REPO = Path(__file__).resolve().parents[2]

RESULT_KEYS = {
    "model", "engine", "status", "reason", "rows", "full_rows", "batch_size", "steps_per_epoch",
    "full_steps_per_epoch", "first_epoch_s", "first_epoch_loop_s", "epoch_s", "fit_call_s", "epochs_per_round",
    "epoch_median_s", "epoch_min_s", "epoch_max_s", "step_median_s", "step_min_s", "step_max_s",
    "full_epoch_estimate_s", "speedup_vs_baseline", "gflops", "fraction_of_gemm_peak", "peak_rss_mib",
    "memory", "fell_back", "notes", "diagnostics", "load_average_per_round",
}
TOP_KEYS = {
    "schema", "command", "argv", "started", "finished", "duration_s", "machine", "source", "versions", "config",
    "baseline", "flop_count", "engines", "gemm_peak", "gemm_training_step", "adam_subnormal", "results", "runs",
    "cold_start", "targets",
}
AGGREGATE_KEYS = {"runs", "runs_ok", "spread", "run_epoch_median_s", "run_speedup_vs_baseline", "run_first_epoch_s",
                  "speedup_min", "speedup_max"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run of the reference path on A and Ls, with memory children, through the CLI's main."""
    out_dir = tmp_path_factory.mktemp("results")
    printed = []
    config = cli.parse_args(["--quick", "--models", "A,Ls", "--engines", "minitensor-reference",
                             "--output-dir", str(out_dir)])
    config.rows = {"A": 64, "Ls": 256}
    config.gemm_size, config.adam_steps = 64, 1
    result = run_benchmarks(config, out=printed.append)
    return result, "\n".join(printed), out_dir


def test_quick_run_prints_the_table_and_command(quick_run):
    result, printed, _ = quick_run
    assert "| model | engine | rows (steps) | time/step | time/epoch |" in printed
    assert "`python -m benchmarks --quick --models A,Ls --engines minitensor-reference" in printed
    assert "| A | minitensor-reference |" in printed and "| Ls | minitensor-reference |" in printed
    assert "GEMM peak" in printed and "Adam on subnormal moments" in printed
    for name in ("python", "numpy", "numba"):
        assert f"{name} {result['versions'][name]}" in printed


def test_quick_run_writes_json_with_documented_schema(quick_run):
    result, _, out_dir = quick_run
    files = sorted(p.name for p in out_dir.iterdir())
    stem = f"{result['started'][:10]}-{result['machine']['host']}-quick"
    assert files == [f"{stem}.json", f"{stem}.md"]
    saved = json.loads((out_dir / f"{stem}.json").read_text())
    assert saved["schema"] == SCHEMA
    assert TOP_KEYS <= set(saved)
    assert saved["config"]["quick"] is True and saved["config"]["shuffle"] is True
    assert {"cpu_model", "cores_total", "openblas_env", "blas", "load_average"} <= set(saved["machine"])
    assert {"python", "numpy", "numba", "tensorflow", "keras"} <= set(saved["versions"])
    assert [(r["model"], r["engine"]) for r in saved["results"]] == [("A", "minitensor-reference"),
                                                                     ("Ls", "minitensor-reference")]
    assert len(saved["runs"]) == 1 and saved["runs"][0]["results"][0]["model"] == "A"
    for row in saved["results"]:
        assert RESULT_KEYS | AGGREGATE_KEYS <= set(row)
        assert row["spread"] == "rounds" and row["runs"] == 1
        assert row["status"] == "ok", row["reason"]
        assert len(row["epoch_s"]) == saved["config"]["repeats"] == 2
        assert row["speedup_vs_baseline"] is None  # tf.keras was not run
        assert row["epochs_per_round"] == (1 if row["model"] == "Ls" else row["epochs_per_round"]) >= 1
    a, ls = saved["results"]
    assert a["steps_per_epoch"] == 2 and ls["steps_per_epoch"] == 2
    assert a["peak_rss_mib"] > 0 and a["memory"]["source"] in ("VmHWM", "ru_maxrss")
    assert ls["peak_rss_mib"] > a["peak_rss_mib"]  # 670k parameters and their Adam slots vs 233
    assert ls["fraction_of_gemm_peak"] is not None
    assert set(saved["adam_subnormal"]["cases"]) == {"normal", "subnormal", "zero"}
    assert saved["gemm_peak"]["n"] == 64


def test_tensorflow_is_not_imported_without_the_keras_engine(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        from benchmarks import quick_config, run_benchmarks
        config = quick_config(models=["C"], engines=["minitensor-reference"], repeats=1, memory=False,
                              gemm_size=32, gemm_repeats=1, adam_steps=1, adam_repeats=1, rows={{"C": 40}})
        run_benchmarks(config, out=lambda text: None)
        assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "TensorFlow was imported"
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_compiled_fallback_is_reported_not_hidden(monkeypatch):
    from minitensor import compiled

    monkeypatch.setattr(compiled, "build_plan", lambda model, callbacks=(): (None, "no kernels for this test"))
    printed = []
    result = run_benchmarks(tiny(models=["A"], engines=["minitensor-compiled"]), out=printed.append)
    (row,) = result["results"]
    assert row["fell_back"] is True
    assert any("no kernels for this test" in note for note in row["notes"])
    assert "fell back to reference path" in printed[0]


def test_unavailable_engines_are_skipped_cleanly(monkeypatch):
    import benchmarks.engines as engines

    real = engines.probe
    monkeypatch.setattr(engines, "probe", lambda e: (False, "not installed (test)", {}) if e == "jax" else real(e))
    printed = []
    result = run_benchmarks(tiny(models=["D"], engines=["minitensor-reference", "jax"]), out=printed.append)
    assert result["engines"]["jax"] == {"available": False, "reason": "not installed (test)", "versions": {}}
    assert [r["engine"] for r in result["results"]] == ["minitensor-reference"]
    assert "Not measured: jax (not installed (test))" in printed[0]
    assert "| all | jax | not installed (test) | — |" in printed[0]  # a row of the table, not a skipped test


def test_a_missing_peer_is_reported_with_its_install_command(monkeypatch):
    import benchmarks.engines as engines

    monkeypatch.setitem(sys.modules, "jax", None)  # as if the peers extra were not installed
    available, reason, versions = engines.probe("jax")
    assert not available and versions == {}
    assert reason.startswith("not installed (jax cannot be imported") and 'pip install "minitensor[peers]"' in reason


def test_runs_repeat_the_whole_measurement_and_report_the_median_of_their_medians():
    printed = []
    result = run_benchmarks(tiny(models=["A"], runs=3), out=printed.append)
    assert result["config"]["runs"] == 3 and [run["run"] for run in result["runs"]] == [1, 2, 3]
    (row,) = result["results"]
    medians = [run["results"][0]["epoch_median_s"] for run in result["runs"]]
    assert row["run_epoch_median_s"] == medians and row["epoch_median_s"] == statistics.median(medians)
    assert (row["epoch_min_s"], row["epoch_max_s"], row["spread"]) == (min(medians), max(medians), "runs")
    assert len(row["epoch_s"]) == 3  # one round per run
    peaks = [run["gemm_peak"]["gflops"] for run in result["runs"]]
    assert result["gemm_peak"]["gflops"] == max(peaks) and result["gemm_peak"]["gflops_per_run"] == peaks
    assert result["runs"][0]["adam_subnormal"] is not None and result["runs"][1]["adam_subnormal"] is None
    assert ", 3 runs" in printed[0] and "The whole measurement ran 3 times (`--runs 3`)" in printed[0]


def test_every_model_runs_on_the_reference_path_in_worker_processes():
    result = run_benchmarks(tiny(isolation="process"), out=lambda text: None)
    assert [r["model"] for r in result["results"]] == list(specs.MODEL_NAMES)
    assert all(r["status"] == "ok" and len(r["epoch_s"]) == 1 for r in result["results"])


def test_in_process_isolation_measures_memory_in_a_child_and_says_how_it_ran():
    printed = []
    result = run_benchmarks(tiny(models=["D"], memory=True), out=printed.append)
    (row,) = result["results"]
    assert row["peak_rss_mib"] >= row["memory"]["setup_rss_mib"] > 0
    assert result["config"]["isolation"] == "in-process"
    assert "in this one process" in printed[0] and "worker process" not in printed[0]


def test_an_engine_that_fails_is_reported_and_the_others_continue(monkeypatch):
    import benchmarks.engines as engines

    real = engines.make_trainer

    def broken(engine, model, x, y, seed=0):
        if engine == "minitensor-compiled":
            raise RuntimeError("broken on purpose")
        return real(engine, model, x, y, seed)

    monkeypatch.setattr(engines, "make_trainer", broken)
    result = run_benchmarks(tiny(models=["A"], engines=["minitensor-reference", "minitensor-compiled"]),
                            out=lambda text: None)
    ok, failed = result["results"]
    assert ok["status"] == "ok"
    assert failed["status"] == "error" and "broken on purpose" in failed["reason"]


# ------------------------------------------------------------------ the command line
def test_cli_defaults_and_options():
    config = cli.parse_args([])
    assert config.models == list(specs.MODEL_NAMES) and config.engines == list(specs.ENGINE_NAMES)
    assert config.repeats == 5 and config.quick is False and config.memory is True
    assert config.runs == 1 and config.cold_start == ["A"]
    config = cli.parse_args(["--models", "c,a", "--engines", "TF.Keras", "--repeats", "3", "--warmup", "0",
                             "--rows", "L=2560", "--no-memory", "--no-save"])
    assert config.models == ["C", "A"] and config.engines == ["tf.keras"]
    assert (config.repeats, config.warmup, config.rows_for("L"), config.memory) == (3, 0, 2560, False)
    assert config.output_dir is None
    config = cli.parse_args(["--runs", "3", "--cold-start", "d,A"])
    assert config.runs == 3 and config.cold_start == ["D", "A"]
    assert cli.parse_args(["--cold-start", "None"]).cold_start == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--engines", "tensorflow"], "Unknown engine 'tensorflow'. Expected one of: tf.keras"),
        (["--engines", "minitensor-reference,torch"], "Unknown engine 'torch'"),
        (["--models", "A,Z"], "Unknown model 'Z'. Expected one of: A, B, C, D, L, Ls"),
        (["--models", ","], "Expected a comma-separated list of models"),
        (["--repeats", "0"], "expected a positive integer, received '0'"),
        (["--repeats", "two"], "expected a positive integer, received 'two'"),
        (["--runs", "0"], "expected a positive integer, received '0'"),
        (["--cold-start", "A,Q"], "Unknown model 'Q'. Expected one of: A, B, C, D, L, Ls (or none)"),
        (["--warmup", "-1"], "expected an integer >= 0"),
        (["--rows", "L=70000"], "rows for L must lie in 1..60000"),
        (["--rows", "Q=5"], "expected MODEL=ROWS"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_cli_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_module_entry_point_rejects_unknown_engine():
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--engines", "nope"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Unknown engine 'nope'" in proc.stderr


# ------------------------------------------------------------------ pieces
def test_flop_count_of_model_l():
    # forward 2*m*(784*512 + 512*512 + 512*10), dW the same, dX without the input layer's
    assert specs.flops_per_row((784, 512, 512, 10)) == 2 * (3 * (784 * 512 + 512 * 512 + 512 * 10) - 784 * 512)
    assert specs.MODELS["L"].n_params == 669_706


def test_training_arrays():
    x, y = data.training_arrays("C")
    assert x.shape == (1149, 64) and y.shape == (1149, 10) and x.dtype == y.dtype == np.float32
    assert np.all(y.sum(axis=1) == 1) and 0 <= x.min() and x.max() <= 1
    x, y = data.training_arrays("L", rows=300)
    assert x.shape == (300, 784) and y.shape == (300, 10)
    assert np.all(x[:, data.border_mask()] == 0) and data.border_mask().sum() == data.BORDER_PIXELS == 384
    with pytest.raises(ValueError, match="between 1 and 1149"):
        data.training_arrays("A", rows=2000)


def test_worker_answers_commands_and_reports_peak_memory():
    commands = '{"cmd": "epoch", "epochs": 3}\n{"cmd": "bogus"}\n{"cmd": "report"}\n{"cmd": "quit"}\n'
    proc = subprocess.run([sys.executable, "-m", "benchmarks.worker", "--model", "D", "--engine",
                           "minitensor-reference", "--rows", "4"], input=commands, cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ready, epoch, bogus, final = (json.loads(line) for line in proc.stdout.strip().splitlines())
    assert ready["ready"] is True
    assert epoch["peak_rss_mib"] >= ready["setup_rss_mib"] > 0
    assert len(epoch["epoch_s"]) == 3 and sum(epoch["epoch_s"]) <= epoch["fit_s"]
    assert bogus == {"error": "Unknown command 'bogus'", "type": "ValueError"}
    assert final == {"fell_back": False, "notes": [], "diagnostics": {}}


def test_a_worker_that_cannot_start_is_reported_with_its_reason(tmp_path):
    from benchmarks.harness import _Worker, _WorkerFailed

    x, y = data.training_arrays("A", rows=8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    with pytest.raises(_WorkerFailed, match="invalid choice: 'no-such-engine'"):
        _Worker("A", "no-such-engine", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), 0)


def test_formatting():
    assert report.format_seconds(None) == "—"
    assert report.format_seconds(2.5) == "2.50 s"
    assert report.format_seconds(0.0456) == "45.6 ms"
    assert report.format_range(1.5e-4, 1.2e-4, 2.0e-4) == "150 µs (120–200)"
