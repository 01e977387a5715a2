"""Telling the user when the compiled path's kernels are being compiled.

The Numba kernels of ``compile(jit_compile=True)`` are compiled the first time they run on a
machine (several seconds), then kept in Numba's on-disk cache and loaded in a fraction of a
second by later processes. :func:`compiling_notice` wraps a kernel call: when Numba really
compiles the kernel (not when it loads it from the cache) it prints one line, so that a user
at ``verbose >= 1`` knows why the first epoch is slow::

    Compiling the training kernels for this machine (once: they are cached in /path/__pycache__)... done in 4.2 s

It listens to Numba's documented event API (``numba.core.event``, event ``"numba:compile"``),
which fires only for a real compilation, so a cache hit prints nothing.
"""

from __future__ import annotations

import contextlib
import sys
import time

__all__ = ["compiling_notice"]


def _compile_event_listener(dispatcher, stream):
    """A Numba event listener that announces the compilation of ``dispatcher`` on ``stream``."""
    from numba.core import event

    class CompileNotice(event.Listener):
        started = None

        def on_start(self, ev):
            if ev.data.get("dispatcher") is dispatcher and self.started is None:
                self.started = time.perf_counter()
                where = dispatcher.stats.cache_path
                kept = f"once: they are cached in {where}" if where else "once in this process"
                stream.write(f"Compiling the training kernels for this machine ({kept})... ")
                stream.flush()

        def on_end(self, ev):
            if ev.data.get("dispatcher") is dispatcher and self.started is not None:
                stream.write(f"done in {time.perf_counter() - self.started:.1f} s\n")
                stream.flush()

    return CompileNotice()


def compiling_notice(dispatcher, verbose, stream=None):
    """A context manager that prints one line while Numba compiles ``dispatcher`` inside it.

    Nothing is printed at ``verbose=0``, when the kernel is already compiled in this process,
    or when Numba loads it from its disk cache.

    Args:
        dispatcher: a Numba ``@njit`` function (a ``Dispatcher``).
        verbose: the ``verbose`` of ``fit``; 0 prints nothing.
        stream: where to write (default: ``sys.stdout`` at the time of the call).

    Example:
        >>> import io
        >>> from numba import njit
        >>> @njit
        ... def twice(x):
        ...     return 2 * x
        >>> out = io.StringIO()
        >>> with compiling_notice(twice, verbose=1, stream=out):
        ...     twice(21)
        42
        >>> out.getvalue().startswith("Compiling the training kernels for this machine")
        True
        >>> with compiling_notice(twice, verbose=1, stream=out):   # compiled already: silent
        ...     twice(1)
        2
        >>> out.getvalue().count("Compiling")
        1
    """
    if not verbose or dispatcher.signatures:
        return contextlib.nullcontext()
    from numba.core import event

    listener = _compile_event_listener(dispatcher, sys.stdout if stream is None else stream)
    return event.install_listener("numba:compile", listener)
