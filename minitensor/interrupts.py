"""Ctrl-C (SIGINT) that cannot tear a training step.

Python raises ``KeyboardInterrupt`` between any two bytecodes of the main thread. An
optimizer step updates the weights and the optimizer's slots in place, one array (or
one block of an array) after another, so an interrupt landing inside it would leave
weights that match no whole number of steps. :data:`deferred` holds such an interrupt
back until the block it guards is over, then raises it: whatever is inside the block
runs completely or (if the interrupt came before it) not at all.

``fit`` also installs the handler once for the whole run (:func:`handler_installed`), so
that each step's deferral costs a counter, not two ``signal.signal`` calls.

Only the main thread receives signals (Python runs its handlers there), so in other
threads both are no-ops. A SIGINT handler that is not a Python callable (``SIG_IGN``,
``SIG_DFL``) is left alone: ignored signals are still ignored, and the default action
still ends the process.

Example:
    >>> import numpy as np
    >>> w = np.zeros(3)
    >>> with deferred:          # a Ctrl-C here is raised after both lines ran
    ...     w += 1
    ...     w *= 2
    >>> w
    array([2., 2., 2.])
"""

from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["deferred", "handler_installed"]

_MAIN = threading.main_thread().ident


class _Deferral:
    """Defers SIGINT's handler while a block runs (re-entrant; main thread only)."""

    def __init__(self):
        self._depth = 0  # blocks being deferred (main thread)
        self._installs = 0  # handler_installed blocks open
        self._previous = None  # the handler ours replaced
        self._pending = None  # (signum, frame) received while deferring
        self._installed_handler = self._handler  # one bound method, so that `is` recognises it

    # ---- the signal handler
    def _handler(self, signum, frame):
        if self._depth:
            self._pending = (signum, frame)
        else:
            self._previous(signum, frame)

    def _install(self) -> bool:
        """Install our handler in front of the current one; False when that is not a Python callable."""
        current = signal.getsignal(signal.SIGINT)
        if current is self._installed_handler:
            return True
        if not callable(current):
            return False
        self._previous = current
        signal.signal(signal.SIGINT, self._installed_handler)
        return True

    def _uninstall(self) -> None:
        if signal.getsignal(signal.SIGINT) is self._installed_handler:  # someone may have replaced it since
            signal.signal(signal.SIGINT, self._previous)

    # ---- deferring a block
    def __enter__(self):
        if threading.get_ident() != _MAIN:
            return self
        if self._depth == 0 and not self._installs and not self._install():
            self._depth = -1 << 30  # not ours to defer: stays negative, see __exit__
        self._depth += 1
        return self

    def __exit__(self, *exc):
        if threading.get_ident() != _MAIN:
            return False
        self._depth -= 1
        if self._depth < 0:  # the handler was not ours to install
            if self._depth == -1 << 30:
                self._depth = 0
            return False
        if self._depth == 0:
            if not self._installs:
                self._uninstall()
            pending, self._pending = self._pending, None
            if pending is not None:
                self._previous(*pending)  # Python's default handler raises KeyboardInterrupt here
        return False


#: Context manager: a SIGINT that arrives inside the block is handled when it ends.
deferred = _Deferral()


@contextlib.contextmanager
def handler_installed():
    """Keep the deferring handler installed for a long block (``fit``), so :data:`deferred` is cheap in it.

    Outside :data:`deferred` blocks the handler passes SIGINT on at once.

    Example:
        >>> with handler_installed():
        ...     with deferred:
        ...         pass
    """
    if threading.get_ident() != _MAIN or not (deferred._installs or deferred._install()):
        yield
        return
    deferred._installs += 1
    try:
        yield
    finally:
        deferred._installs -= 1
        if not deferred._installs and deferred._depth == 0:
            deferred._uninstall()
