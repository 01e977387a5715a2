"""tf.keras with XLA (``tf.keras-xla``) is its own engine row beside TensorFlow's default."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from benchmarks import data, engines
from benchmarks.harness import run_benchmarks

from .conftest import tiny

pytestmark = pytest.mark.keras


def test_xla_engine_compiles_with_jit_compile_and_presets_ls():
    x, y = data.training_arrays("Ls", rows=128)
    trainer = engines.make_trainer("tf.keras-xla", "Ls", x, y)
    assert trainer.engine == "tf.keras-xla" and trainer.model.jit_compile is True
    timing = trainer.train(1)
    assert len(timing.epoch_s) == 1 and trainer.notes == []
    trainer.preset_subnormal_moments()
    assert trainer.diagnostics()["first_kernel_momentum_subnormal_share"] == pytest.approx(
        data.border_mask().mean())
    default = engines.make_trainer("tf.keras", "A", *data.training_arrays("A", rows=8))
    assert default.model.jit_compile is False
    assert keras.backend.backend() == "tensorflow"


def test_both_tf_keras_rows_in_one_run_and_the_speedup_of_each_run():
    printed = []
    report = run_benchmarks(tiny(models=["A"], engines=["tf.keras", "tf.keras-xla"], runs=2), out=printed.append)
    base, xla = report["results"]
    assert (base["engine"], xla["engine"]) == ("tf.keras", "tf.keras-xla")
    assert base["status"] == xla["status"] == "ok", (base["reason"], xla["reason"])
    assert base["speedup_vs_baseline"] == 1.0
    per_run = [run["results"][0]["epoch_median_s"] / run["results"][1]["epoch_median_s"] for run in report["runs"]]
    assert xla["run_speedup_vs_baseline"] == pytest.approx(per_run)
    assert xla["speedup_vs_baseline"] == pytest.approx(np.median(per_run))
    assert "Speed-up over tf.keras in each run" in printed[0] and "| A | tf.keras-xla |" in printed[0]
    assert np.isfinite(xla["first_epoch_s"])
    assert report["engines"]["tf.keras-xla"]["versions"]["keras"] == keras.__version__
