"""compare.parity: tolerances and verdicts, on synthetic runs (no training)."""

import numpy as np
import pytest

from compare.experiments import EXPERIMENTS
from compare.parity import (
    STRICT_RTOL,
    assess,
    compare_pair,
    first_exceeding,
    judge,
    relative_difference,
    step_divergence,
    tolerance_for,
)




def test_relative_difference():
    rel = relative_difference([1.0, 0.0, -2.0], [1.0 + 1e-6, 0.0, -2.0])
    np.testing.assert_allclose(rel, [1e-6 / (1 + 1e-6), 0, 0])
    assert relative_difference(np.nan, 1.0) == np.inf
    assert relative_difference(np.inf, np.inf) == np.inf
    assert first_exceeding(np.array([0, 1e-6, 2e-5, 1]), 1e-5) == 2
    assert first_exceeding(np.array([0.0]), 1e-5) is None


def test_rules_per_experiment_and_mode():
    assert tolerance_for(EXPERIMENTS["relu-adam"], "parity")["rule"] == "strict"
    assert tolerance_for(EXPERIMENTS["relu-adam"], "parity")["keys"] == ["loss"]
    assert tolerance_for(EXPERIMENTS["deep"], "parity")["keys"] == ["loss", "val_loss"]
    assert tolerance_for(EXPERIMENTS["lr-9"], "parity")["rule"] == "chaotic"
    assert tolerance_for(EXPERIMENTS["dropout"], "parity")["rule"] == "distribution"
    assert tolerance_for(EXPERIMENTS["relu-adam"], "independent")["rule"] == "distribution"
    assert tolerance_for(EXPERIMENTS["deep"], "independent")["metric"] == "val_accuracy"
    assert tolerance_for(EXPERIMENTS["relu-adam"], "independent")["metric"] == "accuracy"


def test_strict_match_and_mismatch(outcome_factory):
    same = assess(outcome_factory("deep", mt_scale=1 + 2e-6))
    assert same["verdict"]["passed"] is True
    assert same["comparison"]["keys"]["loss"]["max"] == pytest.approx(2e-6, rel=1e-3)
    apart = assess(outcome_factory("deep", mt_scale=1 + 1e-4))
    assert apart["verdict"]["passed"] is False
    assert apart["comparison"]["keys"]["val_loss"]["first_epoch_over"] == 1


def test_strict_fails_when_epoch_counts_differ(outcome_factory):
    outcome = outcome_factory("early-stop-0", epochs=5)
    mt = outcome.runs["minitensor"][0]
    for key in mt.history:
        mt.history[key] = mt.history[key][:3]
    mt.epochs_run = 3
    result = assess(outcome)
    assert result["verdict"]["passed"] is False
    assert "ran 3 epochs, Keras 5" in result["verdict"]["detail"]


def test_strict_fails_on_a_missing_key(outcome_factory):
    outcome = outcome_factory("deep")
    del outcome.runs["minitensor"][0].history["val_loss"]
    result = assess(outcome)
    assert result["verdict"]["passed"] is False
    assert "val_loss missing in minitensor" in result["verdict"]["detail"]


def test_step_divergence_locates_the_first_step():
    a = [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    b = [[1.0, 1.0, 1.0], [1.0, 1.1, 1.2]]
    d = step_divergence(a, b, STRICT_RTOL)
    assert d["first_step_over"] == 5 and d["first_step_over_epoch"] == 2
    assert d["max_rel"] == pytest.approx(0.2 / 1.2)
    assert step_divergence(None, b, STRICT_RTOL) is None


def _chaotic(mt_part_step, own_part_step, steps=100):
    tol = tolerance_for(EXPERIMENTS["lr-9"], "parity")
    comparison = {
        "epochs_run": {"keras": 2, "minitensor": 2},
        "keys": {"loss": {"kind": "relative", "per_epoch": [0.0, 0.5], "max": 0.5, "first_epoch_over": 2}},
        "steps": {"first_step_over": mt_part_step, "steps_compared": steps, "max_rel": 0.5},
    }
    sensitivity = {"first_step_over": own_part_step, "steps_compared": steps}
    return judge(tol, comparison, sensitivity)


def test_chaotic_rule_compares_with_keras_own_sensitivity():
    assert _chaotic(60, 100)["passed"] is True
    assert _chaotic(60, 100)["verdict"] == "chaotic"
    assert _chaotic(40, 100)["passed"] is False
    # Keras never parts from itself: then minitensor parting is a real difference.
    assert _chaotic(60, None)["passed"] is False


def test_chaotic_within_tolerance_passes_as_a_match(outcome_factory):
    result = assess(outcome_factory("lr-9", mt_scale=1 + 1e-7))
    assert result["tolerance"]["rule"] == "chaotic"
    assert result["verdict"] == {**result["verdict"], "passed": True, "verdict": "match"}


def test_distribution_rule(outcome_factory):
    close = assess(outcome_factory("dropout", seeds=(1, 2, 3)))
    assert close["tolerance"]["rule"] == "distribution"
    assert close["verdict"]["passed"] is True
    assert close["comparison"]["final"]["val_accuracy"]["keras"]["n"] == 3
    one_seed = assess(outcome_factory("dropout", seeds=(1,)))
    assert one_seed["verdict"]["passed"] is None


def test_distribution_rule_detects_a_shift(outcome_factory):
    outcome = outcome_factory("relu-adam", mode="independent", seeds=(1, 2, 3))
    for run in outcome.runs["minitensor"]:
        run.history["accuracy"][-1] -= 0.2
    result = assess(outcome)
    assert result["verdict"]["passed"] is False
    assert result["comparison"]["difference_of_means"] == pytest.approx(-0.2)


def test_compare_pair_reports_weights_and_test_metrics(outcome_factory):
    outcome = outcome_factory("softmax", confusion=True)
    k, m = outcome.runs["keras"][0], outcome.runs["minitensor"][0]
    m.final_weights = [w * (1 + 1e-6) for w in k.final_weights]
    m.test_predictions = k.test_predictions.copy()
    m.test_predictions[:3] = (m.test_predictions[:3] + 1) % 10
    c = compare_pair(k, m, tolerance_for(outcome.experiment, "parity"))
    assert c["final_weights"]["max_rel_to_largest"] == pytest.approx(1e-6, rel=0.1)  # float32 rounding
    assert c["test"]["predictions_differ"] == 3
    assert c["keys"]["accuracy"]["kind"] == "absolute"
