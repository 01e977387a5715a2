"""The JAX engine (the ``peers`` extra): it trains, its Adam follows Keras's formula, and Ls presets its state."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from benchmarks import data, engines
from benchmarks.harness import run_benchmarks

from .conftest import tiny


def test_probe_reports_the_versions():
    available, reason, versions = engines.probe("jax")
    assert available and reason is None
    assert versions["jax"] == jax.__version__ and versions["jaxlib"]


def test_one_adam_step_matches_the_keras_formula_in_float64_numpy():
    x, y = data.training_arrays("A", rows=32)  # one full batch: one step per epoch
    trainer = engines.make_trainer("jax", "A", x, y, seed=3)
    before = [(np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in trainer.params]
    trainer.rng = np.random.default_rng(0)
    order = np.random.default_rng(0).permutation(32)
    trainer.train(1)

    # the same step by hand: forward, binary cross-entropy from logits, backward, Adam at t = 1
    xb, yb = x[order].astype(np.float64), y[order].astype(np.float64)
    acts, h = [xb], xb
    for w, b in before[:-1]:
        h = np.maximum(h @ w + b, 0)
        acts.append(h)
    logits = h @ before[-1][0] + before[-1][1]
    delta = (1 / (1 + np.exp(-logits)) - yb) / len(xb)
    grads = []
    for i in reversed(range(len(before))):
        w, _ = before[i]
        grads.append((acts[i].T @ delta, delta.sum(axis=0)))
        if i:
            delta = (delta @ w.T) * (acts[i] > 0)
    grads.reverse()
    alpha = 1e-3 * np.sqrt(1 - 0.999) / (1 - 0.9)
    for (w0, b0), (gw, gb), (w1, b1) in zip(before, grads, trainer.params):
        for p0, g, p1 in ((w0, gw, w1), (b0, gb, b1)):
            m, v = 0.1 * g, 0.001 * g * g
            np.testing.assert_allclose(np.asarray(p1), p0 - alpha * m / (np.sqrt(v) + 1e-7), rtol=1e-5, atol=1e-6)


def test_ls_presets_the_first_kernels_adam_moment_to_subnormals():
    x, y = data.training_arrays("Ls", rows=128)
    trainer = engines.make_trainer("jax", "Ls", x, y)
    assert trainer.diagnostics() == {"first_kernel_momentum_subnormal_share": 0.0}
    trainer.preset_subnormal_moments()
    m = trainer.first_kernel_momentum()
    border = data.border_mask()
    assert np.all(np.abs(m[border]) == np.float32(engines.SUBNORMAL_MOMENT)) and np.all(m[~border] == 0)
    share = trainer.diagnostics()["first_kernel_momentum_subnormal_share"]
    assert share == pytest.approx(border.sum() / border.size)
    trainer.train(1)  # the preset state has the structure the compiled epoch expects
    assert np.all(np.isfinite(np.asarray(trainer.params[0][0])))


def test_every_model_runs_in_the_harness_with_jax_beside_the_reference_path():
    report = run_benchmarks(tiny(engines=["minitensor-reference", "jax"], models=["D", "Ls"]), out=lambda text: None)
    rows = {(r["model"], r["engine"]): r for r in report["results"]}
    assert set(rows) == {("D", "minitensor-reference"), ("D", "jax"), ("Ls", "minitensor-reference"), ("Ls", "jax")}
    assert all(r["status"] == "ok" and r["epoch_median_s"] > 0 for r in rows.values())
    assert "first_kernel_momentum_subnormal_share" in rows["Ls", "jax"]["diagnostics"]
    assert report["engines"]["jax"]["available"] is True
