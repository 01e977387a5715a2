"""Ctrl-C during fit: the model and its optimizer always match a whole number of steps.

Every state left by an interrupt is checked against a replay: a model trained, without
interrupts, for exactly the steps the interrupted one counts (its ``iterations``) must have
the same weights and optimizer slots, bit for bit. A torn update (some arrays updated,
others or ``iterations`` not) cannot pass. Both training paths; the storm sends SIGINT to a
subprocess at random moments, the other cases aim one interrupt at the inside of an update.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import minitensor as mt
from minitensor import interrupts, optimizers
from minitensor.layers import Dense, Input
from minitensor.models import Sequential

pytestmark = pytest.mark.reliability

PATHS = pytest.mark.parametrize("jit", [False, True], ids=["reference", "compiled"])
BATCH = 8


def lesson_like(jit, seed=0, **adam):
    mt.set_random_seed(seed)
    model = Sequential([Input(shape=(16,)), Dense(12, activation="relu"), Dense(8, activation="relu"),
                        Dense(1, activation="sigmoid")])
    model.compile(optimizer=optimizers.Adam(learning_rate=0.01, **adam), loss="binary_crossentropy",
                  metrics=["accuracy"], jit_compile=jit)
    return model


def storm_model(jit, seed=0):
    """A wide layer: its Adam update spans several blocks and most of each step (and of each
    compiled epoch), so that random interrupts often land in the middle of an update."""
    mt.set_random_seed(seed)
    model = Sequential([Input(shape=(16,)), Dense(4096, activation="relu"), Dense(16, activation="relu"),
                        Dense(1, activation="sigmoid")])
    model.compile(optimizer=optimizers.Adam(learning_rate=1e-3), loss="binary_crossentropy", jit_compile=jit)
    return model


def data(n=256):
    rng = np.random.default_rng(1)
    x = rng.random((n, 16), dtype=np.float32)
    return x, (x.sum(axis=1) > 8).astype(np.float32)


def state(model):
    slots = model.optimizer.get_state() if model.optimizer.built else [np.array(0)]
    return int(model.optimizer.iterations), model.get_weights(), slots[1:]


def train_steps(model, x, y, steps):
    """Continue ``model`` for ``steps`` whole steps, each later fit starting at the first batch (shuffle off)."""
    per_epoch = -(-len(x) // BATCH)
    epochs, rest = divmod(steps, per_epoch)
    if epochs:
        model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0)
    if rest:
        model.fit(x[: rest * BATCH], y[: rest * BATCH], batch_size=BATCH, epochs=1, shuffle=False, verbose=0)


def assert_same_state(got, expected, what):
    it_got, weights_got, slots_got = got
    it_exp, weights_exp, slots_exp = expected
    assert it_got == it_exp, what
    for a, b in zip(weights_got, weights_exp):
        np.testing.assert_array_equal(a, b, err_msg=f"{what}: weights")
    if slots_got and slots_exp:
        for a, b in zip(slots_got, slots_exp):
            np.testing.assert_array_equal(a, b, err_msg=f"{what}: optimizer slots")
    else:  # an unbuilt optimizer: no step was taken
        assert it_got == 0 and not any(np.any(s) for s in slots_got + slots_exp), what


# ---------------------------------------------------------------------------- the deferral itself
def test_deferred_holds_sigint_until_the_block_is_over():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # give the handler many chances to run
                pass
            done.append(True)
    assert done == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_deferred_leaves_other_handlers_alone_and_is_inert_in_threads():
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        with interrupts.deferred:
            os.kill(os.getpid(), signal.SIGINT)
            assert calls == []
        assert calls == [signal.SIGINT]  # the user's handler, called once the block ended
        with interrupts.handler_installed():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
            assert calls == [signal.SIGINT, signal.SIGINT]  # outside a deferred block: at once
    finally:
        signal.signal(signal.SIGINT, previous)
    errors = []

    def in_thread():
        try:
            with interrupts.handler_installed(), interrupts.deferred:
                pass
        except BaseException as error:  # pragma: no cover - re-raised below
            errors.append(error)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert errors == [] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---------------------------------------------------------------------------- one aimed interrupt
def test_an_interrupt_inside_the_optimizer_update_waits_for_the_whole_step(monkeypatch):
    """Reference path: SIGINT arrives between the updates of two variables of one step.

    With ``clipnorm`` the optimizer updates each weight array on its own (not the flat
    buffer), so the signal lands after the first kernel's update and before the others.
    """
    x, y = data()
    model = lesson_like(False, clipnorm=100.0)
    update = optimizers.Adam._update_step
    steps = []

    def interrupted_update(self, index, g, w, lr, part=None):
        update(self, index, g, w, lr, part)
        if index == 0:
            steps.append(None)
            if len(steps) == 3:
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # give the handler many chances to run
                    pass

    monkeypatch.setattr(optimizers.Adam, "_update_step", interrupted_update)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    monkeypatch.setattr(optimizers.Adam, "_update_step", update)
    got = state(model)
    assert got[0] == 3  # the interrupted step was completed, and counted
    replay = lesson_like(False, clipnorm=100.0)
    train_steps(replay, x, y, 3)
    assert_same_state(got, state(replay), "after the interrupt")
    # fit resumes from there: the same as a replay continued by a whole epoch
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    replay.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    assert_same_state(state(model), state(replay), "after resuming")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_interrupt_during_a_compiled_epoch_counts_every_step_it_took():
    """Compiled path: the signal arrives while the kernel runs; it returns, then the steps are counted."""
    x, y = data(n=40_000)
    model = lesson_like(True)
    model.fit(x[:8], y[:8], batch_size=BATCH, epochs=1, shuffle=False, verbose=0)  # compile or load the kernel
    before = model.get_weights()[0].copy()
    pid = os.getpid()

    stop = threading.Event()

    def interrupt_once_the_weights_move():  # the kernel writes them in place, without the GIL
        while np.array_equal(model._flat_params[: before.size].reshape(before.shape), before):
            if stop.is_set():
                return
        os.kill(pid, signal.SIGINT)

    watcher = threading.Thread(target=interrupt_once_the_weights_move)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.fit(x, y, batch_size=BATCH, epochs=50, shuffle=False, verbose=0)
    finally:
        stop.set()
        watcher.join()
    got = state(model)
    assert got[0] > 1
    replay = lesson_like(True)
    train_steps(replay, x[:8], y[:8], 1)
    train_steps(replay, x, y, got[0] - 1)
    assert_same_state(got, state(replay), "after the interrupt")


# ---------------------------------------------------------------------------- the storm
CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_interrupts import BATCH, STORM_ROWS, data, state, storm_model

    jit, out, count = sys.argv[1] == "1", sys.argv[2], int(sys.argv[3])
    x, y = data(STORM_ROWS)
    storm_model(jit, seed=1).fit(x[:64], y[:64], batch_size=BATCH, epochs=1, verbose=0)  # warm up (compile)
    model = storm_model(jit)

    def save(i):
        iterations, weights, slots = state(model)
        np.savez(f"{{out}}/state_{{i}}.npz", iterations=iterations, *weights, *slots)

    save(0)
    caught = 0
    while caught < count:
        try:
            print("go", flush=True)
            model.fit(x, y, batch_size=BATCH, epochs=10**6, shuffle=False, verbose=0)
        except KeyboardInterrupt:
            caught += 1
            save(caught)
    print("done", flush=True)
    """
)


STORM_ROWS = 2048


def load_state(path, n_weights):
    with np.load(path) as saved:
        arrays = [saved[f"arr_{i}"] for i in range(len(saved.files) - 1)]
        return int(saved["iterations"]), arrays[:n_weights], arrays[n_weights:]


@PATHS
def test_sigint_storm_leaves_only_whole_steps(jit, tmp_path):
    interrupts_sent = 12
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=os.path.dirname(__file__)))
    delays = random.Random(20_251_202 + jit)
    root = os.path.dirname(os.path.dirname(mt.__file__))  # the child trains with this same minitensor
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen(
        [sys.executable, str(script), "1" if jit else "0", str(tmp_path), str(interrupts_sent)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        for _ in range(interrupts_sent):
            line = child.stdout.readline()
            assert line == "go\n", f"child said {line!r}; stderr: {child.stderr.read()}"
            # mostly inside training steps; sometimes right at fit's start (setup, first step)
            threading.Event().wait(delays.choice([delays.uniform(0, 0.005), delays.uniform(0.005, 0.15)]))
            child.send_signal(signal.SIGINT)
        assert child.stdout.readline() == "done\n", child.stderr.read()
        assert child.wait() == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    x, y = data(STORM_ROWS)
    replay = storm_model(jit)
    n_weights = len(replay.get_weights())
    assert_same_state(load_state(tmp_path / "state_0.npz", n_weights), state(replay), "initial state")
    previous = 0
    for i in range(1, interrupts_sent + 1):
        got = load_state(tmp_path / f"state_{i}.npz", n_weights)
        assert got[0] >= previous
        train_steps(replay, x, y, got[0] - previous)  # each resumed fit starts at the first batch
        assert_same_state(got, state(replay), f"after interrupt {i} ({got[0]} steps)")
        previous = got[0]
