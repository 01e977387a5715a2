"""An update that would make a weight or optimizer slot non-finite is not applied.

Training stops at that batch with a RuntimeWarning ("... training stopped before applying that
update"), and the model keeps the weights, slots and ``iterations`` of the last step that was
applied: the same, bit for bit, as a model trained for just those steps. Both training paths.
"""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import minitensor as mt
from minitensor import Tensor, optimizers
from minitensor.layers import Dense, Input
from minitensor.models import Sequential

pytestmark = pytest.mark.reliability

PATHS = pytest.mark.parametrize("jit", [False, True], ids=["reference", "compiled"])
REFUSED = "would have made weights or optimizer slots non-finite"


def fit_recording(model, x, y, **fit):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, verbose=0, shuffle=False, **fit)
    stops = [str(w.message) for w in caught if w.category is RuntimeWarning and "training stopped" in str(w.message)]
    assert not [w for w in caught if w.category is UserWarning and "reference path" in str(w.message)]
    return history, stops


def all_finite(model):
    arrays = model.get_weights() + (model.optimizer.get_state()[1:] if model.optimizer.built else [])
    return all(np.isfinite(a).all() for a in arrays)


@PATHS
def test_adam_without_epsilon_on_an_all_zero_feature_leaves_the_model_untouched(jit):
    """0/(sqrt(0) + 0) for the kernel row of a feature that is always 0: NaN weights, refused."""
    mt.set_random_seed(0)
    model = Sequential([Input(shape=(64,)), Dense(12, activation="relu"), Dense(8, activation="relu"),
                        Dense(1, activation="sigmoid")])
    model.compile(optimizer=optimizers.Adam(epsilon=0), loss="binary_crossentropy", metrics=["accuracy"],
                  jit_compile=jit)
    rng = np.random.default_rng(0)
    x = rng.random((96, 64), dtype=np.float32)
    x[:, 0] = 0
    y = (x[:, 1:].sum(axis=1) > 31.5).astype(np.float32)
    initial = model.get_weights()
    history, stops = fit_recording(model, x, y, epochs=3, batch_size=32)
    assert len(stops) == 1 and REFUSED in stops[0] and "batch 0 of epoch 1" in stops[0]
    assert "training stopped before applying that update" in stops[0]
    assert history.epoch == [] and model.stop_training
    assert model.optimizer.iterations == 0 and not model.optimizer.built
    for a, b in zip(model.get_weights(), initial):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(model.predict(x, verbose=0)).all()


def lesson_deep_model(jit):
    """The lesson's 64-300-200-80-4-1 relu model, with SGD at a learning rate of a million."""
    mt.set_random_seed(5)
    model = Sequential([Input(shape=(64,))] + [Dense(units, activation="relu") for units in (300, 200, 80, 4)]
                       + [Dense(1, activation="sigmoid")])
    model.compile(optimizer=optimizers.SGD(1e6), loss="binary_crossentropy", jit_compile=jit)
    return model


@PATHS
@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_sgd_at_a_million_stops_before_the_update_that_overflows(jit):
    """Digits (raw pixels, the lesson's training split): the third update would write inf weights."""
    digits = load_digits()
    x_train, _, y_train, _ = train_test_split(digits.data, digits.target % 2, random_state=42, test_size=0.2)
    x, _, y, _ = train_test_split(x_train, y_train, random_state=42, test_size=0.2)
    x, y = x.astype(np.float32), y.astype(np.float32)
    model = lesson_deep_model(jit)
    history, stops = fit_recording(model, x[:320], y[:320], epochs=1, batch_size=32)
    assert len(stops) == 1 and REFUSED in stops[0] and "batch 2 of epoch 1" in stops[0]
    assert history.epoch == [] and model.optimizer.iterations == 2
    assert all_finite(model)
    replay = lesson_deep_model(jit)  # the same two steps, and nothing else
    replay.fit(x[:64], y[:64], epochs=1, batch_size=32, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), replay.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "make",
    [
        lambda: optimizers.SGD(1.0, momentum=0.9, weight_decay=0.1),
        lambda: optimizers.RMSprop(1.0, momentum=0.5, centered=True),
        lambda: optimizers.Adam(1.0, amsgrad=True, weight_decay=0.1),
        lambda: optimizers.Adagrad(1.0),
    ],
    ids=["sgd", "rmsprop", "adam", "adagrad"],
)
@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_a_refused_step_restores_weights_slots_and_iterations(make):
    """The optimizers' guarded step (what fit uses), on a long vector updated block by block."""
    optimizer = make()
    n = optimizers.BLOCK_SIZE * 2 + 5
    w = Tensor(np.linspace(-1, 1, n, dtype=np.float32))
    g = np.full(n, 0.5, dtype=np.float32)
    assert optimizer._apply([g], [w], guard=True) == 1
    weights, state = w.data.copy(), optimizer.get_state()
    bad = g.copy()
    bad[-1] = np.inf  # in the last block: the blocks before it are updated first, then undone
    assert optimizer._apply([bad], [w], guard=True) is None
    np.testing.assert_array_equal(w.data, weights)
    for a, b in zip(optimizer.get_state(), state):
        np.testing.assert_array_equal(a, b)
    assert optimizer._apply([g], [w], guard=True) == 2  # and it carries on from there


def test_apply_gradients_itself_still_applies_what_it_is_given():
    """Outside fit the optimizer stays Keras's: a non-finite gradient gives non-finite weights."""
    w = Tensor(np.ones(3, dtype=np.float32))
    with np.errstate(invalid="ignore"):
        assert optimizers.SGD(0.1).apply_gradients([(np.array([np.inf, 0, 0], dtype=np.float32), w)]) == 1
    assert not np.isfinite(w.data[0])


class InPlaceSGD(optimizers.SGD):
    """A user's rule written the older way: ``w`` updated in place."""

    def _update_step(self, index, g, w, lr, part=None):
        w -= g * lr


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_a_rule_that_updates_in_place_is_guarded_too():
    mt.set_random_seed(0)
    model = Sequential([Input(shape=(2,)), Dense(1)])
    model.compile(optimizer=InPlaceSGD(learning_rate=3e38), loss="mse")
    x = np.ones((4, 2), dtype=np.float32)
    y = np.full(4, 1e3, dtype=np.float32)  # a gradient of about -2e3: the step would overflow
    initial = model.get_weights()
    _, stops = fit_recording(model, x, y, epochs=2, batch_size=4)
    assert len(stops) == 1 and REFUSED in stops[0]
    assert model.optimizer.iterations == 0
    for a, b in zip(model.get_weights(), initial):
        np.testing.assert_array_equal(a, b)
