"""Threads: grad mode is per thread; predict/evaluate from several threads next to a fit in another.

Each check joins its threads and compares their results with a sequential run; a
failure in a thread is re-raised in the test.
"""

import threading

import numpy as np
import pytest

import minitensor as mt
from minitensor import Tensor, is_grad_enabled, no_grad
from minitensor.layers import Dense
from minitensor.models import Sequential

pytestmark = pytest.mark.reliability


def run_threads(targets, barriers=()):
    """Start one thread per callable at once (behind a barrier), join them, re-raise the first failure.

    A thread that fails breaks ``barriers`` (and sets nothing else), so the others stop waiting.
    """
    barrier = threading.Barrier(len(targets))
    errors, results = [], [None] * len(targets)

    def wrap(i, fn):
        try:
            barrier.wait()
            results[i] = fn()
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            errors.append(error)
            for b in barriers:
                b.abort()

    threads = [threading.Thread(target=wrap, args=(i, fn)) for i, fn in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def data(seed=0, n=256):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = (x[:, :1] + 0.3 * x[:, 1:2] > 0).astype(np.float32)
    return x, y


def model(seed=0, jit_compile="auto"):
    mt.random.set_random_seed(seed)
    m = Sequential([mt.layers.Input((8,)), Dense(6, activation="relu"), Dense(1, activation="sigmoid")])
    m.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"], jit_compile=jit_compile)
    return m


# ------------------------------------------------------------------ grad mode
def test_no_grad_in_one_thread_does_not_reach_another():
    inside, release = threading.Barrier(2), threading.Barrier(2)
    seen = {}

    def holder():
        with no_grad():
            seen["holder inside"] = is_grad_enabled()
            inside.wait()
            release.wait()
        seen["holder after"] = is_grad_enabled()

    def observer():
        inside.wait()
        seen["observer"] = is_grad_enabled()
        x = Tensor([1.0, 2.0], requires_grad=True)
        y = (x * x).sum()
        seen["observer records"] = y.requires_grad and not y.is_leaf
        y.backward()
        seen["observer grad"] = x.grad.tolist()
        release.wait()

    run_threads([holder, observer], barriers=[inside, release])
    assert seen == {
        "holder inside": False,
        "holder after": True,
        "observer": True,
        "observer records": True,
        "observer grad": [2.0, 4.0],
    }
    assert is_grad_enabled()


def test_a_thread_started_inside_no_grad_records_the_graph():
    seen = []

    def worker():
        seen.append(is_grad_enabled())

    with no_grad():
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert seen == [True]


def test_one_no_grad_object_shared_by_threads_restores_each_thread_s_own_mode():
    shared = no_grad()
    entered = threading.Barrier(2)
    seen = {}

    def already_off():
        with no_grad():
            with shared:
                entered.wait()
                entered.wait()
            seen["already off"] = is_grad_enabled()

    def on():
        with shared:
            entered.wait()
        entered.wait()
        seen["on"] = is_grad_enabled()

    run_threads([already_off, on], barriers=[entered])
    assert seen == {"already off": False, "on": True}


def test_predict_in_many_threads_leaves_grad_mode_on_everywhere():
    m = model()
    x, _ = data()
    run_threads([lambda: m.predict(x, batch_size=8, verbose=0) for _ in range(6)])
    assert is_grad_enabled()
    flags = run_threads([is_grad_enabled for _ in range(4)])
    assert flags == [True] * 4


# ------------------------------------------------------------------ models
def test_concurrent_predict_and_evaluate_match_sequential_while_another_thread_fits():
    x, y = data(seed=1)
    served = [model(seed=s) for s in range(3)]  # evaluate keeps metric state: one model per evaluating thread
    shared = served[0]  # predict keeps none: several threads share this one
    expected_predict = shared.predict(x, batch_size=16, verbose=0)
    expected_evaluate = [m.evaluate(x, y, batch_size=16, verbose=0) for m in served]

    x_fit, y_fit = data(seed=2, n=512)
    trained = model(seed=7)
    reference = model(seed=7)
    reference.fit(x_fit, y_fit, epochs=3, batch_size=32, shuffle=False, verbose=0)

    def fit():
        history = trained.fit(x_fit, y_fit, epochs=3, batch_size=32, shuffle=False, verbose=0)
        return history.history["loss"]

    def predict_many():
        return [shared.predict(x, batch_size=16, verbose=0) for _ in range(5)]

    def evaluate_many(m):
        return [m.evaluate(x, y, batch_size=16, verbose=0) for _ in range(5)]

    results = run_threads(
        [fit, predict_many, predict_many] + [lambda m=m: evaluate_many(m) for m in served]
    )
    losses, predictions = results[0], results[1] + results[2]
    for p in predictions:
        np.testing.assert_array_equal(p, expected_predict)
    for m_results, expected in zip(results[3:], expected_evaluate):
        for r in m_results:
            assert r == expected
    # the threaded fit trained exactly as a fit with nothing else running
    assert losses == reference.history.history["loss"]
    for a, b in zip(trained.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert is_grad_enabled()


@pytest.mark.parametrize("jit_compile", [False, True], ids=["reference path", "compiled path"])
def test_fit_in_two_threads_on_two_models_trains_both_as_alone(jit_compile):
    x, y = data(seed=3, n=256)
    alone = model(seed=5, jit_compile=jit_compile)
    alone.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    models = [model(seed=5, jit_compile=jit_compile), model(seed=5, jit_compile=jit_compile)]
    run_threads([lambda m=m: m.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0) for m in models])
    for m in models:
        for a, b in zip(m.get_weights(), alone.get_weights()):
            np.testing.assert_array_equal(a, b)


class Pause(mt.callbacks.Callback):
    """Holds fit at its first batch until the test has tried its second call."""

    def __init__(self, started, resume):
        super().__init__()
        self.started, self.resume = started, resume

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0 and not self.resume.is_set():
            self.started.set()
            self.resume.wait()


@pytest.mark.parametrize("second", ["fit", "evaluate"])
def test_a_second_thread_training_or_evaluating_the_same_model_gets_a_clear_error(second):
    x, y = data(seed=4, n=64)
    m = model(seed=3)
    started, resume = threading.Event(), threading.Event()
    outcome = {}

    def first():
        try:
            outcome["history"] = m.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[Pause(started, resume)])
        finally:
            resume.set()

    worker = threading.Thread(target=first)
    worker.start()
    try:
        started.wait()
        before = [w.copy() for w in m.get_weights()]
        call = (lambda: m.fit(x, y, epochs=1, verbose=0)) if second == "fit" else (lambda: m.evaluate(x, y, verbose=0))
        with pytest.raises(RuntimeError, match=rf"is running fit\(\) in another thread: one model cannot be trained or evaluated by two threads at once.*Received: {second}\(\) while fit\(\) runs"):
            call()
        for a, b in zip(before, m.get_weights()):
            np.testing.assert_array_equal(a, b)
    finally:
        resume.set()
        worker.join()
    assert len(outcome["history"].history["loss"]) == 1
    m.evaluate(x, y, verbose=0)  # free again once fit returned


def test_the_same_thread_may_evaluate_inside_its_own_fit():
    x, y = data(seed=5, n=64)
    m = model(seed=4)
    seen = []

    class EvaluateEachEpoch(mt.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(self.model.evaluate(x, y, verbose=0))

    m.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[EvaluateEachEpoch()])
    assert len(seen) == 2


def test_predicting_a_model_while_another_thread_fits_it_leaves_the_training_unchanged():
    """Not refused (see docs/internals.md): the outputs may mix two steps, the training must not notice."""
    x, y = data(seed=6, n=256)
    alone = model(seed=8)
    alone.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    trained = model(seed=8)
    done = threading.Event()

    def fit():
        try:
            return trained.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0).history["loss"]
        finally:
            done.set()

    def predict_until_done():
        shapes = []
        while not done.is_set():
            shapes.append(trained.predict(x[:40], batch_size=8, verbose=0).shape)
        return shapes

    losses, shapes = run_threads([fit, predict_until_done])
    assert losses == alone.history.history["loss"]
    for a, b in zip(trained.get_weights(), alone.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert set(shapes) <= {(40, 1)}
