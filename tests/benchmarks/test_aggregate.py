"""Combining whole runs (``--runs N``): median of the runs' medians, their spread, ratios within a run."""

from __future__ import annotations

import statistics

import pytest

from benchmarks import aggregate, specs
from benchmarks.harness import _new_row


def row(model, engine, epoch_median, speedup=None, first=1.0, status="ok", rounds=None, **extra):
    """A result row laid out as the harness makes it, with the given run's figures."""
    out = _new_row(model, engine, specs.full_config())
    rounds = rounds or [epoch_median]
    out.update(status=status, epoch_s=list(rounds), fit_call_s=list(rounds), epoch_median_s=epoch_median,
               epoch_min_s=min(rounds), epoch_max_s=max(rounds), speedup_vs_baseline=speedup,
               first_epoch_s=first, first_epoch_loop_s=first, peak_rss_mib=100.0,
               step_median_s=None if epoch_median is None else epoch_median / out["steps_per_epoch"])
    out.update(extra)
    return out


def test_median_of_the_runs_medians_and_their_range():
    runs = [[row("A", "e", 0.30, rounds=[0.29, 0.30, 0.90])],
            [row("A", "e", 0.10, rounds=[0.05, 0.10, 0.11])],
            [row("A", "e", 0.20, rounds=[0.20, 0.21, 0.22])]]
    (combined,) = aggregate.aggregate_rows(runs)
    assert combined["epoch_median_s"] == 0.20  # median of 0.30, 0.10, 0.20; not of the nine rounds (0.21)
    assert (combined["epoch_min_s"], combined["epoch_max_s"]) == (0.10, 0.30)  # the runs' medians, not 0.05-0.90
    assert combined["spread"] == "runs" and combined["runs"] == combined["runs_ok"] == 3
    assert combined["run_epoch_median_s"] == [0.30, 0.10, 0.20]
    steps = combined["steps_per_epoch"]  # 36 for A on its full split
    assert combined["step_median_s"] == pytest.approx(0.20 / steps)
    assert combined["step_min_s"] == pytest.approx(0.10 / steps)
    assert combined["step_max_s"] == pytest.approx(0.30 / steps)
    assert combined["full_epoch_estimate_s"] == pytest.approx(0.20)
    assert len(combined["epoch_s"]) == 9


def test_speedup_is_the_median_of_each_runs_ratio_not_the_ratio_of_medians():
    baseline_epochs, engine_epochs = [1.0, 4.0, 2.0], [0.5, 2.0, 0.1]
    runs = [[row("A", "tf.keras", b, speedup=1.0), row("A", "x", e, speedup=b / e)]
            for b, e in zip(baseline_epochs, engine_epochs)]
    _, engine = aggregate.aggregate_rows(runs)
    # per run 2, 2 and 20: median 2, range 2-20; the ratio of the medians would be 2.0 / 0.5 = 4
    assert engine["run_speedup_vs_baseline"] == [2.0, 2.0, 20.0]
    assert engine["speedup_vs_baseline"] == 2.0
    assert (engine["speedup_min"], engine["speedup_max"]) == (2.0, 20.0)
    assert statistics.median(baseline_epochs) / statistics.median(engine_epochs) == 4.0


def test_one_run_keeps_the_spread_over_its_rounds():
    (combined,) = aggregate.aggregate_rows([[row("C", "e", 0.2, speedup=3.0, rounds=[0.1, 0.2, 0.5])]])
    assert combined["spread"] == "rounds" and combined["runs"] == 1
    assert (combined["epoch_median_s"], combined["epoch_min_s"], combined["epoch_max_s"]) == (0.2, 0.1, 0.5)
    assert (combined["speedup_vs_baseline"], combined["speedup_min"], combined["speedup_max"]) == (3.0, 3.0, 3.0)


def test_first_epoch_memory_and_gemm_share_are_medians_over_the_runs():
    runs = [[row("L", "e", 0.4, first=f, fraction_of_gemm_peak=g, peak_rss_mib=m)]
            for f, g, m in ((3.0, 0.5, 300.0), (1.0, 0.3, 100.0), (2.0, 0.1, 200.0))]
    (combined,) = aggregate.aggregate_rows(runs)
    assert combined["first_epoch_s"] == 2.0 and combined["run_first_epoch_s"] == [3.0, 1.0, 2.0]
    assert combined["fraction_of_gemm_peak"] == 0.3 and combined["peak_rss_mib"] == 200.0
    flops = specs.flops_per_row(specs.MODELS["L"].units) * combined["rows"]
    assert combined["gflops"] == pytest.approx(flops / 0.4 / 1e9)


def test_a_run_that_failed_is_left_out_and_named():
    failed = row("A", "e", None, status="error")
    failed.update(reason="timed round 1: RuntimeError: boom", epoch_s=[])
    runs = [[row("A", "e", 0.3)], [failed], [row("A", "e", 0.1)]]
    (combined,) = aggregate.aggregate_rows(runs)
    assert combined["status"] == "ok" and (combined["runs"], combined["runs_ok"]) == (3, 2)
    assert combined["epoch_median_s"] == pytest.approx(0.2)
    assert "run 2: error: timed round 1: RuntimeError: boom" in combined["notes"]


def test_a_row_that_failed_in_every_run_stays_failed():
    failed = row("A", "e", None, status="skipped")
    failed["reason"] = "cannot preset"
    (combined,) = aggregate.aggregate_rows([[failed], [dict(failed)]])
    assert combined["status"] == "skipped" and combined["reason"] == "cannot preset"
    assert combined["epoch_median_s"] is None and combined["runs_ok"] == 0


def test_rows_keep_the_order_of_the_first_run_and_fallback_is_kept():
    runs = [[row("A", "a", 1.0), row("A", "b", 1.0, fell_back=True)], [row("A", "a", 1.0), row("A", "b", 1.0)]]
    first, second = aggregate.aggregate_rows(runs)
    assert (first["engine"], second["engine"]) == ("a", "b")
    assert second["fell_back"] is True and first["fell_back"] is False


def test_cold_start_aggregate():
    def phase(first, fell_back=False):
        return {"first_epoch_s": first, "ready_s": 0.5, "total_s": first + 0.5, "cache_files_after": 6,
                "fell_back": fell_back}

    runs = [[{"model": "A", "engine": "e", "cold": phase(20.0), "warm": phase(0.4)}],
            [{"model": "A", "engine": "e", "cold": phase(18.0), "error": "RuntimeError: warm worker died"}],
            [{"model": "A", "engine": "e", "cold": phase(30.0), "warm": phase(0.2, fell_back=True)}]]
    (entry,) = aggregate.aggregate_cold_start(runs)
    assert entry["runs"] == 3 and entry["cold"]["runs"] == 3 and entry["warm"]["runs"] == 2
    assert (entry["cold"]["first_epoch_s"], entry["cold"]["first_epoch_min_s"], entry["cold"]["first_epoch_max_s"]) \
        == (20.0, 18.0, 30.0)
    assert entry["cold"]["total_s"] == 20.5 and entry["cold"]["fell_back"] is False
    assert entry["warm"]["first_epoch_s"] == pytest.approx(0.3) and entry["warm"]["fell_back"] is True
    assert entry["errors"] == ["run 2: RuntimeError: warm worker died"]
