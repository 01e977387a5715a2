"""Parity against tf.keras: three of the lesson's experiments, a few epochs each, both engines.

These train real models in both engines (TensorFlow is imported once, ~5 s), so they are few
and small: sigmoid/SGD, relu/Adam with validation and L2 on every hidden layer, and the softmax
model. The last test runs the command line end to end on a one-epoch experiment.
"""

import dataclasses
import json

import numpy as np
import pytest

from compare.experiments import EXPERIMENTS
from compare.parity import STRICT_RTOL, assess

pytestmark = pytest.mark.keras

QUICK = {"sigmoid-sgd-b100": 4, "l2-all": 3, "softmax": 2}


@pytest.fixture(scope="module")
def outcomes():
    from compare.engines import run_experiment

    return {
        name: run_experiment(dataclasses.replace(EXPERIMENTS[name], epochs=epochs), mode="parity", seeds=[7])
        for name, epochs in QUICK.items()
    }


@pytest.mark.parametrize("name", list(QUICK))
def test_losses_agree_to_float32_round_off(outcomes, name):
    outcome = outcomes[name]
    result = assess(outcome)
    assert result["tolerance"]["rule"] == "strict"
    keras_run, mt_run = outcome.runs["keras"][0], outcome.runs["minitensor"][0]
    assert keras_run.epochs_run == mt_run.epochs_run == QUICK[name]
    assert sorted(keras_run.history) == sorted(mt_run.history)
    for key in result["tolerance"]["keys"]:
        a, b = np.array(keras_run.history[key]), np.array(mt_run.history[key])
        np.testing.assert_allclose(b, a, rtol=STRICT_RTOL, atol=0, err_msg=key)
    assert result["verdict"]["passed"] is True, result["verdict"]
    # the training moved the weights, and both engines ended in the same place
    assert result["comparison"]["final_weights"]["max_rel_to_largest"] < 1e-4


def test_validation_and_l2_are_in_the_history(outcomes):
    run = outcomes["l2-all"].runs["minitensor"][0]
    assert set(run.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_softmax_confusion_matrices(outcomes):
    outcome = outcomes["softmax"]
    for engine in ("keras", "minitensor"):
        run = outcome.runs[engine][0]
        assert run.confusion.shape == (10, 10) and run.confusion.sum() == 360
        assert np.trace(run.confusion) / 360 == pytest.approx(run.test_accuracy, abs=1e-6)
    differ = int(np.sum(outcome.runs["keras"][0].test_predictions != outcome.runs["minitensor"][0].test_predictions))
    assert differ <= 1  # a test image may sit within round-off of a tie between two classes


def test_minitensor_starts_from_keras_weights():
    from compare.engines import train

    experiment = dataclasses.replace(EXPERIMENTS["relu-adam"], epochs=1)
    _, keras_start = train(experiment, "keras", seed=3)
    _, mt_start = train(experiment, "minitensor", seed=3, initial_weights=keras_start)
    assert [w.shape for w in keras_start] == [(64, 12), (12,), (12, 8), (8,), (8, 1), (1,)]
    for a, b in zip(keras_start, mt_start):
        np.testing.assert_array_equal(a, b)


def test_command_line_end_to_end(tmp_path):
    from compare.__main__ import main

    status = main(["--only", "relu-adam", "--epochs-scale", "0.02", "--out", str(tmp_path), "--check"])
    assert status == 0
    results = json.loads((tmp_path / "results.json").read_text())
    entry = results["experiments"][0]
    assert entry["order"]["method"] == "pre-permuted" and entry["weights_from"] == "keras"
    assert set(results["versions"]) == {"keras", "minitensor"}
    assert entry["runs"]["keras"][0]["epoch_seconds"] and entry["runs"]["minitensor"][0]["epoch_seconds"]
    assert (tmp_path / entry["figures"]["curves"]).is_file()
