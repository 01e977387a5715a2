"""Several whole runs (``--runs N``) combined into one row per model and engine.

Each run measures every model in every engine (fresh worker processes) and gives, per row, the
median epoch time over its timed rounds. Over the runs, :func:`aggregate_rows` reports:

* ``epoch_median_s``: the median of the runs' medians; with more than one run ``epoch_min_s`` and
  ``epoch_max_s`` are the smallest and largest of the runs' medians (``spread`` = ``"runs"``);
  with one run they stay the min and max over that run's rounds (``spread`` = ``"rounds"``);
* ``speedup_vs_baseline``: the median of the runs' speed-ups, each taken within its own run
  (baseline epoch / engine epoch of the same run), not the ratio of the medians; ``speedup_min``
  and ``speedup_max`` their range;
* ``first_epoch_s``, ``peak_rss_mib``, ``fraction_of_gemm_peak``: medians over the runs (each
  fraction against its own run's GEMM peak);
* ``run_epoch_median_s``, ``run_speedup_vs_baseline``, ``run_first_epoch_s``: the per-run values;
  ``runs`` (how many runs), ``runs_ok`` (how many measured the row).

Only runs whose row has ``status`` ``"ok"`` and an epoch median count; a row that failed in some
runs gets a note saying which. :func:`aggregate_cold_start` does the same for the cold and warm
first epochs of :mod:`benchmarks.coldstart`.

Example:
    >>> median_and_range([3.0, 1.0, 2.0])
    (2.0, 1.0, 3.0)
"""

from __future__ import annotations

import statistics

from .specs import MODELS, flops_per_row

__all__ = ["median_and_range", "aggregate_rows", "aggregate_cold_start"]


def median_and_range(values):
    """``(median, min, max)`` of the values that are not ``None``; ``(None, None, None)`` if none are."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None, None
    return statistics.median(values), min(values), max(values)


def _median(values):
    return median_and_range(values)[0]


def _combine(rows: list) -> dict:
    """One model and engine: its row of each run (in run order) combined into one."""
    ok = [r for r in rows if r["status"] == "ok" and r["epoch_median_s"] is not None]
    out = dict(ok[0] if ok else rows[0])
    out.update(runs=len(rows), runs_ok=len(ok))
    notes = []
    for row in ok or rows:
        notes += [n for n in row["notes"] if n not in notes]
    if len(rows) > 1:
        notes += [f"run {i}: {r['status']}: {r['reason']}" for i, r in enumerate(rows, 1)
                  if r["status"] != "ok"]
    out["notes"] = notes
    out["fell_back"] = any(r["fell_back"] for r in rows)
    out["epoch_s"] = [t for r in ok for t in r["epoch_s"]]
    out["fit_call_s"] = [t for r in ok for t in r["fit_call_s"]]
    out["load_average_per_round"] = [l for r in rows for l in r.get("load_average_per_round") or []]
    out["run_epoch_median_s"] = [r["epoch_median_s"] for r in ok]
    out["run_speedup_vs_baseline"] = [r["speedup_vs_baseline"] for r in ok]
    out["run_first_epoch_s"] = [r["first_epoch_s"] for r in ok]
    if ok:
        out["status"], out["reason"] = "ok", None
        out["diagnostics"] = ok[-1]["diagnostics"]
    out["spread"] = "rounds" if len(rows) == 1 else "runs"
    if not ok:
        out.update(speedup_min=None, speedup_max=None)
        return out
    if len(rows) > 1:
        median, low, high = median_and_range(out["run_epoch_median_s"])
        steps = out["steps_per_epoch"]
        out.update(epoch_median_s=median, epoch_min_s=low, epoch_max_s=high,
                   step_median_s=median / steps, step_min_s=low / steps, step_max_s=high / steps,
                   full_epoch_estimate_s=median / steps * out["full_steps_per_epoch"],
                   gflops=flops_per_row(MODELS[out["model"]].units) * out["rows"] / median / 1e9)
    speedup, out["speedup_min"], out["speedup_max"] = median_and_range(out["run_speedup_vs_baseline"])
    out["speedup_vs_baseline"] = speedup
    out["first_epoch_s"] = _median(out["run_first_epoch_s"])
    out["first_epoch_loop_s"] = _median([r["first_epoch_loop_s"] for r in ok])
    out["peak_rss_mib"] = _median([r["peak_rss_mib"] for r in ok])
    out["fraction_of_gemm_peak"] = _median([r["fraction_of_gemm_peak"] for r in ok])
    return out


def aggregate_rows(runs: list) -> list:
    """Combine ``runs`` (each a list of result rows, see :mod:`benchmarks.report`) into one row per
    model and engine, in the order they first appear (see the module docstring).

    Example:
        >>> row = {"model": "A", "engine": "x", "status": "ok", "reason": None, "rows": 1149,
        ...        "full_rows": 1149, "steps_per_epoch": 36, "full_steps_per_epoch": 36, "notes": [],
        ...        "fell_back": False, "epoch_s": [], "fit_call_s": [], "diagnostics": {},
        ...        "first_epoch_s": 1.0, "first_epoch_loop_s": 1.0, "peak_rss_mib": 40.0,
        ...        "fraction_of_gemm_peak": None, "speedup_vs_baseline": None}
        >>> runs = [[{**row, "epoch_median_s": t}] for t in (0.036, 0.018, 0.072)]
        >>> (combined,) = aggregate_rows(runs)
        >>> combined["epoch_median_s"], combined["epoch_min_s"], combined["epoch_max_s"], combined["step_median_s"]
        (0.036, 0.018, 0.072, 0.001)
    """
    grouped: dict = {}
    for rows in runs:
        for row in rows:
            grouped.setdefault((row["model"], row["engine"]), []).append(row)
    return [_combine(rows) for rows in grouped.values()]


def _phase_summary(measurements: list, phase: str) -> dict | None:
    values = [m[phase] for m in measurements if phase in m]
    if not values:
        return None
    out = {"runs": len(values)}
    for key in ("first_epoch_s", "ready_s", "total_s"):
        median, low, high = median_and_range([v[key] for v in values])
        out.update({key: median, key[:-2] + "_min_s": low, key[:-2] + "_max_s": high})
    out["per_run_first_epoch_s"] = [v["first_epoch_s"] for v in values]
    out["cache_files_after"] = [v["cache_files_after"] for v in values]
    out["fell_back"] = any(v["fell_back"] for v in values)
    return out


def aggregate_cold_start(runs: list) -> list:
    """Combine the runs' cold-start measurements (each a list of :func:`benchmarks.coldstart.measure_cold_warm`
    results) into one entry per model: medians and ranges of the cold and warm phases, and the errors.

    Example:
        >>> phase = lambda s: {"first_epoch_s": s, "ready_s": 1.0, "total_s": s + 1.0, "cache_files_after": 4,
        ...                    "fell_back": False}
        >>> runs = [[{"model": "A", "engine": "e", "cold": phase(c), "warm": phase(0.25)}] for c in (9.0, 7.0, 8.0)]
        >>> (a,) = aggregate_cold_start(runs)
        >>> a["cold"]["first_epoch_s"], a["cold"]["first_epoch_min_s"], a["cold"]["first_epoch_max_s"]
        (8.0, 7.0, 9.0)
    """
    grouped: dict = {}
    for measurements in runs:
        for m in measurements:
            grouped.setdefault((m["model"], m["engine"]), []).append(m)
    return [
        {
            "model": model,
            "engine": engine,
            "runs": len(measurements),
            "cold": _phase_summary(measurements, "cold"),
            "warm": _phase_summary(measurements, "warm"),
            "errors": [f"run {i}: {m['error']}" for i, m in enumerate(measurements, 1) if "error" in m],
        }
        for (model, engine), measurements in grouped.items()
    ]
