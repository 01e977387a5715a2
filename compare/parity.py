"""The parity verdict: how close the engines' training runs must be, and how close they were.

Three rules, chosen per experiment before it runs (:func:`tolerance_for`) and recorded with
the results:

``strict``
    Same initial weights, same batches in the same order, no dropout. The per-epoch ``loss``
    and ``val_loss`` of the two engines must agree to a relative :data:`STRICT_RTOL` (1e-5,
    float32 round-off), and both must run the same number of epochs (early stopping must stop
    at the same epoch). Accuracies and final weights are measured and reported, not judged: an
    accuracy can legitimately differ by one sample when a prediction sits within round-off of
    the 0.5 threshold.

``chaotic``
    As ``strict``, for a run the lesson makes chaotic (learning rate 9, or batch size 1 over
    thousands of steps), where float32 round-off can be amplified until the curves part. If the
    run stays within the strict tolerance it passes as strict. If it does not, the report gives
    the epoch and the step at which the losses first differ by more than 1e-5 and the largest
    difference, and the comparison measures how fast Keras parts from *itself*: the same run,
    with every weight nudged by one float32 ulp (in a random direction) after every step.
    The run passes when minitensor stays within the tolerance of Keras for at least half as
    many steps as Keras stays within it of its nudged self (:data:`CHAOTIC_STEP_FRACTION`):
    the parting is then the training's own sensitivity to round-off, not an engine error.

``distribution``
    With dropout (masks cannot be shared between the engines) or in independent mode, runs are
    compared over several seeds through the final accuracy (``val_accuracy`` when there is a
    validation set, else ``accuracy``). The engines are consistent when the difference of the
    mean final accuracies is at most 3 standard errors (Welch) plus
    :data:`DISTRIBUTION_FLOOR`; fewer than two seeds give no verdict.

Relative difference: ``|a - b| / max(|a|, |b|)`` (0 when both are 0).

Example:
    >>> float(relative_difference(1.0, 1.25))  # 0.25 / 1.25
    0.2
    >>> relative_difference([0.0, 2.0, float("nan")], [0.0, -2.0, 1.0]).tolist()
    [0.0, 2.0, inf]
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .experiments import Experiment

__all__ = [
    "STRICT_RTOL",
    "CHAOTIC_STEP_FRACTION",
    "DISTRIBUTION_SIGMAS",
    "DISTRIBUTION_FLOOR",
    "relative_difference",
    "tolerance_for",
    "compare_pair",
    "compare_distribution",
    "first_exceeding",
    "step_divergence",
    "assess",
    "judge",
]

#: Relative tolerance of the per-epoch losses (float32 round-off).
STRICT_RTOL = 1e-5
#: Judged history keys of the strict and chaotic rules.
JUDGED_KEYS = ("loss", "val_loss")
#: A chaotic run passes if minitensor parts from Keras no sooner than this fraction of the
#: steps after which Keras parts from its own nudged twin.
CHAOTIC_STEP_FRACTION = 0.5
#: Distribution rule: allowed difference of mean final accuracies, in standard errors ...
DISTRIBUTION_SIGMAS = 3.0
#: ... plus this absolute margin (about 3 validation samples of 288).
DISTRIBUTION_FLOOR = 0.01


def relative_difference(a, b) -> np.ndarray:
    """Elementwise ``|a - b| / max(|a|, |b|)`` in float64 (0 where both are 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        scale = np.maximum(np.abs(a), np.abs(b))
        diff = np.abs(a - b)
        out = np.zeros(np.broadcast(a, b).shape)
        np.divide(diff, scale, out=out, where=scale > 0)
    # NaN or inf in either run is a difference, never agreement.
    out[~(np.isfinite(a) & np.isfinite(b))] = np.inf
    return out


def first_exceeding(values: np.ndarray, limit: float) -> int | None:
    """Index of the first value above ``limit``, or ``None``."""
    above = np.flatnonzero(np.asarray(values) > limit)
    return int(above[0]) if above.size else None


def tolerance_for(experiment: Experiment, mode: str) -> dict:
    """The rule ``experiment`` is judged by in ``mode`` (JSON-ready; stored in ``results.json``)."""
    if mode == "independent" or experiment.has_dropout:
        why = (
            "independent mode: each engine draws its own weights and batch order"
            if mode == "independent"
            else "dropout masks come from each engine's own random generator and cannot be shared"
        )
        return {
            "rule": "distribution",
            "metric": "val_accuracy" if experiment.validation else "accuracy",
            "sigmas": DISTRIBUTION_SIGMAS,
            "floor": DISTRIBUTION_FLOOR,
            "reason": why,
            "criterion": (
                f"|mean(keras) - mean(minitensor)| of the final metric <= {DISTRIBUTION_SIGMAS:g} standard "
                f"errors (Welch) + {DISTRIBUTION_FLOOR:g}; no verdict with fewer than 2 seeds"
            ),
        }
    strict = {
        "rtol": STRICT_RTOL,
        "keys": [key for key in JUDGED_KEYS if key == "loss" or experiment.validation],
        "same_epochs": True,
    }
    if experiment.chaotic:
        return {
            "rule": "chaotic",
            **strict,
            "step_fraction": CHAOTIC_STEP_FRACTION,
            "reason": experiment.chaotic,
            "criterion": (
                f"per-epoch losses within rtol {STRICT_RTOL:g}; if they part, minitensor must stay within "
                f"{STRICT_RTOL:g} of Keras for at least {CHAOTIC_STEP_FRACTION:g} x the steps Keras stays "
                "within it of itself with every weight nudged by one ulp after every step"
            ),
        }
    return {
        "rule": "strict",
        **strict,
        "reason": "same initial weights, same batches in the same order, no dropout",
        "criterion": f"per-epoch {' and '.join(strict['keys'])} within relative {STRICT_RTOL:g}, same number of epochs",
    }


def step_divergence(a_steps, b_steps, rtol) -> dict | None:
    """Where two runs' per-step (running-average) losses part, if both were recorded."""
    if not a_steps or not b_steps:
        return None
    epochs = min(len(a_steps), len(b_steps))
    pairs = [(np.asarray(a_steps[e]), np.asarray(b_steps[e])) for e in range(epochs)]
    pairs = [(a[: min(len(a), len(b))], b[: min(len(a), len(b))]) for a, b in pairs]
    rel = np.concatenate([relative_difference(a, b) for a, b in pairs]) if pairs else np.zeros(0)
    steps_per_epoch = len(pairs[0][0]) if pairs else 0
    first = first_exceeding(rel, rtol)
    out = {
        "steps_compared": int(rel.size),
        "max_rel": float(rel.max()) if rel.size else 0.0,
        "first_step_over": None if first is None else first + 1,
        "first_step_over_epoch": None if first is None or not steps_per_epoch else first // steps_per_epoch + 1,
        # a compact curve for the report: the largest difference within each of <= 200 chunks
        "rel_curve": _chunk_max(rel, 200),
    }
    return out


def _chunk_max(values: np.ndarray, chunks: int) -> dict:
    """``{"step": [...], "max_rel": [...]}``: the maximum of each of at most ``chunks`` runs of steps."""
    n = len(values)
    if n == 0:
        return {"step": [], "max_rel": []}
    edges = np.unique(np.linspace(0, n, min(chunks, n) + 1).astype(int))
    steps, maxima = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        steps.append(int(hi))
        maxima.append(float(np.max(values[lo:hi])))
    return {"step": steps, "max_rel": maxima}


def compare_pair(keras_run, mt_run, tolerance: dict) -> dict:
    """Measure how far two runs with shared weights and batch order are apart (JSON-ready).

    Returns a dict with, per history key, the per-epoch relative differences (losses) or
    absolute differences (accuracies), their maxima, the first epoch (1-based) over the
    tolerance, the difference of the final weights, the test-split differences, and the
    per-step divergence when recorded. :func:`judge` turns it into a verdict.
    """
    rtol = tolerance.get("rtol", STRICT_RTOL)
    keys = sorted(set(keras_run.history) | set(mt_run.history))
    per_key = {}
    for key in keys:
        a, b = keras_run.history.get(key), mt_run.history.get(key)
        if a is None or b is None:
            per_key[key] = {"missing_in": "keras" if a is None else "minitensor"}
            continue
        n = min(len(a), len(b))
        a, b = np.asarray(a[:n]), np.asarray(b[:n])
        if "accuracy" in key or key.endswith("acc"):
            diff = np.abs(a - b)
            per_key[key] = {"kind": "absolute", "per_epoch": diff.tolist(), "max": float(diff.max()) if n else 0.0}
        else:
            rel = relative_difference(a, b)
            first = first_exceeding(rel, rtol)
            per_key[key] = {
                "kind": "relative",
                "per_epoch": rel.tolist(),
                "max": float(rel.max()) if n else 0.0,
                "first_epoch_over": None if first is None else first + 1,
            }
    weights = None
    if keras_run.final_weights and mt_run.final_weights:
        if [w.shape for w in keras_run.final_weights] == [np.shape(w) for w in mt_run.final_weights]:
            pairs = zip(keras_run.final_weights, mt_run.final_weights)
            num = max(float(np.max(np.abs(a - np.asarray(b)))) for a, b in pairs)
            den = max(float(np.max(np.abs(a))) for a in keras_run.final_weights)
            weights = {"max_abs": num, "max_rel_to_largest": num / den if den else 0.0}
        else:
            weights = {"shape_mismatch": True}
    test = None
    if keras_run.test_loss is not None and mt_run.test_loss is not None:
        test = {
            "loss_rel": float(relative_difference(keras_run.test_loss, mt_run.test_loss)),
            "accuracy_abs": abs(keras_run.test_accuracy - mt_run.test_accuracy),
        }
        if keras_run.test_predictions is not None and mt_run.test_predictions is not None:
            test["predictions_differ"] = int(np.sum(keras_run.test_predictions != mt_run.test_predictions))
    return {
        "epochs_run": {"keras": keras_run.epochs_run, "minitensor": mt_run.epochs_run},
        "keys": per_key,
        "final_weights": weights,
        "test": test,
        "steps": step_divergence(keras_run.step_losses, mt_run.step_losses, rtol),
    }


def _stats(values: Sequence[float]) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
        "values": values.tolist(),
    }


def compare_distribution(keras_runs, mt_runs, tolerance: dict) -> dict:
    """Summarise the final metrics of several seeds per engine (JSON-ready)."""
    keys = sorted(set.intersection(*(set(r.history) for r in [*keras_runs, *mt_runs])))
    finals, late = {}, {}
    for key in keys:
        finals[key] = {
            "keras": _stats([r.history[key][-1] for r in keras_runs]),
            "minitensor": _stats([r.history[key][-1] for r in mt_runs]),
        }
        # a steadier summary than the last epoch: each run's mean over its second half of epochs
        late[key] = {
            "keras": _stats([np.mean(r.history[key][len(r.history[key]) // 2 :]) for r in keras_runs]),
            "minitensor": _stats([np.mean(r.history[key][len(r.history[key]) // 2 :]) for r in mt_runs]),
        }
    metric = tolerance["metric"]
    out = {"final": finals, "second_half_mean": late, "metric": metric, "epochs_run": {
        "keras": [r.epochs_run for r in keras_runs], "minitensor": [r.epochs_run for r in mt_runs]}}
    if metric in finals:
        k, m = finals[metric]["keras"], finals[metric]["minitensor"]
        se = math.sqrt(k["std"] ** 2 / k["n"] + m["std"] ** 2 / m["n"])
        out.update(
            difference_of_means=m["mean"] - k["mean"],
            standard_error=se,
            allowed=tolerance["sigmas"] * se + tolerance["floor"],
        )
    return out


def judge(tolerance: dict, comparison: dict, sensitivity: dict | None = None) -> dict:
    """The verdict: ``{"passed": True/False/None, "verdict": short text, "detail": sentence}``.

    ``passed`` is ``None`` when no verdict is possible (a distribution over fewer than two seeds).
    ``sensitivity`` is the :func:`step_divergence` of Keras against its nudged twin (chaotic rule).
    """
    rule = tolerance["rule"]
    if rule == "distribution":
        metric = tolerance["metric"]
        if "allowed" not in comparison:
            return {"passed": False, "verdict": "missing metric", "detail": f"{metric} is missing from a history"}
        n = min(comparison["final"][metric]["keras"]["n"], comparison["final"][metric]["minitensor"]["n"])
        diff, allowed = comparison["difference_of_means"], comparison["allowed"]
        if n < 2:
            return {
                "passed": None,
                "verdict": "no verdict (1 seed)",
                "detail": f"final {metric} differs by {diff:+.4f}; at least 2 seeds are needed to judge",
            }
        passed = abs(diff) <= allowed
        detail = f"mean final {metric} differs by {diff:+.4f} over {n} seeds (allowed {allowed:.4f})"
        late = comparison.get("second_half_mean", {}).get("loss")
        if late:
            detail += (
                f"; loss averaged over the second half of training: tf.keras {late['keras']['mean']:.4f}, "
                f"minitensor {late['minitensor']['mean']:.4f}"
            )
        return {"passed": passed, "verdict": "consistent" if passed else "inconsistent", "detail": detail}

    rtol = tolerance["rtol"]
    epochs = comparison["epochs_run"]
    problems = []
    if epochs["keras"] != epochs["minitensor"]:
        problems.append(f"ran {epochs['minitensor']} epochs, Keras {epochs['keras']}")
    worst_key, worst, first_epoch = None, 0.0, None
    for key in tolerance["keys"]:
        info = comparison["keys"].get(key)
        if info is None or "missing_in" in info:
            problems.append(f"{key} missing in {info['missing_in'] if info else 'both'}")
            continue
        if info["max"] > worst or worst_key is None:
            worst_key, worst = key, info["max"]
        if info["first_epoch_over"] is not None:
            over = info["first_epoch_over"]
            first_epoch = over if first_epoch is None else min(first_epoch, over)
    within = worst <= rtol and not problems
    if within:
        return {"passed": True, "verdict": "match", "detail": f"max relative difference {worst:.2e} (<= {rtol:g})"}

    detail = f"max relative difference {worst:.2e}" + (f" ({worst_key})" if worst_key else "")
    if first_epoch is not None:
        detail += f", first over {rtol:g} at epoch {first_epoch}"
    steps = comparison.get("steps")
    if steps and steps["first_step_over"] is not None:
        detail += f" (step {steps['first_step_over']})"
    if problems:
        detail += "; " + "; ".join(problems)
    if rule != "chaotic":
        return {"passed": False, "verdict": "MISMATCH", "detail": detail}

    # chaotic: the parting must come no sooner than a fraction of Keras's own parting
    if not steps or steps["first_step_over"] is None:
        # over tolerance per epoch but per-step losses not recorded or within: judge by epochs
        return {"passed": False, "verdict": "MISMATCH", "detail": detail + "; per-step losses unavailable"}
    if sensitivity is None:
        return {"passed": False, "verdict": "diverged", "detail": detail + "; no sensitivity run to compare with"}
    own = sensitivity["first_step_over"]
    mt_step = steps["first_step_over"]
    if own is None:
        detail += f"; Keras stays within {rtol:g} of its nudged self for all {sensitivity['steps_compared']} steps"
        return {"passed": False, "verdict": "MISMATCH", "detail": detail}
    fraction = tolerance.get("step_fraction", CHAOTIC_STEP_FRACTION)
    passed = mt_step >= fraction * own
    detail += f"; Keras parts from its nudged self at step {own}"
    return {"passed": passed, "verdict": "chaotic" if passed else "MISMATCH", "detail": detail}


def assess(outcome) -> dict:
    """Tolerance, measurements and verdict of an :class:`~compare.engines.ExperimentOutcome`.

    Returns ``{"tolerance": ..., "comparison": ..., "sensitivity": ... or None, "verdict": ...}``
    (JSON-ready). Pairwise measurements (:func:`compare_pair`) are made for the strict and
    chaotic rules, distributions (:func:`compare_distribution`) for the distribution rule.
    """
    tolerance = tolerance_for(outcome.experiment, outcome.mode)
    keras_runs, mt_runs = outcome.runs["keras"], outcome.runs["minitensor"]
    sensitivity = None
    if tolerance["rule"] == "distribution":
        comparison = compare_distribution(keras_runs, mt_runs, tolerance)
    else:
        comparison = compare_pair(keras_runs[0], mt_runs[0], tolerance)
        if outcome.sensitivity is not None:
            sensitivity = step_divergence(keras_runs[0].step_losses, outcome.sensitivity.step_losses, tolerance["rtol"])
            if sensitivity is not None:
                sensitivity["description"] = (
                    "Keras against itself: the same run with every weight moved by one float32 ulp "
                    "in a random direction after every step"
                )
    return {
        "tolerance": tolerance,
        "comparison": comparison,
        "sensitivity": sensitivity,
        "verdict": judge(tolerance, comparison, sensitivity),
    }
