"""``python -m compare``: train the whole lesson in minitensor and tf.keras and write the report.

Usage::

    python -m compare                          # every experiment, parity mode, writes report/
    python -m compare --list                   # the experiments, without training anything
    python -m compare --only softmax lr-9      # a subset, by name
    python -m compare --epochs-scale 0.1       # a quick look: a tenth of every experiment's epochs
    python -m compare --mode independent --seeds 5
    python -m compare --check                  # exit status 1 if an experiment breaks its tolerance
    python -m compare --blas-threads 1         # limit NumPy's BLAS threads (recorded in results.json)
    python -m compare --gradients              # also one batch's per-layer gradients in both engines, and gradient flow

One line per experiment shows which is running, how far it is and the elapsed time. Ctrl-C
stops after writing the report for the experiments that finished (exit status 130).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shlex
import sys
import time

from .experiments import ALL, EXPERIMENTS, Experiment

__all__ = ["main", "build_parser", "scale_epochs", "training_key"]

DEFAULT_SEED = 42
DEFAULT_SEEDS = 3


def scale_epochs(experiment: Experiment, factor: float) -> Experiment:
    """``experiment`` with its epochs multiplied by ``factor`` and rounded (at least 1)."""
    if factor == 1:
        return experiment
    return dataclasses.replace(experiment, epochs=max(1, round(experiment.epochs * factor)))


def training_key(experiment: Experiment) -> Experiment:
    """``experiment`` without its names: equal keys train the same model the same way."""
    return dataclasses.replace(experiment, name="", section="", title="")


def _int_at_least(minimum: int, expectation: str):
    """An argparse type: an integer >= ``minimum``, else an error saying ``expected <expectation>``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expectation}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expectation}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "a non-negative integer")


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m compare",
        description=(
            "Train every model of the Keras lesson in minitensor and in tf.keras, side by side, and "
            "write a report (index.html, report.md, results.json, figures/)."
        ),
        epilog="Run with --list to see the experiments and the rule each is judged by.",
    )
    parser.add_argument("--list", action="store_true", help="list the experiments and exit (trains nothing)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these experiments (see --list)")
    parser.add_argument(
        "--mode", choices=("parity", "independent"), default="parity",
        help="parity: shared initial weights and batch order (default); independent: each engine "
        "initialises and shuffles itself, compared over seeds",
    )
    parser.add_argument(
        "--seeds", type=_positive_int, default=DEFAULT_SEEDS, metavar="N",
        help=f"seeds per experiment in independent mode and for dropout in parity mode (default {DEFAULT_SEEDS})",
    )
    parser.add_argument(
        "--seed", type=_non_negative_int, default=DEFAULT_SEED, metavar="S",
        help=f"the first seed (default {DEFAULT_SEED}); multi-seed runs use S, S+1, ...",
    )
    parser.add_argument(
        "--epochs-scale", type=_scale, default=1.0, metavar="F",
        help="multiply every experiment's epochs by F for a quick look (at least 1 epoch; default 1)",
    )
    parser.add_argument("--out", default="report", metavar="DIR", help="output folder (default: report)")
    parser.add_argument(
        "--blas-threads", type=_positive_int, default=None, metavar="N",
        help="limit NumPy's BLAS (which minitensor uses) to N threads for the whole run; by default "
        "each library keeps its own setting. Recorded in results.json",
    )
    parser.add_argument(
        "--check", action="store_true",
        help="exit with status 1 if any experiment breaks its parity tolerance",
    )
    parser.add_argument(
        "--gradients", action="store_true",
        help="add one batch's per-layer gradients of each model in both engines and the deep model's gradient "
        "flow (sigmoid against relu) to the report (compare.gradients); with --check, a gradient outside "
        "float32 round-off also fails",
    )
    return parser


def _list(experiments) -> str:
    from .parity import tolerance_for

    rows = [
        (
            e.name, e.architecture, e.optimizer_label(), f"{e.epochs:>6}", f"{e.batch_size:>5}",
            "val" if e.validation else "", tolerance_for(e, "parity")["rule"], e.section,
        )
        for e in experiments
    ]
    header = ("name", "layers", "optimizer", "epochs", "batch", "val", "rule", "lesson section")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


class _Progress:
    """One line per experiment: which one, k of n, engine, epoch, elapsed time."""

    def __init__(self, total: int, stream=None):
        self.total = total
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.started = time.perf_counter()
        self._k = 0
        self._name = ""
        self._experiment_start = 0.0
        self._last_draw = 0.0

    def _elapsed(self) -> str:
        seconds = time.perf_counter() - self.started
        return f"{int(seconds // 60):d}:{int(seconds % 60):02d}"

    def begin(self, k: int, name: str) -> None:
        self._k, self._name = k, name
        self._experiment_start = time.perf_counter()
        if not self.live:
            print(f"[{k}/{self.total}] {name} ...", file=self.stream, flush=True)
        else:
            self._draw("starting")

    def epoch(self, engine: str, seed: int, epoch: int, epochs: int) -> None:
        if not self.live:
            return
        now = time.perf_counter()
        if now - self._last_draw < 0.1 and epoch != epochs:
            return
        self._last_draw = now
        self._draw(f"{engine:<10} seed {seed}  epoch {epoch:>3}/{epochs}")

    def _draw(self, status: str) -> None:
        line = f"[{self._k}/{self.total}] {self._name:<16} {status}  elapsed {self._elapsed()}"
        self.stream.write("\r" + line.ljust(79)[:118])
        self.stream.flush()

    def end(self, verdict: dict, note: str = "") -> None:
        took = time.perf_counter() - self._experiment_start
        mark = {True: "ok", False: "FAIL", None: "--"}[verdict["passed"]]
        line = (
            f"[{self._k}/{self.total}] {self._name:<16} {mark:<4} {verdict['verdict']}: {verdict['detail']} "
            f"({note or f'{took:.1f} s'}, elapsed {self._elapsed()})"
        )
        if self.live:
            self.stream.write("\r" + " " * 118 + "\r")
        print(line, file=self.stream, flush=True)


def main(argv=None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.only:
        unknown = [name for name in args.only if name not in EXPERIMENTS]
        if unknown:
            parser.error(
                f"unknown experiment(s): {', '.join(unknown)} (valid names: {', '.join(EXPERIMENTS)})"
            )
        wanted = set(args.only)
        experiments = [e for e in ALL if e.name in wanted]
    else:
        experiments = list(ALL)
    experiments = [scale_epochs(e, args.epochs_scale) for e in experiments]
    if args.list:
        print(_list(experiments))
        return 0

    # Heavy imports only now: numpy, scikit-learn; TensorFlow on the first Keras run.
    from .engines import machine_info, run_experiment
    from .parity import assess
    from .report import write_report

    seeds = [args.seed + i for i in range(args.seeds)]
    machine = machine_info()  # before any --blas-threads limit, so it shows the libraries' defaults
    progress = _Progress(len(experiments))
    print(
        f"Comparing minitensor with tf.keras on {len(experiments)} experiment(s), {args.mode} mode, "
        f"seed {args.seed}; report in {args.out}/",
        flush=True,
    )
    outcomes = []
    trained = {}
    interrupted = False
    limits = contextlib.nullcontext()
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(limits=args.blas_threads, user_api="blas")
    started = time.perf_counter()
    try:
        with limits:
            for k, experiment in enumerate(experiments, start=1):
                progress.begin(k, experiment.name)
                earlier = trained.get(training_key(experiment))
                if earlier is not None:
                    # The lesson trains this model again (e.g. as a baseline); with the same seed the
                    # run is the same, so its result is shared and the report says so.
                    outcome = dataclasses.replace(earlier, experiment=experiment, reused_from=earlier.experiment.name)
                else:
                    outcome = run_experiment(experiment, mode=args.mode, seeds=seeds, progress=progress.epoch)
                    trained[training_key(experiment)] = outcome
                outcomes.append(outcome)
                progress.end(assess(outcome)["verdict"], f"reused from {earlier.experiment.name}" if earlier else "")
    except KeyboardInterrupt:
        interrupted = True
        print(f"\nInterrupted: writing the report for the {len(outcomes)} finished experiment(s).", flush=True)
    total = time.perf_counter() - started
    meta = {
        "mode": args.mode,
        "seed": args.seed,
        "seeds": args.seeds,
        "epochs_scale": args.epochs_scale,
        "interrupted": interrupted,
        "total_seconds": total,
        "command": "python -m compare " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "machine": machine,
        "blas_threads": args.blas_threads,
    }
    document = write_report(outcomes, args.out, meta=meta)
    gradient_failures = []
    if args.gradients and outcomes and not interrupted:
        from .gradients import report_gradients

        gradient_failures = report_gradients(args.out, [o.experiment for o in outcomes], args.seed, args.epochs_scale)
    summary = document["summary"]
    print(
        f"{summary['passed']} of {summary['experiments']} passed"
        + (f"; FAILED: {', '.join(summary['failed'])}" if summary["failed"] else "")
        + (f"; no verdict: {', '.join(summary['no_verdict'])}" if summary["no_verdict"] else "")
        + f". Total {total:.0f} s. Report: {args.out}/index.html",
        flush=True,
    )
    if interrupted:
        return 130
    if args.check and (summary["failed"] or gradient_failures):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
