"""The benchmark run: every engine on every model in the same process, alternating, after warm-up.

For each model, :func:`run_benchmarks`

1. builds the model in every available engine (same data arrays, same seed per engine);
2. trains one epoch per engine and records its ``fit`` wall time as the *first epoch* (it
   includes tracing, XLA-free graph building, Numba compilation or cache loading, slot creation);
3. trains ``warmup`` more epochs per engine, untimed;
4. runs ``repeats`` rounds; in each round every engine trains one epoch, the engines' order
   rotating from round to round so that no engine always runs first or last;
5. after the timed rounds, starts one child process per engine that trains the model for one
   epoch and reports its peak RSS (:mod:`benchmarks.child`).

Steady-state times are the median, min and max over the rounds of the epoch time (see
:class:`benchmarks.engines.EpochTime`); the time per step is the epoch time divided by the steps
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

from . import environment, micro
from .specs import BASELINE_ENGINE, FLOP_COUNT_NOTE, MODELS, RunConfig, flops_per_row

__all__ = ["run_benchmarks", "SCHEMA", "measure_memory"]

#: Identifies the layout of the JSON report (see :mod:`benchmarks.report`).
SCHEMA = "minitensor-benchmarks/1"

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure_memory(model: str, engine: str, x_path: str, y_path: str, seed: int) -> dict:
    """Peak RSS of a fresh process training one epoch of ``model`` in ``engine`` on the arrays saved
    at ``x_path`` and ``y_path`` (``.npy``); see :mod:`benchmarks.child`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    command = [sys.executable, "-m", "benchmarks.child", "--model", model, "--engine", engine,
               "--x", x_path, "--y", y_path, "--seed", str(seed)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=_PACKAGE_ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"child exited with {proc.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1])


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
    from .engines import make_trainer

    spec = MODELS[model]
    rows = config.rows_for(model)
    x, y = training_arrays(model, rows, config.seed)
    out = {engine: _new_row(model, engine, config) for engine in engines}
    trainers = {}
    for engine in engines:
        try:
            trainers[engine] = make_trainer(engine, model, x, y, config.seed)
        except Exception as error:  # noqa: BLE001 (one engine failing must not stop the others)
            _fail(out[engine], "build", error)

    def live():
        return [e for e in engines if e in trainers and out[e]["status"] == "ok"]

    def one_epoch(engine, preset):
        trainer = trainers[engine]
        if preset and spec.subnormal_moments:
            trainer.preset_subnormal_moments()
        return trainer.epoch()

    for engine in live():  # first epoch: tracing / compilation / slot creation
        try:
            first = one_epoch(engine, preset=False)  # the optimizer's state does not exist yet
            out[engine]["first_epoch_s"] = first.fit_s
            out[engine]["first_epoch_loop_s"] = first.epoch_s
        except NotImplementedError as error:
            out[engine].update(status="skipped", reason=str(error))
        except Exception as error:  # noqa: BLE001
            _fail(out[engine], "first epoch", error)
    for _ in range(config.warmup):
        for engine in live():
            try:
                one_epoch(engine, preset=True)
            except NotImplementedError as error:
                out[engine].update(status="skipped", reason=str(error))
            except Exception as error:  # noqa: BLE001
                _fail(out[engine], "warm-up", error)
    loads = []
    for round_index in range(config.repeats):
        loads.append(environment.load_average())
        order = live()
        if order:
            shift = round_index % len(order)
            order = order[shift:] + order[:shift]
        for engine in order:
            try:
                timing = one_epoch(engine, preset=True)
            except NotImplementedError as error:
                out[engine].update(status="skipped", reason=str(error))
                continue
            except Exception as error:  # noqa: BLE001
                _fail(out[engine], f"timed epoch {round_index + 1}", error)
                continue
            out[engine]["epoch_s"].append(timing.epoch_s)
            out[engine]["fit_call_s"].append(timing.fit_s)
        _log(f"  {model}: round {round_index + 1}/{config.repeats} done")

    for row in out.values():
        row["load_average_per_round"] = loads
    for engine, trainer in trainers.items():
        row = out[engine]
        row["fell_back"] = trainer.fell_back
        row["notes"] = list(trainer.notes)
        try:
            row["diagnostics"] = trainer.diagnostics()
        except Exception as error:  # noqa: BLE001 (diagnostics are extras)
            row["diagnostics"] = {"error": repr(error)}
    trainers.clear()

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

    if config.memory and not spec.subnormal_moments:  # Ls is model L: same memory
        with tempfile.TemporaryDirectory(prefix="benchmarks-") as directory:
            x_path, y_path = os.path.join(directory, "x.npy"), os.path.join(directory, "y.npy")
            np.save(x_path, x)
            np.save(y_path, y)
            for engine in engines:
                row = out[engine]
                if row["status"] != "ok":
                    continue
                _log(f"  {model}: peak memory of {engine} (child process)")
                row["memory"] = measure_memory(model, engine, x_path, y_path, config.seed)
                row["peak_rss_mib"] = row["memory"].get("peak_rss_mib")
    return list(out.values())


def _command(config: RunConfig) -> str:
    if config.argv is None:
        return "benchmarks.run_benchmarks(config) from Python (the settings are under 'config')"
    return shlex.join(["python", "-m", "benchmarks", *config.argv])


def run_benchmarks(config: RunConfig, out=print) -> dict:
    """Run the benchmarks described by ``config``; print the Markdown report with ``out``; return the report.

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
            "repeats": config.repeats,
            "warmup": config.warmup,
            "rows": {m: config.rows_for(m) for m in config.models},
            "memory": config.memory,
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

    has_l = any(MODELS[m].units[0] == 784 for m in config.models)

    def measure_gemm(when):
        _log(f"float32 GEMM peak ({when}): np.dot {config.gemm_size}x{config.gemm_size}, {config.gemm_repeats} repeats")
        peak = micro.gemm_peak(config.gemm_size, config.gemm_repeats, config.seed)
        step = None
        if has_l:
            _log(f"matrix products of one training step of L ({when}, np.dot only)")
            step = micro.gemm_training_step(MODELS["L"].units, MODELS["L"].batch_size, config.adam_steps,
                                            config.adam_repeats, config.seed)
        return peak, step

    gemm_start, step_start = measure_gemm("start")
    report["adam_subnormal"] = None
    if any(e.startswith("minitensor") for e in engines):
        _log("Adam on subnormal moments (minitensor reference optimizer)")
        report["adam_subnormal"] = micro.adam_subnormal(config.adam_steps, config.adam_repeats, config.seed)

    for model in config.models:
        _log(f"model {model}: {', '.join(engines) or 'no engine available'}")
        report["results"].extend(_run_model(model, engines, config))

    gemm_end, step_end = measure_gemm("end")
    # the machine may be shared: of the two measurements, the faster one is the peak (ratios to it are conservative)
    gemm = max(gemm_start, gemm_end, key=lambda g: g["gflops"])
    report["gemm_peak"] = {**gemm, "measured_at": "start" if gemm is gemm_start else "end",
                           "gflops_start": gemm_start["gflops"], "gflops_end": gemm_end["gflops"],
                           "start": gemm_start, "end": gemm_end}
    report["gemm_training_step"] = None
    if has_l:
        step = min(step_start, step_end, key=lambda g: g["median_s"])
        report["gemm_training_step"] = {**step, "measured_at": "start" if step is step_start else "end",
                                        "gflops_start": step_start["gflops"], "gflops_end": step_end["gflops"]}
    for row in report["results"]:
        if row["gflops"] is not None:
            row["fraction_of_gemm_peak"] = row["gflops"] / gemm["gflops"]

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
