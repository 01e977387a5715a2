"""The progress display: Keras's exact text for fit/evaluate/predict (docs/keras-formulas.md §9.1).

Time is a fake clock (``minitensor.progbar._clock``), so every line is checked
exactly; the structural regexes mirror what a real run prints.
"""

import io
import re
import sys

import pytest

from minitensor import progbar
from minitensor.callbacks import CallbackList, ProgbarLogger
from minitensor.progbar import Progbar

BAR = "━" * 20
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(progbar, "_clock", fake)
    return fake


def run_epochs(logger, clock, *, epochs, steps, first=0.397, step=0.008, batch_logs=None, epoch_logs=None):
    """Drive ``logger`` like fit: the first step takes ``first`` s, the others ``step`` s."""
    batch_logs = batch_logs or (lambda b: {"accuracy": 0.0312, "loss": 2.4930})
    epoch_logs = epoch_logs or {"accuracy": 0.0438, "loss": 2.3577, "val_accuracy": 0.125, "val_loss": 2.2856}
    logger.on_train_begin()
    for epoch in range(epochs):
        logger.on_epoch_begin(epoch)
        for batch in range(steps):
            clock.advance(first if batch == 0 else step)
            logger.on_train_batch_end(batch, batch_logs(batch))
        logger.on_epoch_end(epoch, epoch_logs)
    logger.on_train_end()


def make_logger(verbose, epochs, steps):
    logger = ProgbarLogger()
    logger.set_params({"verbose": verbose, "epochs": epochs, "steps": steps})
    return logger


# -- fit, verbose=1 -------------------------------------------------------------------------


def test_verbose1_final_line_matches_keras(clock, capsys):
    run_epochs(make_logger(1, 2, 45), clock, epochs=1, steps=45)
    out = capsys.readouterr().out
    assert out.startswith("Epoch 1/2\n")
    final = out.split("\r")[-1]
    assert re.fullmatch(
        r"45/45 ━{20} \d+s \d+(ms|us)/step - accuracy: 0\.0438 - loss: 2\.3577"
        r" - val_accuracy: 0\.1250 - val_loss: 2\.2856\n",
        final,
    )
    # 0.397 s + 44 x 8 ms: 0.749 s elapsed, and the first step is left out of the per-step time.
    assert final == (
        f"45/45 {BAR} 1s 8ms/step - accuracy: 0.0438 - loss: 2.3577 - val_accuracy: 0.1250 - val_loss: 2.2856\n"
    )


def test_verbose1_first_update_shows_eta(clock, capsys):
    # Through a CallbackList, as fit does: it sorts the keys of the logs.
    callbacks = CallbackList(add_progbar=True, verbose=1, epochs=2, steps=45)
    run_epochs(callbacks, clock, epochs=1, steps=45, batch_logs=lambda b: {"loss": 2.4930, "accuracy": 0.03125})
    first = capsys.readouterr().out.split("\r")[1]
    # docs/keras-formulas.md §9.1's example line: ETA = 44 x 0.397 s.
    assert first == f" 1/45 {BAR} 17s 397ms/step - accuracy: 0.0312 - loss: 2.4930"


def test_verbose1_redraws_are_throttled_to_50ms(clock, capsys):
    # 45 steps of 8 ms after the first: a redraw every 7th step (56 ms), plus the first and the final.
    run_epochs(make_logger(1, 1, 45), clock, epochs=1, steps=45)
    out = capsys.readouterr().out
    lines = out.split("\r")[1:]
    counts = [int(line.split("/")[0]) for line in lines]
    assert counts == [1, 8, 15, 22, 29, 36, 43, 45]
    assert out.endswith("\n") and out.count("\n") == 1  # one line, redrawn in place


def test_epoch_header_only_when_several_epochs(clock, capsys):
    run_epochs(make_logger(1, 1, 3), clock, epochs=1, steps=3)
    assert "Epoch" not in capsys.readouterr().out
    run_epochs(make_logger(1, 3, 3), clock, epochs=3, steps=3)
    out = capsys.readouterr().out
    assert [line for line in out.split("\n") if line.startswith("Epoch")] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]


def test_step_counter_right_aligned_to_target_digits(clock, capsys):
    bar = Progbar(target=120, verbose=1)
    clock.advance(0.02)
    bar.update(7)
    assert capsys.readouterr().out.startswith(f"\r  7/120 {BAR}")


def test_shorter_line_blanks_out_previous_one(clock, capsys):
    bar = Progbar(target=10, verbose=1)
    clock.advance(100.0)
    bar.update(1, [("loss", 123.0)])        # ETA "15:00"
    clock.advance(1.0)
    bar.update(2, [("loss", 0.5)])          # ETA "8s", loss shorter
    first, second = capsys.readouterr().out.split("\r")[1:]
    assert len(second) == len(first)
    assert second.endswith(" ") and second.rstrip().endswith("loss: 0.5000")


def test_non_dynamic_display_starts_lines_with_newline(clock, capsys, monkeypatch):
    monkeypatch.setattr(progbar, "_is_dynamic", lambda: False)
    bar = Progbar(target=2, verbose=1)
    clock.advance(0.1)
    bar.update(1)
    clock.advance(0.1)
    bar.update(2)
    out = capsys.readouterr().out
    assert "\r" not in out
    assert out.startswith(f"\n1/2 {BAR}") and out.count("\n") == 3


def test_ansi_colours_only_on_a_terminal(clock, capsys, monkeypatch):
    run_epochs(make_logger(1, 1, 3), clock, epochs=1, steps=3)
    plain = capsys.readouterr().out
    assert "\x1b" not in plain

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    clock.now = 0.0
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    run_epochs(make_logger(1, 1, 3), clock, epochs=1, steps=3)
    coloured = terminal.getvalue()
    assert "\x1b[32m" in coloured and "\x1b[1m" in coloured
    assert ANSI.sub("", coloured) == plain


# -- fit, verbose=2 -------------------------------------------------------------------------


def test_verbose2_one_line_per_epoch(clock, capsys):
    logger = make_logger(2, 2, 45)
    run_epochs(logger, clock, epochs=2, steps=45, first=0.016, step=0.016)
    out = capsys.readouterr().out
    line = "45/45 - 1s - 16ms/step - accuracy: 0.0438 - loss: 2.3577 - val_accuracy: 0.1250 - val_loss: 2.2856"
    assert out == f"Epoch 1/2\n{line}\nEpoch 2/2\n{line}\n"
    assert re.fullmatch(r"45/45 - \d+s - \d+(ms|us)/step - accuracy: 0\.0438 - loss: 2\.3577.*", line)


def test_verbose2_needs_no_batch_hooks(clock, capsys):
    # What fit does with verbose=2 and no batch listener: no batch hooks at all.
    callbacks = CallbackList(add_history=True, add_progbar=True, verbose=2, epochs=1, steps=45)
    callbacks.on_train_begin()
    assert not callbacks.needs_train_batch_hooks
    callbacks.on_epoch_begin(0)
    clock.advance(45 * 0.016)
    callbacks.on_epoch_end(0, {"loss": 2.3577})
    assert capsys.readouterr().out == "45/45 - 1s - 16ms/step - loss: 2.3577\n"


def test_verbose0_prints_nothing(clock, capsys):
    run_epochs(make_logger(0, 3, 5), clock, epochs=3, steps=5)
    assert capsys.readouterr().out == ""


# -- number and time formatting -------------------------------------------------------------


@pytest.mark.parametrize(
    "value, verbose1, verbose2",
    [
        (2.3577, "2.3577", "2.3577"),
        (0.0011, "0.0011", "0.0011"),
        (1e-3, "1.0000e-03", "1.0000e-03"),        # the test is strict: > 1e-3
        (2e-4, "2.0000e-04", "2.0000e-04"),
        (0.0, "0.0000e+00", "0.0000e+00"),
        (-0.5, "-0.5000", "-5.0000e-01"),          # Keras's verbose=2 branch has no abs()
        (-5e-4, "-5.0000e-04", "-5.0000e-04"),
        (12345.678, "12345.6780", "12345.6780"),
        (3, "3.0000", "3.0000"),                   # non-floats go through np.mean, as Keras
    ],
)
def test_value_formatting(clock, capsys, value, verbose1, verbose2):
    for verbose, expected in ((1, verbose1), (2, verbose2)):
        Progbar(target=1, verbose=verbose).update(1, [("m", value)])
        assert capsys.readouterr().out.rstrip().endswith(f" - m: {expected}")


@pytest.mark.parametrize(
    "seconds_per_step, text",
    [(2.4, " 2s/step"), (1.0, " 1s/step"), (0.0084, " 8ms/step"), (0.001, " 1ms/step"),
     (0.00042, " 420us/step"), (0.0, " 0s/step")],
)
def test_time_per_step_formatting(clock, capsys, seconds_per_step, text):
    bar = Progbar(target=1, verbose=2)
    clock.advance(seconds_per_step)
    bar.update(1)
    assert capsys.readouterr().out.endswith(f" -{text}\n")


@pytest.mark.parametrize(
    "seconds_per_step, eta",
    [(0.5, "4s"), (10.0, "1:30"), (500.0, "1:15:00")],
)
def test_eta_formatting(clock, capsys, seconds_per_step, eta):
    bar = Progbar(target=10, verbose=1)
    clock.advance(seconds_per_step)
    bar.update(1)
    assert capsys.readouterr().out.split(BAR)[1].startswith(f" {eta} ")


def test_unknown_target(clock, capsys):
    bar = Progbar(target=None, verbose=1)
    clock.advance(0.5)
    bar.update(7, [("loss", 1.5)])
    assert capsys.readouterr().out == "\r      7/Unknown 0s 71ms/step - loss: 1.5000"


def test_unencodable_bar_falls_back_to_equals(clock, monkeypatch):
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stream)
    bar = Progbar(target=2, verbose=1)
    clock.advance(0.5)
    bar.update(2)
    stream.flush()
    assert raw.getvalue().decode("ascii") == f"\r2/2 {'=' * 20} 0s 250ms/step\n"


# -- evaluate and predict ------------------------------------------------------------------


def test_evaluate_and_predict_bars(clock, capsys):
    logger = make_logger("auto", 1, 3)
    logger.on_test_begin()
    for batch in range(3):
        clock.advance(0.008)
        logger.on_test_batch_end(batch, {"accuracy": 0.2, "loss": 2.6})
    logger.on_test_end({"accuracy": 0.1714, "loss": 2.5366})
    assert capsys.readouterr().out.split("\r")[-1] == f"3/3 {BAR} 0s 8ms/step - accuracy: 0.1714 - loss: 2.5366\n"

    logger = make_logger("auto", 1, 3)
    logger.on_predict_begin()
    for batch in range(3):
        clock.advance(0.007)
        logger.on_predict_batch_end(batch, {"outputs": [1.0]})
    logger.on_predict_end()
    assert capsys.readouterr().out.split("\r")[-1] == f"3/3 {BAR} 0s 7ms/step\n"


def test_validation_inside_fit_is_silent(clock, capsys):
    callbacks = CallbackList(add_history=True, add_progbar=True, verbose=1, epochs=1, steps=2)
    callbacks.on_train_begin()
    assert callbacks.needs_train_batch_hooks and not callbacks.needs_test_batch_hooks
    callbacks.on_epoch_begin(0)
    for batch in range(2):
        clock.advance(0.1)
        callbacks.on_train_batch_end(batch, {"loss": 1.0})
    callbacks.on_test_begin()
    callbacks.on_test_batch_end(0, {"loss": 9.0})
    callbacks.on_test_end({"loss": 9.0})
    callbacks.on_epoch_end(0, {"loss": 1.0, "val_loss": 0.5})
    callbacks.on_train_end()
    out = capsys.readouterr().out
    assert "9.0000" not in out and "2/2" in out and out.count("\n") == 1
    assert out.split("\r")[-1] == f"2/2 {BAR} 0s 100ms/step - loss: 1.0000 - val_loss: 0.5000\n"
