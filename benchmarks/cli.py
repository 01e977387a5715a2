"""Command line of ``python -m benchmarks``.

Usage::

    python -m benchmarks                         # every model and engine (several minutes)
    python -m benchmarks --runs 3                # the same three times: medians of the runs' medians, their range
    python -m benchmarks --quick                 # a short run: few rows, 2 repeats, still every model and engine
    python -m benchmarks --models A,C --engines tf.keras,minitensor-reference --repeats 7
    python -m benchmarks --rows L=25600 --no-memory --output-dir /tmp/bench
    python -m benchmarks --cold-start A,D        # compiled first epoch with an empty and a warm kernel cache

Exit status: 0 after a run, 2 for a bad argument (argparse's convention).

Example:
    >>> config = parse_args(["--quick", "--models", "a,L", "--engines", "minitensor-reference"])
    >>> config.models, config.engines, config.repeats, config.runs
    (['A', 'L'], ['minitensor-reference'], 2, 1)
"""

from __future__ import annotations

import argparse
import os
import sys

from .specs import ENGINE_NAMES, ISOLATION_MODES, MODEL_NAMES, MODELS, full_config, parse_list, quick_config

__all__ = ["build_parser", "parse_args", "main", "DEFAULT_OUTPUT_DIR"]

#: Where reports go unless ``--output-dir`` says otherwise.
DEFAULT_OUTPUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _int_at_least(minimum: int, expectation: str):
    """An argparse type: an integer >= ``minimum``, else an error saying ``expected <expectation>``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expectation}, received {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expectation}, received {text!r}")
        return value

    return parse


_positive = _int_at_least(1, "a positive integer")
_non_negative = _int_at_least(0, "an integer >= 0")


def _list_type(allowed, what):
    def convert(text):
        try:
            return parse_list(text, allowed, what)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _cold_start(text: str) -> list:
    if text.strip().lower() == "none":
        return []
    try:
        return parse_list(text, MODEL_NAMES, "model")
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{error} (or none)") from None


def _rows(text: str) -> dict:
    rows = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        model = {m.lower(): m for m in MODEL_NAMES}.get(name.strip().lower())
        if not sep or model is None:
            raise argparse.ArgumentTypeError(
                f"expected MODEL=ROWS[,MODEL=ROWS...] with MODEL one of {', '.join(MODEL_NAMES)}, received {item!r}")
        try:
            count = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer row count, received {item!r}") from None
        if not 1 <= count <= MODELS[model].full_rows:
            raise argparse.ArgumentTypeError(
                f"rows for {model} must lie in 1..{MODELS[model].full_rows}, received {count}")
        rows[model] = count
    return rows


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m benchmarks``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Train the benchmark models in every available engine in one run and report speed and memory.",
        epilog="Models: " + "; ".join(f"{m.name}: {m.description}" for m in MODELS.values()) + ".",
    )
    parser.add_argument("--quick", action="store_true",
                        help="a short run: few rows per model, 2 repeats, no warm-up, small GEMM; every model and engine")
    parser.add_argument("--models", type=_list_type(MODEL_NAMES, "model"),
                        help=f"comma-separated models (default: all of {','.join(MODEL_NAMES)})")
    parser.add_argument("--engines", type=_list_type(ENGINE_NAMES, "engine"),
                        help=f"comma-separated engines (default: all of {','.join(ENGINE_NAMES)}; "
                             "those not installed are skipped)")
    parser.add_argument("--runs", type=_positive, default=1,
                        help="repeat the whole measurement N times and report the median of the runs' medians "
                             "with their range (default 1)")
    parser.add_argument("--repeats", type=_positive, help="timed rounds per engine and model (default 5, quick 2)")
    parser.add_argument("--warmup", type=_non_negative,
                        help="untimed epochs after the first one (default 1, quick 0)")
    parser.add_argument("--rows", type=_rows, metavar="MODEL=N[,...]",
                        help="train MODEL on its first N rows (default: full set; L and Ls 12,800 of 60,000)")
    parser.add_argument("--no-memory", action="store_true", help="do not report peak memory")
    parser.add_argument("--cold-start", type=_cold_start, metavar="MODELS|none",
                        help="models whose compiled first epoch is also measured in fresh processes with an "
                             "empty and a warm Numba kernel cache (default A; none to skip)")
    parser.add_argument("--isolation", choices=ISOLATION_MODES, default="process",
                        help="process (default): each engine trains in its own worker process, one at a time; "
                             "in-process: every engine in this process (their threads may then compete)")
    parser.add_argument("--seed", type=_non_negative, default=0, help="seed for data, weights and shuffling (0)")
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR,
                        help="where <date>-<host>.json and .md are written (default: benchmarks/results)")
    parser.add_argument("--no-save", action="store_true", help="print the report without writing files")
    return parser


def parse_args(argv=None):
    """Parse ``argv`` into a :class:`~benchmarks.specs.RunConfig` (exits with status 2 on a bad argument)."""
    args = build_parser().parse_args(argv)
    config = quick_config() if args.quick else full_config()
    if args.models is not None:
        config.models = args.models
    if args.engines is not None:
        config.engines = args.engines
    if args.repeats is not None:
        config.repeats = args.repeats
    config.runs = args.runs
    if args.cold_start is not None:
        config.cold_start = args.cold_start
    if args.warmup is not None:
        config.warmup = args.warmup
    if args.rows:
        config.rows = {**config.rows, **args.rows}
    config.memory = not args.no_memory
    config.isolation = args.isolation
    config.seed = args.seed
    config.output_dir = None if args.no_save else args.output_dir
    config.argv = list(sys.argv[1:] if argv is None else argv)
    return config


def main(argv=None) -> int:
    """Run ``python -m benchmarks`` with ``argv`` (``sys.argv[1:]`` by default); return the exit status."""
    if argv is None:
        argv = sys.argv[1:]
    config = parse_args(argv)
    from .harness import run_benchmarks

    run_benchmarks(config)
    return 0
