"""How many threads BLAS gets while a model trains: one when its matrix products are mid-sized.

OpenBLAS starts its threads for products of about 2**18 multiply-adds and more. Measured on a
2-core x86 machine, two threads made mid-sized products slower, not faster: model B of the
benchmarks (64-300-200-80-4-1, batch 32, products up to 1.9M multiply-adds) trained its
compiled epochs at 267 us per step on one thread and 336 us on two, and whenever the other core
was busy its two-thread steps stalled for milliseconds (up to 38 ms) waiting for the second
thread. Large products (model L's 51M) are about 1.8x faster on two threads.

:func:`one_thread_suffices` applies that rule to a model's products, and :func:`blas_threads`
holds the loaded BLAS libraries (NumPy's, and SciPy's, which Numba calls) to a thread count for
a ``with`` block through threadpoolctl, restoring them afterwards. ``fit`` uses both around
each epoch; code that runs inside it (callbacks included) sees the limit.

Example:
    >>> one_thread_suffices([32 * 64 * 12]), one_thread_suffices([32 * 300 * 200]), one_thread_suffices([128 * 784 * 512])
    (False, True, False)
"""

from __future__ import annotations

import contextlib
import sys

__all__ = ["one_thread_suffices", "blas_threads", "OPENBLAS_THREADING_MACS", "ONE_THREAD_MAX_MACS"]

#: Multiply-adds per product from which OpenBLAS runs a product on several threads.
OPENBLAS_THREADING_MACS = 1 << 18
#: Products below this many multiply-adds run on one thread when they are a model's largest.
ONE_THREAD_MAX_MACS = 1 << 23

_CONTROLLER = {}  # threadpoolctl's controller, made when first needed and again when SciPy's BLAS appears


def one_thread_suffices(macs) -> bool:
    """Whether a model whose matrix products take ``macs`` multiply-adds each should use one BLAS thread."""
    macs = list(macs)
    return bool(macs) and OPENBLAS_THREADING_MACS <= max(macs) < ONE_THREAD_MAX_MACS


def blas_threads(limit: int):
    """A context holding the loaded BLAS libraries to ``limit`` threads, restored after.

    Without threadpoolctl, BLAS keeps its own thread count.

    Example:
        >>> with blas_threads(1):
        ...     pass
    """
    try:
        import threadpoolctl
    except ImportError:  # pragma: no cover - a dependency of minitensor
        return contextlib.nullcontext()
    scipy_blas = "scipy.linalg.cython_blas" in sys.modules  # loaded by minitensor.kernels for Numba
    if _CONTROLLER.get("scipy_blas") is not scipy_blas:  # scanning the loaded libraries takes ~ms
        _CONTROLLER.update(scipy_blas=scipy_blas, controller=threadpoolctl.ThreadpoolController())
    return _CONTROLLER["controller"].limit(limits=limit, user_api="blas")
