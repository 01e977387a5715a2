"""Targets marked met / not met / not measured, from the per-run values, and shown in the report."""

from __future__ import annotations

import pytest

from benchmarks import report, specs, targets
from benchmarks.harness import _new_row

COMPILED = "minitensor-compiled"


def row(model, engine, epoch, speedup=None, **extra):
    out = _new_row(model, engine, specs.full_config())
    out.update(epoch_median_s=epoch, epoch_s=[epoch], speedup_vs_baseline=speedup, **extra)
    return out


def cold(first_cold, first_warm, model="A", fell_back=False):
    def phase(first):
        return {"first_epoch_s": first, "ready_s": 1.0, "total_s": first + 1.0, "cache_files_after": 5,
                "fell_back": fell_back}

    return {"model": model, "engine": COMPILED, "cold": phase(first_cold), "warm": phase(first_warm)}


def make_report(runs, models=("A", "C", "D", "L", "Ls"), cold_start=("A",)):
    return {"config": {"models": list(models), "cold_start": list(cold_start)}, "runs": runs}


def run(a_speedup, c_speedup, jax_a_epoch=0.02, cold_s=19.0, warm_s=0.25):
    return {
        "results": [
            row("A", "tf.keras", 4.0, 1.0),
            row("A", COMPILED, 0.01, a_speedup),
            row("A", "jax", jax_a_epoch),
            row("C", COMPILED, 0.01, c_speedup),
            row("D", COMPILED, 0.01, 900.0, fell_back=True),
            row("L", COMPILED, 0.4, 2.6, fraction_of_gemm_peak=0.6),
            row("L", "jax", 0.45),
            row("Ls", COMPILED, 0.4, 2.0),
            row("Ls", "jax", None, status="skipped", reason="cannot preset"),
        ],
        "cold_start": [cold(cold_s, warm_s)],
    }


@pytest.fixture
def judged():
    runs = [run(450.0, 200.0, cold_s=19.0), run(380.0, 250.0, jax_a_epoch=0.011, cold_s=4.0),
            run(420.0, 310.0, cold_s=21.0, warm_s=0.5)]
    found = targets.evaluate_targets(make_report(runs))
    return {(t["model"], t["kind"]): t for t in found}


def test_speedup_targets_are_judged_on_the_median_of_the_runs(judged):
    a = judged["A", "speedup"]
    assert a["label"] == "compiled ≥ 400× tf.keras"
    assert a["values"] == [450.0, 380.0, 420.0] and a["value"] == 420.0 and (a["min"], a["max"]) == (380.0, 450.0)
    assert a["status"] == "met" and a["runs_met"] == 2 and a["runs"] == 3
    c = judged["C", "speedup"]
    assert c["value"] == 250.0 and c["status"] == "not met" and c["runs_met"] == 1  # 310 >= 300 in one run


def test_ratio_to_jax_is_taken_within_each_run(judged):
    a = judged["A", "vs_jax"]
    assert a["values"] == pytest.approx([2.0, 1.1, 2.0]) and a["status"] == "met" and a["runs_met"] == 2
    l_jax = judged["L", "vs_jax"]
    assert l_jax["value"] == pytest.approx(1.125) and l_jax["status"] == "not met"


def test_missing_or_fallen_back_rows_are_not_measured_with_the_reason(judged):
    ls = judged["Ls", "vs_jax"]
    assert ls["status"] == "not measured" and ls["value"] is None and ls["reason"] == "jax skipped: cannot preset"
    c = judged["C", "vs_jax"]
    assert c["status"] == "not measured" and c["reason"] == "jax not installed or not run"
    d = judged["D", "speedup"]  # 900x, but on the reference path: not the compiled path's figure
    assert d["status"] == "not measured" and d["reason"] == "fell back to the reference path"


def test_gemm_share_and_first_epoch_targets(judged):
    assert judged["L", "gemm_fraction"]["status"] == "met" and judged["L", "speedup"]["status"] == "met"
    cold_a = judged["A", "cold_first_epoch_s"]
    assert cold_a["at_most"] and cold_a["value"] == 19.0 and cold_a["status"] == "not met" and cold_a["runs_met"] == 1
    warm_a = judged["A", "warm_first_epoch_s"]
    assert warm_a["value"] == 0.25 and warm_a["status"] == "met"


def test_only_the_models_of_the_run_have_targets():
    found = targets.evaluate_targets(make_report([run(450.0, 200.0)], models=["A"], cold_start=[]))
    assert [(t["model"], t["kind"]) for t in found] == [("A", "speedup"), ("A", "vs_jax")]


def test_every_model_has_a_jax_target_and_the_issue_thresholds():
    by_key = {(t.model, t.kind): t.threshold for t in targets.TARGETS}
    assert {m for m, kind in by_key if kind == "vs_jax"} == set(specs.MODEL_NAMES)
    assert [by_key[m, "speedup"] for m in ("A", "C", "D", "B", "L")] == [400, 300, 800, 12, 2.5]
    assert by_key["L", "gemm_fraction"] == 0.55


def test_ratio_over_tf_keras_xla_is_taken_within_each_run():
    runs = [run(450.0, 200.0), run(450.0, 200.0), run(450.0, 200.0)]
    for xla_epoch, one in zip((2.0, 9.0, 1.0), runs):
        one["results"].append(row("A", "tf.keras-xla", xla_epoch, 2.0))
    fake = make_report(runs)
    assert targets.ratio_over_runs(fake, "A", "tf.keras-xla") == pytest.approx((200.0, 100.0, 900.0))
    assert targets.ratio_over_runs(fake, "D", "tf.keras-xla") == (None, None, None)
    text = "\n".join(report._target_lines({**fake, "targets": targets.evaluate_targets(fake)}))
    assert "the compiled path over tf.keras with XLA (`tf.keras-xla` epoch / compiled epoch, within each run): " \
           "A 200× (100–900)." in text


def test_report_marks_each_target(judged):
    lines = report._target_lines({"targets": list(judged.values()), "runs": [{"results": []}] * 3,
                                  "config": {"models": ["A", "C", "D", "L", "Ls"]}})
    text = "\n".join(lines)
    assert "| A | compiled ≥ 400× tf.keras | 420× (380–450) | 2 of 3 | **met** |" in text
    assert "| C | compiled ≥ 300× tf.keras | 250× (200–310) | 1 of 3 | not met |" in text
    assert "| L | compiled ≥ 55% of the GEMM peak | 60% (60–60) | 3 of 3 | **met** |" in text
    assert "| A | first compiled epoch ≤ 5 s, empty kernel cache | 19.0 s (4.00–21.0) | 1 of 3 | not met |" in text
    assert "| D | compiled ≥ 800× tf.keras | — | 0 of 3 | not measured (fell back to the reference path) |" in text
