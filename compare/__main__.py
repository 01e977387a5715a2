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
    python -m compare --jobs 1                 # one experiment at a time, in this process
    python -m compare --no-cache               # train tf.keras too, even where the result cache has it
    python -m compare --sweep batch_size=1,8,32,128 learning_rate=0.001,0.01,0.1 --seeds 5
    python -m compare --sweep hidden=12-8,30-20-12 --base relu-adam --scheduler tcp://10.0.0.5:8786

Experiments run in ``--jobs`` worker processes (default: one per available core), longest
first; one line per experiment says how it went. tf.keras results are cached on disk
(:mod:`compare.cache`), so a second run after changing only minitensor trains only minitensor;
the report says which results came from the cache. Ctrl-C stops the workers and writes the
report for the experiments that finished (exit status 130).

``--sweep`` trains every combination of the settings given, over ``--seeds`` seeds, in both
engines (independent mode), and writes heatmaps of the final validation accuracy and loss (see
:mod:`compare.sweep`). Interrupted, it keeps what finished; the same command continues it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import sys
import time
from pathlib import Path

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
    parser.add_argument(
        "--out", default="report", metavar="DIR", help="output folder (default: report; report/sweep for --sweep)"
    )
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
    parser.add_argument(
        "--jobs", type=_positive_int, default=None, metavar="N",
        help="worker processes (default: one per available core); each holds BLAS and TensorFlow to "
        "cores/N threads. 1: everything in this process, with live progress",
    )
    parser.add_argument(
        "--scheduler", default=None, metavar="tcp://HOST:PORT",
        help="run on a Dask distributed cluster: the scheduler's address (see docs/sweeps.md)",
    )
    parser.add_argument(
        "--no-cache", action="store_true",
        help="train tf.keras even where the result cache has its result (and store nothing)",
    )
    parser.add_argument(
        "--cache-dir", default=None, metavar="DIR",
        help="the tf.keras result cache (default: $MINITENSOR_COMPARE_CACHE or ~/.cache/minitensor/compare)",
    )
    parser.add_argument(
        "--sweep", nargs="+", metavar="NAME=V1,V2",
        help="train every combination of these settings in both engines over --seeds seeds (independent "
        "mode) and write heatmaps. Settings: batch_size, learning_rate, optimizer, epochs, hidden "
        "(e.g. 12-8-4), activation, l2",
    )
    parser.add_argument(
        "--engines", nargs="+", choices=("keras", "minitensor"), default=("keras", "minitensor"),
        help="the engines a sweep trains (default both; the difference heatmap needs both)",
    )
    parser.add_argument(
        "--base", default="relu-adam", metavar="NAME",
        help="the experiment a sweep varies (default relu-adam); validation is always on in a sweep",
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

    def __init__(self, total: int, stream=None, live: bool | None = None):
        self.total = total
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
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

    def finished(self, k: int, name: str, verdict: dict, note: str = "") -> None:
        """A line for an experiment that finished elsewhere (a worker process), ``k``-th to finish."""
        mark = {True: "ok", False: "FAIL", None: "--"}[verdict["passed"]]
        print(
            f"[{k}/{self.total}] {name:<16} {mark:<4} {verdict['verdict']}: {verdict['detail']} "
            f"({note + ', ' if note else ''}elapsed {self._elapsed()})",
            file=self.stream, flush=True,
        )


def _selected(args, parser) -> list[Experiment]:
    if args.only:
        unknown = [name for name in args.only if name not in EXPERIMENTS]
        if unknown:
            parser.error(
                f"unknown experiment(s): {', '.join(unknown)} (valid names: {', '.join(EXPERIMENTS)})"
            )
        wanted = set(args.only)
        return [e for e in ALL if e.name in wanted]
    return list(ALL)


def _estimated_cost(experiment: Experiment, mode: str, seeds: int) -> float:
    """A rough relative training time, to start the longest experiments first."""
    rows = 1797 if experiment.train_on == "all-unscaled" else 1149
    steps = -(-rows // experiment.batch_size)
    width = sum(getattr(layer, "units", 0) for layer in experiment.layers)
    runs = seeds if (mode == "independent" or experiment.has_dropout) else (2 if experiment.chaotic else 1)
    return runs * experiment.epochs * (steps * (1 + width / 100) + 30 * (1 + experiment.validation))


def main(argv=None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    def given_option(flag):  # "--flag value" or "--flag=value" on the command line
        return any(a == flag or a.startswith(flag + "=") for a in given)

    if args.sweep and not given_option("--out"):
        args.out = os.path.join("report", "sweep")
    if args.sweep:
        if args.only or args.list:
            parser.error("--sweep varies one experiment, given by --base; --only and --list do not apply")
        if args.mode != "independent" and given_option("--mode"):
            parser.error("--sweep compares the engines in independent mode; --mode parity does not apply")
        if args.base not in EXPERIMENTS:
            parser.error(f"unknown --base experiment {args.base!r} (valid names: {', '.join(EXPERIMENTS)})")
        from .sweep import parse_grid

        try:
            grid = parse_grid(args.sweep)
        except ValueError as error:
            parser.error(f"--sweep: {error}")
        return _sweep_main(args, grid, given)
    experiments = [scale_epochs(e, args.epochs_scale) for e in _selected(args, parser)]
    if args.list:
        print(_list(experiments))
        return 0

    # Heavy imports only now: numpy, scikit-learn; TensorFlow on the first Keras run.
    from . import engines
    from .parity import assess
    from .report import write_report
    from .sweep import available_cores, call, parallel_map, run_experiment_task

    seeds = [args.seed + i for i in range(args.seeds)]
    machine = engines.machine_info()  # before any --blas-threads limit, so it shows the libraries' defaults
    jobs = args.jobs or available_cores()
    cache_dir = _cache_dir(args)
    # the experiments that train something: a repeated training is shown again, not rerun
    first_of: dict = {}
    for experiment in experiments:
        first_of.setdefault(training_key(experiment), experiment)
    unique = list(first_of.values())
    parallel = args.scheduler is not None or (jobs > 1 and len(unique) > 1)
    threads = args.blas_threads or max(1, available_cores() // (1 if args.scheduler else min(jobs, len(unique))))
    where = (
        f"on the Dask cluster at {args.scheduler}" if args.scheduler
        else f"in {min(jobs, len(unique))} worker processes, {threads} thread(s) each" if parallel
        else "in this process"
    )
    print(
        f"Comparing minitensor with tf.keras on {len(experiments)} experiment(s), {args.mode} mode, "
        f"seed {args.seed}, {where}; report in {args.out}/",
        flush=True,
    )
    trained: dict = {}
    gradients = None  # (results, flow) when computed in a worker
    interrupted = False
    started = time.perf_counter()
    common = dict(mode=args.mode, seeds=seeds, cache_dir=cache_dir, epochs_scale=args.epochs_scale)
    if not parallel:
        progress = _Progress(len(experiments))
        limits = contextlib.nullcontext()
        if args.blas_threads is not None:
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(limits=args.blas_threads, user_api="blas")
        cache = None
        if cache_dir is not None:
            from .cache import ResultCache

            cache = ResultCache(cache_dir)
        try:
            with limits:
                for k, experiment in enumerate(experiments, start=1):
                    progress.begin(k, experiment.name)
                    earlier = trained.get(training_key(experiment))
                    if earlier is not None:
                        outcome = earlier
                    else:
                        extra = {} if cache is None else dict(cache=cache, epochs_scale=args.epochs_scale)
                        outcome = engines.run_experiment(
                            experiment, mode=args.mode, seeds=seeds, progress=progress.epoch, **extra
                        )
                        trained[training_key(experiment)] = outcome
                    note = f"reused from {earlier.experiment.name}" if earlier else _cache_note(outcome)
                    progress.end(assess(_as(experiment, outcome))["verdict"], note)
        except KeyboardInterrupt:
            interrupted = True
    else:
        # one task per experiment, or per seed where the seeds' runs are independent of one another
        # (independent mode, dropout), longest first
        pieces = []
        for e in unique:
            per_seed = args.mode == "independent" or e.has_dropout
            for part in ([[s] for s in seeds] if per_seed else [seeds]):
                pieces.append((e, part))
        pieces.sort(key=lambda p: -_estimated_cost(p[0], args.mode, len(p[1])))
        items = [(run_experiment_task, (e,), dict(threads=threads, **{**common, "seeds": part})) for e, part in pieces]
        if args.gradients:
            # computed beside the experiments, added to the report after it is written
            from .sweep import run_gradients_task

            items.append((run_gradients_task, (experiments,),
                          dict(seed=args.seed, epochs_scale=args.epochs_scale, threads=threads)))
        progress = _Progress(len(unique), live=False)
        stream = parallel_map(call, items, jobs=jobs, scheduler=args.scheduler)
        parts: dict = {}
        try:
            k = 0
            for index, outcome in stream:
                if index == len(pieces):
                    gradients = outcome
                    continue
                experiment, part = pieces[index]
                done = parts.setdefault(training_key(experiment), {})
                done[part[0]] = outcome
                if len(done) < sum(1 for e, _ in pieces if e is experiment):
                    continue
                outcome = _merge_seeds([done[s] for s in sorted(done, key=seeds.index)])
                k += 1
                trained[training_key(experiment)] = outcome
                progress.finished(k, outcome.experiment.name, assess(outcome)["verdict"], _cache_note(outcome))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            stream.close()
    outcomes = []
    for experiment in experiments:
        outcome = trained.get(training_key(experiment))
        if outcome is not None:
            outcomes.append(_as(experiment, outcome))
    if interrupted:
        print(f"\nInterrupted: writing the report for the {len(outcomes)} finished experiment(s).", flush=True)
    total = time.perf_counter() - started
    meta = {
        "mode": args.mode,
        "seed": args.seed,
        "seeds": args.seeds,
        "epochs_scale": args.epochs_scale,
        "interrupted": interrupted,
        "total_seconds": total,
        "command": "python -m compare " + " ".join(shlex.quote(a) for a in given),
        "machine": machine,
        "blas_threads": args.blas_threads,
        "execution": {
            "jobs": 1 if not parallel else (None if args.scheduler else min(jobs, len(unique))),
            "scheduler": args.scheduler,
            "threads_per_job": threads if parallel else args.blas_threads,
        },
        "cache": {"enabled": cache_dir is not None, "directory": cache_dir},
    }
    document = write_report(outcomes, args.out, meta=meta)
    gradient_failures = []
    if args.gradients and outcomes and not interrupted and gradients is not None:
        from .gradients import add_to_report

        results, flow = gradients
        add_to_report(args.out, results, flow)
        gradient_failures = [r["experiment"] for r in results if not r["passed"]]
        print(f"Gradients: {len(results) - len(gradient_failures)} of {len(results)} within float32 round-off"
              + (f"; OUTSIDE: {', '.join(gradient_failures)}" if gradient_failures else ""), flush=True)
    elif args.gradients and outcomes and not interrupted:
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


def _cache_dir(args) -> str | None:
    """The tf.keras result cache's folder, or ``None`` with ``--no-cache``."""
    if args.no_cache:
        return None
    from .cache import default_cache_dir

    return str(args.cache_dir or default_cache_dir())


def _merge_seeds(outcomes):
    """One outcome from the outcomes of an experiment's seeds, run one seed each (seeds in order)."""
    if len(outcomes) == 1:
        return outcomes[0]
    first = outcomes[0]
    return dataclasses.replace(
        first,
        seeds=[s for o in outcomes for s in o.seeds],
        runs={engine: [r for o in outcomes for r in o.runs[engine]] for engine in first.runs},
    )


def _as(experiment: Experiment, outcome):
    """``outcome`` shown as ``experiment`` (a repeated training, reused under its own name)."""
    if outcome.experiment.name == experiment.name:
        return outcome
    return dataclasses.replace(outcome, experiment=experiment, reused_from=outcome.experiment.name)


def _cache_note(outcome) -> str:
    cached = [r for r in outcome.runs["keras"] if r.from_cache]
    if outcome.sensitivity is not None and outcome.sensitivity.from_cache:
        cached.append(outcome.sensitivity)
    return "tf.keras from the cache" if cached else ""


def _sweep_main(args, grid: dict, given: list) -> int:
    from .engines import machine_info
    from .sweep import TaskStore, available_cores, run_sweep, sweep_tasks
    from .sweep_report import write_sweep_report

    base = EXPERIMENTS[args.base]
    seeds = [args.seed + i for i in range(args.seeds)]
    engines = tuple(e for e in ("keras", "minitensor") if e in args.engines)
    tasks = sweep_tasks(base, grid, seeds=seeds, engines=engines, epochs_scale=args.epochs_scale)
    jobs = args.jobs or available_cores()
    cache_dir = _cache_dir(args)
    threads = args.blas_threads or (1 if args.scheduler else max(1, available_cores() // jobs))
    where = (f"the Dask cluster at {args.scheduler}" if args.scheduler
             else f"{jobs} worker process(es), {threads} thread(s) each")
    combos = len(tasks) // (len(engines) * len(seeds))
    print(
        f"Sweeping {base.name}: {combos} combination(s) x {len(seeds)} seed(s) x {len(engines)} engine(s) = "
        f"{len(tasks)} runs "
        f"on {where}; report in {args.out}/",
        flush=True,
    )
    store = TaskStore(Path(args.out) / "tasks")
    done = [0]

    def on_result(task, result, earlier):
        done[0] += 1
        if earlier:
            result["resumed"] = True
            return
        history = result["history"]
        note = " (tf.keras from the cache)" if result.get("from_cache") else ""
        print(
            f"[{done[0]}/{len(tasks)}] {task.engine:<10} seed {task.seed} "
            + " ".join(f"{n}={v}" for n, v in task.settings)
            + f": val_accuracy {history['val_accuracy'][-1]:.4f}, val_loss {history['val_loss'][-1]:.4g}"
            + f" ({result['task_seconds']:.1f} s){note}",
            flush=True,
        )

    started = time.perf_counter()
    results, interrupted = run_sweep(tasks, store, jobs=jobs, scheduler=args.scheduler, threads=threads,
                                     cache_dir=cache_dir, on_result=on_result)
    earlier = sum(1 for r in results if r is not None and r.get("resumed"))
    if earlier:
        print(f"{earlier} run(s) were kept from an earlier run of this sweep ({store.directory}).", flush=True)
    total = time.perf_counter() - started
    meta = {
        "command": "python -m compare " + " ".join(shlex.quote(a) for a in given),
        "base": base.name,
        "seeds": len(seeds),
        "seed": args.seed,
        "epochs_scale": args.epochs_scale,
        "jobs": None if args.scheduler else jobs,
        "scheduler": args.scheduler,
        "threads_per_task": threads,
        "where": where,
        "total_seconds": total,
        "interrupted": interrupted,
        "machine": machine_info(),
        "cache": {"enabled": cache_dir is not None, "directory": cache_dir},
    }
    if interrupted:
        print("\nInterrupted: writing the report for the runs that finished; the same command continues.",
              flush=True)
    write_sweep_report(tasks, results, grid, args.out, meta=meta)
    finished = sum(r is not None for r in results)
    print(f"{finished} of {len(tasks)} runs finished. Total {total:.0f} s. Report: {args.out}/index.html", flush=True)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
