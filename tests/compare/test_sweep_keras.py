"""Against real tf.keras: how the comparison drives Keras, and sweeps of both engines, locally and on Dask.

* Keras driven a whole epoch per call from ``tf.data`` datasets, with per-step losses and one-ulp
  nudges made inside the compiled step, gives bit-identical numbers to Keras fitted the plain way
  (arrays, one call per step, callbacks reading the logs).
* A small sweep gives the same numbers with ``--jobs 2`` as with ``--jobs 1``, and on a Dask
  ``LocalCluster`` (a scheduler and two worker processes on loopback) as locally; a
  ``GridSearchCV`` of minitensor's ``KerasClassifier`` runs on that cluster through joblib's Dask
  backend and scores as it does in this process.
"""

import dataclasses
import sys

import cloudpickle
import distributed
import joblib
import keras
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from compare.engines import batch_order, build_model, engine_api, train, training_arrays
from compare.experiments import EXPERIMENTS
from compare.parity import STRICT_RTOL, step_divergence
from compare.data import load_digits_splits
from compare.sweep import TaskStore, run_sweep, sweep_tasks
from minitensor.layers import Dense, Input
from minitensor.models import Sequential
from minitensor.wrappers import KerasClassifier

pytestmark = pytest.mark.keras


class _Steps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


@pytest.mark.parametrize("name, epochs", [("lr-9", 3), ("softmax", 2)])
def test_keras_per_epoch_from_datasets_is_bit_identical_to_plain_fit(name, epochs):
    experiment = dataclasses.replace(EXPERIMENTS[name], epochs=epochs)
    x, y = training_arrays(experiment)
    order = batch_order(len(x), 3)
    run, start = train(experiment, "keras", seed=3, order=order, record_steps=True)

    # the plain way, written out here: seed, build, fit arrays one step per call, read logs per step
    api = engine_api("keras")
    api.clear_session()
    api.set_random_seed(3)
    model = build_model(experiment, "keras")
    for a, b in zip(start, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    steps = _Steps()
    kwargs = {}
    if experiment.validation:
        from compare.data import load_digits_splits

        data = load_digits_splits().target(experiment.task)
        kwargs["validation_data"] = (data.x_val, data.y_val)
    history = model.fit(x[order], y[order], batch_size=experiment.batch_size, epochs=epochs, shuffle=False,
                        verbose=0, callbacks=[steps], **kwargs)

    assert run.history == {k: [float(v) for v in vals] for k, vals in sorted(history.history.items())}
    assert [loss for epoch in run.step_losses for loss in epoch] == steps.losses
    for a, b in zip(run.final_weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_in_graph_nudges_are_the_per_step_callbacks_nudges():
    experiment = dataclasses.replace(EXPERIMENTS["lr-9"], epochs=3)
    order = batch_order(1149, 2)
    plain, start = train(experiment, "keras", seed=2, order=order, record_steps=True)
    runs = {
        mode: train(experiment, "keras", seed=2, order=order, initial_weights=start, record_steps=True, nudge_seed=2,
                    nudge_reference=plain.step_losses, keras_execution=mode)[0]
        for mode in ("step", "epoch")
    }
    parted = {mode: step_divergence(plain.step_losses, run.step_losses, STRICT_RTOL) for mode, run in runs.items()}
    first = parted["step"]["first_step_over"]
    assert first is not None and 1 < first == parted["epoch"]["first_step_over"]
    flat = {mode: [loss for epoch in run.step_losses for loss in epoch][:first] for mode, run in runs.items()}
    assert flat["step"] == flat["epoch"]  # the same losses, step by step, up to and including the parting


TASKS = sweep_tasks(dataclasses.replace(EXPERIMENTS["relu-adam"], epochs=2), {"batch_size": [32, 128]}, seeds=[0, 1])


@pytest.fixture(scope="module")
def local_results(tmp_path_factory):
    results, interrupted = run_sweep(TASKS, TaskStore(tmp_path_factory.mktemp("one")), jobs=1)
    assert not interrupted
    return results


def _histories(results):
    return [r["history"] for r in results]


def test_sweep_with_two_jobs_equals_one_job(local_results, tmp_path):
    results, interrupted = run_sweep(TASKS, TaskStore(tmp_path), jobs=2)
    assert not interrupted
    assert _histories(results) == _histories(local_results)
    assert {t.engine for t in TASKS} == {"keras", "minitensor"}
    # the engines draw their own weights: their runs differ, and so do the seeds'
    assert len({str(h) for h in _histories(results)}) == len(TASKS)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as local_cluster:
        yield local_cluster


def test_sweep_on_a_local_dask_cluster_equals_the_local_run(cluster, local_results, tmp_path):
    results, interrupted = run_sweep(TASKS, TaskStore(tmp_path), scheduler=cluster.scheduler_address)
    assert not interrupted
    assert _histories(results) == _histories(local_results)
    with distributed.Client(cluster.scheduler_address) as client:
        assert len(client.scheduler_info()["workers"]) == 2


def lesson_model(meta, units=12):
    """The lesson's even/odd model: 64-units-1, relu then sigmoid."""
    return Sequential([
        Input(shape=(meta["n_features_in_"],)), Dense(units, activation="relu"), Dense(1, activation="sigmoid"),
    ])


def test_grid_search_of_the_keras_classifier_on_the_dask_cluster(cluster):
    # the workers cannot import this test module: send its functions by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    task = load_digits_splits().target("binary")
    estimator = KerasClassifier(lesson_model, loss="binary_crossentropy", optimizer="adam", epochs=3,
                                batch_size=32, verbose=0, random_state=0)
    grid = {"model__units": [4, 12], "optimizer__learning_rate": [0.001, 0.01]}
    try:
        with distributed.Client(cluster.scheduler_address) as client:
            with distributed.get_task_stream(client) as stream, joblib.parallel_backend("dask"):
                on_cluster = GridSearchCV(estimator, grid, cv=2).fit(task.x_t, task.y_t)
            workers = {record["worker"] for record in stream.data}
            cluster_workers = set(client.scheduler_info()["workers"])
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    # joblib sends the 8 fits (4 settings x 2 folds) to the workers, in batches of its choosing
    assert stream.data and workers and workers <= cluster_workers
    here = GridSearchCV(estimator, grid, cv=2, n_jobs=1).fit(task.x_t, task.y_t)
    np.testing.assert_array_equal(on_cluster.cv_results_["mean_test_score"], here.cv_results_["mean_test_score"])
    assert on_cluster.best_params_ == here.best_params_
    assert on_cluster.score(task.x_test, task.y_test) == here.score(task.x_test, task.y_test)


def _histories_of(document):
    return {e["name"]: {engine: [r["history"] for r in e["runs"][engine]] for engine in ("keras", "minitensor")}
            for e in document["experiments"]}


def test_the_comparison_on_two_workers_equals_one_and_a_second_run_reads_keras_from_the_cache(tmp_path):
    import json

    from compare.__main__ import main

    argv = ["--only", "lr-9", "dropout", "softmax", "--epochs-scale", "0.04", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv + ["--jobs", "2", "--gradients", "--out", str(tmp_path / "two")]) == 0
    assert main(argv + ["--jobs", "1", "--no-cache", "--out", str(tmp_path / "one")]) == 0
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    assert two["execution"]["jobs"] == 2 and one["execution"]["jobs"] == 1
    assert _histories_of(two) == _histories_of(one)  # dropout's three seeds ran as three tasks
    assert [e["seeds"] for e in two["experiments"]] == [[42], [42, 43, 44], [42]]
    assert [e["verdict"] for e in two["experiments"]] == [e["verdict"] for e in one["experiments"]]
    assert "## Gradients, layer by layer" in (tmp_path / "two" / "report.md").read_text()
    assert two["cache"]["keras_from_cache"] == []
    assert main(argv + ["--jobs", "2", "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["cache"]["keras_from_cache"] == ["lr-9", "dropout", "softmax"]
    assert _histories_of(again) == _histories_of(one)
