"""Data and arguments that used to be accepted silently now raise Keras-style errors, before any change.

Each refused ``fit`` leaves the weights and the optimizer as they were; each refused
constructor or seed leaves the name counters and the random streams alone.
"""

import random

import numpy as np
import pytest

import minitensor as mt
from minitensor import losses
from minitensor.layers import Dense, Dropout, Input
from minitensor.models import Sequential

pytestmark = pytest.mark.reliability

PATHS = pytest.mark.parametrize("jit", [False, True], ids=["reference", "compiled"])


def compiled_model(units, loss, jit=False, activation=None):
    mt.set_random_seed(0)
    model = Sequential([Input(shape=(4,)), Dense(units, activation=activation)])
    model.compile(optimizer="adam", loss=loss, jit_compile=jit)
    return model


def assert_refused_without_change(model, match, x, y, **fit):
    before = model.get_weights()
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, verbose=0, **fit)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.iterations == 0 and not model.optimizer.built


X = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
LABELS = np.arange(12) % 2


# ---------------------------------------------------------------------------- class_weight
@PATHS
@pytest.mark.parametrize("weights", [{0: 1.0, 1: -2.0}, {0: float("nan"), 1: 1.0}, {0: 1.0, 1: "2"},
                                     {0: None, 1: 1.0}, {0: True, 1: 1.0}, {0: 1.0, 1: float("inf")}])
def test_class_weight_must_hold_non_negative_finite_numbers(jit, weights):
    model = compiled_model(1, "binary_crossentropy", jit, activation="sigmoid")
    bad_key = next(k for k, v in weights.items() if not (type(v) is float and 0 <= v < float("inf")))
    assert_refused_without_change(
        model, rf"`class_weight` values .*non-negative finite.*class_weight\[{bad_key}\]", X, LABELS,
        class_weight=weights,
    )


def test_class_weight_with_numpy_numbers_and_zero_is_accepted():
    model = compiled_model(1, "binary_crossentropy", activation="sigmoid")
    model.fit(X, LABELS, class_weight={0: np.float32(0), 1: np.int64(3)}, verbose=0)
    assert model.optimizer.iterations == 1


# ---------------------------------------------------------------------------- regression targets
REGRESSION = ["mse", "mae", "mean_absolute_error", losses.MeanAbsoluteError(), losses.mean_absolute_error,
              losses.mean_squared_error]


@pytest.mark.parametrize("loss", REGRESSION, ids=lambda l: getattr(l, "__name__", None) or str(l))
@pytest.mark.parametrize("units, target_shape", [(1, (12, 3)), (3, (12, 1)), (3, (12,)), (2, (12, 3))])
def test_regression_targets_must_match_the_output_not_broadcast(loss, units, target_shape):
    model = compiled_model(units, loss)
    y = np.ones(target_shape, dtype=np.float32)
    assert_refused_without_change(model, r"Expected `y` of shape \(samples,\) or \(samples, \d\) for mean_", X, y)


@pytest.mark.parametrize("loss", REGRESSION, ids=lambda l: getattr(l, "__name__", None) or str(l))
def test_regression_targets_of_the_output_shape_are_accepted(loss):
    for units, shape in ((1, (12,)), (1, (12, 1)), (3, (12, 3))):
        model = compiled_model(units, loss)
        model.fit(X, np.ones(shape, dtype=np.float32), verbose=0)
        assert model.optimizer.iterations == 1


# ---------------------------------------------------------------------------- categorical targets
@PATHS
@pytest.mark.parametrize("low, high", [(-1.0, 1.0), (0.0, 2.0)])
def test_categorical_targets_outside_zero_one_are_refused(jit, low, high):
    model = compiled_model(3, "categorical_crossentropy", jit, activation="softmax")
    y = np.eye(3, dtype=np.float32)[np.arange(12) % 3]
    y[0, 0], y[1, 1] = low, high
    assert_refused_without_change(model, r"targets in \[0, 1\] for categorical_crossentropy", X, y)


@PATHS
def test_multi_hot_and_soft_categorical_targets_are_accepted(jit):
    model = compiled_model(3, "categorical_crossentropy", jit, activation="softmax")
    y = np.eye(3, dtype=np.float32)[np.arange(12) % 3]
    y[0] = [1, 1, 0]  # multi-hot, as Keras accepts
    y[1] = [0.2, 0.3, 0.5]
    model.fit(X, y, verbose=0)
    assert model.optimizer.iterations == 1


# ---------------------------------------------------------------------------- layer arguments
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Dense(3, use_bias="False"), r"Expected `use_bias` to be True or False. Received: use_bias='False'"),
        (lambda: Dense(3, use_bias=None), r"`use_bias`.*Received: use_bias=None"),
        (lambda: Dense(3, trainable="no"), r"Expected `trainable` to be True or False. Received: trainable='no'"),
        (lambda: Dropout(0.5, trainable=1), r"`trainable`.*Received: trainable=1"),
        (lambda: Dropout(0.5, noise_shape="ab"), r"`noise_shape`.*tuple.*Received: noise_shape='ab'"),
        (lambda: Dropout(0.5, noise_shape=(None, 0)), r"`noise_shape`.*Received: noise_shape=\(None, 0\)"),
        (lambda: Dropout(0.5, noise_shape=(None, 1.5)), r"`noise_shape`.*Received"),
        (lambda: Dropout(0.5, noise_shape=(None, True)), r"`noise_shape`.*Received"),
    ],
)
def test_layer_flags_and_noise_shape_are_checked(make, match):
    names_before = Dense(1).name, Dropout(0.1).name
    with pytest.raises(ValueError, match=match):
        make()
    names_after = Dense(1).name, Dropout(0.1).name

    def count(name):  # "dense" is the first, "dense_3" the fourth
        return int(name.rsplit("_", 1)[1]) if "_" in name else 0

    # a refused layer took no name: the counters moved by the two probes only
    assert [count(n) for n in names_after] == [count(n) + 1 for n in names_before]


def test_valid_layer_flags_and_noise_shapes_are_kept():
    assert Dense(3, use_bias=np.bool_(False)).use_bias is False
    assert Dense(3, trainable=False).trainable is False
    assert Dropout(0.5, noise_shape=[None, np.int64(1)]).noise_shape == (None, 1)
    layer = Dropout(0.5, noise_shape=(None, 1))
    out = layer(np.ones((4, 3), dtype=np.float32), training=True).data
    assert all(len(set(row)) == 1 for row in out)  # one mask value per row, broadcast over the features


# ---------------------------------------------------------------------------- seeds
@pytest.mark.parametrize("seed", [2**32, 2**64, -1, np.int64(-5), 1.0, "0", True, None])
def test_set_random_seed_refuses_what_numpy_cannot_seed(seed):
    mt.set_random_seed(7)
    python_state, numpy_state = random.getstate(), np.random.get_state()[1].copy()
    with pytest.raises(ValueError, match=r"`seed`.*non-negative integer below 2\*\*32"):
        mt.set_random_seed(seed)
    assert random.getstate() == python_state
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)


def test_the_largest_seed_is_not_an_alias_of_another():
    streams = []
    for seed in (0, 2**32 - 1, np.uint32(2**32 - 1)):
        mt.set_random_seed(seed)
        streams.append(np.random.random(4).tolist())
    assert streams[0] != streams[1] == streams[2]
