"""The compiled path does not depart silently from the reference path.

A callback with per-batch hooks sees every step, as on the reference path: the compiled
path falls back (with its one-time UserWarning naming the callback and the hook), so the
hooks run, ``stop_training`` set in one stops at that step, and an exception raised in one
ends fit there. The built-in History, EarlyStopping and progress bar keep the compiled path.
A batch size larger than the data trains as the reference path does.
"""

import warnings

import numpy as np
import pytest

import minitensor as mt
from minitensor import optimizers
from minitensor.callbacks import Callback, EarlyStopping, ProgbarLogger
from minitensor.layers import Dense, Input
from minitensor.models import Sequential

pytestmark = pytest.mark.reliability

PATHS = pytest.mark.parametrize("jit", [False, True], ids=["reference", "compiled"])
FALLBACK = "Training on the reference path"


def model_and_data(jit, n=48):
    mt.set_random_seed(0)
    model = Sequential([Input(shape=(6,)), Dense(5, activation="relu"), Dense(1, activation="sigmoid")])
    model.compile(optimizer=optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"], jit_compile=jit)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return model, x, (x[:, 0] > 0).astype(np.float32)


def fit(model, x, y, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, verbose=0, **kwargs)
    return history, [str(w.message) for w in caught if w.category is UserWarning and FALLBACK in str(w.message)]


class Recorder(Callback):
    def __init__(self, hook):
        super().__init__()
        self.calls = []
        setattr(self, hook, lambda batch, logs=None: self.calls.append((hook, batch)))


@pytest.mark.parametrize("hook", ["on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end"])
def test_batch_hooks_are_called_as_on_the_reference_path(hook):
    results = []
    for jit in (False, True):
        model, x, y = model_and_data(jit)
        recorder = Recorder(hook)
        _, fallbacks = fit(model, x, y, batch_size=16, epochs=2, shuffle=False, callbacks=[recorder])
        results.append((recorder.calls, model.get_weights(), fallbacks))
    (ref_calls, ref_weights, _), (jit_calls, jit_weights, fallbacks) = results
    assert ref_calls == [(hook, b) for _ in range(2) for b in range(3)]
    assert jit_calls == ref_calls
    assert len(fallbacks) == 1 and "Recorder" in fallbacks[0] and hook in fallbacks[0]
    for a, b in zip(jit_weights, ref_weights):
        np.testing.assert_array_equal(a, b)  # the same path, so the same numbers


class StopAtBatch(Callback):
    def __init__(self, batch, raise_instead=False):
        super().__init__()
        self.batch = batch
        self.raise_instead = raise_instead

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.batch:
            if self.raise_instead:
                raise KeyboardInterrupt
            self.model.stop_training = True


@PATHS
def test_stop_training_in_a_batch_hook_stops_at_that_step(jit):
    model, x, y = model_and_data(jit, n=96)
    history, _ = fit(model, x, y, batch_size=8, epochs=3, callbacks=[StopAtBatch(1)])
    assert model.optimizer.iterations == 2
    assert history.epoch == [0]  # as Keras: the epoch ends early and is recorded


@PATHS
def test_keyboard_interrupt_in_a_batch_hook_ends_fit_there(jit):
    model, x, y = model_and_data(jit, n=96)
    with pytest.raises(KeyboardInterrupt):
        fit(model, x, y, batch_size=8, epochs=3, callbacks=[StopAtBatch(4, raise_instead=True)])
    assert model.optimizer.iterations == 5


def test_built_in_callbacks_keep_the_compiled_path(capsys):
    model, x, y = model_and_data(True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=16, epochs=3, verbose=1, validation_split=0.25,
                  callbacks=[EarlyStopping(patience=5), ProgbarLogger()])
    assert not [w for w in caught if FALLBACK in str(w.message)]
    assert "Epoch 3/3" in capsys.readouterr().out
    from minitensor import compiled

    plan, reason = compiled.build_plan(model, [EarlyStopping(), ProgbarLogger()])
    assert plan is not None and reason is None


def test_a_batch_size_beyond_the_data_trains_as_one_batch():
    """Working memory follows the rows (20), not the batch size asked for (a billion)."""
    results = {}
    for jit, batch_size in ((False, 10**9), (True, 10**9), (True, 20)):
        model, x, y = model_and_data(jit, n=20)
        history, fallbacks = fit(model, x, y, batch_size=batch_size, epochs=3, shuffle=False)
        assert not fallbacks
        results[jit, batch_size] = (history.history["loss"], model.get_weights(), model.optimizer.iterations)
    ref, huge, exact = results[False, 10**9], results[True, 10**9], results[True, 20]
    assert huge[2] == ref[2] == 3
    np.testing.assert_allclose(huge[0], ref[0], rtol=1e-5)
    for a, b in zip(huge[1], ref[1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert huge[0] == exact[0]  # the very same batches as batch_size=20
    for a, b in zip(huge[1], exact[1]):
        np.testing.assert_array_equal(a, b)
