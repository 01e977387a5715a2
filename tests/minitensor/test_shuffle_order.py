"""The order in which ``fit`` feeds the rows, watched batch by batch, on both training paths.

The reference path is watched directly: an identity layer placed first records the rows of every
training batch (each row of ``x`` is one-hot, so its position names the row). The compiled path
cannot run such a layer, so its order is read from what it does to the weights: on one-hot rows
with SGD and momentum, where each row's weight ends up depends on the step at which its batch came,
so the weights after each epoch are compared with a float64 simulation of SGD over the recorded
batches (a different order moves them by far more than round-off, which the tests check too).
"""

import warnings

import numpy as np
import pytest

import minitensor as mt
from minitensor.callbacks import Callback
from minitensor.layers import Dense, Input, Layer
from minitensor.models import Sequential
from minitensor.optimizers import SGD

N, BATCH = 10, 4  # three steps per epoch, the last one partial (2 rows)
LR, MOMENTUM = 0.1, 0.9
X = np.eye(N, dtype=np.float32)
Y = np.ones(N, dtype=np.float32)
FITS = (4, 3)  # two fit calls: four epochs, then three more


class RecordBatches(Layer):
    """Identity layer that records, for every training batch, the rows it holds."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def call(self, inputs, training=False):
        if training:
            self.batches.append(np.argmax(inputs.data, axis=1))
        return inputs


class WeightsPerEpoch(Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append([w.copy() for w in self.model.get_weights()])


def train(seed, jit=False, shuffle=True, fits=FITS):
    """Train the one-hot model; returns (batches per epoch or None, weights after each epoch)."""
    mt.set_random_seed(seed)
    recorder = None if jit else RecordBatches()
    model = Sequential([Input(shape=(N,))] + ([recorder] if recorder else []) + [Dense(1)])
    model.set_weights([np.zeros((N, 1), np.float32), np.zeros(1, np.float32)])
    model.compile(optimizer=SGD(learning_rate=LR, momentum=MOMENTUM), loss="mse", jit_compile=jit)
    watch = WeightsPerEpoch()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Training on the reference path")  # no fallback
        for epochs in fits:
            model.fit(X, Y, batch_size=BATCH, epochs=epochs, shuffle=shuffle, verbose=0, callbacks=[watch])
    if recorder is None:
        return None, watch.weights
    steps = -(-N // BATCH)
    batches = [recorder.batches[i:i + steps] for i in range(0, len(recorder.batches), steps)]
    return batches, watch.weights


def simulate(epochs_of_batches):
    """SGD with momentum (Keras's form) in float64 over the given batches; weights after each epoch."""
    w, b = np.zeros(N), 0.0
    mw, mb = np.zeros(N), 0.0
    after = []
    for batches in epochs_of_batches:
        for rows in batches:
            residual = 2 * (w[rows] + b - 1.0) / len(rows)  # d(mean squared error)/d(prediction)
            gw = np.zeros(N)
            gw[rows] = residual
            gb = residual.sum()
            mw, mb = MOMENTUM * mw - LR * gw, MOMENTUM * mb - LR * gb
            w, b = w + mw, b + mb
        after.append([w.copy(), b])
    return after


def epoch_orders(batches):
    return [np.concatenate(epoch) for epoch in batches]


def assert_weights_follow(weights, expected):
    assert len(weights) == len(expected)
    for (kernel, bias), (w, b) in zip(weights, expected):
        np.testing.assert_allclose(kernel[:, 0], w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bias, [b], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- reference path
def test_every_epoch_is_a_permutation_of_all_rows_in_full_batches():
    batches, _ = train(seed=3)
    assert len(batches) == sum(FITS)
    for epoch in batches:
        assert [len(rows) for rows in epoch] == [4, 4, 2]
        assert sorted(np.concatenate(epoch).tolist()) == list(range(N))


def test_epochs_differ_within_a_fit_and_across_fit_calls():
    batches, _ = train(seed=3)
    orders = {tuple(order.tolist()) for order in epoch_orders(batches)}
    # every epoch of both fit calls has an order of its own (10! orders: a repeat is no accident)
    assert len(orders) == sum(FITS)
    assert tuple(range(N)) not in orders


def test_the_same_seed_reproduces_the_order_and_another_seed_changes_it():
    first = epoch_orders(train(seed=3)[0])
    again = epoch_orders(train(seed=3)[0])
    other = epoch_orders(train(seed=4)[0])
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not any(np.array_equal(a, b) for a, b in zip(first, other))


def test_shuffle_false_keeps_the_row_order_in_every_epoch():
    batches, weights = train(seed=3, shuffle=False)
    for epoch in batches:
        assert [rows.tolist() for rows in epoch] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert_weights_follow(weights, simulate(batches))


def test_the_weights_follow_the_recorded_batches():
    batches, weights = train(seed=3)
    assert_weights_follow(weights, simulate(batches))


# ---------------------------------------------------------------------------- compiled path
@pytest.mark.parametrize("seed", [3, 11])
def test_compiled_path_uses_the_reference_paths_order(seed):
    batches, ref_weights = train(seed=seed)
    _, jit_weights = train(seed=seed, jit=True)
    expected = simulate(batches)
    assert_weights_follow(ref_weights, expected)
    assert_weights_follow(jit_weights, expected)
    # the weights do tell orders apart: each epoch's order reversed gives other weights
    reversed_order = simulate([[rows[::-1] for rows in epoch[::-1]] for epoch in batches])
    assert all(np.abs(w - r[0]).max() > 1e-2 for (w, _), r in zip(expected, reversed_order))


def test_compiled_path_without_shuffling_keeps_the_row_order():
    _, jit_weights = train(seed=3, jit=True, shuffle=False)
    in_order = [[np.arange(0, 4), np.arange(4, 8), np.arange(8, 10)]] * sum(FITS)
    assert_weights_follow(jit_weights, simulate(in_order))
