"""``.keras`` files both ways against real tf.keras: same weights, same predictions, training resumes alike.

A model trained in tf.keras and saved opens in minitensor with its weights bit for bit and
its optimizer state: both engines then train on from the file and agree to float32
round-off, as in the parity tests. The same holds the other way round.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

from minitensor import optimizers as mt_optimizers, regularizers as mt_regularizers
from minitensor.layers import Activation as MtActivation, Dense as MtDense, Dropout as MtDropout, Input as MtInput
from minitensor.models import Sequential as MtSequential, load_model

pytestmark = pytest.mark.keras

RTOL = 2e-5  # float32 round-off after a few dozen steps, as the parity tests
ATOL = 2e-6

RNG = np.random.RandomState(0)
X = RNG.rand(64, 6).astype("float32")
Y_BINARY = (X[:, :3].sum(1) > X[:, 3:].sum(1)).astype("float32")
Y_CLASSES = np.argmax(X[:, :3], axis=1)

OPTIMIZERS = [
    ("Adam", {"learning_rate": 0.01, "amsgrad": True}),
    ("RMSprop", {"learning_rate": 0.005, "momentum": 0.5, "centered": True}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
]


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def assert_training_agrees(k_model, m_model, y):
    k_hist = k_model.fit(X, y, epochs=2, batch_size=16, shuffle=False, verbose=0).history
    m_hist = m_model.fit(X, y, epochs=2, batch_size=16, shuffle=False, verbose=0).history
    assert sorted(k_hist) == sorted(m_hist)
    for key in k_hist:
        np.testing.assert_allclose(m_hist[key], k_hist[key], rtol=RTOL, atol=ATOL, err_msg=key)
    for a, b in zip(m_model.get_weights(), k_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    assert m_model.optimizer.iterations == int(k_model.optimizer.iterations)


@pytest.mark.parametrize("name, kwargs", OPTIMIZERS)
def test_a_model_trained_in_keras_opens_in_minitensor(tmp_path, name, kwargs):
    k_model = keras.Sequential([
        keras.Input(shape=(6,)),
        keras.layers.Dense(8, activation="tanh", kernel_regularizer=keras.regularizers.L2(0.01)),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    k_model.compile(optimizer=getattr(keras.optimizers, name)(**kwargs), loss="binary_crossentropy",
                    metrics=["accuracy"])
    k_model.fit(X, Y_BINARY, epochs=2, batch_size=16, shuffle=False, verbose=0)
    path = tmp_path / "from_keras.keras"
    k_model.save(path)

    m_model = load_model(path)
    assert_same_weights(m_model.get_weights(), k_model.get_weights())
    np.testing.assert_allclose(m_model.predict(X, verbose=0), k_model.predict(X, verbose=0), rtol=1e-6, atol=1e-7)
    assert m_model.optimizer.iterations == int(k_model.optimizer.iterations) == 8
    assert_training_agrees(k_model, m_model, Y_BINARY)


def test_keras_layers_and_settings_minitensor_lacks_are_named(tmp_path):
    k_model = keras.Sequential([keras.Input(shape=(6,)), keras.layers.Dense(4), keras.layers.BatchNormalization()])
    path = tmp_path / "batchnorm.keras"
    k_model.save(path)
    with pytest.raises(ValueError, match="BatchNormalization"):
        load_model(path)


@pytest.mark.parametrize("name, kwargs", OPTIMIZERS[:1] + [("Adagrad", {"learning_rate": 0.1})])
def test_a_model_trained_in_minitensor_opens_in_keras(tmp_path, name, kwargs):
    m_model = MtSequential([
        MtInput(shape=(6,)),
        MtDense(8, activation="relu", kernel_regularizer=mt_regularizers.L1L2(l1=0.001, l2=0.01)),
        MtDropout(0.2, seed=1),
        MtDense(3),
        MtActivation("softmax"),
    ])
    m_model.compile(optimizer=getattr(mt_optimizers, name)(**kwargs), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"])
    m_model.fit(X, Y_CLASSES, epochs=2, batch_size=16, shuffle=False, verbose=0)
    path = tmp_path / "from_minitensor.keras"
    m_model.save(path)

    k_model = keras.models.load_model(path)
    assert [type(l).__name__ for l in k_model.layers] == ["Dense", "Dropout", "Dense", "Activation"]
    assert_same_weights(k_model.get_weights(), m_model.get_weights())
    np.testing.assert_allclose(k_model.predict(X, verbose=0), m_model.predict(X, verbose=0), rtol=1e-6, atol=1e-7)
    assert int(k_model.optimizer.iterations) == m_model.optimizer.iterations == 8
    # without dropout masks, which the engines draw differently, training resumes alike
    k_model.layers[1].rate = 0.0
    m_model.layers[1].rate = 0.0
    assert_training_agrees(k_model, m_model, Y_CLASSES)
