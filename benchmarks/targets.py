"""The compiled path's speed targets, and whether a run met them.

Every target is judged on the median over the runs (``--runs N``) of a value taken within one
run, so a ratio always compares two engines measured in the same run:

* **speed-up over tf.keras** of ``minitensor-compiled`` (tf.keras epoch / compiled epoch):
  A ≥ 400×, C ≥ 300×, D ≥ 800×, B ≥ 12×, L ≥ 2.5×;
* **share of the GEMM peak** of ``minitensor-compiled`` on L: ≥ 55%;
* **over JAX** on every model: JAX epoch / compiled epoch ≥ 1.25;
* **first epoch** of the compiled path in a fresh process (:mod:`benchmarks.coldstart`): ≤ 5 s
  with an empty kernel cache (cold), ≤ 0.3 s with a warm one.

A target is ``"met"`` when the median meets it, ``"not met"`` when it does not, and ``"not
measured"`` when no run measured it (the engine is not installed, the row failed, or the compiled
path fell back to the reference path: its numbers are then not the compiled path's). Targets of
models the run did not include are left out.

Example:
    >>> [t.label for t in TARGETS if t.model == "A"][:2]
    ['compiled ≥ 400× tf.keras', 'compiled ≥ 1.25× JAX']
"""

from __future__ import annotations

from dataclasses import dataclass

from .aggregate import median_and_range
from .specs import MODEL_NAMES

__all__ = ["Target", "TARGETS", "COMPILED", "evaluate_targets", "target_value", "ratio_over_runs"]

#: The engine the targets are about.
COMPILED = "minitensor-compiled"


@dataclass(frozen=True)
class Target:
    """One target.

    Attributes:
        model: the model it applies to.
        kind: ``"speedup"`` (over tf.keras), ``"gemm_fraction"``, ``"vs_jax"``, ``"cold_first_epoch_s"``
            or ``"warm_first_epoch_s"``.
        threshold: the bound (a ratio, a fraction or seconds).
        at_most: True when the value must not exceed ``threshold`` (times), False when it must reach it.
    """

    model: str
    kind: str
    threshold: float
    at_most: bool = False

    @property
    def label(self) -> str:
        """The target in words, e.g. ``compiled ≥ 400× tf.keras``."""
        if self.kind == "speedup":
            return f"compiled ≥ {self.threshold:g}× tf.keras"
        if self.kind == "gemm_fraction":
            return f"compiled ≥ {self.threshold:.0%} of the GEMM peak"
        if self.kind == "vs_jax":
            return f"compiled ≥ {self.threshold:g}× JAX"
        phase = "empty" if self.kind.startswith("cold") else "warm"
        return f"first compiled epoch ≤ {self.threshold:g} s, {phase} kernel cache"

    def met_by(self, value: float) -> bool:
        """Whether ``value`` meets the target."""
        return value <= self.threshold if self.at_most else value >= self.threshold


_SPEEDUPS = {"A": 400, "C": 300, "D": 800, "B": 12, "L": 2.5}



def _model_targets() -> tuple:
    out = []
    for model in MODEL_NAMES:
        if model in _SPEEDUPS:
            out.append(Target(model, "speedup", _SPEEDUPS[model]))
        if model == "L":
            out.append(Target(model, "gemm_fraction", 0.55))
        out.append(Target(model, "vs_jax", 1.25))
    return tuple(out)


#: The per-model targets, in report order (the first-epoch targets apply to the models measured cold).
TARGETS = _model_targets()


def _row(results: list, model: str, engine: str):
    for row in results:
        if row["model"] == model and row["engine"] == engine:
            return row
    return None


def target_value(target: Target, run: dict):
    """``(value, reason)`` of ``target`` in one run (a dict with ``results`` and ``cold_start``):
    the value, or ``None`` and why it is missing."""
    if target.kind.endswith("first_epoch_s"):
        for measured in run.get("cold_start") or []:
            if measured["model"] == target.model and measured["engine"] == COMPILED:
                phase = measured.get("cold" if target.kind.startswith("cold") else "warm")
                if phase is None:
                    return None, measured.get("error", "not measured")
                if phase["fell_back"]:
                    return None, "fell back to the reference path"
                return phase["first_epoch_s"], None
        return None, "not measured"
    compiled = _row(run["results"], target.model, COMPILED)
    if compiled is None:
        return None, f"{COMPILED} not run"
    if compiled["status"] != "ok" or compiled["epoch_median_s"] is None:
        return None, f"{COMPILED} {compiled['status']}: {compiled['reason']}"
    if compiled["fell_back"]:
        return None, "fell back to the reference path"
    if target.kind == "speedup":
        if compiled["speedup_vs_baseline"] is None:
            return None, "tf.keras not measured"
        return compiled["speedup_vs_baseline"], None
    if target.kind == "gemm_fraction":
        fraction = compiled["fraction_of_gemm_peak"]
        return fraction, (None if fraction is not None else "no GEMM peak measured")
    jax = _row(run["results"], target.model, "jax")
    if jax is None or jax["status"] != "ok" or jax["epoch_median_s"] is None:
        return None, "jax " + ("not installed or not run" if jax is None else f"{jax['status']}: {jax['reason']}")
    return jax["epoch_median_s"] / compiled["epoch_median_s"], None


def evaluate_targets(report: dict) -> list:
    """Judge every target that applies to the models of ``report`` over its runs (``report["runs"]``).

    Returns one dict per target: ``label``, ``model``, ``kind``, ``threshold``, ``at_most``,
    ``values`` (per run, ``None`` where not measured), ``value`` (their median), ``min``, ``max``,
    ``runs``, ``runs_met``, ``status`` (``"met"``, ``"not met"``, ``"not measured"``) and ``reason``
    (why not measured).
    """
    models = report["config"]["models"]
    cold_models = report["config"].get("cold_start") or []
    targets = [t for t in TARGETS if t.model in models]
    targets += [Target(m, kind, bound, at_most=True) for m in cold_models
                for kind, bound in (("cold_first_epoch_s", 5.0), ("warm_first_epoch_s", 0.3))]
    out = []
    for target in targets:
        measured = [target_value(target, run) for run in report["runs"]]
        values = [value for value, _ in measured]
        median, low, high = median_and_range(values)
        reasons = sorted({reason for value, reason in measured if value is None})
        if median is None:
            status = "not measured"
        else:
            status = "met" if target.met_by(median) else "not met"
        out.append({
            "label": target.label, "model": target.model, "kind": target.kind, "threshold": target.threshold,
            "at_most": target.at_most, "values": values, "value": median, "min": low, "max": high,
            "runs": len(values), "runs_met": sum(1 for v in values if v is not None and target.met_by(v)),
            "status": status, "reason": "; ".join(reasons) or None,
        })
    return out


def ratio_over_runs(report: dict, model: str, slower: str, faster: str = COMPILED):
    """``(median, min, max)`` over the runs of ``slower``'s epoch / ``faster``'s epoch on ``model``,
    each ratio within one run; ``(None, None, None)`` when no run measured both (or ``faster`` fell back).

    Example:
        >>> rows = lambda b, c: [{"model": "A", "engine": "tf.keras-xla", "status": "ok", "epoch_median_s": b,
        ...                       "fell_back": False},
        ...                      {"model": "A", "engine": COMPILED, "status": "ok", "epoch_median_s": c,
        ...                       "fell_back": False}]
        >>> two_runs = {"runs": [{"results": rows(1.0, 0.01)}, {"results": rows(3.0, 0.02)}]}
        >>> ratio_over_runs(two_runs, "A", "tf.keras-xla")
        (125.0, 100.0, 150.0)
    """
    ratios = []
    for run in report["runs"]:
        a, b = _row(run["results"], model, slower), _row(run["results"], model, faster)
        if a is None or b is None or b["fell_back"] or any(
                r["status"] != "ok" or not r["epoch_median_s"] for r in (a, b)):
            continue
        ratios.append(a["epoch_median_s"] / b["epoch_median_s"])
    return median_and_range(ratios)
