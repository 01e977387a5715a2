"""The compiled training path (``jit_compile=True``) against tf.keras directly, not only through the
reference path: one fixed case per supported family (each optimizer, each loss, penalties).

Both engines start from the Keras model's weights and see the rows in order (``shuffle=False``);
History and final weights must agree to float32 round-off.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import warnings  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import minitensor as mt  # noqa: E402
from minitensor import optimizers, regularizers  # noqa: E402
from minitensor.layers import Dense, Input  # noqa: E402
from minitensor.models import Sequential  # noqa: E402

pytestmark = pytest.mark.keras

N = 90
EPOCHS = 3
LOSS_RTOL = 2e-5  # a History loss is a float32 mean over 90 rows after up to 270 steps: a few ulps, amplified
WEIGHT_RTOL, WEIGHT_ATOL = 2e-4, 2e-5  # the weights after those steps: round-off amplified by the training
ACCURACY_ATOL = 1.01 / N  # a prediction within round-off of the decision boundary may flip: one sample

# name -> (output units, output activation, loss, optimizer (class, kwargs), batch size, L1/L2 on the kernels)
CASES = {
    "adam-bce": (1, "sigmoid", ("binary_crossentropy", {}), ("Adam", {}), 32, None),
    "adam-amsgrad-cce": (5, "softmax", ("categorical_crossentropy", {}), ("Adam", {"amsgrad": True}), 32, None),
    "sgd-bce-batch1": (1, "sigmoid", ("binary_crossentropy", {}), ("SGD", {}), 1, None),
    "sgd-nesterov-mse-l2": (1, "linear", ("mean_squared_error", {}),
                            ("SGD", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}), 16, "l2"),
    "rmsprop-centered-scce": (5, "softmax", ("sparse_categorical_crossentropy", {}),
                              ("RMSprop", {"momentum": 0.5, "centered": True}), 8, None),
    "adagrad-cce-logits-l1": (5, "linear", ("categorical_crossentropy", {"from_logits": True}),
                              ("Adagrad", {"learning_rate": 0.05}), 32, "l1"),
    "rmsprop-bce-logits-smoothing": (1, "linear", ("binary_crossentropy", {"from_logits": True, "label_smoothing": 0.1}),
                                     ("RMSprop", {}), 32, None),
    "adam-weight-decay-clipvalue": (1, "sigmoid", ("binary_crossentropy", {}),
                                    ("Adam", {"learning_rate": 0.01, "weight_decay": 0.01, "clipvalue": 0.5}), 32, None),
}

LOSS_CLASSES = {
    "binary_crossentropy": "BinaryCrossentropy",
    "categorical_crossentropy": "CategoricalCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "mean_squared_error": "MeanSquaredError",
}


def data(units, loss):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N, 16)).astype(np.float32)
    if units == 1:
        y = (x[:, 0] + x[:, 1] > 0).astype(np.float32)
        if loss == "mean_squared_error":
            y = (x[:, 0] - 0.5 * x[:, 2]).astype(np.float32)
    else:
        labels = np.argmax(x[:, :units], axis=1)
        y = labels if loss.startswith("sparse") else np.eye(units, dtype=np.float32)[labels]
    return x, y


@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_path_matches_keras(case):
    units, activation, (loss, loss_options), (optimizer, options), batch_size, penalty = CASES[case]
    x, y = data(units, loss)
    keras.utils.set_random_seed(1)
    k_reg = {"l1": keras.regularizers.L1(0.01), "l2": keras.regularizers.L2(0.01)}.get(penalty)
    m_reg = {"l1": regularizers.L1(0.01), "l2": regularizers.L2(0.01)}.get(penalty)
    hidden = (12, 8)
    k_model = keras.Sequential([keras.Input(shape=(16,))]
                               + [keras.layers.Dense(u, activation="relu", kernel_regularizer=k_reg) for u in hidden]
                               + [keras.layers.Dense(units, activation=activation)])
    m_model = Sequential([Input(shape=(16,))] + [Dense(u, activation="relu", kernel_regularizer=m_reg) for u in hidden]
                         + [Dense(units, activation=activation)])
    k_model.compile(optimizer=getattr(keras.optimizers, optimizer)(**options),
                    loss=getattr(keras.losses, LOSS_CLASSES[loss])(**loss_options), metrics=["accuracy"])
    m_model.compile(optimizer=getattr(optimizers, optimizer)(**options),
                    loss=getattr(mt.losses, LOSS_CLASSES[loss])(**loss_options), metrics=["accuracy"], jit_compile=True)
    m_model.set_weights(k_model.get_weights())
    k_hist = k_model.fit(x, y, batch_size=batch_size, epochs=EPOCHS, shuffle=False, verbose=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Training on the reference path")  # no fallback
        m_hist = m_model.fit(x, y, batch_size=batch_size, epochs=EPOCHS, shuffle=False, verbose=0)
    assert m_model.optimizer.iterations == EPOCHS * -(-N // batch_size)
    np.testing.assert_allclose(m_hist.history["loss"], k_hist.history["loss"], rtol=LOSS_RTOL)
    np.testing.assert_allclose(m_hist.history["accuracy"], k_hist.history["accuracy"], rtol=0, atol=ACCURACY_ATOL)
    for k_w, m_w in zip(k_model.get_weights(), m_model.get_weights(), strict=True):
        np.testing.assert_allclose(m_w, k_w, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL)
