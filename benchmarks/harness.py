"""The benchmark run: every engine on every model in the same run, alternating, after warm-up.

For each model, :func:`run_benchmarks`

1. saves the model's float32 arrays once and starts one worker process per engine
   (:mod:`benchmarks.worker`; ``isolation="in-process"`` builds every engine in this process
   instead), one after another; each builds the model (same arrays, same seed);
2. trains one epoch per engine and records its ``fit`` wall time as the *first epoch* (it
   includes tracing, XLA-free graph building, Numba compilation or cache loading, slot creation),
   and the worker's peak RSS after it;
3. trains ``warmup`` more epochs per engine, untimed;
4. runs ``repeats`` rounds; in each round every engine trains ``k`` consecutive epochs in one
   ``fit(epochs=k)`` call, ``k`` chosen from its last warm-up epoch so that a round lasts about
   ``round_s`` seconds (:func:`epochs_per_round`), the engines' order rotating from round to
   round so that no engine always runs first or last. Only one engine
   trains at a time, and each epoch starts after a short pause (``settle_s``), so no engine is
   timed while another's threads are still running on this machine's cores.

After the models, the compiled path's first epoch is measured in fresh processes with an empty and
then a warm Numba kernel cache (:mod:`benchmarks.coldstart`, models ``config.cold_start``), and the
GEMM peak is measured again. ``config.runs`` > 1 repeats all of this (fresh workers each time) and
combines the runs (:mod:`benchmarks.aggregate`); the targets are then judged (:mod:`benchmarks.targets`).

Steady-state times are the median, min and max over the rounds of the round's mean epoch time
(see :class:`benchmarks.engines.EpochTime`); the time per step is the epoch time divided by the steps
of the epoch (``ceil(rows / batch_size)``). For Ls the Adam state is preset (untimed) before every
epoch after the first, so each timed epoch starts from the same subnormal state.

Example:
    >>> from benchmarks.specs import quick_config
    >>> report = run_benchmarks(quick_config(models=["A"], engines=["minitensor-reference"],
    ...                                      memory=False), out=lambda text: None)  # doctest: +SKIP
    >>> report["results"][0]["engine"]  # doctest: +SKIP
    'minitensor-reference'
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np

from . import aggregate, coldstart, environment, micro, targets, worker
from .specs import BASELINE_ENGINE, FLOP_COUNT_NOTE, MODELS, RunConfig, flops_per_row

__all__ = ["run_benchmarks", "SCHEMA", "measure_memory", "epochs_per_round"]

#: Identifies the layout of the JSON report (see :mod:`benchmarks.report`).
SCHEMA = "minitensor-benchmarks/2"

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _WorkerFailed(RuntimeError):
    """A worker process answered a command with an error, or died."""


def _worker_command(model: str, engine: str, x_path: str, y_path: str, seed: int) -> list:
    return [sys.executable, "-m", "benchmarks.worker", "--model", model, "--engine", engine,
            "--x", x_path, "--y", y_path, "--seed", str(seed)]


class _Worker:
    """A :mod:`benchmarks.worker` process training one model in one engine, driven over pipes.

    ``env`` adds (or replaces) environment variables of the worker, e.g. ``NUMBA_CACHE_DIR``.
    ``started_s`` is the ``perf_counter`` value when the process was started, ``ready_s`` the
    seconds from then until the worker had imported its engine and built the model.
    """

    def __init__(self, model: str, engine: str, x_path: str, y_path: str, seed: int, env: dict | None = None):
        env = {**os.environ, **(env or {})}
        env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self.started_s = time.perf_counter()
        self._proc = subprocess.Popen(_worker_command(model, engine, x_path, y_path, seed), cwd=_PACKAGE_ROOT,
                                      env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                      text=True, bufsize=1)
        self.ready = self._read()
        self.ready_s = time.perf_counter() - self.started_s

    def _read(self) -> dict:
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait()
            self._stderr.seek(0)
            tail = " | ".join(self._stderr.read().strip().splitlines()[-3:])
            raise _WorkerFailed(f"worker exited with {self._proc.returncode}: {tail}")
        message = json.loads(line)
        if "error" not in message:
            return message
        if message.get("type") == "NotImplementedError":  # the engine cannot do this: the row is skipped
            raise NotImplementedError(message["error"])
        raise _WorkerFailed(f"{message.get('type')}: {message['error']}")

    def call(self, **command) -> dict:
        """Send one command and return the worker's answer (raises on an error answer)."""
        self._proc.stdin.write(json.dumps(command) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            if self._proc.poll() is None:
                self._proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self._proc.stdin.close()
                self._proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        finally:
            self._stderr.close()


class _InProcess:
    """The same commands as :class:`_Worker`, answered by a trainer in this process."""

    def __init__(self, model: str, engine: str, x, y, seed: int):
        from .engines import make_trainer

        self.trainer = make_trainer(engine, model, x, y, seed)
        self.ready = {"ready": True}

    def call(self, **command) -> dict:
        """The trainer's answer to one command, as a worker gives it (without the peak memory)."""
        return worker.answer(self.trainer, command)

    def close(self) -> None:
        self.trainer = None


def measure_memory(model: str, engine: str, x_path: str, y_path: str, seed: int) -> dict:
    """Peak RSS of a fresh process training one epoch of ``model`` in ``engine`` on the arrays saved
    at ``x_path`` and ``y_path`` (``.npy``): a :mod:`benchmarks.worker` that trains one epoch and quits."""
    try:
        child = _Worker(model, engine, x_path, y_path, seed)
    except Exception as error:  # noqa: BLE001
        return {"error": str(error)}
    try:
        epoch = child.call(cmd="epoch")
        return {"peak_rss_mib": epoch["peak_rss_mib"], "setup_rss_mib": child.ready["setup_rss_mib"],
                "source": epoch["source"]}
    except Exception as error:  # noqa: BLE001
        return {"error": str(error)}
    finally:
        child.close()


def _summary(values):
    if not values:
        return None, None, None
    return statistics.median(values), min(values), max(values)


def _new_row(model: str, engine: str, config: RunConfig) -> dict:
    spec = MODELS[model]
    rows = config.rows_for(model)
    return {
        "model": model,
        "engine": engine,
        "status": "ok",
        "reason": None,
        "rows": rows,
        "full_rows": spec.full_rows,
        "batch_size": spec.batch_size,
        "steps_per_epoch": math.ceil(rows / spec.batch_size),
        "full_steps_per_epoch": math.ceil(spec.full_rows / spec.batch_size),
        "first_epoch_s": None,
        "first_epoch_loop_s": None,
        "epoch_s": [],
        "fit_call_s": [],
        "epoch_median_s": None,
        "epoch_min_s": None,
        "epoch_max_s": None,
        "step_median_s": None,
        "step_min_s": None,
        "step_max_s": None,
        "full_epoch_estimate_s": None,
        "speedup_vs_baseline": None,
        "gflops": None,
        "fraction_of_gemm_peak": None,
        "peak_rss_mib": None,
        "memory": None,
        "epochs_per_round": None,
        "fell_back": False,
        "notes": [],
        "diagnostics": {},
        "load_average_per_round": [],
    }


def _fail(row: dict, stage: str, error: BaseException) -> None:
    row["status"] = "error"
    row["reason"] = f"{stage}: {type(error).__name__}: {error}"
    _log(f"  {row['engine']} failed in {stage}:\n" + "".join(traceback.format_exception(error))[-2000:])


def _run_model(model: str, engines: list, config: RunConfig) -> list:
    from .data import training_arrays

    spec = MODELS[model]
    rows = config.rows_for(model)
    x, y = training_arrays(model, rows, config.seed)
    out = {engine: _new_row(model, engine, config) for engine in engines}
    with tempfile.TemporaryDirectory(prefix="benchmarks-") as directory:
        x_path, y_path = os.path.join(directory, "x.npy"), os.path.join(directory, "y.npy")
        np.save(x_path, x)
        np.save(y_path, y)
        runners = {}
        try:
            for engine in engines:  # one at a time: an engine's start-up does not overlap another's work
                try:
                    if config.isolation == "process":
                        runners[engine] = _Worker(model, engine, x_path, y_path, config.seed)
                    else:
                        runners[engine] = _InProcess(model, engine, x, y, config.seed)
                except Exception as error:  # noqa: BLE001 (one engine failing must not stop the others)
                    _fail(out[engine], "build", error)
            _train_rounds(model, engines, runners, out, config)
            for engine, runner in runners.items():
                try:
                    out[engine].update(runner.call(cmd="report"))
                except Exception as error:  # noqa: BLE001 (diagnostics are extras)
                    out[engine]["diagnostics"] = {"error": repr(error)}
        finally:
            for runner in runners.values():
                runner.close()

        if config.memory:
            for engine in engines:
                row = out[engine]
                if row["status"] != "ok":
                    continue
                if config.isolation == "in-process":
                    _log(f"  {model}: peak memory of {engine} (child process)")
                    row["memory"] = measure_memory(model, engine, x_path, y_path, config.seed)
                row["peak_rss_mib"] = (row["memory"] or {}).get("peak_rss_mib")

    flops = flops_per_row(spec.units) * rows
    for row in out.values():
        median, low, high = _summary(row["epoch_s"])
        if median is None:
            continue
        steps = row["steps_per_epoch"]
        row.update(epoch_median_s=median, epoch_min_s=low, epoch_max_s=high,
                   step_median_s=median / steps, step_min_s=low / steps, step_max_s=high / steps,
                   full_epoch_estimate_s=median / steps * row["full_steps_per_epoch"],
                   gflops=flops / median / 1e9)
    base = out.get(BASELINE_ENGINE)
    if base is not None and base["epoch_median_s"]:
        for row in out.values():
            if row["epoch_median_s"]:
                row["speedup_vs_baseline"] = base["epoch_median_s"] / row["epoch_median_s"]
    return list(out.values())


def epochs_per_round(epoch_s: float, spec, config: RunConfig) -> int:
    """Consecutive epochs an engine trains per round: enough for ``config.round_s`` seconds.

    One for Ls (its Adam state is preset before every timed epoch) and for ``round_s = 0``.

    Example:
        >>> from benchmarks.specs import MODELS, RunConfig
        >>> epochs_per_round(0.001, MODELS["A"], RunConfig(round_s=0.25)), epochs_per_round(0.3, MODELS["A"], RunConfig())
        (250, 1)
    """
    if spec.subnormal_moments or config.round_s <= 0 or epoch_s <= 0:
        return 1
    return max(1, min(_MAX_EPOCHS_PER_ROUND, round(config.round_s / epoch_s)))


#: Upper bound of :func:`epochs_per_round` (a guard against a mis-measured warm-up epoch).
_MAX_EPOCHS_PER_ROUND = 1000


def _train_rounds(model: str, engines: list, runners: dict, out: dict, config: RunConfig) -> None:
    """First epoch, warm-up and the timed rounds (engines alternating) of every runner."""
    spec = MODELS[model]

    def live():
        return [e for e in engines if e in runners and out[e]["status"] == "ok"]

    def train(engine, stage, epochs=1, preset=True):
        """``epochs`` epochs of ``engine`` after a pause; its answer, or None (the row is marked)."""
        time.sleep(config.settle_s)  # the previous engine's threads go idle before this one is timed
        try:
            return runners[engine].call(cmd="epoch", epochs=epochs, preset=preset)
        except NotImplementedError as error:
            out[engine].update(status="skipped", reason=str(error))
        except Exception as error:  # noqa: BLE001
            _fail(out[engine], stage, error)
        return None

    latest = {}  # engine -> its latest epoch time, to size its rounds
    for engine in live():  # first epoch: tracing / compilation / slot creation
        first = train(engine, "first epoch", preset=False)  # the optimizer's state does not exist yet
        if first is not None:
            out[engine].update(first_epoch_s=first["fit_s"], first_epoch_loop_s=first["epoch_s"][0])
            latest[engine] = first["epoch_s"][0]
            if config.memory and "peak_rss_mib" in first:  # a worker: its peak after one epoch is the memory figure
                out[engine]["memory"] = {"peak_rss_mib": first["peak_rss_mib"], "source": first["source"],
                                         "setup_rss_mib": runners[engine].ready.get("setup_rss_mib")}
    for _ in range(config.warmup):
        for engine in live():
            warm = train(engine, "warm-up")
            if warm is not None:
                latest[engine] = warm["epoch_s"][-1]
    counts = {engine: epochs_per_round(latest.get(engine, 0.0), spec, config) for engine in live()}
    for engine, count in counts.items():
        out[engine]["epochs_per_round"] = count
    loads = []
    for round_index in range(config.repeats):
        loads.append(environment.load_average())
        order = live()
        if order:
            shift = round_index % len(order)
            order = order[shift:] + order[:shift]
        for engine in order:
            timing = train(engine, f"timed round {round_index + 1}", epochs=counts[engine])
            if timing is not None:
                out[engine]["epoch_s"].append(statistics.fmean(timing["epoch_s"]))
                out[engine]["fit_call_s"].append(timing["fit_s"] / counts[engine])
        _log(f"  {model}: round {round_index + 1}/{config.repeats} done")
    for row in out.values():
        row["load_average_per_round"] = loads


def _command(config: RunConfig) -> str:
    if config.argv is None:
        return "benchmarks.run_benchmarks(config) from Python (the settings are under 'config')"
    return shlex.join(["python", "-m", "benchmarks", *config.argv])


def _cold_start(config: RunConfig) -> list:
    """The compiled path's first epoch, cold and warm, of every model in ``config.cold_start``."""
    from .data import training_arrays

    measured = []
    for model in config.cold_start:
        _log(f"cold start: {model} in {coldstart.COLD_START_ENGINE}, empty and then warm Numba cache")
        x, y = training_arrays(model, config.rows_for(model), config.seed)
        with tempfile.TemporaryDirectory(prefix="benchmarks-") as directory:
            x_path, y_path = os.path.join(directory, "x.npy"), os.path.join(directory, "y.npy")
            np.save(x_path, x)
            np.save(y_path, y)
            measured.append(coldstart.measure_cold_warm(model, x_path, y_path, config.seed,
                                                        engine=coldstart.COLD_START_ENGINE))
    return measured


def _measure_once(config: RunConfig, engines: list, index: int) -> dict:
    """One whole run: GEMM peak, every model in every engine, the cold start, the GEMM peak again."""
    started = _dt.datetime.now()
    clock = time.perf_counter()
    run = {"run": index + 1, "started": started.isoformat(timespec="seconds"),
           "load_average": environment.load_average()}
    has_l = any(MODELS[m].units[0] == 784 for m in config.models)
    label = f"run {index + 1} of {config.runs}, " if config.runs > 1 else ""

    def measure_gemm(when):
        _log(f"float32 GEMM peak ({label}{when}): np.dot {config.gemm_size}x{config.gemm_size}, "
             f"{config.gemm_repeats} repeats")
        peak = micro.gemm_peak(config.gemm_size, config.gemm_repeats, config.seed)
        step = None
        if has_l:
            _log(f"matrix products of one training step of L ({label}{when}, np.dot only)")
            step = micro.gemm_training_step(MODELS["L"].units, MODELS["L"].batch_size, config.adam_steps,
                                            config.adam_repeats, config.seed)
        return peak, step

    gemm_start, step_start = measure_gemm("start")
    run["adam_subnormal"] = None
    if index == 0 and any(e.startswith("minitensor") for e in engines):
        _log("Adam on subnormal moments (minitensor reference optimizer)")
        run["adam_subnormal"] = micro.adam_subnormal(config.adam_steps, config.adam_repeats, config.seed)

    run["results"] = []
    for model in config.models:
        _log(f"model {model} ({label.rstrip(', ') or 'one run'}): {', '.join(engines) or 'no engine available'}")
        run["results"].extend(_run_model(model, engines, config))

    run["cold_start"] = _cold_start(config) if coldstart.COLD_START_ENGINE in engines else []

    gemm_end, step_end = measure_gemm("end")
    # the machine may be shared: of the two measurements, the faster one is the peak (ratios to it are conservative)
    gemm = max(gemm_start, gemm_end, key=lambda g: g["gflops"])
    run["gemm_peak"] = {**gemm, "measured_at": "start" if gemm is gemm_start else "end",
                        "gflops_start": gemm_start["gflops"], "gflops_end": gemm_end["gflops"],
                        "start": gemm_start, "end": gemm_end}
    run["gemm_training_step"] = None
    if has_l:
        step = min(step_start, step_end, key=lambda g: g["median_s"])
        run["gemm_training_step"] = {**step, "measured_at": "start" if step is step_start else "end",
                                     "gflops_start": step_start["gflops"], "gflops_end": step_end["gflops"]}
    for row in run["results"]:
        if row["gflops"] is not None:
            row["fraction_of_gemm_peak"] = row["gflops"] / gemm["gflops"]
    run["load_average_end"] = environment.load_average()
    run["duration_s"] = time.perf_counter() - clock
    return run


def run_benchmarks(config: RunConfig, out=print) -> dict:
    """Run the benchmarks described by ``config``; print the Markdown report with ``out``; return the report.

    With ``config.runs`` > 1 the whole measurement is repeated; the report's ``results`` then
    combine the runs (:func:`benchmarks.aggregate.aggregate_rows`) and ``runs`` keeps each one.
    The report (a JSON-ready dict, layout in :mod:`benchmarks.report`) is also written to
    ``config.output_dir`` as ``<date>-<host>.json`` and ``.md`` (``-quick`` added for ``--quick``)
    unless ``output_dir`` is ``None``.
    """
    from . import report as report_module
    from .engines import probe

    started = _dt.datetime.now()
    clock = time.perf_counter()
    machine = environment.machine_info()
    report = {
        "schema": SCHEMA,
        "command": _command(config),
        "argv": None if config.argv is None else list(config.argv),
        "started": started.isoformat(timespec="seconds"),
        "machine": machine,
        "versions": environment.versions(),
        "source": environment.source_info(),
        "config": {
            "models": list(config.models),
            "engines": list(config.engines),
            "runs": config.runs,
            "repeats": config.repeats,
            "warmup": config.warmup,
            "rows": {m: config.rows_for(m) for m in config.models},
            "memory": config.memory,
            "isolation": config.isolation,
            "settle_s": config.settle_s,
            "round_s": config.round_s,
            "cold_start": list(config.cold_start),
            "seed": config.seed,
            "quick": config.quick,
            "shuffle": True,
            "verbose": 0,
            "metrics": ["accuracy"],
        },
        "baseline": BASELINE_ENGINE,
        "flop_count": FLOP_COUNT_NOTE,
        "engines": {},
        "results": [],
    }
    engines = []
    for engine in config.engines:
        available, reason, engine_versions = probe(engine)
        report["engines"][engine] = {"available": available, "reason": reason, "versions": engine_versions}
        if available:
            engines.append(engine)
        else:
            _log(f"skipping {engine}: {reason}")

    runs = [_measure_once(config, engines, index) for index in range(config.runs)]
    report["runs"] = runs
    report["results"] = aggregate.aggregate_rows([run["results"] for run in runs])
    fastest = max(runs, key=lambda run: run["gemm_peak"]["gflops"])
    report["gemm_peak"] = {**fastest["gemm_peak"], "run": fastest["run"],
                           "gflops_per_run": [run["gemm_peak"]["gflops"] for run in runs]}
    steps = [run for run in runs if run["gemm_training_step"]]
    report["gemm_training_step"] = None
    if steps:
        best = min(steps, key=lambda run: run["gemm_training_step"]["median_s"])
        report["gemm_training_step"] = {**best["gemm_training_step"], "run": best["run"]}
    report["adam_subnormal"] = runs[0]["adam_subnormal"]
    report["cold_start"] = aggregate.aggregate_cold_start([run["cold_start"] for run in runs])
    report["targets"] = targets.evaluate_targets(report)

    machine["load_average_end"] = environment.load_average()
    machine["blas_end"] = environment.blas_info()  # libraries loaded during the run, e.g. SciPy's
    machine["subnormals_flushed_in_main_thread_end"] = environment.subnormals_flushed()
    report["finished"] = _dt.datetime.now().isoformat(timespec="seconds")
    report["duration_s"] = time.perf_counter() - clock
    markdown = report_module.render_markdown(report)
    out(markdown)
    if config.output_dir is not None:
        paths = report_module.write_report(report, markdown, config.output_dir, started, machine["host"], config.quick)
        report["files"] = [str(p) for p in paths]
        out("Wrote " + " and ".join(str(p) for p in paths))
    return report
