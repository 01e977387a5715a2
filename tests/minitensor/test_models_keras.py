"""Keras parity: the same initial weights and batch order must give the same numbers as tf.keras.

Hypothesis draws small models (depth, widths, activations, loss, optimizer and its settings,
L2, batch sizes including 1 and a final partial batch); both engines start from the weights of
the Keras model and train with ``shuffle=False``. Every History value and the final weights must
agree to float32 round-off. Fixed cases cover each family of models in the lesson.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import keras  # noqa: E402

from minitensor import optimizers as mt_optimizers, regularizers as mt_regularizers  # noqa: E402
from minitensor.callbacks import EarlyStopping as MtEarlyStopping  # noqa: E402
from minitensor.layers import Dense as MtDense, Input as MtInput  # noqa: E402
from minitensor.models import Sequential as MtSequential  # noqa: E402

pytestmark = pytest.mark.keras

RTOL = 2e-5  # float32 round-off after a few dozen steps
ATOL = 2e-6


def build_pair(d_in, layers, loss, optimizer, metrics=("accuracy",)):
    """The same architecture in both engines; minitensor gets the Keras model's initial weights.

    layers: list of (units, activation, l2 or None).
    optimizer: (class name, kwargs).
    """
    k_model = keras.Sequential([keras.Input(shape=(d_in,))])
    m_model = MtSequential([MtInput(shape=(d_in,))])
    for units, activation, l2 in layers:
        k_model.add(keras.layers.Dense(units, activation=activation,
                                       kernel_regularizer=keras.regularizers.L2(l2) if l2 else None))
        m_model.add(MtDense(units, activation=activation, kernel_regularizer=mt_regularizers.L2(l2) if l2 else None))
    name, kwargs = optimizer
    k_model.compile(optimizer=getattr(keras.optimizers, name)(**kwargs), loss=loss, metrics=list(metrics))
    m_model.compile(optimizer=getattr(mt_optimizers, name)(**kwargs), loss=loss, metrics=list(metrics))
    m_model.set_weights(k_model.get_weights())
    return k_model, m_model


def assert_same_training(k_model, m_model, x, y, rtol=RTOL, atol=ATOL, reject_divergent=False, **fit):
    k_hist = k_model.fit(x, y, shuffle=False, verbose=0, **fit)
    if reject_divergent:
        # a run whose loss blows up (e.g. MSE under SGD at learning rate 0.5) is chaotic: round-off
        # decides its digits, and minitensor stops on a non-finite loss where Keras trains on
        losses = [v for key, values in k_hist.history.items() if key.endswith("loss") for v in values]
        assume(all(np.isfinite(v) and abs(v) < 1e3 for v in losses))
    m_hist = m_model.fit(x, y, shuffle=False, verbose=0, **fit)
    assert sorted(k_hist.history) == sorted(m_hist.history)
    assert k_hist.epoch == m_hist.epoch
    for key in k_hist.history:
        if "acc" in key:
            # A sample whose top two scores tie to within float32 round-off (e.g. a dead relu layer
            # leaves only the biases) may be classified either way: allow one such sample per epoch.
            n_seen = len(fit.get("validation_data", (x,))[0]) if key.startswith("val_") else len(x)
            np.testing.assert_allclose(m_hist.history[key], k_hist.history[key], rtol=0, atol=1.01 / n_seen, err_msg=key)
        else:
            np.testing.assert_allclose(m_hist.history[key], k_hist.history[key], rtol=rtol, atol=atol, err_msg=key)
    for k_w, m_w in zip(k_model.get_weights(), m_model.get_weights()):
        np.testing.assert_allclose(m_w, k_w, rtol=rtol * 10, atol=atol * 10)
    return k_hist, m_hist


def targets(loss, rng, n, k):
    if loss == "binary_crossentropy":
        return rng.integers(0, 2, (n, k)).astype(np.float32)
    if loss == "categorical_crossentropy":
        return np.eye(k, dtype=np.float32)[rng.integers(0, k, n)]
    if loss == "sparse_categorical_crossentropy":
        return rng.integers(0, k, n)
    return rng.normal(size=(n, k)).astype(np.float32)


OUTPUT_ACTIVATION = {
    "binary_crossentropy": "sigmoid",
    "categorical_crossentropy": "softmax",
    "sparse_categorical_crossentropy": "softmax",
    "mean_squared_error": "linear",
}

optimizer_strategy = st.one_of(
    st.builds(lambda lr, m, nest: ("SGD", {"learning_rate": lr, "momentum": m, "nesterov": nest}),
              st.sampled_from([0.01, 0.1, 0.5]), st.sampled_from([0.0, 0.9]), st.booleans()),
    st.builds(lambda lr, ams: ("Adam", {"learning_rate": lr, "amsgrad": ams}),
              st.sampled_from([0.001, 0.01]), st.booleans()),
    st.builds(lambda lr, centered, m: ("RMSprop", {"learning_rate": lr, "centered": centered, "momentum": m}),
              st.sampled_from([0.001, 0.01]), st.booleans(), st.sampled_from([0.0, 0.5])),
    st.builds(lambda lr: ("Adagrad", {"learning_rate": lr}), st.sampled_from([0.01, 0.1])),
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hidden=st.lists(st.tuples(st.integers(1, 6), st.sampled_from(["relu", "sigmoid", "tanh", "linear"]),
                              st.sampled_from([None, 0.01])), min_size=0, max_size=2),
    loss=st.sampled_from(sorted(OUTPUT_ACTIVATION)),
    outputs=st.integers(1, 3),
    optimizer=optimizer_strategy,
    n=st.integers(3, 23),
    batch_size=st.sampled_from([1, 4, 7, 32]),
    seed=st.integers(0, 2**16),
)
def test_parity_property(hidden, loss, outputs, optimizer, n, batch_size, seed):
    if loss in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        outputs = max(outputs, 2)
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    layers = list(hidden) + [(outputs, OUTPUT_ACTIVATION[loss], None)]
    k_model, m_model = build_pair(4, layers, loss, optimizer)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = targets(loss, rng, n, outputs)
    assert_same_training(k_model, m_model, x, y, epochs=2, batch_size=batch_size, reject_divergent=True,
                         validation_data=(x[: max(1, n // 3)], y[: max(1, n // 3)]))


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x_train, _, y_train, _ = train_test_split(data.data, data.target, random_state=42, test_size=0.2)
    x_t, x_val, y_t, y_val = train_test_split(x_train, y_train, random_state=42, test_size=0.2)
    return (x_t / 16).astype(np.float32), (x_val / 16).astype(np.float32), y_t, y_val


def test_lesson_sigmoid_sgd_batch_100(digits):
    x_t, _, y_t, _ = digits
    keras.utils.set_random_seed(1)
    k, m = build_pair(64, [(12, "sigmoid", None), (8, "sigmoid", None), (1, "sigmoid", None)],
                      "binary_crossentropy", ("SGD", {}))
    assert_same_training(k, m, x_t, (y_t % 2).astype(np.float32), epochs=5, batch_size=100)


def test_lesson_relu_adam_with_validation_and_l2(digits):
    x_t, x_val, y_t, y_val = digits
    keras.utils.set_random_seed(2)
    k, m = build_pair(64, [(30, "relu", None), (20, "relu", 0.01), (12, "relu", 0.01), (1, "sigmoid", None)],
                      "binary_crossentropy", ("Adam", {}))
    assert_same_training(k, m, x_t, (y_t % 2).astype(np.float32), epochs=5, batch_size=32,
                         validation_data=(x_val, (y_val % 2).astype(np.float32)))


def test_lesson_rmsprop_batch_10(digits):
    x_t, _, y_t, _ = digits
    keras.utils.set_random_seed(3)
    k, m = build_pair(64, [(12, "relu", None), (8, "relu", None), (1, "sigmoid", None)],
                      "binary_crossentropy", ("RMSprop", {}))
    assert_same_training(k, m, x_t[:300], (y_t[:300] % 2).astype(np.float32), epochs=3, batch_size=10)


def test_lesson_softmax_categorical(digits):
    x_t, x_val, y_t, y_val = digits
    keras.utils.set_random_seed(4)
    k, m = build_pair(64, [(12, "relu", None), (8, "relu", None), (10, "softmax", None)],
                      "categorical_crossentropy", ("Adam", {}))
    onehot = np.eye(10, dtype=np.float32)
    assert_same_training(k, m, x_t, onehot[y_t], epochs=3, batch_size=10,
                         validation_data=(x_val, onehot[y_val]))
    np.testing.assert_allclose(m.predict(x_val, verbose=0), k.predict(x_val, verbose=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m.evaluate(x_val, onehot[y_val], verbose=0),
                               k.evaluate(x_val, onehot[y_val], verbose=0), rtol=1e-5)


def test_lesson_sgd_batch_1(digits):
    x_t, _, y_t, _ = digits
    keras.utils.set_random_seed(5)
    k, m = build_pair(64, [(12, "relu", None), (8, "relu", None), (1, "sigmoid", None)],
                      "binary_crossentropy", ("SGD", {"learning_rate": 0.02}))
    assert_same_training(k, m, x_t[:200], (y_t[:200] % 2).astype(np.float32), epochs=2, batch_size=1)


def test_early_stopping_matches_keras(digits):
    x_t, x_val, y_t, y_val = digits
    keras.utils.set_random_seed(6)
    k, m = build_pair(64, [(12, "relu", None), (1, "sigmoid", None)], "binary_crossentropy",
                      ("Adam", {"learning_rate": 0.05}))
    y_b, y_vb = (y_t % 2).astype(np.float32), (y_val % 2).astype(np.float32)
    k_hist = k.fit(x_t, y_b, epochs=30, batch_size=32, shuffle=False, verbose=0, validation_data=(x_val, y_vb),
                   callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=1e-8, patience=2)])
    m_hist = m.fit(x_t, y_b, epochs=30, batch_size=32, shuffle=False, verbose=0, validation_data=(x_val, y_vb),
                   callbacks=[MtEarlyStopping(monitor="val_loss", min_delta=1e-8, patience=2)])
    assert m_hist.epoch == k_hist.epoch
    np.testing.assert_allclose(m_hist.history["val_loss"], k_hist.history["val_loss"], rtol=RTOL)
