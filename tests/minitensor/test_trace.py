"""trace_step: the one-step trace equals what fit and backward() do, by hand and bit for bit, and changes nothing."""

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from minitensor import Tensor, gradcheck, regularizers
from minitensor.layers import Activation, Dense, Dropout, Input, keep_pre_activations
from minitensor.models import Sequential
from minitensor.optimizers import SGD, Adagrad, Adam, RMSprop
from minitensor.trace import named_tensors, trace_step

OPTIMIZERS = {
    "sgd": lambda: SGD(learning_rate=0.1),
    "momentum": lambda: SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
    "adam": lambda: Adam(learning_rate=0.01),
    "rmsprop": lambda: RMSprop(learning_rate=0.01),
    "adagrad": lambda: Adagrad(learning_rate=0.1),
    "clipnorm": lambda: Adam(learning_rate=0.01, clipnorm=0.05),
    "global_clipnorm": lambda: SGD(learning_rate=0.1, global_clipnorm=0.05),
    "weight_decay": lambda: Adam(learning_rate=0.01, weight_decay=0.1),
}


def data(n=24, d=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, (x[:, :1] + x[:, 1:2] > 0).astype(np.float32)


def build(optimizer, dropout_seed=None, dtype="float32", seed=1):
    layers = [
        Input(shape=(6,)),
        Dense(5, activation="relu", kernel_regularizer=regularizers.l2(0.01), dtype=dtype),
        Dropout(0.3, seed=dropout_seed, dtype=dtype),
        Dense(4, activation="tanh", bias_regularizer=regularizers.l1(0.01), dtype=dtype),
        Dense(3, activation="sigmoid", activity_regularizer=regularizers.l2(0.001), dtype=dtype),
        Dense(1, activation="sigmoid", dtype=dtype),
    ]
    model = Sequential(layers)
    model.compile(optimizer=optimizer, loss="binary_crossentropy")
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.8, size=w.shape) for w in model.get_weights()])
    return model


def snapshot(model):
    return {
        "weights": [w.copy() for w in model.get_weights()],
        "grads": [None if w.grad is None else w.grad.copy() for w in model.weights],
        "optimizer": [np.copy(s) for s in model.optimizer.get_state()] if model.optimizer.built else None,
        "iterations": model.optimizer.iterations,
        "global_random": np.random.get_state()[1].copy(),
        "dropout_random": [str(getattr(l, "_rng", None) and l._rng.bit_generator.state) for l in model.layers
                           if isinstance(l, Dropout) and l.seed is not None],
    }


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], list):
            assert len(a[key]) == len(b[key])
            for u, v in zip(a[key], b[key]):
                if isinstance(u, np.ndarray):
                    np.testing.assert_array_equal(u, v)
                else:
                    assert u == v
        elif isinstance(a[key], np.ndarray):
            np.testing.assert_array_equal(a[key], b[key])
        else:
            assert a[key] == b[key]


# ---------------------------------------------------------------- the step fit takes, bit for bit
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("warm", [False, True], ids=["fresh", "after-training"])
def test_trace_update_is_exactly_the_step_fit_takes(name, warm):
    x, y = data()
    model = build(OPTIMIZERS[name](), dropout_seed=7)
    if warm:  # an optimizer with state (moments, iterations) from earlier steps
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    trace = trace_step(model, x[:8], y[:8])
    model.fit(x[:8], y[:8], batch_size=8, epochs=1, shuffle=False, verbose=0)
    fitted = iter(model.get_weights())
    for layer in trace:
        for key in layer.weights:
            np.testing.assert_array_equal(layer.weights_after[key], next(fitted))
            np.testing.assert_array_equal(layer.weights[key] + layer.updates[key], layer.weights_after[key])


@pytest.mark.parametrize("name", ["sgd", "adam", "clipnorm"])
def test_taking_a_trace_changes_nothing_and_training_goes_on_bit_for_bit(name):
    x, y = data()
    traced, twin = build(OPTIMIZERS[name](), dropout_seed=3), build(OPTIMIZERS[name](), dropout_seed=3)
    for model in (traced, twin):
        np.random.seed(5)
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    before = snapshot(traced)
    trace_step(traced, x[:8], y[:8])
    trace_step(traced, x[8:], y[8:], sample_weight=np.linspace(0, 1, 16), training=False)
    assert_same(before, snapshot(traced))
    state = np.random.get_state()
    traced.fit(x, y, batch_size=8, epochs=2, verbose=0)
    np.random.set_state(state)
    twin.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for a, b in zip(traced.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_dropout_masks_of_the_trace_are_those_the_next_fit_step_draws():
    x, y = data(n=8)
    model = build(SGD(learning_rate=0.1))  # dropout on NumPy's global stream
    np.random.seed(11)
    trace = trace_step(model, x, y)
    np.random.seed(11)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_array_equal(trace[-1].weights_after["kernel"], model.get_weights()[-2])
    kept = trace[1].activation != 0
    assert 0 < kept.mean() < 1  # some units dropped: dropout was on


# ---------------------------------------------------------------- the numbers, by hand
def test_deltas_and_gradients_are_the_chain_rule_written_out():
    """float64 NumPy backprop of dense(relu) -> dense(tanh) -> dense(sigmoid) with binary cross-entropy."""
    rng = np.random.default_rng(4)
    model = Sequential([Input(shape=(3,)), Dense(4, activation="relu", dtype="float64"),
                        Dense(3, activation="tanh", dtype="float64"), Dense(1, activation="sigmoid", dtype="float64")])
    model.compile(optimizer=SGD(learning_rate=0.5), loss="binary_crossentropy")
    weights = [rng.normal(size=w.shape) for w in model.get_weights()]
    model.set_weights(weights)
    x = rng.normal(size=(7, 3)).astype(np.float32).astype(np.float64)  # fit takes float32 inputs
    y = (rng.random((7, 1)) > 0.5).astype(np.float64)
    trace = trace_step(model, x, y)

    w1, b1, w2, b2, w3, b3 = weights
    z1 = x @ w1 + b1; a1 = np.maximum(z1, 0)
    z2 = a1 @ w2 + b2; a2 = np.tanh(z2)
    z3 = a2 @ w3 + b3; a3 = 1 / (1 + np.exp(-z3))
    d3 = (a3 - y) / len(x)                       # d mean(BCE) / dz3
    d2 = (d3 @ w3.T) * (1 - a2 ** 2)
    d1 = (d2 @ w2.T) * (z1 > 0)
    expected = [(z1, a1, d1, x), (z2, a2, d2, a1), (z3, a3, d3, a2)]
    for layer, (z, a, d, inp) in zip(trace, expected):
        np.testing.assert_allclose(layer.pre_activation, z, rtol=1e-12)
        np.testing.assert_allclose(layer.activation, a, rtol=1e-12)
        np.testing.assert_allclose(layer.delta, d, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(layer.gradients["kernel"], inp.T @ d, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(layer.gradients["bias"], d.sum(0), rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(layer.updates["kernel"], -0.5 * (inp.T @ d), rtol=1e-9, atol=1e-15)
    assert trace[2].output_grad is None  # the loss reads the output layer's logits
    np.testing.assert_allclose(trace[1].output_grad, d3 @ w3.T, rtol=1e-10)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_delta_of_a_fused_layer_is_the_fused_ops_own_number(activation):
    """The fused op computes g * relu'(z) (or g * (1 - a²)) inside; the trace shows it, bit for bit."""
    x, y = data()
    model = Sequential([Input(shape=(6,)), Dense(5, activation=activation), Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    layer = trace_step(model, x, y)[0]
    a, g = layer.activation, layer.output_grad
    fused_rule = g * (a > 0) if activation == "relu" else g * (1 - a * a)
    np.testing.assert_array_equal(layer.delta, fused_rule)
    # and the kernel gradient is the fused model's own (no study mode)
    for w in model.weights:
        w.grad[...] = 0
    model.compute_loss(x, y).backward()
    np.testing.assert_array_equal(layer.gradients["kernel"], model.weights[0].grad)


def test_retained_pre_activation_gradient_equals_the_graph_split_by_hand():
    """retain_grad on dense/pre_activation == d loss / d z computed with z as a leaf of a second graph."""
    x, y = data()
    model = Sequential([Input(shape=(6,)), Dense(5, activation="relu", name="h"), Dense(1, activation="sigmoid", name="o")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    with keep_pre_activations():
        loss = model.compute_loss(x, y)
    z = named_tensors(loss)["h/pre_activation"]
    z.retain_grad()
    loss.backward()
    leaf = Tensor(z.data.copy(), requires_grad=True)
    from minitensor import activations

    rest = model.layers[1](activations.relu(leaf))
    model.loss(y, rest).backward()
    np.testing.assert_array_equal(z.grad, leaf.grad)
    np.testing.assert_array_equal(trace_step(model, x, y)["h"].delta, z.grad)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 6), st.integers(1, 4), st.sampled_from(["relu", "tanh", "sigmoid", None]), st.integers(0, 2**16))
def test_trace_gradients_pass_a_numerical_gradient_check(batch, units, activation, seed):
    rng = np.random.default_rng(seed)
    model = Sequential([Input(shape=(3,)), Dense(units, activation=activation, dtype="float64",
                                                  kernel_regularizer=regularizers.l2(0.1)),
                        Dense(2, activation="softmax", dtype="float64")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    model.set_weights([rng.normal(size=w.shape) for w in model.get_weights()])
    x = rng.normal(size=(batch, 3))
    if activation == "relu":  # away from relu's kink
        assume(np.abs(x @ model.get_weights()[0] + model.get_weights()[1]).min() > 1e-3)
    y = np.eye(2)[rng.integers(0, 2, batch)]
    trace = trace_step(model, x, y)
    kernel = model.weights[0]

    def loss_of(k):
        saved = kernel.data.copy()
        kernel.data[...] = k.data
        try:
            return model.compute_loss(x, y).data
        finally:
            kernel.data[...] = saved

    numeric = np.zeros_like(kernel.data)
    eps = 1e-6
    for index in np.ndindex(kernel.shape):
        plus, minus = kernel.data.copy(), kernel.data.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (loss_of(Tensor(plus)) - loss_of(Tensor(minus))) / (2 * eps)
    np.testing.assert_allclose(trace[0].gradients["kernel"], numeric, rtol=1e-5, atol=1e-8)


def test_gradcheck_agrees_with_the_trace_on_a_pre_activation():
    rng = np.random.default_rng(2)
    model = Sequential([Input(shape=(3,)), Dense(2, activation="tanh", dtype="float64", name="t"),
                        Dense(1, activation="sigmoid", dtype="float64", name="s")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    x, y = rng.normal(size=(4, 3)), np.array([[1.0], [0.0], [1.0], [0.0]])
    trace = trace_step(model, x, y)
    z = Tensor(trace["t"].pre_activation.copy(), requires_grad=True)
    from minitensor import activations

    fn = lambda z: model.loss(y, model.layers[1](activations.tanh(z)))  # noqa: E731
    assert gradcheck(fn, [z])
    fn(z).backward()
    np.testing.assert_allclose(trace["t"].delta, z.grad, rtol=1e-12)


# ---------------------------------------------------------------- what it shows
def test_table_and_arrays_show_every_layer():
    x, y = data()
    model = build(SGD(learning_rate=0.1))
    trace = trace_step(model, x, y, training=False)
    text = str(trace)
    for layer in model.layers:
        assert layer.name in text
    assert "inference mode" in text and "SGD" in text
    arrays = trace.arrays()
    first = model.layers[0].name
    np.testing.assert_array_equal(arrays[f"{first}/input"], x)
    assert arrays[f"{first}/kernel_grad"].shape == (6, 5)
    assert f"{model.layers[1].name}/kernel" not in arrays  # dropout has no weights
    # at inference dropout is the identity
    np.testing.assert_array_equal(trace[1].activation, trace[0].activation)
    assert trace[model.layers[2].name] is trace[2]
    with pytest.raises(KeyError, match="No layer named"):
        trace["nope"]


def test_activation_layer_shows_its_input_as_pre_activation():
    x, y = data()
    model = Sequential([Input(shape=(6,)), Dense(3), Activation("relu"), Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    trace = trace_step(model, x, y)
    np.testing.assert_array_equal(trace[1].pre_activation, trace[0].activation)
    np.testing.assert_array_equal(trace[1].delta, trace[0].output_grad)


def test_named_tensors_finds_layer_tensors_and_weights():
    model = Sequential([Input(shape=(2,)), Dense(2, activation="relu", name="a"), Dense(1, name="b")])
    model.compile(optimizer="sgd", loss="mse")
    with keep_pre_activations():
        loss = model.compute_loss(np.ones((3, 2)), np.zeros((3, 1)))
    names = set(named_tensors(loss))
    assert {"a/pre_activation", "a/output", "a/kernel", "a/bias", "b/pre_activation", "b/kernel", "b/bias"} <= names
    with pytest.raises(TypeError, match="Tensor"):
        named_tensors(np.ones(2))


def test_bad_arguments_raise_before_anything_changes():
    x, y = data()
    model = build(SGD())
    before = snapshot(model)
    with pytest.raises(TypeError, match="Sequential"):
        trace_step("model", x, y)
    with pytest.raises(ValueError):
        trace_step(model, x[:, :3], y)
    with pytest.raises(ValueError, match="same number of samples"):
        trace_step(model, x, y[:3])
    with pytest.raises(ValueError, match="training"):
        trace_step(model, x, y, training=None)
    assert_same(before, snapshot(model))
    uncompiled = Sequential([Input(shape=(6,)), Dense(1)])
    with pytest.raises(RuntimeError, match="compile"):
        trace_step(uncompiled, x, y)
    unbuilt = Sequential([Dense(1)])
    unbuilt.compile(optimizer="sgd", loss="mse")
    state = np.random.get_state()[1].copy()
    with pytest.raises(ValueError, match="must be built"):
        trace_step(unbuilt, x, y)
    assert not unbuilt.built and np.array_equal(np.random.get_state()[1], state)
