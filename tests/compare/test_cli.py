"""python -m compare: argument errors, --list, --check exit status and Ctrl-C, without training.

Training is replaced by synthetic outcomes (the ``outcome_factory`` fixture), so none of these
tests imports TensorFlow.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compare import engines
from compare.__main__ import build_parser, main, scale_epochs
from compare.experiments import ALL, EXPERIMENTS

ROOT = Path(__file__).resolve().parents[2]


def _error(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_unknown_experiment_lists_the_valid_names(capsys):
    err = _error(capsys, ["--only", "softmax", "no-such-model"])
    assert "unknown experiment(s): no-such-model" in err
    for e in ALL:
        assert e.name in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs-scale", "0"], "--epochs-scale"),
        (["--epochs-scale", "-1"], "--epochs-scale"),
        (["--epochs-scale", "abc"], "--epochs-scale"),
        (["--epochs-scale", "inf"], "--epochs-scale"),
        (["--seeds", "0"], "--seeds"),
        (["--seeds", "two"], "--seeds"),
        (["--seed", "-3"], "--seed"),
        (["--mode", "fast"], "--mode"),
        (["--only"], "--only"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_are_clean_argparse_errors(capsys, argv, message):
    err = _error(capsys, argv)
    assert message in err and "usage:" in err


def test_defaults():
    args = build_parser().parse_args([])
    assert (args.mode, args.out, args.epochs_scale, args.check, args.only) == ("parity", "report", 1.0, False, None)


def test_scale_epochs_keeps_at_least_one():
    assert scale_epochs(EXPERIMENTS["deep"], 0.1).epochs == 10
    assert scale_epochs(EXPERIMENTS["sigmoid-sgd-b100"], 0.01).epochs == 1
    assert scale_epochs(EXPERIMENTS["softmax"], 1.0) is EXPERIMENTS["softmax"]


def test_list_and_help_import_no_engine():
    code = (
        "import sys\n"
        "from compare.__main__ import main\n"
        "assert main(['--list']) == 0\n"
        "heavy = ('tensorflow', 'keras', 'minitensor.models', 'sklearn', 'matplotlib')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    listed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert names == [e.name for e in ALL]
    helped = subprocess.run([sys.executable, "-m", "compare", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert helped.returncode == 0 and "--epochs-scale" in helped.stdout


def test_engines_import_is_deferred():
    code = (
        "import sys\n"
        "import compare.engines, compare.report, compare.parity\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'minitensor.models') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _fake_runner(monkeypatch, outcome_factory, mt_scale=1.0, interrupt_after=None):
    calls = []

    def fake_run_experiment(experiment, *, mode, seeds, progress=None, record_steps=None, **kwargs):
        if interrupt_after is not None and len(calls) >= interrupt_after:
            raise KeyboardInterrupt
        calls.append(experiment.name)
        if progress is not None:
            progress("keras", seeds[0], 1, experiment.epochs)
        return outcome_factory(experiment.name, epochs=experiment.epochs, mt_scale=mt_scale, mode=mode)

    monkeypatch.setattr(engines, "run_experiment", fake_run_experiment)
    return calls


def test_check_exit_status(tmp_path, monkeypatch, capsys, outcome_factory):
    _fake_runner(monkeypatch, outcome_factory, mt_scale=1 + 1e-3)
    argv = ["--only", "relu-adam", "--epochs-scale", "0.04", "--out", str(tmp_path), "--jobs", "1"]
    assert main(argv) == 0  # a mismatch is reported ...
    assert main(argv + ["--check"]) == 1  # ... and fails the check
    out = capsys.readouterr().out
    assert "[1/1] relu-adam" in out and "FAIL" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["summary"]["failed"] == ["relu-adam"]
    assert results["experiments"][0]["spec"]["epochs"] == 2
    assert results["epochs_scale"] == 0.04


def test_check_passes_when_every_experiment_matches(tmp_path, monkeypatch, outcome_factory):
    calls = _fake_runner(monkeypatch, outcome_factory)
    assert main(["--only", "lr-9", "softmax", "--epochs-scale", "0.1", "--out", str(tmp_path), "--check",
                 "--jobs", "1"]) == 0
    assert calls == ["lr-9", "softmax"]


def test_ctrl_c_keeps_what_finished(tmp_path, monkeypatch, capsys, outcome_factory):
    calls = _fake_runner(monkeypatch, outcome_factory, interrupt_after=2)
    status = main(["--epochs-scale", "0.05", "--out", str(tmp_path), "--jobs", "1"])
    assert status == 130
    assert len(calls) == 2
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["interrupted"] is True
    assert [e["name"] for e in results["experiments"]] == calls
    assert "Interrupted" in capsys.readouterr().out
    assert (tmp_path / "index.html").is_file()


def test_a_repeated_training_is_reused_not_rerun(tmp_path, monkeypatch, outcome_factory):
    calls = _fake_runner(monkeypatch, outcome_factory)
    assert main(["--only", "deep", "no-early-stop", "--epochs-scale", "0.02", "--out", str(tmp_path),
                 "--jobs", "1"]) == 0
    assert calls == ["deep"]
    results = json.loads((tmp_path / "results.json").read_text())
    reuse = [(e["name"], e["reused_from"]) for e in results["experiments"]]
    assert reuse == [("deep", None), ("no-early-stop", "deep")]
    assert "Same model and training as deep" in (tmp_path / "report.md").read_text()


def test_blas_threads_limit_applies_during_the_run(tmp_path, monkeypatch, outcome_factory):
    from threadpoolctl import threadpool_info

    seen = []

    def fake_run_experiment(experiment, *, mode, seeds, progress=None, record_steps=None, **kwargs):
        seen.extend(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")
        return outcome_factory(experiment.name, epochs=experiment.epochs, mode=mode)

    monkeypatch.setattr(engines, "run_experiment", fake_run_experiment)
    assert main(["--only", "relu-adam", "--epochs-scale", "0.04", "--blas-threads", "1", "--out", str(tmp_path),
                 "--jobs", "1"]) == 0
    assert seen and set(seen) == {1}
    assert json.loads((tmp_path / "results.json").read_text())["blas_threads"] == 1
