"""Speed and memory of minitensor against tf.keras, every engine measured in the same run.

``python -m benchmarks`` (options in :mod:`benchmarks.cli`) trains the benchmark models
(:mod:`benchmarks.specs`) in tf.keras (its default and with XLA), minitensor's reference path,
minitensor's compiled path, and PyTorch and JAX when they are installed, and prints a Markdown
table; it writes the report to
``benchmarks/results/<date>-<host>.json`` and ``.md`` (layout in :mod:`benchmarks.report`).

Modules: ``specs`` (models, engine names, settings), ``data`` (training arrays), ``engines`` (one
adapter per engine), ``harness`` (the run), ``worker`` (one engine training one model in its own
process, driven by the harness), ``micro`` (GEMM peak, Adam on subnormals), ``environment``
(machine and versions), ``coldstart`` (the compiled first epoch with an empty and a warm kernel
cache), ``aggregate`` (several runs combined), ``targets`` (met or not), ``report``, ``cli``.
Frameworks are imported only when their engine runs.

Example:
    >>> from benchmarks import quick_config, run_benchmarks
    >>> report = run_benchmarks(quick_config(models=["A"], engines=["minitensor-reference"],
    ...                                      memory=False))  # doctest: +SKIP
"""

from .specs import ENGINE_NAMES, MODEL_NAMES, MODELS, RunConfig, full_config, quick_config


def run_benchmarks(config, out=print):
    """Run the benchmarks described by ``config`` (see :func:`benchmarks.harness.run_benchmarks`)."""
    from .harness import run_benchmarks as _run

    return _run(config, out=out)


def main(argv=None) -> int:
    """The command line (see :func:`benchmarks.cli.main`)."""
    from .cli import main as _main

    return _main(argv)


__all__ = ["ENGINE_NAMES", "MODEL_NAMES", "MODELS", "RunConfig", "full_config", "quick_config", "run_benchmarks", "main"]
