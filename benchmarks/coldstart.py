"""The compiled path's first epoch with an empty (cold) and with a filled (warm) Numba kernel cache.

Numba compiles the compiled path's kernels on first use and caches them on disk (next to
minitensor's sources, or in ``NUMBA_CACHE_DIR`` when that is set); a later process loads them
instead. :func:`measure_cold_warm` shows both costs on one model:

1. **cold**: a fresh :mod:`benchmarks.worker` runs with ``NUMBA_CACHE_DIR`` set to a new, empty
   temporary directory and trains one epoch: its kernels are compiled;
2. **warm**: a second fresh worker runs with the same directory, now holding what the first one
   wrote, and trains one epoch: its kernels are loaded.

The directory is deleted afterwards; minitensor's own cache is never touched. For each phase:
``first_epoch_s`` is the first ``fit`` call (the main table's *first epoch*), ``ready_s`` the
time from starting the process until the model is built (interpreter, imports, model), and
``total_s`` their sum: what a user waits from starting Python to the end of the first epoch.
``cache_files_after`` counts the files in the cache directory after the phase; ``fell_back`` says
whether minitensor trained on the reference path instead (then nothing was compiled and the
figures are not the compiled path's).

Example:
    >>> COLD_START_ENGINE
    'minitensor-compiled'
"""

from __future__ import annotations

import os
import shutil
import tempfile

__all__ = ["COLD_START_ENGINE", "measure_cold_warm", "count_files"]

#: The engine whose first epoch is measured cold and warm.
COLD_START_ENGINE = "minitensor-compiled"


def count_files(directory: str) -> int:
    """Number of files under ``directory`` (recursively); 0 when it does not exist.

    Example:
        >>> count_files("/nonexistent-directory")
        0
    """
    return sum(len(files) for _, _, files in os.walk(directory))


def _phase(model: str, engine: str, x_path: str, y_path: str, seed: int, cache_dir: str) -> dict:
    from .harness import _Worker

    worker = _Worker(model, engine, x_path, y_path, seed, env={"NUMBA_CACHE_DIR": cache_dir})
    try:
        epoch = worker.call(cmd="epoch")
        facts = worker.call(cmd="report")
    finally:
        worker.close()
    return {
        "first_epoch_s": epoch["fit_s"],
        "ready_s": worker.ready_s,
        "total_s": worker.ready_s + epoch["fit_s"],
        "numba_cache_dir": worker.ready.get("numba_cache_dir"),
        "cache_files_after": count_files(cache_dir),
        "fell_back": facts["fell_back"],
        "notes": facts["notes"],
    }


def measure_cold_warm(model: str, x_path: str, y_path: str, seed: int = 0, engine: str = COLD_START_ENGINE) -> dict:
    """First epoch of ``model`` in ``engine`` in a fresh process, with an empty and then a warm kernel cache.

    ``x_path`` and ``y_path`` are the ``.npy`` training arrays. Returns ``{"model", "engine",
    "cache_files_before", "cold": {...}, "warm": {...}}`` (the phases' keys are in the module
    docstring); with ``"error"`` added (and the phases that failed missing) when a worker fails.
    """
    out = {"model": model, "engine": engine}
    cache_dir = tempfile.mkdtemp(prefix="benchmarks-numba-cache-")
    try:
        out["cache_files_before"] = count_files(cache_dir)
        out["cold"] = _phase(model, engine, x_path, y_path, seed, cache_dir)
        out["warm"] = _phase(model, engine, x_path, y_path, seed, cache_dir)
    except Exception as error:  # noqa: BLE001 (reported in the run's output, the run goes on)
        out["error"] = f"{type(error).__name__}: {error}"
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return out
