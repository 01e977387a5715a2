"""The machine and software a run measured: CPU, cores, load, BLAS threads, environment, versions.

Nothing here imports TensorFlow, PyTorch or JAX: their versions come from the installed
distributions' metadata. Environment variables that steer threading or kernels (``OPENBLAS_*``,
``OMP_NUM_THREADS``, ``TF_ENABLE_ONEDNN_OPTS``, ...) are recorded as found, never set or unset.

Example:
    >>> info = machine_info()
    >>> sorted(info)[:3]
    ['blas', 'cores_available', 'cores_total']
"""

from __future__ import annotations

import os
import platform
import re
import socket
import sys
from importlib import metadata

import numpy as np

__all__ = ["machine_info", "blas_info", "source_info", "versions", "load_average", "subnormals_flushed", "host_name", "RECORDED_ENV_PREFIXES"]

#: Environment variables recorded when present (exact names, or prefixes ending in ``_``).
RECORDED_ENV_PREFIXES = (
    "OPENBLAS_", "OMP_", "MKL_", "GOTO_NUM_THREADS", "BLIS_NUM_THREADS", "NUMBA_", "KERAS_BACKEND",
    "TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "TF_CPP_MIN_LOG_LEVEL",
    "TF_XLA_FLAGS", "XLA_FLAGS", "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED",
)


def host_name() -> str:
    """The host name, reduced to characters safe in a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list:
    """The SIMD extensions that matter for float32 GEMM, as /proc/cpuinfo lists them."""
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in flags]
    except OSError:
        pass
    return []


def load_average():
    """The 1, 5 and 15 minute load averages (``None`` where the OS does not report them)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def blas_info() -> list:
    """The thread pools threadpoolctl sees (BLAS, OpenMP), NumPy's BLAS first; a note without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl is not installed: BLAS library and thread count unknown"}]
    keep = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "architecture", "filepath")
    infos = [{k: info.get(k) for k in keep} for info in threadpool_info()]
    # NumPy's BLAS first (SciPy and others may load their own)
    return sorted(infos, key=lambda info: "numpy" not in str(info.get("filepath", "")))


def subnormals_flushed() -> bool:
    """True if float32 arithmetic in this thread flushes subnormal results to zero (FTZ/DAZ set).

    NumPy leaves the CPU's default (subnormals kept); a library that sets flush-to-zero for the
    main thread would change what the reference path measures, so the run records this check.
    """
    tiny = np.array([1e-39], dtype=np.float32)
    return bool((tiny * np.float32(0.5))[0] == 0)


def machine_info() -> dict:
    """CPU model and SIMD flags, cores, host, OS, BLAS threads, recorded environment variables, load."""
    env = {
        key: value
        for key, value in sorted(os.environ.items())
        if any(key == p or (p.endswith("_") and key.startswith(p)) for p in RECORDED_ENV_PREFIXES)
    }
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count()
    return {
        "host": host_name(),
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores_total": os.cpu_count(),
        "cores_available": available,
        "platform": platform.platform(),
        "blas": blas_info(),
        "env": env,
        "openblas_env": {k: v for k, v in env.items() if k.startswith("OPENBLAS_")},
        "load_average": load_average(),
        "subnormals_flushed_in_main_thread": subnormals_flushed(),
    }


def source_info() -> dict:
    """The git commit of the checkout the benchmarks run from, and whether it has uncommitted changes.

    ``{"commit": None, ...}`` outside a git checkout (or without git).
    """
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--", "minitensor"], cwd=root,
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "minitensor_dirty": None, "minitensor_changes": []}
    changes = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    return {"commit": commit.stdout.strip(), "minitensor_dirty": bool(changes), "minitensor_changes": changes}


def _distribution_version(*names):
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def versions() -> dict:
    """Versions of Python and of every package a run may use (``None`` when not installed)."""
    return {
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "numpy": np.__version__,
        "numba": _distribution_version("numba"),
        "tensorflow": _distribution_version("tensorflow", "tensorflow-cpu"),
        "keras": _distribution_version("keras"),
        "minitensor": _distribution_version("minitensor"),
        "scikit-learn": _distribution_version("scikit-learn"),
        "threadpoolctl": _distribution_version("threadpoolctl"),
        "torch": _distribution_version("torch"),
        "jax": _distribution_version("jax"),
    }
