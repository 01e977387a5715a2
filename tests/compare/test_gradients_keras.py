"""compare.gradients against tf.keras: one batch's per-layer gradients agree to float32 round-off, and --check fails otherwise."""

import numpy as np
import pytest

from compare import gradients
from compare.engines import build_model, engine_api
from compare.experiments import EXPERIMENTS

pytestmark = pytest.mark.keras


@pytest.mark.parametrize("name", ["sigmoid-sgd-b100", "l2-all", "softmax"])
def test_lesson_models_agree_within_round_off(name):
    result = gradients.compare_gradients(EXPERIMENTS[name], seed=5)
    assert result["passed"], gradients.gradient_table([result])
    assert result["loss_rel_diff"] < 1e-6
    assert len(result["layers"]) == sum(1 for layer in EXPERIMENTS[name].layers if hasattr(layer, "units"))
    for layer in result["layers"]:
        assert layer["grad_norm_keras"] > 0 and layer["max_rel"] <= gradients.GRADIENT_RTOL


def test_the_tape_over_the_layers_ops_gives_keras_own_gradients():
    """The split forward pass (to reach z) changes nothing: the same weight gradients as tape over model(x)."""
    import tensorflow as tf

    experiment = EXPERIMENTS["l2-one"]
    engine_api("keras").set_random_seed(1)
    model = build_model(experiment, "keras")
    x, y = gradients.first_batch(experiment, seed=1)
    loss, layers = gradients.keras_gradients(model, x, y)
    with tf.GradientTape() as tape:
        own = model.compute_loss(x=x, y=y, y_pred=model(x, training=True))
    grads = tape.gradient(own, model.trainable_weights)
    assert float(own) == loss
    for layer, (kernel, bias) in zip(layers, zip(grads[::2], grads[1::2])):
        np.testing.assert_array_equal(layer.kernel, np.asarray(kernel))
        np.testing.assert_array_equal(layer.bias, np.asarray(bias))


def test_check_fails_when_a_gradient_is_off(monkeypatch, capsys):
    original = gradients.minitensor_gradients

    def nudged(model, x, y, training=True):
        loss, layers = original(model, x, y, training)
        layers[0].kernel = layers[0].kernel * np.float32(1 + 1e-4)
        return loss, layers

    monkeypatch.setattr(gradients, "minitensor_gradients", nudged)
    assert gradients.main(["--only", "sigmoid-sgd-b100", "--check"]) == 1
    assert "outside: sigmoid-sgd-b100" in capsys.readouterr().out
    monkeypatch.setattr(gradients, "minitensor_gradients", original)
    assert gradients.main(["--only", "sigmoid-sgd-b100", "--check"]) == 0


def test_gradient_flow_is_the_same_in_both_engines_and_vanishes_with_sigmoid():
    flow = gradients.gradient_flow(epochs=1, every=18)
    for activation, records in flow.items():
        assert records["keras"]["steps"] == records["minitensor"]["steps"] == [0, 18, 36]
        for name, record in records["minitensor"]["layers"].items():
            np.testing.assert_allclose(record["grad_norm"], records["keras"]["layers"][name]["grad_norm"], rtol=1e-4)
    first = {a: [r["grad_norm"][0] for r in records["minitensor"]["layers"].values()] for a, records in flow.items()}
    assert first["sigmoid"][0] < 1e-3 * first["sigmoid"][-1]
    assert first["relu"][0] > 1e-2 * first["relu"][-1]
