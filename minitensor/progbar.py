"""Keras's progress display, reproduced character for character.

:class:`Progbar` draws the line ``fit``/``evaluate``/``predict`` print; the
:class:`~minitensor.callbacks.ProgbarLogger` callback drives it. The format is
Keras 3's (``keras/src/utils/progbar.py``, docs/keras-formulas.md §9.1)::

    45/45 ━━━━━━━━━━━━━━━━━━━━ 1s 8ms/step - accuracy: 0.0438 - loss: 2.3577      (verbose=1, final)
    45/45 - 1s - 16ms/step - accuracy: 0.0438 - loss: 2.3577                      (verbose=2)

Why a formatter of our own rather than a progress-bar library (tqdm, rich): the
goal is Keras's exact text, so that a notebook's output reads the same with
either engine, and no library prints that format. The whole display is one small
class with no dependency beyond the standard library.

Differences from Keras that do not change what a terminal shows:

* Keras starts each redraw with ``'\\b' * previous_width`` and then ``'\\r'``; the
  backspaces are redundant after the carriage return, so only ``'\\r'`` is written.
* Keras always emits ANSI bold/colour codes; here they are emitted only when
  ``sys.stdout`` is a terminal (or a Jupyter kernel, which renders them), so
  captured output and log files hold plain text.
* Values are displayed as given (what Keras's ``ProgbarLogger`` does: the trainer
  already passes running means). ``keras.utils.Progbar``'s own averaging of
  values across updates is not reproduced.

Example:
    >>> bar = Progbar(target=3, verbose=2)
    >>> for step in (1, 2, 3):
    ...     bar.update(step, [("loss", 0.5)])  # doctest: +ELLIPSIS
    3/3 - 0s - ...s/step - loss: 0.5000
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

__all__ = ["Progbar", "print_msg"]

# The clock every Progbar reads; tests replace it to get deterministic timings.
_clock = time.perf_counter

_BOLD = "\x1b[1m"
_GREEN = "\x1b[32m"
_WHITE = "\x1b[37m"
_RESET = "\x1b[0m"
_BAR_CHAR = "━"


def print_msg(message: str, line_break: bool = True) -> None:
    """Write ``message`` to the current ``sys.stdout`` and flush, as Keras's ``print_msg``.

    If the stream cannot encode ``━`` (e.g. a latin-1 console), the bar falls back
    to ``=`` the way Keras does.

    Args:
        message: the text to write.
        line_break: append ``"\\n"`` (default ``True``).

    Example:
        >>> print_msg("Epoch 1/2")
        Epoch 1/2
    """
    message = f"{message}\n" if line_break else str(message)
    stream = sys.stdout
    try:
        stream.write(message)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "utf-8"
        message = message.replace(_BAR_CHAR, "=")
        stream.write(message.encode(encoding, errors="ignore").decode(encoding))
    stream.flush()


def _use_ansi() -> bool:
    stream = sys.stdout
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty()) or "ipykernel" in sys.modules
    except ValueError:  # a closed stream
        return False


def _is_dynamic() -> bool:
    # Keras's rule: redraw in place with '\r' on any POSIX system, in a terminal,
    # in Jupyter or in PyCharm; otherwise each update starts a new line.
    isatty = getattr(sys.stdout, "isatty", None)
    try:
        tty = bool(isatty and isatty())
    except ValueError:
        tty = False
    return tty or "ipykernel" in sys.modules or "posix" in sys.modules or "PYCHARM_HOSTED" in os.environ


def _format_value(value, *, signed: bool) -> str:
    """``{v:.4f}`` when ``|v| > 1e-3`` (``v > 1e-3`` if not ``signed``, as Keras's verbose=2), else ``{v:.4e}``."""
    if not isinstance(value, float):
        try:
            value = np.mean(value)
        except TypeError:
            return str(value)
    big = abs(value) > 1e-3 if signed else value > 1e-3
    return f"{value:.4f}" if big else f"{value:.4e}"


def _format_time_per_unit(seconds: float, unit_name: str) -> str:
    if seconds >= 1 or seconds == 0:
        return f" {seconds:.0f}s/{unit_name}"
    if seconds >= 1e-3:
        return f" {seconds * 1e3:.0f}ms/{unit_name}"
    return f" {seconds * 1e6:.0f}us/{unit_name}"


def _format_eta(eta: float) -> str:
    if eta > 3600:
        return "%d:%02d:%02d" % (eta // 3600, (eta % 3600) // 60, eta % 60)
    if eta > 60:
        return "%d:%02d" % (eta // 60, eta % 60)
    return "%ds" % eta


class Progbar:
    """A Keras-style progress bar over ``target`` steps, printed to ``sys.stdout``.

    Args:
        target: total number of steps, or ``None`` if unknown (then the bar shows
            ``"      7/Unknown"``).
        width: number of ``━`` characters in the bar (default 20).
        verbose: 0 prints nothing, 1 (default) redraws one live line, 2 prints a
            single summary line when the bar is finalized.
        interval: minimum seconds between two redraws in verbose mode 1 (default
            0.05). The first and the final update are always drawn.
        unit_name: what a step is called in the time-per-step field (default
            ``"step"``).

    Example:
        >>> bar = Progbar(target=2, verbose=1)
        >>> bar.update(1, [("loss", 0.25)])  # doctest: +SKIP
        >>> bar.update(2, [("loss", 0.125)])  # doctest: +SKIP
    """

    def __init__(self, target, width=20, verbose=1, interval=0.05, unit_name="step"):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self._ansi = _use_ansi()
        self._dynamic = _is_dynamic()
        self._values = {}  # name -> last value; dict order = first appearance, as Keras
        self._start = _clock()
        self._last_update = -math.inf  # so that the first update is always drawn
        self._time_after_first_step = None
        self._prev_total_width = 0

    def update(self, current, values=None, finalize=None):
        """Record step ``current`` with ``values`` and redraw the bar if due.

        Args:
            current: the number of steps done (1-based).
            values: ``[(name, value), ...]`` or a dict; each value is shown as
                given, keys in the order they first appeared.
            finalize: whether this is the last update; ``None`` (default) means
                ``current >= target`` (never, for an unknown target).

        Example:
            >>> Progbar(target=1, verbose=2).update(1, {"loss": 2e-4})  # doctest: +ELLIPSIS
            1/1 - 0s - ...s/step - loss: 2.0000e-04
        """
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        if values:
            items = values.items() if isinstance(values, dict) else values
            for name, value in items:
                self._values[name] = value

        now = _clock()
        time_per_unit = self._estimate_step_duration(current, now)
        if self.verbose == 1:
            if now - self._last_update < self.interval and not finalize:
                return
            print_msg(self._live_line(current, now, time_per_unit, finalize), line_break=False)
        elif self.verbose == 2 and finalize and self.target:
            print_msg(self._summary_line(current, now, time_per_unit))
        self._last_update = now

    # -- formatting ---------------------------------------------------------------

    def _count(self, current) -> str:
        digits = int(math.log10(self.target)) + 1
        return f"%{digits}d/%d" % (current, self.target)

    def _live_line(self, current, now, time_per_unit, finalize) -> str:
        ansi = self._ansi
        if self.target:
            count = self._count(current)
            done = int(self.width * (float(current) / self.target))
            todo = max(self.width - done, 0)
            plain_bar = f"{count} {_BAR_CHAR * (done + todo)}"
            if ansi:
                bar = f"{_BOLD}{count}{_RESET} "
                if done > 0:
                    bar += f"{_GREEN}{_BAR_CHAR * done}{_RESET}"
                bar += f"{_WHITE}{_BAR_CHAR * todo}{_RESET}"
            else:
                bar = plain_bar
        else:
            bar = plain_bar = "%7d/Unknown" % current

        if self.target and not finalize:
            clock_field = _format_eta(time_per_unit * (self.target - current))
        else:
            clock_field = f"{now - self._start:.0f}s"
        tail = _format_time_per_unit(time_per_unit, self.unit_name) + "".join(
            f" - {name}: {_format_value(value, signed=True)}" for name, value in self._values.items()
        )
        line = f"{bar} {_BOLD}{clock_field}{_RESET}{tail}" if ansi else f"{bar} {clock_field}{tail}"

        visible_width = len(plain_bar) + 1 + len(clock_field) + len(tail)
        if self._prev_total_width > visible_width:  # blank out the rest of a longer previous line
            line += " " * (self._prev_total_width - visible_width)
        self._prev_total_width = visible_width
        prefix = "\r" if self._dynamic else "\n"
        return prefix + line + ("\n" if finalize else "")

    def _summary_line(self, current, now, time_per_unit) -> str:
        line = f"{self._count(current)} - {now - self._start:.0f}s -"
        line += _format_time_per_unit(time_per_unit, self.unit_name)
        for name, value in self._values.items():
            line += f" - {name}: {_format_value(value, signed=False)}"
        return line

    def _estimate_step_duration(self, current, now) -> float:
        # As Keras: once step 1 has been seen, the first (warm-up) step is left out.
        if not current:
            return 0
        if self._time_after_first_step is not None and current > 1:
            time_per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            time_per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return time_per_unit
