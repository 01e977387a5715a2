"""Tests of minitensor.activations: values, gradients, logits memory, get/serialize."""

import numpy as np
import pytest

from minitensor import Tensor, activations, gradcheck, ops

X = [-10.0, -5.0, 0.0, 5.0, 10.0]


def f64(values):
    return Tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


# ------------------------------------------------------------------ values
def test_relu_values_and_zero_gradient_at_zero():
    x = Tensor(X, requires_grad=True)
    out = activations.relu(x)
    np.testing.assert_array_equal(out.data, [0, 0, 0, 5, 10])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 0, 0, 1, 1])  # TF's relu gradient at exactly 0 is 0


@pytest.mark.parametrize(
    "kwargs, expected",
    [  # the examples of keras.activations.relu's docstring
        (dict(negative_slope=0.5), [-5.0, -2.5, 0.0, 5.0, 10.0]),
        (dict(max_value=5.0), [0.0, 0.0, 0.0, 5.0, 5.0]),
        (dict(threshold=5.0), [0.0, 0.0, 0.0, 0.0, 10.0]),
        (dict(max_value=6), [0.0, 0.0, 0.0, 5.0, 6.0]),
        (dict(negative_slope=0.5, threshold=1.0, max_value=8.0), [-5.5, -3.0, -0.5, 5.0, 8.0]),
    ],
)
def test_relu_options(kwargs, expected):
    np.testing.assert_allclose(activations.relu(Tensor(X), **kwargs).data, expected)


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(negative_slope=0.3), dict(max_value=2.5), dict(max_value=6), dict(threshold=0.7),
     dict(negative_slope=0.2, threshold=0.5, max_value=2.0)],
)
def test_relu_gradients(kwargs):
    # points away from the kinks (0, threshold, max_value)
    x = f64([-3.1, -0.4, 0.3, 1.2, 2.2, 3.4, 7.5])
    assert gradcheck(lambda t: activations.relu(t, **kwargs), [x])


def test_relu6_gradient_is_zero_at_exactly_six():
    x = Tensor([6.0, 5.9], requires_grad=True)
    activations.relu(x, max_value=6).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0])  # as tf.nn.relu6


def test_relu_rejects_non_numeric_options():
    with pytest.raises(TypeError, match=r"Expected `negative_slope` to be a number. Received: negative_slope='a'"):
        activations.relu(Tensor(X), negative_slope="a")
    with pytest.raises(TypeError, match=r"Received: max_value=True"):
        activations.relu(Tensor(X), max_value=True)


def test_sigmoid_values_stability_and_logits():
    x = Tensor([-1e4, -2.0, 0.0, 2.0, 1e4])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = activations.sigmoid(x)
    expected = [0.0, 1 / (1 + np.exp(2.0)), 0.5, 1 / (1 + np.exp(-2.0)), 1.0]  # ±1e4 saturate exactly in float32
    np.testing.assert_allclose(out.data, expected, rtol=1e-6, atol=0)
    assert out._keras_logits is x


def test_softmax_values_axis_and_logits():
    x = Tensor([[1.0, 2.0, 3.0], [1e4, 0.0, -1e4]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = activations.softmax(x)
    e = np.exp(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(out.data[0], e / e.sum(), rtol=1e-6)
    np.testing.assert_array_equal(out.data[1], [1.0, 0.0, 0.0])
    assert out._keras_logits is x
    columns = activations.softmax(Tensor([[0.0, 5.0], [0.0, 5.0]]), axis=0)
    np.testing.assert_allclose(columns.data, 0.5)


def test_tanh_and_linear():
    x = Tensor([-1.0, 0.0, 0.5])
    np.testing.assert_allclose(activations.tanh(x).data, np.tanh([-1.0, 0.0, 0.5]), rtol=1e-6)
    assert activations.linear(x) is x
    assert activations.tanh(x)._keras_logits is None


@pytest.mark.parametrize("name", ["sigmoid", "softmax", "tanh", "relu"])
def test_gradients_float64(name):
    x = f64([[0.3, -1.2, 2.5], [-0.7, 0.1, 1.9]])
    assert gradcheck(activations.get(name), [x])


# --------------------------------------------------------- get / serialize
def test_get_resolves_none_names_and_callables():
    assert activations.get(None) is activations.linear
    for name in ["relu", "sigmoid", "softmax", "tanh", "linear"]:
        fn = activations.get(name)
        assert fn is getattr(activations, name)
        assert activations.serialize(fn) == name
        assert activations.get(activations.serialize(fn)) is fn

    def custom(t):
        return t * 2

    assert activations.get(custom) is custom
    assert activations.get(ops.relu) is ops.relu
    assert activations.serialize(None) == "linear"


@pytest.mark.parametrize("bad", ["relux", "Relu", 3])
def test_get_unknown_identifier(bad):
    with pytest.raises(ValueError, match=rf"Could not interpret activation function identifier: {bad!r}"):
        activations.get(bad)


def test_serialize_unknown_callable():
    with pytest.raises(ValueError, match="cannot be serialized"):
        activations.serialize(lambda t: t)
