"""Cold and warm first epochs: each phase a fresh worker, both on one new Numba cache directory.

The compiled engine itself is not run here (its cold phase compiles every kernel, tens of seconds);
the plumbing is checked with the reference engine, which the same workers run.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from benchmarks import coldstart, data
from benchmarks.harness import run_benchmarks

from .conftest import tiny


@pytest.fixture
def arrays(tmp_path):
    x, y = data.training_arrays("D", rows=8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return str(tmp_path / "x.npy"), str(tmp_path / "y.npy")


def test_cold_then_warm_worker_share_one_new_cache_directory_which_is_removed(arrays):
    measured = coldstart.measure_cold_warm("D", *arrays, engine="minitensor-reference")
    assert "error" not in measured, measured.get("error")
    assert measured["cache_files_before"] == 0
    cold, warm = measured["cold"], measured["warm"]
    directory = cold["numba_cache_dir"]
    assert directory is not None and os.path.basename(directory).startswith("benchmarks-numba-cache-")
    assert warm["numba_cache_dir"] == directory
    assert not os.path.exists(directory)
    for phase in (cold, warm):
        assert phase["first_epoch_s"] > 0 and phase["ready_s"] > 0
        assert phase["total_s"] == pytest.approx(phase["ready_s"] + phase["first_epoch_s"])
        assert phase["fell_back"] is False and phase["cache_files_after"] == 0  # the reference path compiles nothing


def test_a_failing_worker_is_reported_not_raised(arrays):
    measured = coldstart.measure_cold_warm("D", *arrays, engine="no-such-engine")
    assert "cold" not in measured and "invalid choice: 'no-such-engine'" in measured["error"]


def test_count_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "kernel.nbi").write_text("")
    (tmp_path / "top.nbc").write_text("")
    assert coldstart.count_files(str(tmp_path)) == 2


def test_the_run_reports_cold_and_warm_first_epochs(monkeypatch):
    monkeypatch.setattr(coldstart, "COLD_START_ENGINE", "minitensor-reference")
    printed = []
    report = run_benchmarks(tiny(models=["D"], cold_start=["D"], runs=2), out=printed.append)
    assert [len(run["cold_start"]) for run in report["runs"]] == [1, 1]
    (entry,) = report["cold_start"]
    assert (entry["model"], entry["engine"], entry["runs"], entry["errors"]) == ("D", "minitensor-reference", 2, [])
    per_run = [run["cold_start"][0]["cold"]["first_epoch_s"] for run in report["runs"]]
    assert entry["cold"]["per_run_first_epoch_s"] == per_run
    assert entry["cold"]["first_epoch_min_s"] == min(per_run) and entry["cold"]["first_epoch_max_s"] == max(per_run)
    assert "First epoch of minitensor-reference on D" in printed[0] and "**cold** (empty Numba cache" in printed[0]
    # the targets concern the compiled engine, which this run did not measure
    cold_target = [t for t in report["targets"] if t["kind"] == "cold_first_epoch_s"]
    assert [t["status"] for t in cold_target] == ["not measured"]


def test_no_cold_start_without_the_compiled_engine():
    report = run_benchmarks(tiny(models=["D"], cold_start=["D"]), out=lambda text: None)
    assert report["cold_start"] == [] and report["runs"][0]["cold_start"] == []
