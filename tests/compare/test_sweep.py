"""compare.sweep: the grid, the tasks, running them in parallel, Ctrl-C and resuming, the heatmaps.

Training here is minitensor's only (no TensorFlow): the sweep machinery does not depend on the
engine. tests/compare/test_sweep_keras.py runs sweeps of both engines, locally and on a Dask
cluster.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pytest

from compare import sweep
from compare.__main__ import main
from compare.experiments import EXPERIMENTS
from compare.sweep import (
    SweepTask, TaskStore, apply_settings, parallel_map, parse_axis, parse_grid, run_sweep, sweep_tasks,
)
from compare.sweep_report import summarize, write_sweep_report

ROOT = Path(__file__).resolve().parents[2]
BASE = dataclasses.replace(EXPERIMENTS["relu-adam"], epochs=2)


# --- the grid -------------------------------------------------------------------------------


def test_parse_axis_converts_each_type():
    assert parse_axis("batch_size=1,8, 32") == ("batch_size", [1, 8, 32])
    assert parse_axis("learning_rate=1e-3,0.1") == ("learning_rate", [0.001, 0.1])
    assert parse_axis("optimizer=sgd,rmsprop") == ("optimizer", ["sgd", "rmsprop"])
    assert parse_axis("hidden=12-8-4,30") == ("hidden", ["12-8-4", "30"])
    assert parse_axis("l2=0,0.01") == ("l2", [0.0, 0.01])


@pytest.mark.parametrize(
    "text, message",
    [
        ("batch_size", "Expected `name=value,value,...`"),
        ("momentum=0.9", "Unknown sweep axis 'momentum'"),
        ("batch_size=8,,32", "none empty"),
        ("batch_size=8,eight", "Expected an integer for each value of `batch_size`. Received: batch_size='eight'"),
        ("batch_size=0,8", "Expected positive values for `batch_size`. Received: batch_size=0"),
        ("learning_rate=-0.1", "Expected positive values for `learning_rate`"),
        ("learning_rate=nan", "Expected positive values for `learning_rate`"),
        ("optimizer=adagrad", "Expected one of sgd, adam, rmsprop for `optimizer`"),
        ("activation=tanh", "Expected relu or sigmoid for `activation`"),
        ("hidden=12-x", "Expected dash-separated positive layer widths for `hidden`"),
        ("batch_size=8,8", "Expected distinct values for `batch_size`"),
    ],
)
def test_parse_axis_errors_name_the_argument(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_axis(text)


def test_parse_grid_rejects_a_repeated_or_missing_axis():
    with pytest.raises(ValueError, match="`batch_size` is given twice"):
        parse_grid(["batch_size=8", "batch_size=32"])
    with pytest.raises(ValueError, match="at least one sweep axis"):
        parse_grid([])


def test_apply_settings_changes_only_what_is_swept():
    base = EXPERIMENTS["deeper-adam"]
    e = apply_settings(base, [("batch_size", 8), ("learning_rate", 0.01)])
    assert (e.batch_size, e.optimizer_settings, e.validation, e.epochs) == (8, {"learning_rate": 0.01}, True, 100)
    assert e.layers == base.layers and e.loss == base.loss
    deeper = apply_settings(base, [("hidden", "30-20-12"), ("activation", "sigmoid"), ("l2", 0.01)])
    assert deeper.architecture == "64-30s+l2-20s+l2-12s+l2-1s"
    assert deeper.layers[-1] == base.layers[-1]  # the output layer is kept
    # another optimizer starts from its own defaults; a swept learning rate still applies
    other = apply_settings(EXPERIMENTS["lr-9"], [("optimizer", "adam")])
    assert (other.optimizer, other.optimizer_settings) == ("adam", {})
    assert apply_settings(EXPERIMENTS["lr-9"], [("batch_size", 4)]).optimizer_settings == {"learning_rate": 9.0}
    assert apply_settings(base, [("epochs", 3)]).epochs == 3


def test_sweep_tasks_cover_every_combination_seed_and_engine():
    grid = {"batch_size": [8, 32], "optimizer": ["sgd", "adam", "rmsprop"]}
    tasks = sweep_tasks(BASE, grid, seeds=[3, 4], epochs_scale=0.5)
    assert len(tasks) == 2 * 3 * 2 * 2
    combos = {(t.settings, t.seed, t.engine) for t in tasks}
    assert len(combos) == len(tasks)
    assert {t.experiment.epochs for t in tasks} == {1}
    assert len({json.dumps(t.key(), sort_keys=True) for t in tasks}) == len(tasks)


# --- running tasks --------------------------------------------------------------------------


def _mt_tasks(grid=None, seeds=(0, 1)):
    return sweep_tasks(BASE, grid or {"batch_size": [32, 128], "learning_rate": [0.01, 0.1]}, seeds=list(seeds),
                       engines=("minitensor",))


def _histories(results):
    return [r["history"] for r in results]


def test_jobs_two_gives_the_same_results_as_jobs_one(tmp_path):
    tasks = _mt_tasks()
    one, stopped = run_sweep(tasks, TaskStore(tmp_path / "one"), jobs=1)
    assert not stopped and all(r is not None for r in one)
    two, stopped = run_sweep(tasks, TaskStore(tmp_path / "two"), jobs=2)
    assert not stopped
    assert _histories(one) == _histories(two)  # bit for bit: floats compared exactly
    assert {r["threads"] for r in one} == {max(1, sweep.available_cores())}
    assert {r["threads"] for r in two} == {max(1, sweep.available_cores() // 2)}
    # seeds and settings matter: the runs are not all the same
    assert len({json.dumps(h) for h in _histories(one)}) == len(tasks)


def test_a_task_pins_blas_threads():
    from threadpoolctl import threadpool_info

    with sweep.pin_threads(1):
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {1}


def test_a_finished_sweep_is_read_back_not_rerun(tmp_path, monkeypatch):
    tasks = _mt_tasks(seeds=(0,))
    store = TaskStore(tmp_path)
    first, _ = run_sweep(tasks, store, jobs=1)
    monkeypatch.setattr(sweep, "run_task", lambda *a, **k: pytest.fail("a stored task was trained again"))
    seen = []
    again, _ = run_sweep(tasks, store, jobs=1, on_result=lambda t, r, earlier: seen.append(earlier))
    assert seen == [True] * len(tasks) and _histories(again) == _histories(first)


def test_a_changed_minitensor_is_not_read_back(tmp_path, monkeypatch):
    tasks = _mt_tasks(seeds=(0,))[:1]
    store = TaskStore(tmp_path)
    run_sweep(tasks, store, jobs=1)
    assert TaskStore(tmp_path).load(tasks[0]) is not None
    monkeypatch.setattr(sweep, "minitensor_fingerprint", lambda: "edited")
    assert TaskStore(tmp_path).load(tasks[0]) is None


def _slow_square(x, delay=0.0):
    time.sleep(delay)
    return os.getpid(), x * x


def test_ctrl_c_stops_the_workers_and_keeps_what_finished(tmp_path):
    # Ctrl-C arrives while the main process waits for results: the stream is closed and joblib's
    # worker processes go away, with tasks still queued.
    got, pids = [], set()
    stream = parallel_map(_slow_square, list(range(40)), jobs=2, delay=0.3)
    with pytest.raises(KeyboardInterrupt):
        try:
            for index, (pid, value) in stream:
                got.append((index, value))
                pids.add(pid)
                if len(got) == 3:
                    raise KeyboardInterrupt
        finally:
            stream.close()
    assert len(got) == 3 and all(v == i * i for i, v in got)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie no longer runs
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_an_interrupted_sweep_keeps_finished_results_and_the_rerun_trains_the_rest(tmp_path, monkeypatch):
    tasks = _mt_tasks()
    store = TaskStore(tmp_path)
    finished = []

    def stop_after_three(task, result, earlier):
        finished.append(task)
        if len(finished) == 3:
            raise KeyboardInterrupt

    results, interrupted = run_sweep(tasks, store, jobs=2, on_result=stop_after_three)
    assert interrupted
    assert sum(r is not None for r in results) == 3
    assert len(list(tmp_path.glob("*.json"))) == 3
    trained = []
    real = sweep.run_task

    def counting(task, **kwargs):
        trained.append(task)
        return real(task, **kwargs)

    monkeypatch.setattr(sweep, "run_task", counting)
    rest, interrupted = run_sweep(tasks, store, jobs=1)
    assert not interrupted and all(r is not None for r in rest)
    assert len(trained) == len(tasks) - 3 and not set(trained) & set(finished)
    complete, _ = run_sweep(tasks, TaskStore(tmp_path / "fresh"), jobs=1)
    assert _histories(rest) == _histories(complete)


def test_real_ctrl_c_on_the_command_line_then_rerun(tmp_path):
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "compare", "--sweep", "batch_size=4,8,16,32", "learning_rate=0.001,0.01,0.1",
            "--base", "relu-sgd-b32", "--epochs-scale", "0.1", "--seeds", "2", "--jobs", "2", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--engines", "minitensor"]
    env = dict(os.environ)
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               start_new_session=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if sum(1 for x in lines if x.startswith("[")) >= 2:
            os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
            break
    rest = process.stdout.read()
    assert process.wait(timeout=120) == 130, "".join(lines) + rest
    assert "Interrupted" in rest
    kept = len(list((out / "tasks").glob("*.json")))
    assert 2 <= kept < 24
    document = json.loads((out / "results.json").read_text())
    assert document["interrupted"] and document["tasks"]["finished"] == kept
    again = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{kept} run(s) were kept from an earlier run" in again.stdout
    trained_now = [x for x in again.stdout.splitlines() if x.startswith("[")]
    assert len(trained_now) == 24 - kept
    final = json.loads((out / "results.json").read_text())
    assert final["tasks"]["finished"] == 24 and not final["interrupted"]


# --- the report -----------------------------------------------------------------------------


def _fake_results(tasks):
    results = []
    for t in tasks:
        settings = dict(t.settings)
        acc = 0.9 - 0.001 * settings["batch_size"] + 0.01 * t.seed + (0.005 if t.engine == "minitensor" else 0)
        results.append({"history": {"val_accuracy": [0.5, acc], "val_loss": [1.0, 1 - acc]}, "epochs_run": 2,
                        "fit_seconds": 0.1, "from_cache": t.engine == "keras" and t.seed == 0})
    return results


def test_summarize_means_and_spreads_over_seeds():
    tasks = sweep_tasks(BASE, {"batch_size": [8, 32]}, seeds=[0, 1, 2])
    summary = summarize(tasks, _fake_results(tasks))
    cell = summary[(("batch_size", 8),)]["minitensor"]["val_accuracy"]
    expected = [0.9 - 0.008 + 0.01 * s + 0.005 for s in (0, 1, 2)]
    assert cell["n"] == 3 and cell["values"] == pytest.approx(expected)
    assert cell["mean"] == pytest.approx(np.mean(expected)) and cell["std"] == pytest.approx(np.std(expected, ddof=1))


def test_sweep_report_writes_heatmaps_for_every_facet(tmp_path):
    grid = {"batch_size": [8, 32], "learning_rate": [0.01, 0.1], "optimizer": ["sgd", "adam"]}
    tasks = sweep_tasks(BASE, grid, seeds=[0, 1])
    results = _fake_results(tasks)
    assert (tasks[0].engine, tasks[0].seed) == ("keras", 0)
    results[0] = None  # an unfinished run, one of the 8 tf.keras runs of seed 0 (read from the cache)
    document = write_sweep_report(tasks, results, grid, tmp_path, meta={"base": "relu-adam", "seeds": 2})
    assert document["tasks"] == {"total": 32, "finished": 31, "keras_from_cache": 7, "from_earlier_run": 0}
    assert len(document["figures"]) == 4  # 2 metrics x 2 optimizers
    for path in document["figures"]:
        assert (tmp_path / path).stat().st_size > 1000
    assert json.loads((tmp_path / "results.json").read_text())["grid"] == grid
    html = (tmp_path / "index.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "7 tf.keras run(s) read from the result cache" in (tmp_path / "report.md").read_text()
    assert document["runs"][0] is None and document["summary"]


def test_command_line_sweep_errors(capsys):
    for argv, message in [
        (["--sweep", "momentum=1"], "Unknown sweep axis"),
        (["--sweep", "batch_size=8", "--base", "nope"], "unknown --base experiment"),
        (["--sweep", "batch_size=8", "--only", "deep"], "--only and --list do not apply"),
        (["--sweep", "batch_size=8", "--mode", "parity"], "independent mode"),
        (["--sweep", "batch_size=8", "--mode=parity"], "independent mode"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
