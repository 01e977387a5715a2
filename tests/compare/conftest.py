"""Helpers for the compare tests: synthetic runs and outcomes, so that the verdict, report and
command-line logic can be tested without training anything (and without importing TensorFlow)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from compare.engines import ExperimentOutcome, RunResult
from compare.experiments import EXPERIMENTS


def make_run(engine, experiment, history, *, seed=42, step_losses=None, weights=None, confusion=None,
             epoch_seconds=None, test=(0.3, 0.9)):
    """A RunResult with the given history (dict of lists) and plausible timings."""
    epochs = len(history["loss"])
    rng = np.random.default_rng(seed)
    return RunResult(
        engine=engine,
        experiment=experiment.name,
        seed=seed,
        history={k: [float(v) for v in vals] for k, vals in history.items()},
        epochs_run=epochs,
        epoch_seconds=epoch_seconds if epoch_seconds is not None else [0.5] + [0.1] * (epochs - 1),
        steps_per_epoch=-(-1149 // experiment.batch_size),
        fit_seconds=0.5 + 0.1 * (epochs - 1),
        step_losses=step_losses,
        final_weights=weights if weights is not None else [rng.normal(size=(64, 12)).astype(np.float32)],
        test_loss=test[0],
        test_accuracy=test[1],
        test_predictions=None if confusion is None else np.repeat(np.arange(10), 36),
        confusion=confusion,
        versions={"keras": "test"} if engine == "keras" else {"minitensor": "test"},
    )


def history_for(experiment, epochs, scale=1.0, offset=0.0):
    """A smooth decreasing loss curve (times ``scale``) and rising accuracy for ``experiment``."""
    t = np.arange(1, epochs + 1)
    history = {"loss": (0.7 / np.sqrt(t)) * scale, "accuracy": np.minimum(0.5 + 0.05 * t + offset, 1.0)}
    if experiment.validation:
        history["val_loss"] = (0.75 / np.sqrt(t)) * scale
        history["val_accuracy"] = np.minimum(0.48 + 0.05 * t + offset, 1.0)
    return history


def make_outcome(name, *, epochs=4, mt_scale=1.0, mode="parity", seeds=(42,), confusion=False, **experiment_changes):
    """A synthetic outcome of experiment ``name``: minitensor's losses are Keras's times ``mt_scale``."""
    experiment = dataclasses.replace(EXPERIMENTS[name], epochs=epochs, **experiment_changes)
    runs = {"keras": [], "minitensor": []}
    for i, seed in enumerate(seeds):
        cm = None
        if confusion:
            cm = np.diag(np.full(10, 36)).astype(np.int64)
        runs["keras"].append(make_run("keras", experiment, history_for(experiment, epochs, offset=0.01 * i),
                                      seed=seed, confusion=cm))
        runs["minitensor"].append(make_run("minitensor", experiment,
                                           history_for(experiment, epochs, scale=mt_scale, offset=0.01 * i),
                                           seed=seed, confusion=cm))
    return ExperimentOutcome(
        experiment=experiment, mode=mode, seeds=list(seeds), runs=runs,
        order={"method": "pre-permuted", "description": "test", "shuffle": False, "n_rows": 1149},
        weights_from="keras" if mode == "parity" else "own",
    )


@pytest.fixture(autouse=True)
def _private_result_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own tf.keras result cache, never the user's."""
    monkeypatch.setenv("MINITENSOR_COMPARE_CACHE", str(tmp_path_factory.mktemp("keras-cache")))


@pytest.fixture
def outcome_factory():
    """``make_outcome`` as a fixture."""
    return make_outcome
