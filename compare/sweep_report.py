"""A sweep's report: heatmaps of the final validation metrics, per engine, their difference, their spread.

:func:`summarize` reduces a sweep's results to one cell per combination of settings and engine:
the mean and the standard deviation over seeds of the final ``val_accuracy`` and ``val_loss``.
:func:`write_sweep_report` writes::

    index.html      self-contained (figures embedded)
    report.md       the same, figures linked
    results.json    every task's history and the per-cell summary
    figures/sweep-<metric>[-<other settings>].png

Each figure shows one metric on the grid of the first two swept settings (rows: the first,
columns: the second; a single setting gives one row; each combination of further settings gets
its own figure): tf.keras's mean, minitensor's mean, minitensor minus tf.keras, and each engine's
standard deviation over seeds (the spread that tells whether a difference means anything).
:func:`summarize` has an example; ``python -m compare --sweep`` calls :func:`write_sweep_report`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import itertools
import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .report import _finite

__all__ = ["METRICS", "summarize", "heatmap_figure", "write_sweep_report"]

#: The metrics drawn, with their labels.
METRICS = {"val_accuracy": "final validation accuracy", "val_loss": "final validation loss"}
_ENGINE_LABELS = {"keras": "tf.keras", "minitensor": "minitensor"}


def _final(history: dict, key: str) -> float:
    values = history.get(key) or [float("nan")]
    value = values[-1]
    return float("nan") if value is None else float(value)


def summarize(tasks, results) -> dict:
    """Per combination of settings and per engine, the mean and spread over seeds of each metric.

    Returns ``{settings: {engine: {metric: {"mean", "std", "n", "values"}}}}`` with ``settings``
    a tuple of ``(name, value)`` pairs. Tasks without a result (an interrupted sweep) are left
    out; ``std`` is the sample standard deviation (``nan`` for one seed). NaN finals (a
    diverged run) make the mean NaN: they are shown, not hidden.

    Example:
        >>> from types import SimpleNamespace as T
        >>> tasks = [T(settings=(("batch_size", 8),), engine="keras", seed=s) for s in (0, 1)]
        >>> results = [{"history": {"val_accuracy": [0.5, a], "val_loss": [1.0, 0.5]}} for a in (0.8, 0.9)]
        >>> cell = summarize(tasks, results)[(("batch_size", 8),)]["keras"]["val_accuracy"]
        >>> round(cell["mean"], 3), round(cell["std"], 4), cell["n"]
        (0.85, 0.0707, 2)
    """
    values: dict = {}
    for task, result in zip(tasks, results):
        if result is None:
            continue
        cell = values.setdefault(tuple(task.settings), {}).setdefault(task.engine, {m: [] for m in METRICS})
        for metric in METRICS:
            cell[metric].append(_final(result["history"], metric))
    summary: dict = {}
    for settings, engines in values.items():
        summary[settings] = {}
        for engine, metrics in engines.items():
            summary[settings][engine] = {}
            for metric, vals in metrics.items():
                array = np.asarray(vals, dtype=np.float64)
                summary[settings][engine][metric] = {
                    "mean": float(array.mean()),
                    "std": float(array.std(ddof=1)) if array.size > 1 else float("nan"),
                    "n": int(array.size),
                    "values": array.tolist(),
                }
    return summary


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    return f"{value:.3f}" if abs(value) >= 0.001 or value == 0 else f"{value:.1e}"


def _facets(grid: dict) -> list[tuple[tuple, str]]:
    """Each combination of the settings beyond the first two, with a file-name suffix."""
    rest = list(grid)[2:]
    if not rest:
        return [((), "")]
    out = []
    for values in itertools.product(*(grid[n] for n in rest)):
        pairs = tuple(zip(rest, values))
        out.append((pairs, "-" + "-".join(f"{n}={v}" for n, v in pairs)))
    return out


def _matrix(summary, grid, facet, engine, metric, stat):
    names = list(grid)
    rows = grid[names[0]]
    cols = grid[names[1]] if len(names) > 1 else [None]
    out = np.full((len(rows), len(cols)), np.nan)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            settings = {names[0]: r}
            if len(names) > 1:
                settings[names[1]] = c
            settings.update(dict(facet))
            key = tuple((n, settings[n]) for n in names)
            cell = summary.get(key, {}).get(engine, {}).get(metric)
            if cell is not None:
                out[i, j] = cell[stat]
    return out


def heatmap_figure(summary: dict, grid: dict, metric: str, path, facet: tuple = (), title: str = "") -> None:
    """Draw ``metric``'s heatmaps (see the module docstring) for one facet into ``path`` (PNG)."""
    plt = _pyplot()
    names = list(grid)
    rows = grid[names[0]]
    cols = grid[names[1]] if len(names) > 1 else [""]
    means = {e: _matrix(summary, grid, facet, e, metric, "mean") for e in _ENGINE_LABELS}
    spreads = {e: _matrix(summary, grid, facet, e, metric, "std") for e in _ENGINE_LABELS}
    difference = means["minitensor"] - means["keras"]
    panels = [
        (means["keras"], f"tf.keras: mean", "viridis", "mean"),
        (means["minitensor"], f"minitensor: mean", "viridis", "mean"),
        (difference, "minitensor − tf.keras", "RdBu_r", "diff"),
        (spreads["keras"], "tf.keras: std over seeds", "Purples", "spread"),
        (spreads["minitensor"], "minitensor: std over seeds", "Purples", "spread"),
    ]

    def limits(kind):
        arrays = [p[0] for p in panels if p[3] == kind]
        finite = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.zeros(0)
        if finite.size == 0:
            return (0.0, 1.0)
        if kind == "diff":
            bound = float(np.max(np.abs(finite))) or 1e-6
            return (-bound, bound)
        lo, hi = float(finite.min()), float(finite.max())
        return (lo, hi if hi > lo else lo + 1e-6)

    width = max(2.4, 0.75 * len(cols) + 1.2)
    height = max(1.6, 0.5 * len(rows) + 1.3)
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), squeeze=False)
    for ax, (matrix, label, cmap, kind) in zip(axes[0], panels):
        vmin, vmax = limits(kind)
        colormap = plt.get_cmap(cmap).with_extremes(bad="#dddddd")
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap=colormap, vmin=vmin, vmax=vmax, aspect="auto")
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                value = matrix[i, j]
                shade = image.norm(value) if np.isfinite(value) else 0.0
                dark = cmap == "viridis" and shade < 0.6 or cmap != "viridis" and abs(shade - (0.5 if kind == "diff" else 0)) > 0.35
                ax.text(j, i, _fmt(value), ha="center", va="center", fontsize=8, color="white" if dark else "black")
        ax.set_xticks(range(len(cols)), [str(c) for c in cols])
        ax.set_yticks(range(len(rows)), [str(r) for r in rows])
        if len(names) > 1:
            ax.set_xlabel(names[1])
        ax.set_ylabel(names[0])
        ax.set_title(label, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    facet_text = (", " + ", ".join(f"{n}={v}" for n, v in facet)) if facet else ""
    fig.suptitle(f"{METRICS.get(metric, metric)}{facet_text}" + (f" — {title}" if title else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" style="max-width:100%">'


def write_sweep_report(tasks: Sequence, results: Sequence, grid: dict, out_dir, *, meta: dict) -> dict:
    """Write the sweep's report into ``out_dir`` and return its ``results.json`` document.

    Args:
        tasks: the sweep's :class:`~compare.sweep.SweepTask` list.
        results: each task's result (``None`` for one that did not finish).
        grid: the swept settings and their values, in order.
        meta: run-wide facts (``command``, ``base``, ``seeds``, ``jobs``, ``scheduler``,
            ``threads``, ``total_seconds``, ``interrupted``, ``machine``); stored as given.
    """
    out_dir = Path(out_dir)
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    summary = summarize(tasks, results)
    drawn = []
    for facet, suffix in _facets(grid):
        for metric in METRICS:
            name = f"sweep-{metric}{suffix}.png"
            heatmap_figure(summary, grid, metric, figures / name, facet=facet, title=meta.get("base", ""))
            drawn.append((metric, facet, name))
    finished = sum(r is not None for r in results)
    cached = sum(1 for r in results if r is not None and r.get("from_cache"))
    resumed = sum(1 for r in results if r is not None and r.get("resumed"))
    document = {
        "kind": "sweep",
        "generated": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        **meta,
        "grid": grid,
        "tasks": {"total": len(tasks), "finished": finished, "keras_from_cache": cached, "from_earlier_run": resumed},
        "summary": [
            {"settings": [list(p) for p in settings], **engines} for settings, engines in summary.items()
        ],
        "runs": [
            None if r is None else {
                "settings": [list(p) for p in t.settings], "engine": t.engine, "seed": t.seed,
                "history": r["history"], "epochs_run": r["epochs_run"], "fit_seconds": r["fit_seconds"],
                "from_cache": r.get("from_cache", False), "from_earlier_run": r.get("resumed", False),
            }
            for t, r in zip(tasks, results)
        ],
        "figures": [f"figures/{name}" for _, _, name in drawn],
    }
    tmp = out_dir / "results.json.tmp"
    tmp.write_text(json.dumps(_finite(document), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / "results.json")

    intro = (
        f"Sweep of {meta.get('base', 'the base experiment')} over "
        + ", ".join(f"{n} = {', '.join(map(str, v))}" for n, v in grid.items())
        + f"; {meta.get('seeds', '?')} seed(s) per combination, both engines, independent mode (each engine draws "
        "its own weights and shuffles itself). "
        f"{finished} of {len(tasks)} runs finished"
        + (" (**interrupted**: run the same command again to continue)" if meta.get("interrupted") else "")
        + f"; {cached} tf.keras run(s) read from the result cache, {resumed} run(s) kept from an earlier, "
        "interrupted or identical sweep."
        + (f" Total wall time {meta['total_seconds']:.0f} s" if meta.get("total_seconds") is not None else "")
        + (f" on {meta['where']}." if meta.get("where") else ".")
    )
    md = ["# minitensor vs tf.keras: hyperparameter sweep", "", intro, ""]
    body = []
    for metric, facet, name in drawn:
        caption = METRICS[metric] + ("" if not facet else " (" + ", ".join(f"{n}={v}" for n, v in facet) + ")")
        md += [f"## {caption}", "", f"![{caption}](figures/{name})", ""]
        body += [f"<h2>{html.escape(caption)}</h2>", _img(figures / name, caption)]
    md += [
        "Cells: the mean over seeds of each run's final value; differences are minitensor minus tf.keras; "
        "spread is the sample standard deviation over seeds. Grey: no finished run, or a non-finite value. "
        "Every number is in results.json.",
        "",
    ]
    (out_dir / "report.md").write_text("\n".join(md), encoding="utf-8")
    page = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>minitensor vs tf.keras: hyperparameter sweep</title>",
        "<style>body{font-family:sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}"
        "h2{font-size:1.2em;border-bottom:1px solid #ddd}.meta{color:#555}</style></head><body>",
        "<h1>minitensor vs tf.keras: hyperparameter sweep</h1>",
        '<p class="meta">' + html.escape(intro).replace("**interrupted**", "<strong>interrupted</strong>") + "</p>",
        *body,
        '<p class="meta">' + html.escape(md[-2]) + "</p>",
        "</body></html>",
    ]
    (out_dir / "index.html").write_text("\n".join(page) + "\n", encoding="utf-8")
    return document
