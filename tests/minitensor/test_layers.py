"""Layers: validation, weights, config round trips, dropout, and gradients through each layer."""

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from minitensor import Tensor, gradcheck, regularizers
from minitensor.layers import Activation, Dense, Dropout, Input, InputLayer, deserialize, keep_pre_activations


def test_dense_builds_keras_shapes_and_computes_affine_map():
    layer = Dense(3, activation="relu", bias_initializer="ones")
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 10
    out = layer(x)
    kernel, bias = layer.get_weights()
    assert kernel.shape == (4, 3) and bias.shape == (3,)
    np.testing.assert_allclose(out.data, np.maximum(x @ kernel + bias, 0), rtol=1e-6)
    assert out.dtype == np.float32


def test_dense_glorot_uniform_limit():
    layer = Dense(12)
    layer.build((None, 64))
    limit = np.sqrt(6 / (64 + 12))
    assert np.abs(layer.kernel.data).max() <= limit
    assert np.abs(layer.kernel.data).max() > 0.8 * limit


@pytest.mark.parametrize("units", [-3, 0, 2.5, "12", None, True])
def test_dense_rejects_bad_units(units):
    with pytest.raises(ValueError, match=r"units.*Received: units="):
        Dense(units)


def test_unknown_keyword_is_rejected_keras_style():
    with pytest.raises(ValueError, match="Unrecognized keyword arguments passed to Dense: {'init': 'uniform'}"):
        Dense(12, init="uniform")


def test_input_dim_is_accepted_with_keras_warning():
    with pytest.warns(UserWarning, match="input_shape`/`input_dim"):
        layer = Dense(12, input_dim=64)
    assert layer._declared_input_shape == (None, 64)


@pytest.mark.parametrize("rate", [-0.1, 1.5, "0.5", None])
def test_dropout_rejects_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        Dropout(rate)


def test_dropout_is_identity_at_inference_and_inverted_in_training():
    layer = Dropout(0.3, seed=1)
    x = np.ones((400, 50), dtype=np.float32)
    assert np.array_equal(layer(x).data, x)
    out = layer(Tensor(x), training=True).data
    kept = out != 0
    np.testing.assert_allclose(out[kept], np.float32(1 / 0.7))
    assert abs(kept.mean() - 0.7) < 0.01


def test_dropout_same_seed_same_first_mask_and_masks_change_between_calls():
    x = Tensor(np.ones((10, 10), np.float32))
    a, b = Dropout(0.5, seed=3), Dropout(0.5, seed=3)
    first = a(x, training=True).data
    assert np.array_equal(first, b(x, training=True).data)
    assert not np.array_equal(first, a(x, training=True).data)


def test_dropout_noise_shape_broadcasts_the_mask():
    out = Dropout(0.5, noise_shape=(None, 1), seed=0)(Tensor(np.ones((20, 6), np.float32)), training=True).data
    assert all(len(set(row.tolist())) == 1 for row in out)


def test_set_weights_checks_count_and_shapes_before_changing_anything():
    layer = Dense(2)
    layer.build((None, 3))
    before = layer.get_weights()
    with pytest.raises(ValueError, match="expects 2 weight arrays"):
        layer.set_weights([np.zeros((3, 2))])
    with pytest.raises(ValueError, match=r"\(2,\).*\(2, 3\)"):
        layer.set_weights([np.zeros((3, 2)), np.zeros((2, 3))])
    for b, a in zip(before, layer.get_weights()):
        assert np.array_equal(a, b)


def test_dense_config_round_trip():
    layer = Dense(5, activation="tanh", use_bias=False, kernel_initializer="he_normal",
                  kernel_regularizer=regularizers.L1L2(l1=0.1, l2=0.2), name="d")
    clone = deserialize({"class_name": "Dense", "config": layer.get_config()})
    assert clone.get_config() == layer.get_config()
    assert clone.kernel_regularizer.get_config() == layer.kernel_regularizer.get_config()


def test_dropout_activation_input_config_round_trip():
    for layer in (Dropout(0.25, noise_shape=(None, 1), seed=4), Activation("sigmoid"), InputLayer(shape=(7,))):
        clone = deserialize({"class_name": type(layer).__name__, "config": layer.get_config()})
        assert clone.get_config() == layer.get_config()


def test_input_rejects_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        Input(shape=(0,))


def test_layer_names_are_unique():
    names = {Dense(1).name for _ in range(5)}
    assert len(names) == 5


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 5), d_in=st.integers(1, 5), units=st.integers(1, 4),
    activation=st.sampled_from(["linear", "sigmoid", "tanh", "softmax", "relu"]),
    use_bias=st.booleans(), seed=st.integers(0, 2**16),
)
def test_dense_gradients(n, d_in, units, activation, use_bias, seed):
    rng = np.random.default_rng(seed)
    layer = Dense(units, activation=activation, use_bias=use_bias, dtype="float64", bias_initializer="random_normal")
    layer.build((None, d_in))
    x = Tensor(rng.normal(size=(n, d_in)), requires_grad=True)
    if activation == "relu":  # a central difference across the kink at 0 is meaningless
        pre = x.data @ layer.kernel.data + (layer.bias.data if use_bias else 0)
        assume(not (np.abs(pre) < 1e-3).any())
    gradcheck(lambda x, *w: layer(x), [x, *layer.weights])


@pytest.mark.parametrize(
    "activation, op", [("relu", "Dense"), ("tanh", "Dense"), ("sigmoid", "Sigmoid"), (None, "Linear")]
)
def test_dense_is_one_fused_graph_node_where_its_activation_allows(activation, op):
    layer = Dense(3, activation=activation)
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 10
    out = layer(x)
    assert type(out._op).__name__ == op
    kernel, bias = layer.get_weights()
    z = x @ kernel + bias
    expected = {"relu": np.maximum(z, 0), "tanh": np.tanh(z), "sigmoid": 1 / (1 + np.exp(-z)), None: z}[activation]
    np.testing.assert_allclose(out.data, expected, rtol=1e-6)
    np.testing.assert_array_equal(layer.call(x).data, out.data)  # call() itself takes arrays too


def test_dense_names_both_shapes_for_inputs_of_the_wrong_width():
    layer = Dense(3, activation="relu")
    layer.build((None, 4))
    for inputs in (Tensor(np.ones((2, 5))), np.ones((2, 5))):
        with pytest.raises(ValueError, match=r"last dimension 4 .*inputs.shape=\(2, 5\)"):
            layer.call(inputs)


# ---------------------------------------------------------------- named outputs, study mode
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_names_its_output_and_in_study_mode_its_pre_activation(activation, use_bias):
    layer = Dense(3, activation=activation, use_bias=use_bias)
    x = Tensor(np.ones((2, 4), np.float32))
    assert layer(x).name == f"{layer.name}/output"
    with keep_pre_activations():
        out = layer(x)
    assert out.name == f"{layer.name}/output"
    assert [t.name for t in out.inputs] == [f"{layer.name}/pre_activation"]


def test_a_linear_dense_output_is_its_pre_activation():
    layer = Dense(3)
    assert layer(np.ones((2, 4), np.float32)).name == f"{layer.name}/pre_activation"


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_keep_pre_activations_gives_the_fused_op_numbers_forward_and_backward(activation):
    rng = np.random.default_rng(0)
    layer = Dense(5, activation=activation)
    layer.build((None, 4))
    layer.set_weights([rng.normal(size=(4, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)])
    x = Tensor(rng.normal(size=(6, 4)).astype(np.float32), requires_grad=True)
    upstream = rng.normal(size=(6, 5)).astype(np.float32)

    def run():
        for t in (x, layer.kernel, layer.bias):
            t.grad = None
        out = layer(x)
        out.backward(upstream)
        return out, [t.grad.copy() for t in (x, layer.kernel, layer.bias)]

    fused_out, fused_grads = run()
    with keep_pre_activations():
        split_out, split_grads = run()
    assert len(fused_out.inputs) == 3 and len(split_out.inputs) == 1  # one fused node, then two
    np.testing.assert_array_equal(fused_out.data, split_out.data)
    for a, b in zip(fused_grads, split_grads):
        np.testing.assert_array_equal(a, b)


def test_keep_pre_activations_ends_with_its_block_and_holds_for_its_thread_only():
    import threading

    layer = Dense(2, activation="relu")
    x = np.ones((1, 3), np.float32)
    seen = {}
    with keep_pre_activations():
        thread = threading.Thread(target=lambda: seen.update(other=layer(x)))
        thread.start()
        thread.join()
        inside = layer(x)
    after = layer(x)
    assert len(seen["other"].inputs) == 3  # another thread still fuses
    assert len(inside.inputs) == 1
    assert len(after.inputs) == 3
