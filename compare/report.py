"""The side-by-side report: figures, ``index.html``, ``report.md`` and ``results.json``.

:func:`write_report` writes one folder::

    index.html      self-contained (CSS inline, figures embedded as base64 data URIs): opens from disk
    report.md       the same summary in Markdown, figures linked from figures/
    results.json    everything measured, machine-readable (schema below)
    figures/        PNG figures (matplotlib, Agg backend)
        <experiment>.png            loss and accuracy per epoch, both engines on the same axes
                                    (train solid, validation dashed; Keras wide and pale, minitensor
                                    thin and dark, so that curves which coincide stay visible), and,
                                    for paired runs, the relative difference of the losses per epoch
                                    (or per step, when recorded) against the tolerance
        <experiment>-confusion.png  multiclass only: both engines' confusion matrices on the test split
        parity.png                  every experiment's largest relative loss difference vs tolerance
        timing.png                  steady-state seconds per epoch of each engine, per experiment

``results.json`` schema (``schema_version`` 1)::

    {
      "schema_version": 1,          (strict JSON: NaN and infinities are written as null)
      "generated": ISO-8601 time, "command": the command line,
      "mode": "parity" | "independent", "seed": base seed, "seeds": seeds per multi-seed experiment,
      "epochs_scale": factor applied to every experiment's epochs,
      "interrupted": true if stopped by Ctrl-C (only finished experiments are listed),
      "total_seconds": wall time of the whole comparison,
      "machine": {platform, machine, processor, cpu_count, python, tf_enable_onednn_opts,
                  blas_libraries: the BLAS libraries loaded and their default thread counts},
      "blas_threads": the --blas-threads limit on NumPy's BLAS, or null (each library's default),
      "execution": {jobs: worker processes (1: in one process), scheduler: a Dask scheduler's address
                    or null, threads_per_job: BLAS and TensorFlow threads of each worker},
      "cache": {enabled, directory: the tf.keras result cache, keras_from_cache: [names of the
                experiments whose tf.keras runs were read from it rather than trained]},
      "versions": {"keras": {...}, "minitensor": {...}},
      "order": how batch order was fixed (see each experiment's "order" for its row count),
      "tolerance_rules": {"strict": text, "chaotic": text, "distribution": text},
      "summary": {"experiments": n, "passed": n, "failed": [names], "no_verdict": [names]},
      "experiments": [
        {
          "name", "spec": the Experiment (compare.experiments.Experiment.to_dict),
          "mode", "seeds": [int], "weights_from": "keras" | "own", "order": {method, description, ...},
          "reused_from": null, or the earlier experiment with the same model and training whose runs
              these are (training is deterministic given the seed, so it is not repeated),
          "tolerance": {"rule": "strict" | "chaotic" | "distribution", ...criterion and numbers},
          "verdict": {"passed": true | false | null, "verdict": short text, "detail": sentence},
          "comparison": compare.parity.compare_pair(...) or compare_distribution(...),
          "sensitivity": null or Keras-vs-nudged-Keras per-step divergence (chaotic rule),
          "runs": {"keras": [run], "minitensor": [run]},   one run per seed, run =
              {seed, history: {key: [float per epoch]}, epochs_run, steps_per_epoch,
               epoch_seconds: [float], first_epoch_seconds, steady_epoch_seconds, step_seconds,
               fit_seconds, per_step_logging (the loss after every step was recorded), from_cache
               (read from the result cache; its times are those measured when it was trained),
               test_loss, test_accuracy, confusion: [[int]] | null},
          "figures": {"curves": "figures/<name>.png", "confusion": path | null}
        }, ...
      ]
    }

Usage (``outcomes`` from :func:`compare.engines.run_experiment`, one per experiment)::

    write_report(outcomes, "report", meta={"mode": "parity", "seed": 42})
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import re
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .engines import ENGINES, ExperimentOutcome, RunResult
from .parity import CHAOTIC_STEP_FRACTION, DISTRIBUTION_FLOOR, DISTRIBUTION_SIGMAS, STRICT_RTOL, assess

__all__ = ["SCHEMA_VERSION", "COLORS", "ENGINE_LABELS", "write_report", "results_document", "summary_rows"]

SCHEMA_VERSION = 1
#: One colour per engine, used in every figure.
COLORS = {"keras": "#d62728", "minitensor": "#1f4e9c", "nudged": "#7f7f7f"}
#: How each engine is named in figures and tables.
ENGINE_LABELS = {"keras": "tf.keras", "minitensor": "minitensor"}
_LINE = {"keras": dict(linewidth=4.5, alpha=0.35), "minitensor": dict(linewidth=1.4, alpha=1.0)}
_DISPLAY_FLOOR = 1e-9  # relative differences below this (exact zeros included) are drawn at it

_RULE_TEXT = {
    "strict": "same weights, same batches in the same order, no dropout: per-epoch loss and val_loss "
    f"must agree to a relative {STRICT_RTOL:g}, over the same number of epochs",
    "chaotic": f"as strict; where the losses part, minitensor must stay within {STRICT_RTOL:g} of Keras for "
    f"at least {CHAOTIC_STEP_FRACTION:g} x the steps Keras stays within {STRICT_RTOL:g} of itself with every "
    "weight nudged by one ulp after every step (the run's own sensitivity to round-off)",
    "distribution": "dropout (masks cannot be shared) or independent mode: the mean final accuracy "
    f"over seeds must agree within {DISTRIBUTION_SIGMAS:g} standard errors + {DISTRIBUTION_FLOOR:g}",
}


# --------------------------------------------------------------------------------------------
# results.json
# --------------------------------------------------------------------------------------------


def _run_dict(run: RunResult) -> dict:
    return {
        "seed": run.seed,
        "history": run.history,
        "epochs_run": run.epochs_run,
        "steps_per_epoch": run.steps_per_epoch,
        "epoch_seconds": run.epoch_seconds,
        "first_epoch_seconds": run.first_epoch_seconds,
        "steady_epoch_seconds": run.steady_epoch_seconds,
        "step_seconds": run.step_seconds,
        "fit_seconds": run.fit_seconds,
        "per_step_logging": run.step_losses is not None,
        "from_cache": run.from_cache,
        "test_loss": run.test_loss,
        "test_accuracy": run.test_accuracy,
        "confusion": None if run.confusion is None else run.confusion.tolist(),
    }


def results_document(
    outcomes: Sequence[ExperimentOutcome], meta: dict, assessments: Sequence[dict] | None = None
) -> dict:
    """The ``results.json`` document (a dict) for ``outcomes``; see the module docstring.

    Args:
        outcomes: the finished experiments.
        meta: ``mode``, ``seed``, ``seeds``, ``epochs_scale``, ``interrupted``, ``total_seconds``,
            ``command``, ``machine``, ``blas_threads`` (any missing key is recorded as ``None``).
        assessments: :func:`compare.parity.assess` of each outcome (computed if omitted).
    """
    assessments = list(assessments) if assessments is not None else [assess(o) for o in outcomes]
    experiments = []
    versions: dict = {}
    for outcome, assessment in zip(outcomes, assessments):
        name = outcome.experiment.name
        for engine in ENGINES:
            if outcome.runs[engine]:
                versions.setdefault(engine, outcome.runs[engine][0].versions)
        experiments.append(
            {
                "name": name,
                "spec": outcome.experiment.to_dict(),
                "mode": outcome.mode,
                "seeds": outcome.seeds,
                "weights_from": outcome.weights_from,
                "reused_from": outcome.reused_from,
                "order": outcome.order,
                "tolerance": assessment["tolerance"],
                "verdict": assessment["verdict"],
                "comparison": assessment["comparison"],
                "sensitivity": assessment["sensitivity"],
                "runs": {engine: [_run_dict(r) for r in outcome.runs[engine]] for engine in ENGINES},
                "figures": {
                    "curves": f"figures/{name}.png",
                    "confusion": f"figures/{name}-confusion.png" if _has_confusion(outcome) else None,
                },
            }
        )
    verdicts = [(e["name"], e["verdict"]["passed"]) for e in experiments]
    mode = meta.get("mode")
    return {
        "schema_version": SCHEMA_VERSION,
        "generated": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": meta.get("command"),
        "mode": mode,
        "seed": meta.get("seed"),
        "seeds": meta.get("seeds"),
        "epochs_scale": meta.get("epochs_scale"),
        "interrupted": bool(meta.get("interrupted", False)),
        "total_seconds": meta.get("total_seconds"),
        "machine": meta.get("machine"),
        "blas_threads": meta.get("blas_threads"),
        "execution": meta.get("execution"),
        "cache": _cache_summary(meta.get("cache"), outcomes),
        "versions": versions,
        "order": _order_summary(mode),
        "tolerance_rules": dict(_RULE_TEXT),
        "summary": {
            "experiments": len(experiments),
            "passed": sum(1 for _, p in verdicts if p is True),
            "failed": [n for n, p in verdicts if p is False],
            "no_verdict": [n for n, p in verdicts if p is None],
        },
        "experiments": experiments,
    }


def _cache_summary(cache: dict | None, outcomes: Sequence[ExperimentOutcome]) -> dict:
    """The result cache's settings and which experiments' tf.keras runs it served."""
    served = []
    for outcome in outcomes:
        runs = list(outcome.runs["keras"]) + ([outcome.sensitivity] if outcome.sensitivity is not None else [])
        if runs and any(r.from_cache for r in runs):
            served.append(outcome.experiment.name)
    return {**(cache or {"enabled": False, "directory": None}), "keras_from_cache": served}


def _order_summary(mode: str | None) -> str:
    if mode == "independent":
        return (
            "Each engine shuffled on its own (shuffle=True) after being seeded with the same seed; "
            "weights were drawn by each engine."
        )
    return (
        "Both engines started from the weights Keras drew after keras.utils.set_random_seed(seed) "
        "(copied into minitensor with set_weights) and were fit with shuffle=False on the training "
        "rows permuted once by numpy.random.default_rng(seed).permutation: the same batches in the "
        "same order in every epoch. Keras's own shuffle order was not used."
    )


def _finite(value):
    """``value`` with every NaN or infinite float replaced by ``None`` (strict JSON has neither)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _has_confusion(outcome: ExperimentOutcome) -> bool:
    return all(outcome.runs[e] and outcome.runs[e][0].confusion is not None for e in ENGINES)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _metric_keys(history: dict) -> tuple[str, str]:
    acc = next((k for k in history if not k.startswith("val_") and k != "loss"), "accuracy")
    return "loss", acc


def _epochs_axis(values) -> np.ndarray:
    return np.arange(1, len(values) + 1)


def _plot_pair_curves(ax, runs: dict[str, RunResult], key: str):
    for engine in ENGINES:
        run = runs[engine]
        for prefix, style in (("", "-"), ("val_", "--")):
            values = run.history.get(prefix + key)
            if not values:
                continue
            label = f"{ENGINE_LABELS[engine]} {'validation' if prefix else 'train'}"
            ax.plot(_epochs_axis(values), values, style, color=COLORS[engine], label=label, **_LINE[engine])


def _plot_distribution_curves(ax, runs: dict[str, list[RunResult]], key: str):
    for engine in ENGINES:
        for prefix, style in (("", "-"), ("val_", "--")):
            series = [r.history.get(prefix + key) for r in runs[engine]]
            series = [s for s in series if s]
            if not series:
                continue
            length = min(len(s) for s in series)
            stacked = np.array([s[:length] for s in series])
            x = _epochs_axis(stacked[0])
            label = f"{ENGINE_LABELS[engine]} {'validation' if prefix else 'train'}"
            ax.plot(x, stacked.mean(axis=0), style, color=COLORS[engine], label=label + f" (mean of {len(series)})",
                    **_LINE[engine])
            if len(series) > 1:
                ax.fill_between(x, stacked.min(axis=0), stacked.max(axis=0), color=COLORS[engine], alpha=0.12,
                                linewidth=0)


def _display(values) -> np.ndarray:
    """Relative differences ready for a log axis: at least the display floor, non-finite ones at 1."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), np.maximum(values, _DISPLAY_FLOOR), 1.0)


def _placeholder(path: Path, text: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_divergence(ax, outcome: ExperimentOutcome, assessment: dict):
    comparison = assessment["comparison"]
    rtol = assessment["tolerance"]["rtol"]
    steps = comparison.get("steps")
    spe = outcome.runs["keras"][0].steps_per_epoch or 1
    if steps and steps["rel_curve"]["step"]:
        curve = steps["rel_curve"]
        x = np.asarray(curve["step"]) / spe
        ax.plot(x, _display(curve["max_rel"]), color=COLORS["minitensor"], linewidth=1.2,
                label="minitensor vs tf.keras, per step")
        sensitivity = assessment.get("sensitivity")
        if sensitivity and sensitivity["rel_curve"]["step"]:
            s_curve = sensitivity["rel_curve"]
            ax.plot(np.asarray(s_curve["step"]) / spe, _display(s_curve["max_rel"]),
                    color=COLORS["nudged"], linewidth=1.2, label="tf.keras vs itself nudged 1 ulp/step")
        ax.set_xlabel("epoch (per-step running-average loss)")
    for key, style in (("loss", "o-"), ("val_loss", "s--")):
        info = comparison["keys"].get(key)
        if not info or "per_epoch" not in info:
            continue
        rel = _display(info["per_epoch"])
        ax.plot(_epochs_axis(rel), rel, style, color="black", markersize=3, linewidth=1,
                label=f"{key}, per epoch")
    if not (steps and steps["rel_curve"]["step"]):
        ax.set_xlabel("epoch")
    ax.axhline(rtol, color="#2ca02c", linestyle=":", linewidth=1.5, label=f"tolerance {rtol:g}")
    ax.set_yscale("log")
    ax.set_ylim(_DISPLAY_FLOOR * 0.5, 2.0)
    ax.set_ylabel("relative difference")
    ax.set_title("Engines' difference (0 drawn at 1e-9, NaN at 1)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")


def _curves_figure(outcome: ExperimentOutcome, assessment: dict, path: Path) -> None:
    plt = _pyplot()
    experiment = outcome.experiment
    paired = assessment["tolerance"]["rule"] != "distribution"
    ncols = 3 if paired else 2
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.2))
    loss_key, acc_key = _metric_keys(outcome.runs["keras"][0].history)
    for ax, key, title in ((axes[0], loss_key, "Loss"), (axes[1], acc_key, "Accuracy")):
        if paired:
            _plot_pair_curves(ax, {e: outcome.runs[e][0] for e in ENGINES}, key)
        else:
            _plot_distribution_curves(ax, outcome.runs, key)
        ax.set_title(f"{title} ({key})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    if paired:
        _plot_divergence(axes[2], outcome, assessment)
    verdict = assessment["verdict"]
    fig.suptitle(
        f"{experiment.name}: {experiment.title}\n{experiment.architecture}, {experiment.optimizer_label()}, "
        f"batch {experiment.batch_size}, verdict: {verdict['verdict']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _confusion_figure(outcome: ExperimentOutcome, path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    matrices = [outcome.runs[e][0].confusion for e in ENGINES]
    vmax = max(int(m.max()) for m in matrices)
    for ax, engine, matrix in zip(axes, ENGINES, matrices):
        run = outcome.runs[engine][0]
        image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=vmax)
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                if matrix[i, j]:
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if matrix[i, j] > vmax / 2 else "black")
        ax.set_xticks(range(matrix.shape[1]))
        ax.set_yticks(range(matrix.shape[0]))
        ax.set_xlabel("predicted digit")
        ax.set_ylabel("true digit")
        ax.set_title(f"{ENGINE_LABELS[engine]}: test accuracy {run.test_accuracy:.4f}", color=COLORS[engine])
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="test images")
    seed_note = f" (seed {outcome.seeds[0]})" if len(outcome.seeds) > 1 else ""
    fig.suptitle(f"{outcome.experiment.name}: confusion matrices on the test split (360 images){seed_note}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _parity_figure(outcomes, assessments, path: Path) -> None:
    plt = _pyplot()
    names, values, colors = [], [], []
    for outcome, assessment in zip(outcomes, assessments):
        if assessment["tolerance"]["rule"] == "distribution":
            continue
        worst = max(
            (info["max"] for key, info in assessment["comparison"]["keys"].items()
             if key in assessment["tolerance"]["keys"] and "max" in info),
            default=0.0,
        )
        names.append(outcome.experiment.name)
        values.append(float(_display(worst)))
        passed = assessment["verdict"]["passed"]
        colors.append("#2ca02c" if passed and worst <= assessment["tolerance"]["rtol"] else
                      ("#ff7f0e" if passed else "#d62728"))
    if not names:
        _placeholder(path, "No paired experiment finished.")
        return
    fig, ax = plt.subplots(figsize=(9, 0.35 * max(len(names), 3) + 1.6))
    y = np.arange(len(names))
    ax.barh(y, values, color=colors)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(_DISPLAY_FLOOR / 3, max([1e-3, *[10 * v for v in values]]))
    ax.axvline(STRICT_RTOL, color="black", linestyle=":", label=f"tolerance {STRICT_RTOL:g}")
    ax.set_xlabel("largest relative difference of per-epoch loss / val_loss (0 drawn at 1e-9)")
    ax.set_title(f"Parity per experiment (green: within {STRICT_RTOL:g}, orange: chaotic run that parted as "
                 "Keras parts from itself, red: mismatch)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _timing_figure(rows: list[dict], path: Path) -> None:
    plt = _pyplot()
    names = [r["name"] for r in rows]
    if not names:
        _placeholder(path, "No experiment finished.")
        return
    fig, ax = plt.subplots(figsize=(9, 0.4 * max(len(names), 3) + 1.6))
    y = np.arange(len(names))
    height = 0.38
    for offset, engine in ((-height / 2, "keras"), (height / 2, "minitensor")):
        values = [r[f"epoch_seconds_{engine}"] or 0.0 for r in rows]
        ax.barh(y + offset, values, height=height, color=COLORS[engine], label=ENGINE_LABELS[engine])
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("seconds per epoch (median after the first epoch, validation included)")
    ax.set_title("Time per epoch")
    ax.legend(fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Tables and documents
# --------------------------------------------------------------------------------------------


def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def summary_rows(outcomes: Sequence[ExperimentOutcome], assessments: Sequence[dict]) -> list[dict]:
    """One dict per experiment with the figures of the summary table."""
    rows = []
    for outcome, assessment in zip(outcomes, assessments):
        row = {"name": outcome.experiment.name, "rule": assessment["tolerance"]["rule"],
               "verdict": assessment["verdict"]}
        for engine in ENGINES:
            runs = outcome.runs[engine]
            _, acc_key = _metric_keys(runs[0].history)
            losses = [r.history["loss"][-1] for r in runs]
            accs = [r.history[acc_key][-1] for r in runs]
            row[f"loss_{engine}"] = (float(np.mean(losses)), float(np.std(losses, ddof=1)) if len(losses) > 1 else None)
            row[f"accuracy_{engine}"] = (float(np.mean(accs)), float(np.std(accs, ddof=1)) if len(accs) > 1 else None)
            row[f"epoch_seconds_{engine}"] = _median([r.steady_epoch_seconds for r in runs])
            row[f"step_seconds_{engine}"] = _median([r.step_seconds for r in runs])
            row[f"epochs_{engine}"] = [r.epochs_run for r in runs]
        row["per_step_logging"] = any(r.step_losses is not None for e in ENGINES for r in outcome.runs[e])
        row["keras_from_cache"] = any(r.from_cache for r in outcome.runs["keras"])
        if assessment["tolerance"]["rule"] == "distribution":
            row["max_rel_loss"] = None
        else:
            keys = assessment["comparison"]["keys"]
            row["max_rel_loss"] = max(
                (keys[k]["max"] for k in assessment["tolerance"]["keys"] if k in keys and "max" in keys[k]),
                default=None,
            )
        k, m = row["epoch_seconds_keras"], row["epoch_seconds_minitensor"]
        row["speed_ratio"] = (k / m) if k and m else None
        rows.append(row)
    return rows


def _fmt_number(value: float) -> str:
    return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"


def _fmt_value(pair) -> str:
    mean, std = pair
    return _fmt_number(mean) if std is None else f"{_fmt_number(mean)} ± {_fmt_number(std)}"


def _fmt_seconds(value) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _fmt_verdict(verdict: dict) -> str:
    mark = {True: "✅", False: "❌", None: "–"}[verdict["passed"]]
    return f"{mark} {verdict['verdict']}"


_STEP_NOTE = (
    "† the loss after every step was recorded (to locate where chaotic runs part); tf.keras records it inside "
    "its compiled training step, so it still runs a whole epoch per TensorFlow call, as in every other run."
)
_CACHE_NOTE = (
    "‡ tf.keras's runs were read from the result cache (trained earlier with the same spec, seed and "
    "software); their times are those measured then."
)

_TABLE_HEADER = [
    "experiment", "rule", "final train loss tf.keras", "final train loss minitensor", "final train accuracy tf.keras",
    "final train accuracy minitensor", "max rel. diff (loss)", "verdict", "time/epoch tf.keras",
    "time/epoch minitensor", "speed ratio",
]


def _table_cells(row: dict) -> list[str]:
    ratio = row["speed_ratio"]
    mark = " †" if row.get("per_step_logging") else ""
    return [
        row["name"],
        row["rule"],
        _fmt_value(row["loss_keras"]),
        _fmt_value(row["loss_minitensor"]),
        _fmt_value(row["accuracy_keras"]),
        _fmt_value(row["accuracy_minitensor"]),
        "–" if row["max_rel_loss"] is None else f"{row['max_rel_loss']:.1e}",
        _fmt_verdict(row["verdict"]),
        _fmt_seconds(row["epoch_seconds_keras"]) + mark + (" ‡" if row.get("keras_from_cache") else ""),
        _fmt_seconds(row["epoch_seconds_minitensor"]) + mark,
        "–" if ratio is None else f"{ratio:.2f}×",
    ]


def _markdown(document: dict, rows: list[dict], outcomes, assessments) -> str:
    lines = [
        "# minitensor vs tf.keras: the lesson side by side",
        "",
        _intro_text(document),
        "",
        "| " + " | ".join(_TABLE_HEADER) + " |",
        "|" + "|".join("---" for _ in _TABLE_HEADER) + "|",
    ]
    lines += ["| " + " | ".join(_table_cells(row)) + " |" for row in rows]
    lines += [
        "",
        "Speed ratio = tf.keras seconds per epoch / minitensor seconds per epoch (above 1: minitensor is faster). "
        "Times are medians of the epochs after the first; the first epoch (tracing, compilation) is in results.json. "
        f"{_STEP_NOTE} {_CACHE_NOTE}",
        "",
        "![parity](figures/parity.png)",
        "",
        "![time per epoch](figures/timing.png)",
        "",
    ]
    for outcome, assessment in zip(outcomes, assessments):
        e = outcome.experiment
        lines += [
            f"## {e.name}",
            "",
            f"*{e.section}* — {e.title}. `{e.architecture}`, {e.optimizer_label()}, {e.loss}, "
            f"batch {e.batch_size}, {e.epochs} epochs{', validation' if e.validation else ''}"
            f"{', early stopping patience %d' % e.early_stopping.patience if e.early_stopping else ''}.",
            "",
            f"**{assessment['tolerance']['rule']}** rule: {assessment['verdict']['verdict']} — "
            f"{assessment['verdict']['detail']}.",
            "",
        ]
        if outcome.reused_from:
            lines += [_reused_text(outcome), ""]
        lines += [
            f"![{e.name}](figures/{e.name}.png)",
            "",
        ]
        if _has_confusion(outcome):
            lines += [f"![{e.name} confusion matrices](figures/{e.name}-confusion.png)", ""]
    return "\n".join(lines)


def _reused_text(outcome: ExperimentOutcome) -> str:
    return (
        f"Same model and training as {outcome.reused_from} (the lesson trains it again); training is "
        f"deterministic given the seed, so those runs are shown again rather than repeated."
    )


def _intro_text(document: dict) -> str:
    s = document["summary"]
    versions = document["versions"]
    keras_v = versions.get("keras", {})
    mt_v = versions.get("minitensor", {})
    parts = [
        f"Mode **{document['mode']}**, seed {document['seed']}"
        + (f", {document['seeds']} seeds for multi-seed experiments" if document.get("seeds") else "")
        + (f", epochs scaled by {document['epochs_scale']:g}" if document.get("epochs_scale") not in (None, 1) else "")
        + ".",
        f"{s['passed']} of {s['experiments']} experiments passed"
        + (f"; failed: {', '.join(s['failed'])}" if s["failed"] else "")
        + (f"; no verdict: {', '.join(s['no_verdict'])}" if s["no_verdict"] else "")
        + ".",
    ]
    if document.get("interrupted"):
        parts.append("**Interrupted**: only the experiments that finished are shown.")
    if document.get("blas_threads"):
        parts.append(f"NumPy's BLAS was limited to {document['blas_threads']} thread(s).")
    if document.get("total_seconds") is not None:
        parts.append(f"Total wall time {document['total_seconds']:.0f} s.")
    execution = document.get("execution") or {}
    if execution.get("scheduler"):
        parts.append(f"Run on the Dask cluster at {execution['scheduler']}.")
    elif execution.get("jobs", 1) and execution.get("jobs", 1) > 1:
        parts.append(
            f"Run in {execution['jobs']} worker processes, {execution.get('threads_per_job')} thread(s) each."
        )
    cache = document.get("cache") or {}
    if cache.get("keras_from_cache"):
        parts.append(
            f"tf.keras results of {len(cache['keras_from_cache'])} experiment(s) were read from the result "
            f"cache (‡): {', '.join(cache['keras_from_cache'])}."
        )
    elif cache.get("enabled"):
        parts.append("Every tf.keras result was trained in this run (none came from the result cache).")
    parts.append(f"Batch order: {document['order']}")
    if keras_v or mt_v:
        parts.append(
            "Versions: " + ", ".join(f"{k} {v}" for k, v in {**keras_v, **mt_v}.items()) + "."
        )
    machine = document.get("machine") or {}
    if machine:
        parts.append(
            f"Machine: {machine.get('platform')}, {machine.get('cpu_count')} CPUs, Python {machine.get('python')}."
        )
    return " ".join(parts)


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1280px;color:#222;
padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.85em;margin:1em 0}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:right}
th{background:#f4f4f4}td:first-child,td:nth-child(2),td:nth-child(8){text-align:left}
tr.fail td{background:#fdecea}img{max-width:100%;height:auto;border:1px solid #eee;margin:.5em 0}
.meta{color:#555;font-size:.9em}.keras{color:#d62728}.minitensor{color:#1f4e9c}code{background:#f4f4f4;padding:0 .2em}
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _html(document: dict, rows: list[dict], outcomes, assessments, figures: Path) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>minitensor vs tf.keras: the lesson side by side</title>",
        f"<style>{_CSS}</style></head><body>",
        '<h1>minitensor vs tf.keras: the lesson side by side</h1>',
        # the intro is Markdown; its only markup is **bold**
        '<p class="meta">' + re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", e(_intro_text(document))) + "</p>",
        "<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in _TABLE_HEADER) + "</tr></thead><tbody>",
    ]
    for row in rows:
        cls = ' class="fail"' if row["verdict"]["passed"] is False else ""
        cells = _table_cells(row)
        cells[0] = f'<a href="#{e(row["name"])}">{e(row["name"])}</a>'
        out.append(f"<tr{cls}>" + "".join(f"<td>{c if i == 0 else e(c)}</td>" for i, c in enumerate(cells)) + "</tr>")
    out += [
        "</tbody></table>",
        "<p class=\"meta\">Speed ratio = tf.keras seconds per epoch / minitensor seconds per epoch (above 1: "
        "minitensor is faster). Times are medians of the epochs after the first; the first epoch is in results.json. "
        + e(f"{_STEP_NOTE} {_CACHE_NOTE} ") +
        "Every number on this page is in results.json.</p>",
        _img(figures / "parity.png", "parity per experiment"),
        _img(figures / "timing.png", "time per epoch"),
    ]
    for outcome, assessment in zip(outcomes, assessments):
        x = outcome.experiment
        verdict = assessment["verdict"]
        out += [
            f'<h2 id="{e(x.name)}">{e(x.name)}</h2>',
            f"<p><em>{e(x.section)}</em> — {e(x.title)}. <code>{e(x.architecture)}</code>, "
            f"{e(x.optimizer_label())}, {e(x.loss)}, batch {x.batch_size}, {x.epochs} epochs"
            f"{', validation' if x.validation else ''}"
            f"{e(', early stopping patience %d' % x.early_stopping.patience) if x.early_stopping else ''}. "
            f"Seeds: {e(', '.join(map(str, outcome.seeds)))}.</p>",
            f"<p><strong>{e(assessment['tolerance']['rule'])}</strong> rule "
            f"({e(assessment['tolerance']['criterion'])}): <strong>{e(_fmt_verdict(verdict))}</strong> — "
            f"{e(verdict['detail'])}.</p>",
        ]
        if outcome.reused_from:
            out.append(f"<p>{e(_reused_text(outcome))}</p>")
        out += [
            _img(figures / f"{x.name}.png", f"{x.name} curves"),
        ]
        if _has_confusion(outcome):
            out.append(_img(figures / f"{x.name}-confusion.png", f"{x.name} confusion matrices"))
    out.append("</body></html>")
    return "\n".join(out)


def write_report(outcomes: Sequence[ExperimentOutcome], out_dir, *, meta: dict) -> dict:
    """Write the report for ``outcomes`` into ``out_dir`` (created if needed) and return ``results.json``'s dict.

    Args:
        outcomes: finished experiments (may be empty, e.g. after an early Ctrl-C).
        out_dir: the folder to write.
        meta: run-wide facts, see :func:`results_document`.
    """
    out_dir = Path(out_dir)
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    outcomes = list(outcomes)
    assessments = [assess(o) for o in outcomes]
    document = results_document(outcomes, meta, assessments)
    rows = summary_rows(outcomes, assessments)

    for outcome, assessment in zip(outcomes, assessments):
        _curves_figure(outcome, assessment, figures / f"{outcome.experiment.name}.png")
        if _has_confusion(outcome):
            _confusion_figure(outcome, figures / f"{outcome.experiment.name}-confusion.png")
    _parity_figure(outcomes, assessments, figures / "parity.png")
    _timing_figure(rows, figures / "timing.png")

    tmp = out_dir / "results.json.tmp"
    tmp.write_text(json.dumps(_finite(document), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / "results.json")
    (out_dir / "report.md").write_text(_markdown(document, rows, outcomes, assessments) + "\n", encoding="utf-8")
    (out_dir / "index.html").write_text(_html(document, rows, outcomes, assessments, figures) + "\n", encoding="utf-8")
    return document
