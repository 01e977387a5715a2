"""Shared by the benchmark tests: a tiny run configuration."""

from __future__ import annotations

from benchmarks import specs


def tiny(**overrides):
    """A configuration that trains a few steps: quick rows cut further, one repeat, tiny GEMM, no
    cold-start measurement (its cold phase would compile every kernel of the compiled path).

    In-process, so that a test can monkeypatch what the engines do; ``isolation="process"`` to
    run the workers."""
    config = specs.quick_config(
        engines=["minitensor-reference"], repeats=1, memory=False, gemm_size=32, gemm_repeats=1,
        isolation="in-process", settle_s=0, cold_start=[],
        adam_steps=1, adam_repeats=1, rows={"A": 64, "B": 64, "C": 64, "D": 8, "L": 256, "Ls": 256},
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config
