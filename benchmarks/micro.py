"""Two measurements beside the models: the machine's float32 GEMM peak, and Adam on subnormals.

**GEMM peak** (:func:`gemm_peak`): ``np.dot`` of two square float32 matrices (``out=`` a
preallocated result), the median of several repeats after one untimed call; ``2*n**3`` FLOPs per
product. This is what NumPy's BLAS reaches on this machine with its current thread count (read
with threadpoolctl), the yardstick for model L's GFLOP/s.

**Matrix products of one training step** (:func:`gemm_training_step`): only the ``np.dot``
calls one step of a Dense stack needs (forward ``X @ W`` per layer; backward ``X.T @ dY`` per
layer and ``dY @ W.T`` for every layer but the first), on contiguous float32 arrays with
preallocated outputs; nothing else. For model L this is the floor for a NumPy/BLAS engine.

**Adam on subnormal moments** (:func:`adam_subnormal`): minitensor's reference ``Adam`` updating
one float32 vector the size of model L (669,706 parameters), ``iterations`` preset to 1000, in
three cases that differ only in the 196,608 entries of L's first-layer border weights (29%):

* ``normal``: every gradient and first moment is an ordinary float32 (no zero gradients);
* ``subnormal``: those entries have gradient 0 and first moment +-1e-39 (a float32 subnormal),
  the state Adam's moments decay into under a gradient that stays 0;
* ``zero``: those entries have gradient 0 and first moment 0 (what flushing to zero leaves).

Each case restores the state with ``set_state`` before each repeat (untimed), then times
``steps`` calls of ``apply_gradients``; the median time per update is reported, and the share of
those entries' moments still subnormal afterwards (0 when the engine flushes them).

Example:
    >>> peak = gemm_peak(n=64, repeats=2)
    >>> peak["gflops"] > 0
    True
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from .data import border_mask
from .specs import MODELS

__all__ = ["gemm_peak", "gemm_training_step", "adam_subnormal", "blas_threads"]


def blas_threads():
    """``(threads, source)``: threads of the BLAS that NumPy uses, as threadpoolctl reports them.

    Several BLAS libraries may be loaded (SciPy brings its own); NumPy's is the one whose file
    lies under ``numpy.libs`` or is named after NumPy's build, else the first one listed.
    Returns ``(None, "unknown ...")`` without threadpoolctl.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None, "unknown (threadpoolctl not installed)"
    blas = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    if not blas:
        return None, "unknown (threadpoolctl found no BLAS)"
    numpy_blas = [info for info in blas if "numpy" in str(info.get("filepath", ""))]
    info = (numpy_blas or blas)[0]
    return info.get("num_threads"), f"threadpoolctl: {info.get('internal_api')} {info.get('version')}"


def gemm_peak(n: int = 2048, repeats: int = 7, seed: int = 0) -> dict:
    """Measure float32 ``np.dot`` of two ``n x n`` matrices; return seconds, GFLOP/s and threads."""
    rng = np.random.default_rng(seed)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.dot(a, b, out=c)  # untimed: first-call costs (thread start-up, page faults on c)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.dot(a, b, out=c)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    threads, source = blas_threads()
    flops = 2.0 * n**3
    return {
        "n": n,
        "repeats": repeats,
        "seconds": seconds,
        "median_s": median,
        "gflops": flops / median / 1e9,
        "gflops_best": flops / min(seconds) / 1e9,
        "blas_threads": threads,
        "blas_threads_source": source,
    }


def gemm_training_step(units=(784, 512, 512, 10), batch: int = 128, steps: int = 20, repeats: int = 5,
                       seed: int = 0) -> dict:
    """Time the matrix products of one training step of a Dense stack (see the module docstring).

    Returns:
        ``units``, ``batch``, ``steps``, ``repeats``, ``seconds_per_step`` (one median per repeat
        of ``steps`` steps), ``median_s``, ``min_s``, ``max_s``, ``flops_per_step`` and ``gflops``.
    """
    from .specs import flops_per_row

    rng = np.random.default_rng(seed)
    acts = [rng.random((batch, u), dtype=np.float32) for u in units]  # inputs of each layer, and the output
    kernels = [rng.random((a, b), dtype=np.float32) for a, b in zip(units[:-1], units[1:])]
    douts = [np.empty((batch, b), dtype=np.float32) for b in units[1:]]
    dkernels = [np.empty_like(k) for k in kernels]
    dins = [np.empty((batch, a), dtype=np.float32) for a in units[:-1]]

    def step():
        for i, k in enumerate(kernels):
            np.dot(acts[i], k, out=acts[i + 1] if i + 1 < len(kernels) else douts[-1])
        for i in reversed(range(len(kernels))):
            np.dot(acts[i].T, douts[i], out=dkernels[i])
            if i > 0:
                np.dot(douts[i], kernels[i].T, out=douts[i - 1])

    step()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        seconds.append((time.perf_counter() - start) / steps)
    median = statistics.median(seconds)
    flops = flops_per_row(units) * batch
    return {"units": list(units), "batch": batch, "steps": steps, "repeats": repeats, "seconds_per_step": seconds,
            "median_s": median, "min_s": min(seconds), "max_s": max(seconds), "flops_per_step": flops,
            "gflops": flops / median / 1e9}


def _adam_case(case: str, size: int, mask: np.ndarray, rng):
    g = (rng.standard_normal(size) * 1e-3).astype(np.float32)
    m = (rng.standard_normal(size) * 1e-4).astype(np.float32)
    v = (rng.random(size) * 1e-6 + 1e-8).astype(np.float32)
    if case == "subnormal":
        g[mask] = 0
        m[mask] = np.float32(1e-39) * rng.choice(np.array([-1, 1], dtype=np.float32), size=int(mask.sum()))
    elif case == "zero":
        g[mask] = 0
        m[mask] = 0
    return g, m, v


def adam_subnormal(steps: int = 20, repeats: int = 5, seed: int = 0) -> dict:
    """Time minitensor's reference ``Adam.apply_gradients`` on normal, subnormal and zero moments.

    Returns:
        A dict with ``parameters``, ``affected`` (entries that differ between cases), ``steps``,
        ``repeats``, and per case ``seconds_per_update`` (one median per repeat), ``median_s``,
        ``min_s``, ``max_s`` and ``subnormal_share_after`` (of the affected entries' moments);
        plus ``slowdown_subnormal_vs_zero``.
    """
    from minitensor import Tensor
    from minitensor.optimizers import Adam

    spec = MODELS["L"]
    size = spec.n_params
    mask = np.zeros(size, dtype=bool)
    first_kernel = spec.units[0] * spec.units[1]
    mask[:first_kernel] = np.repeat(border_mask(), spec.units[1])  # kernel (784, 512), row-major
    rng = np.random.default_rng(seed)
    out = {"parameters": size, "affected": int(mask.sum()), "steps": steps, "repeats": repeats,
           "engine": "minitensor reference Adam (minitensor.optimizers.Adam.apply_gradients)", "cases": {}}
    inputs = {case: _adam_case(case, size, mask, rng) for case in ("normal", "subnormal", "zero")}
    weights = (rng.standard_normal(size) * 0.05).astype(np.float32)
    per_case = {case: [] for case in inputs}
    after = {}
    for _ in range(repeats):
        for case, (g, m, v) in inputs.items():  # cases alternate within each repeat
            w = Tensor(weights.copy())
            opt = Adam()
            opt.build([w])
            opt.set_state([np.array(1000, dtype=np.int64), m.copy(), v.copy()])
            start = time.perf_counter()
            for _ in range(steps):
                opt.apply_gradients([(g, w)])
            per_case[case].append((time.perf_counter() - start) / steps)
            m_after = opt.get_state()[1][mask]
            tiny = np.finfo(np.float32).tiny
            after[case] = float(np.count_nonzero((m_after != 0) & (np.abs(m_after) < tiny)) / mask.sum())
    for case, seconds in per_case.items():
        out["cases"][case] = {
            "seconds_per_update": seconds,
            "median_s": statistics.median(seconds),
            "min_s": min(seconds),
            "max_s": max(seconds),
            "subnormal_share_after": after[case],
        }
    out["slowdown_subnormal_vs_zero"] = out["cases"]["subnormal"]["median_s"] / out["cases"]["zero"]["median_s"]
    return out
