"""Flush-to-zero float arithmetic for a block of code, as TensorFlow's CPU kernels compute.

TensorFlow runs its CPU kernels with the processor's flush-to-zero (FTZ) and
denormals-are-zero (DAZ) modes on: a float32 result below the smallest normal number
(1.18e-38) becomes 0, and such a subnormal input counts as 0. NumPy computes with subnormals,
which on x86 processors costs up to a hundred times more per operation. An optimizer whose
gradients stay 0 lets its moment estimates decay into that range, and a NumPy step over them
then runs several times slower (and keeps values Keras would have flushed).

:func:`flush_subnormals` sets both modes for the calling thread inside a ``with`` block and
restores the previous floating-point environment afterwards. It works through the C library's
``fegetenv``/``fesetenv`` on x86-64 Linux (glibc), where the environment holds the SSE control
register (MXCSR); elsewhere it does nothing, and :data:`AVAILABLE` is False.

Example:
    >>> import numpy as np
    >>> tiny = np.float32(1e-38)            # subnormal once halved
    >>> with flush_subnormals():
    ...     inside = tiny * np.float32(0.5)
    >>> bool(inside == 0) if AVAILABLE else True
    True
    >>> bool(tiny * np.float32(0.5) > 0)    # outside the block: IEEE gradual underflow again
    True
"""

from __future__ import annotations

import ctypes
import platform
import struct
import sys

__all__ = ["flush_subnormals", "AVAILABLE"]

_FENV_SIZE = 32  # sizeof(fenv_t) of glibc on x86-64: the x87 environment (28 bytes), then MXCSR
_MXCSR_OFFSET = 28
_FTZ_DAZ = 0x8040  # MXCSR bit 15: flush to zero; bit 6: denormals are zero
_EXCEPTION_MASKS = 0x1F80  # MXCSR bits 7-12; all set in any normal Python process


def _load():
    """The C library's (fegetenv, fesetenv), or None where this module cannot work."""
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        libc = ctypes.CDLL(None)
        get, put = libc.fegetenv, libc.fesetenv
    except (OSError, AttributeError):
        return None
    get.argtypes = put.argtypes = [ctypes.c_void_p]
    get.restype = put.restype = ctypes.c_int
    env = ctypes.create_string_buffer(_FENV_SIZE)
    if get(env) != 0:
        return None
    mxcsr = struct.unpack_from("<I", env.raw, _MXCSR_OFFSET)[0]
    if mxcsr & _EXCEPTION_MASKS != _EXCEPTION_MASKS:  # not the layout this module expects
        return None
    return get, put


_FUNCTIONS = _load()
#: Whether :func:`flush_subnormals` changes anything on this platform.
AVAILABLE = _FUNCTIONS is not None


class flush_subnormals:
    """Context manager: float arithmetic in this thread flushes subnormals to zero inside the block.

    Cheap (two C calls, a few microseconds, per block); one instance may be entered again after
    it exits, and separate instances may nest. On platforms without the x86-64 glibc environment
    layout it does nothing (see :data:`AVAILABLE`).

    Example:
        >>> with flush_subnormals():
        ...     pass
    """

    __slots__ = ("_saved", "_flushing", "_base")

    def __init__(self):
        self._saved = ctypes.create_string_buffer(_FENV_SIZE)
        self._flushing = ctypes.create_string_buffer(_FENV_SIZE)
        self._base = None  # the environment `_flushing` was made from

    def __enter__(self):
        if _FUNCTIONS is not None:
            get, put = _FUNCTIONS
            get(self._saved)
            saved = self._saved.raw
            if saved != self._base:  # first use, or the environment changed since
                self._base = saved
                mxcsr = struct.unpack_from("<I", saved, _MXCSR_OFFSET)[0]
                self._flushing.raw = saved[:_MXCSR_OFFSET] + struct.pack("<I", mxcsr | _FTZ_DAZ)
            put(self._flushing)
        return self

    def __exit__(self, *exc):
        if _FUNCTIONS is not None:
            _FUNCTIONS[1](self._saved)
        return False
