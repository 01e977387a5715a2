"""compare.cache: tf.keras results on disk, keyed by everything that determines them.

No TensorFlow here: runs are synthetic (conftest's ``make_run``) and, where training is needed,
``compare.engines.train`` is replaced by a counter, so these tests check the keying and the
plumbing; tests/compare/test_cache_keras.py checks it against real tf.keras runs.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compare import engines
from compare.__main__ import main
from compare.cache import ResultCache, keras_run_key, software_fingerprint
from compare.experiments import EXPERIMENTS

from .conftest import history_for, make_run

ROOT = Path(__file__).resolve().parents[2]
SOFTWARE = {"tensorflow": "tensorflow-cpu 2.21.0", "keras": "keras 3.15.1", "numpy": "2.4.6", "python": "3.11.9",
            "keras_backend": "tensorflow", "scikit-learn": "scikit-learn 1.8.0"}


def _key(experiment=None, software=SOFTWARE, **changes):
    args = dict(seed=42, mode="parity", record_steps=False, epochs_scale=1.0, nudge_seed=None)
    args.update(changes)
    return keras_run_key(experiment or EXPERIMENTS["relu-adam"], software=software, **args)


def _run(name="softmax", epochs=3):
    experiment = dataclasses.replace(EXPERIMENTS[name], epochs=epochs)
    cm = np.arange(100, dtype=np.int64).reshape(10, 10)
    run = make_run("keras", experiment, history_for(experiment, epochs), confusion=cm,
                   step_losses=[[0.5, 0.4], [0.3, 0.2], [0.1, 0.05]])
    start = [np.full((64, 12), 0.25, np.float32), np.zeros(12, np.float32)]
    return run, start


def test_round_trip_keeps_every_field(tmp_path):
    cache = ResultCache(tmp_path)
    run, start = _run()
    key = _key()
    assert cache.load(key) is None and cache.misses == 1
    cache.store(key, run, start)
    loaded, loaded_start = cache.load(key)
    assert cache.hits == 1 and loaded.from_cache and not run.from_cache
    for field in dataclasses.fields(run):
        a, b = getattr(run, field.name), getattr(loaded, field.name)
        if field.name == "from_cache":
            continue
        if field.name == "final_weights":
            assert len(a) == len(b) and all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b))
        elif isinstance(a, np.ndarray):
            assert np.array_equal(a, b) and a.dtype == b.dtype, field.name
        else:
            assert a == b, field.name
    assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(start, loaded_start))


@pytest.mark.parametrize(
    "change",
    [
        dict(experiment=dataclasses.replace(EXPERIMENTS["relu-adam"], optimizer_options=(("learning_rate", 0.01),))),
        dict(experiment=dataclasses.replace(EXPERIMENTS["relu-adam"], batch_size=16)),
        dict(experiment=dataclasses.replace(EXPERIMENTS["relu-adam"], epochs=5)),
        dict(experiment=EXPERIMENTS["relu-sgd-b32"]),
        dict(seed=43),
        dict(mode="independent"),
        dict(record_steps=True),
        dict(nudge_seed=42),
        dict(epochs_scale=0.5),
        dict(software={**SOFTWARE, "tensorflow": "tensorflow-cpu 2.22.0"}),
        dict(software={**SOFTWARE, "keras": "keras 3.16.0"}),
        dict(software={**SOFTWARE, "numpy": "2.5.0"}),
        dict(software={**SOFTWARE, "python": "3.12.1"}),
        dict(software={**SOFTWARE, "scikit-learn": "scikit-learn 1.9.1"}),
    ],
    ids=lambda change: next(iter(change)) + (":" + str(next(iter(change.values())))[:40]),
)
def test_any_change_to_what_determines_a_run_misses(tmp_path, change):
    cache = ResultCache(tmp_path)
    run, start = _run()
    cache.store(_key(), run, start)
    assert cache.load(_key()) is not None
    assert cache.load(_key(**change)) is None


def test_the_same_training_under_another_name_hits(tmp_path):
    cache = ResultCache(tmp_path)
    run, start = _run()
    cache.store(_key(EXPERIMENTS["deep"]), run, start)
    assert cache.load(_key(EXPERIMENTS["no-early-stop"])) is not None
    # early stopping is part of the training: a different entry
    assert cache.load(_key(EXPERIMENTS["early-stop-0"])) is None


def test_a_damaged_file_or_a_foreign_key_is_a_miss(tmp_path):
    cache = ResultCache(tmp_path)
    run, start = _run()
    key = _key()
    path = cache.store(key, run, start)
    path.write_bytes(path.read_bytes()[:100])
    assert cache.load(key) is None
    cache.store(key, run, start)  # replaced
    assert cache.load(key) is not None
    # a file holding another key at this key's name (a hash collision) is not returned
    other = _key(seed=7)
    cache.store(other, run, start)
    cache.path(other).replace(path)
    assert cache.load(key) is None
    assert not list(tmp_path.glob(".tmp-*"))


def test_software_fingerprint_names_the_installed_versions_without_importing_tensorflow():
    code = (
        "import sys, json\n"
        "from compare.cache import software_fingerprint\n"
        "print(json.dumps(software_fingerprint()))\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    software = json.loads(done.stdout)
    from importlib import metadata

    assert software["numpy"] == np.__version__
    assert software["python"] == sys.version.split()[0]
    assert software["keras"] == f"keras {metadata.version('keras')}"
    tf_dist = software["tensorflow"].split()[0]
    assert tf_dist.startswith("tensorflow") and software["tensorflow"] == f"{tf_dist} {metadata.version(tf_dist)}"
    assert software["scikit-learn"] == f"scikit-learn {metadata.version('scikit-learn')}"
    assert software == software_fingerprint()


class _CountingTrain:
    """Stands in for compare.engines.train: synthetic runs, counting calls per engine."""

    def __init__(self, mt_scale=1.0):
        self.calls = []
        self.mt_scale = mt_scale

    def __call__(self, experiment, engine, *, seed, initial_weights=None, **kwargs):
        self.calls.append(engine)
        scale = self.mt_scale if engine == "minitensor" else 1.0
        run = make_run(engine, experiment, history_for(experiment, experiment.epochs, scale=scale), seed=seed)
        start = [np.asarray(w) for w in initial_weights] if initial_weights is not None else [np.ones((64, 12))]
        return run, start


def test_run_experiment_reads_keras_from_the_cache_and_trains_minitensor(tmp_path, monkeypatch):
    fake = _CountingTrain()
    monkeypatch.setattr(engines, "train", fake)
    monkeypatch.setattr("compare.cache.software_fingerprint", lambda: SOFTWARE)
    experiment = dataclasses.replace(EXPERIMENTS["relu-adam"], epochs=3)
    cache = ResultCache(tmp_path)
    first = engines.run_experiment(experiment, seeds=[5], cache=cache)
    assert fake.calls == ["keras", "minitensor"] and not first.runs["keras"][0].from_cache
    second = engines.run_experiment(experiment, seeds=[5], cache=cache)
    assert fake.calls == ["keras", "minitensor", "minitensor"]
    assert second.runs["keras"][0].from_cache and not second.runs["minitensor"][0].from_cache
    assert second.runs["keras"][0].history == first.runs["keras"][0].history
    # another seed is another run
    engines.run_experiment(experiment, seeds=[6], cache=cache)
    assert fake.calls[-2:] == ["keras", "minitensor"]


def test_command_line_second_run_trains_only_minitensor_and_says_so(tmp_path, monkeypatch):
    fake = _CountingTrain()
    monkeypatch.setattr(engines, "train", fake)
    monkeypatch.setattr("compare.cache.software_fingerprint", lambda: SOFTWARE)
    argv = ["--only", "relu-adam", "softmax", "--epochs-scale", "0.04", "--jobs", "1",
            "--cache-dir", str(tmp_path / "cache")]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    assert sorted(fake.calls) == ["keras", "keras", "minitensor", "minitensor"]
    first = json.loads((tmp_path / "a" / "results.json").read_text())
    assert first["cache"]["keras_from_cache"] == [] and first["cache"]["enabled"]
    fake.calls.clear()
    assert main(argv + ["--out", str(tmp_path / "b")]) == 0
    assert fake.calls == ["minitensor", "minitensor"]
    second = json.loads((tmp_path / "b" / "results.json").read_text())
    assert second["cache"]["keras_from_cache"] == ["relu-adam", "softmax"]
    assert all(e["runs"]["keras"][0]["from_cache"] for e in second["experiments"])
    assert not any(e["runs"]["minitensor"][0]["from_cache"] for e in second["experiments"])
    report = (tmp_path / "b" / "report.md").read_text()
    assert "read from the result cache (‡): relu-adam, softmax" in report and "‡" in report.split("\n| relu-adam")[1]
    # --no-cache trains both again, and says nothing came from the cache
    fake.calls.clear()
    assert main(argv + ["--out", str(tmp_path / "c"), "--no-cache"]) == 0
    assert sorted(fake.calls) == ["keras", "keras", "minitensor", "minitensor"]
    third = json.loads((tmp_path / "c" / "results.json").read_text())
    assert third["cache"] == {"enabled": False, "directory": None, "keras_from_cache": []}
