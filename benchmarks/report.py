"""The report: a Markdown table for people and a JSON file for programs.

JSON layout (``"schema": "minitensor-benchmarks/2"``); times in seconds, memory in MiB:

* ``command``, ``argv``: the exact command (``python -m benchmarks ...``) and its arguments.
* ``started``, ``finished`` (ISO 8601), ``duration_s``.
* ``machine``: ``host``, ``cpu_model``, ``cpu_flags``, ``cores_total``, ``cores_available``,
  ``platform``, ``blas`` (threadpoolctl's view, NumPy's BLAS first: library, version,
  ``num_threads``; ``blas_end`` the same at the end of the run), ``env`` (the
  threading/kernel environment variables found), ``openblas_env`` (the ``OPENBLAS_*`` ones),
  ``load_average`` and ``load_average_end``, ``subnormals_flushed_in_main_thread`` (and ``_end``).
* ``source``: ``commit`` (git HEAD), ``minitensor_dirty`` and ``minitensor_changes`` (uncommitted
  changes under ``minitensor/``: the numbers then describe the working tree, not the commit).
* ``versions``: python, numpy, numba, tensorflow, keras, minitensor, ... (``null`` = not installed).
* ``config``: ``models``, ``engines``, ``runs``, ``repeats``, ``warmup``, ``rows`` (per model), ``memory``,
  ``isolation`` (``"process"``: a worker process per engine; ``"in-process"``), ``settle_s``,
  ``round_s``, ``cold_start`` (models), ``seed``, ``quick``, ``shuffle`` (always true), ``verbose``, ``metrics``.
* ``baseline``: the engine ratios are taken against (``"tf.keras"``); ``flop_count``: what the
  GFLOP/s count.
* ``engines``: per engine name ``{"available", "reason", "versions"}``.
* ``runs``: one object per whole run (``--runs N``): ``run`` (1, 2, ...), ``started``,
  ``load_average``, ``load_average_end``, ``duration_s``, and that run's ``results``, ``gemm_peak``,
  ``gemm_training_step``, ``adam_subnormal`` (measured in the first run only) and ``cold_start``, laid
  out as below.
* ``gemm_peak``: the run with the fastest peak (``run``; ``gflops_per_run`` lists every run's). In
  each run it is measured at the start and at the end (``start``, ``end``); the faster of
  the two (``measured_at``) gives ``n``, ``repeats``, ``seconds``, ``median_s``, ``gflops`` (at the
  median), ``gflops_best``, ``blas_threads``, ``blas_threads_source``; also ``gflops_start``,
  ``gflops_end``.
* ``gemm_training_step``: see :func:`benchmarks.micro.gemm_training_step`, the faster of a start and
  an end measurement, with ``measured_at``, ``gflops_start``, ``gflops_end`` (``null`` without L or Ls).
* ``adam_subnormal``: see :func:`benchmarks.micro.adam_subnormal` (``null`` without minitensor).
* ``cold_start``: per model of ``config.cold_start`` (see :mod:`benchmarks.coldstart`, combined over
  the runs by :func:`benchmarks.aggregate.aggregate_cold_start`): ``model``, ``engine``, ``runs``,
  ``cold`` and ``warm`` (``first_epoch_s``, ``ready_s``, ``total_s``, each with ``_min_s`` and
  ``_max_s``; ``per_run_first_epoch_s``, ``cache_files_after``, ``fell_back``), ``errors``.
* ``targets``: see :func:`benchmarks.targets.evaluate_targets`.
* ``results``: one object per model and available engine: ``model``, ``engine``, ``status``
  (``"ok"``, ``"skipped"``, ``"error"``), ``reason``, ``rows``, ``full_rows``, ``batch_size``,
  ``steps_per_epoch``, ``full_steps_per_epoch``, ``first_epoch_s`` (the first ``fit`` call),
  ``first_epoch_loop_s``, ``epochs_per_round``, ``epoch_s`` (per timed round: the mean of its
  epochs) and ``fit_call_s`` (per round: the ``fit`` call's wall time over its epochs), ``epoch_median_s``,
  ``epoch_min_s``, ``epoch_max_s``, ``step_median_s``, ``step_min_s``, ``step_max_s``,
  ``full_epoch_estimate_s`` (median step x full steps), ``speedup_vs_baseline`` (baseline epoch /
  this epoch), ``gflops``, ``fraction_of_gemm_peak``, ``peak_rss_mib``, ``memory`` (``peak_rss_mib``,
  ``setup_rss_mib`` before training, ``source``; or ``error``), ``fell_back``, ``notes``, ``diagnostics``,
  ``load_average_per_round`` (the 1/5/15-minute load averages as each timed round began: the machine
  may be shared). The rows of ``results`` combine the runs (:mod:`benchmarks.aggregate`) and add
  ``runs``, ``runs_ok``, ``spread`` (``"rounds"``: min and max are over one run's rounds; ``"runs"``:
  over the runs' medians), ``run_epoch_median_s``, ``run_speedup_vs_baseline``, ``run_first_epoch_s``,
  ``speedup_min``, ``speedup_max``; the rows inside ``runs`` are each run's own.

Example:
    >>> format_seconds(0.000123)
    '123 µs'
    >>> format_range(0.002, 0.0019, 0.0031)
    '2.00 ms (1.90–3.10)'
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .specs import MODELS

__all__ = ["render_markdown", "write_report", "format_seconds", "format_range", "report_paths"]

_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))


def _unit(seconds: float):
    for scale, name in _UNITS:
        if abs(seconds) >= scale:
            return scale, name
    return _UNITS[-1]


def _digits(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_seconds(seconds) -> str:
    """``seconds`` with three significant digits in s, ms, µs or ns; ``—`` for ``None``."""
    if seconds is None:
        return "—"
    scale, name = _unit(seconds)
    return f"{_digits(seconds / scale)} {name}"


def format_range(median, low, high) -> str:
    """``median (low–high)`` in the median's unit; ``—`` when there is no median."""
    if median is None:
        return "—"
    scale, name = _unit(median)
    return f"{_digits(median / scale)} {name} ({_digits(low / scale)}–{_digits(high / scale)})"


def _speedup(value) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}×" if value >= 100 else f"{value:.1f}×" if value >= 10 else f"{value:.2f}×"


def _speedup_range(row: dict) -> str:
    """The speed-up, with the runs' range when there were several runs."""
    text = _speedup(row["speedup_vs_baseline"])
    if row.get("spread") == "runs" and row.get("speedup_min") is not None:
        text += f" ({_speedup(row['speedup_min'])[:-1]}–{_speedup(row['speedup_max'])[:-1]})"
    return text


def _footnote(footnotes: list, text: str) -> str:
    if text not in footnotes:
        footnotes.append(text)
    return f"[{footnotes.index(text) + 1}]"


def _row_cells(row: dict, footnotes: list) -> list:
    notes = []
    if row["fell_back"]:
        notes.append("**fell back to reference path** (these are reference-path numbers)")
    for note in row["notes"]:
        if note.startswith("fell back"):
            note = "fallback reason: " + note.split(":", 1)[1].strip()
        notes.append(_footnote(footnotes, note))
    if row["rows"] < row["full_rows"]:
        notes.append(f"subset of {row['full_rows']:,} rows; full epoch ≈ {format_seconds(row['full_epoch_estimate_s'])}")
    if row.get("runs", 1) > 1 and row.get("runs_ok", row["runs"]) < row["runs"]:
        notes.append(f"measured in {row['runs_ok']} of {row['runs']} runs")
    if row["memory"] and "error" in row["memory"]:
        notes.append(_footnote(footnotes, f"memory child: {row['memory']['error']}"))
    share = row["diagnostics"].get("first_kernel_momentum_subnormal_share")
    if share is not None and MODELS[row["model"]].subnormal_moments:
        notes.append(f"after timing: {share:.0%} of 1st-kernel Adam m subnormal")
    if row["status"] != "ok":
        return [row["model"], row["engine"], f"{row['status']}: {row['reason']}"] + ["—"] * 6 + ["; ".join(notes)]
    gflops = "—"
    if MODELS[row["model"]].units[0] == 784 and row["gflops"] is not None:
        gflops = f"{row['gflops']:.1f}"
        if row["fraction_of_gemm_peak"] is not None:
            gflops += f" ({row['fraction_of_gemm_peak']:.0%})"
    rss = "—" if row["peak_rss_mib"] is None else f"{row['peak_rss_mib']:.0f} MiB"
    return [
        row["model"],
        row["engine"],
        f"{row['rows']:,} ({row['steps_per_epoch']:,})",
        format_range(row["step_median_s"], row["step_min_s"], row["step_max_s"]),
        format_range(row["epoch_median_s"], row["epoch_min_s"], row["epoch_max_s"]),
        format_seconds(row["first_epoch_s"]),
        rss,
        _speedup_range(row),
        gflops,
        "; ".join(notes),
    ]


def _table(header: list, rows: list) -> list:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _source_line(source: dict) -> str:
    if not source.get("commit"):
        return "Source: not a git checkout."
    line = f"Source: commit {source['commit'][:12]}"
    if source.get("minitensor_dirty"):
        line += " plus uncommitted changes to " + ", ".join(source["minitensor_changes"])
    return line + "."


def _method(config: dict) -> str:
    """The report's sentence on how the engines were run and timed."""
    if config.get("isolation", "in-process") == "process":
        where = ("every engine trains the same float32 arrays (saved once to .npy files) in its own worker "
                 "process, one engine at a time (the others wait on a pipe, their threads idle)")
        memory = ("Peak RSS: the worker's high-water mark (VmHWM) after its first epoch: interpreter, engine, "
                  "the arrays, the model and one epoch of training.")
    else:
        where = "every engine trains the same float32 arrays in this one process"
        memory = ("Peak RSS: a fresh child process that imports the engine, loads the same arrays, builds the "
                  "model and fits one epoch (its VmHWM).")
    settle = config.get("settle_s")
    pause = f" Every round starts after a {settle * 1000:.0f} ms pause." if settle else ""
    round_s = config.get("round_s") or 0
    if round_s > 0:
        rounds = (f"{config['repeats']} rounds in which each engine trains k consecutive epochs in one "
                  f"`fit(epochs=k)` call, k chosen from its warm-up epoch so that the round lasts about "
                  f"{round_s:g} s (1 for Ls; `epochs_per_round` in the JSON)")
        per_round = "the round's mean epoch time"
    else:
        rounds = f"{config['repeats']} rounds of one epoch per engine"
        per_round = "the epoch time"
    runs = config.get("runs", 1)
    whole = ""
    if runs > 1:
        whole = (f" The whole measurement ran {runs} times (`--runs {runs}`), each run with fresh worker processes "
                 "and its own GEMM peak: every time and speed-up below is the median of the runs' medians, in "
                 "parentheses the smallest and largest of the runs' medians; a speed-up is taken within each run "
                 "(tf.keras of the same run) before the median.")
    return (
        f"Method: {where}; per model, one first epoch (the first `fit` call, tracing and compilation included), "
        f"{config['warmup']} untimed warm-up epoch(s), then {rounds}, the engines' order rotating each round."
        f"{pause} Times are median (min–max) over the rounds of {per_round}, each epoch measured from "
        "`on_epoch_begin` to `on_epoch_end` (`verbose=0, shuffle=True`, metrics=['accuracy']); time/step is that "
        f"over the epoch's steps. Speed-up = tf.keras epoch / engine epoch. {memory}{whole}"
    )


def render_markdown(report: dict) -> str:
    """The report as Markdown: command, machine, versions, method, the results table and extras."""
    machine, versions, config = report["machine"], report["versions"], report["config"]
    blas = machine["blas"][0] if machine["blas"] else {}
    gemm = report.get("gemm_peak")
    lines = [
        f"## Benchmarks: {report['started'][:10]}, {machine['host']}" + (" (--quick)" if config["quick"] else "")
        + (f", {config['runs']} runs" if config.get("runs", 1) > 1 else ""),
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {machine['cpu_model']} ({', '.join(machine['cpu_flags']) or 'no AVX flags read'}), "
        f"{machine['cores_available']} of {machine['cores_total']} cores available; load average "
        f"{machine['load_average']} at the start, {machine.get('load_average_end')} at the end; "
        f"NumPy's BLAS {blas.get('internal_api', '?')} {blas.get('version', '')} with {blas.get('num_threads', 'unknown')} "
        f"threads; OPENBLAS_* variables: "
        + (", ".join(f"{k}={v}" for k, v in machine["openblas_env"].items()) or "none set")
        + "; other recorded variables: "
        + (", ".join(f"{k}={v}" for k, v in machine["env"].items() if not k.startswith("OPENBLAS_")) or "none")
        + ".",
        "",
        _source_line(report.get("source") or {}),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "python_executable" and v)
        + "; not installed: " + (", ".join(k for k, v in versions.items() if v is None) or "none") + ".",
        "",
        _method(config)
        + " The harness sets TF_CPP_MIN_LOG_LEVEL=3 when unset (TensorFlow's logging only). GFLOP/s count "
        + report["flop_count"][0].lower() + report["flop_count"][1:],
        "",
    ]
    footnotes: list = []
    header = ["model", "engine", "rows (steps)", "time/step", "time/epoch", "first epoch", "peak RSS",
              "speed-up vs tf.keras", "GFLOP/s (of GEMM peak)", "notes"]
    cells = [_row_cells(r, footnotes) for r in report["results"]]
    cells += [["all", name, info["reason"]] + ["—"] * 7
              for name, info in report["engines"].items() if not info["available"]]
    lines += _table(header, cells)
    lines.append("")
    if footnotes:
        lines += [f"[{i}] {text}" for i, text in enumerate(footnotes, 1)]
        lines.append("")
    loads = {}
    for row in report["results"]:
        per_round = [l[0] for l in row.get("load_average_per_round") or [] if l]
        if per_round:
            loads[row["model"]] = f"{row['model']} {min(per_round):.1f}–{max(per_round):.1f}"
    if loads:
        lines += ["1-minute load average as the timed rounds began (2 cores; other work on the machine shows "
                  "here): " + ", ".join(loads.values()) + ".", ""]
    missing = [f"{name} ({info['reason']})" for name, info in report["engines"].items() if not info["available"]]
    if missing:
        lines += ["Not measured: " + "; ".join(missing) + ".", ""]
    lines += _per_run_lines(report)
    lines += _target_lines(report)
    lines += _cold_start_lines(report)
    if gemm:
        lines += [
            f"float32 GEMM peak"
            + (f" (run {gemm['run']}, the fastest of the {len(gemm['gflops_per_run'])} runs: "
               + ", ".join(f"{g:.1f}" for g in gemm["gflops_per_run"]) + " GFLOP/s)"
               if len(gemm.get("gflops_per_run") or []) > 1 else "")
            + f": np.dot of {gemm['n']}×{gemm['n']} matrices, median of {gemm['repeats']}: "
            f"**{gemm['gflops']:.1f} GFLOP/s** (best single product {gemm['gflops_best']:.1f}; medians "
            f"{gemm['gflops_start']:.1f} at the start of the run and {gemm['gflops_end']:.1f} at the end, the "
            f"higher is the peak), BLAS threads: "
            f"{gemm['blas_threads'] if gemm['blas_threads'] is not None else 'unknown'} "
            f"({gemm['blas_threads_source']}).",
            "",
        ]
    floor = report.get("gemm_training_step")
    if floor:
        lines += [
            f"Matrix products alone of one training step of L ({'-'.join(map(str, floor['units']))}, batch "
            f"{floor['batch']}; np.dot on contiguous float32, preallocated outputs, nothing else): "
            f"{format_range(floor['median_s'], floor['min_s'], floor['max_s'])} per step = "
            f"{floor['gflops']:.1f} GFLOP/s" + (f" ({floor['gflops'] / gemm['gflops']:.0%} of the square-GEMM peak)"
                                                 if gemm else "")
            + f" (faster of start/end: {floor['gflops_start']:.1f} and {floor['gflops_end']:.1f} GFLOP/s), "
            "what a NumPy/BLAS engine's products alone take at L's shapes.",
            "",
        ]
    adam = report.get("adam_subnormal")
    if adam:
        lines += [
            f"Adam on subnormal moments ({adam['engine']}; {adam['parameters']:,} float32 parameters as in "
            f"model L, of which {adam['affected']:,} differ between cases; median of {adam['repeats']} repeats "
            f"of {adam['steps']} updates):",
            "",
        ]
        rows = []
        labels = {"normal": "all gradients and moments ordinary floats",
                  "subnormal": "those entries: gradient 0, first moment ±1e-39 (subnormal)",
                  "zero": "those entries: gradient 0, first moment 0 (flushed)"}
        for case, data in adam["cases"].items():
            rows.append([case, labels[case], format_range(data["median_s"], data["min_s"], data["max_s"]),
                         f"{data['subnormal_share_after']:.0%}"])
        lines += _table(["case", "state", "time/update", "those moments still subnormal after"], rows)
        lines += ["", f"Subnormal / flushed: {adam['slowdown_subnormal_vs_zero']:.2f}×.", ""]
    flushed = machine.get("subnormals_flushed_in_main_thread"), machine.get("subnormals_flushed_in_main_thread_end")
    lines += [f"NumPy float32 arithmetic in the main thread flushes subnormals: {flushed[0]} at the start, "
              f"{flushed[1]} at the end. Total run time: {report.get('duration_s', 0):.0f} s.", ""]
    return "\n".join(lines)


def _per_run_lines(report: dict) -> list:
    """With several runs: every run's speed-up over tf.keras, per model and engine."""
    runs = report.get("runs") or []
    if len(runs) < 2 or all(row["speedup_vs_baseline"] is None for row in report["results"]):
        return []
    header = ["model", "engine"] + [f"run {run['run']}" for run in runs] + ["median"]
    rows = []
    for row in report["results"]:
        per_run = []
        for run in runs:
            match = [r for r in run["results"] if r["model"] == row["model"] and r["engine"] == row["engine"]]
            per_run.append(_speedup(match[0]["speedup_vs_baseline"]) if match else "—")
        rows.append([row["model"], row["engine"]] + per_run + [_speedup(row["speedup_vs_baseline"])])
    loads = ", ".join(f"run {run['run']} {run['load_average'][0]:.1f}" for run in runs if run.get("load_average"))
    return (["Speed-up over tf.keras in each run (each against tf.keras of the same run):", ""]
            + _table(header, rows)
            + ["", f"1-minute load average as each run began: {loads}.", ""])


def _target_measured(target: dict, with_range: bool) -> str:
    """The target's measured median, and with ``with_range`` the runs' range: ``420× (380–450)``."""
    value, low, high = target["value"], target["min"], target["max"]
    if value is None:
        return "—"
    if target["kind"].endswith("first_epoch_s"):
        return format_range(value, low, high) if with_range else format_seconds(value)
    if target["kind"] == "gemm_fraction":
        text, bounds = f"{value:.0%}", (f"{low * 100:.0f}", f"{high * 100:.0f}")
    else:
        text, bounds = _speedup(value), (_speedup(low)[:-1], _speedup(high)[:-1])
    return text + (f" ({bounds[0]}–{bounds[1]})" if with_range else "")


def _target_lines(report: dict) -> list:
    """The targets table: each target's median over the runs, its range, and met / not met."""
    found = report.get("targets") or []
    if not found:
        return []
    runs = len(report.get("runs") or [1])
    rows = []
    for target in found:
        measured = _target_measured(target, with_range=runs > 1)
        status = {"met": "**met**", "not met": "not met"}.get(target["status"], "not measured")
        if target["reason"]:
            status += f" ({target['reason']})"
        rows.append([target["model"], target["label"], measured, f"{target['runs_met']} of {target['runs']}", status])
    what = "the median over the runs" if runs > 1 else "this run"
    lines = ([f"Targets of the compiled path ({what}; ratios within a run, cold and warm from the cold-start "
              "measurement below):", ""]
             + _table(["model", "target", "measured", "runs meeting it", "status"], rows) + [""])
    from .targets import ratio_over_runs

    xla = []
    for model in report["config"]["models"]:
        median, low, high = ratio_over_runs(report, model, "tf.keras-xla")
        if median is not None:
            xla.append(f"{model} {_speedup(median)}" + (f" ({_speedup(low)[:-1]}–{_speedup(high)[:-1]})"
                                                          if runs > 1 else ""))
    if xla:
        lines += ["No target, for comparison: the compiled path over tf.keras with XLA (`tf.keras-xla` epoch / "
                  "compiled epoch, within each run): " + ", ".join(xla) + ".", ""]
    return lines


def _cold_start_lines(report: dict) -> list:
    """The compiled path's first epoch in a fresh process, with an empty and with a warm kernel cache."""
    lines = []
    for entry in report.get("cold_start") or []:
        cold, warm = entry["cold"], entry["warm"]

        def phase(p):
            if p is None:
                return "not measured"
            text = f"first epoch {format_range(p['first_epoch_s'], p['first_epoch_min_s'], p['first_epoch_max_s'])}"
            text += (f", process start to built model {format_seconds(p['ready_s'])}, "
                     f"in all {format_seconds(p['total_s'])}")
            if p["fell_back"]:
                text += " (**fell back to the reference path**: nothing was compiled)"
            return text

        lines += [
            f"First epoch of {entry['engine']} on {entry['model']}, each in a fresh worker process "
            f"(median (min–max) of {entry['runs']} run(s)): **cold** (empty Numba cache: a new NUMBA_CACHE_DIR) "
            f"{phase(cold)}; **warm** (the cache the cold process wrote) {phase(warm)}."
            + (" Errors: " + "; ".join(entry["errors"]) + "." if entry["errors"] else ""),
            "",
        ]
    return lines


def report_paths(output_dir, started, host: str, quick: bool):
    """``(<dir>/<date>-<host>[-quick].json, .md)`` for a run started at ``started``."""
    stem = f"{started:%Y-%m-%d}-{host}" + ("-quick" if quick else "")
    directory = Path(output_dir)
    return directory / f"{stem}.json", directory / f"{stem}.md"


def write_report(report: dict, markdown: str, output_dir, started, host: str, quick: bool):
    """Write the JSON and Markdown files; return their paths."""
    json_path, md_path = report_paths(output_dir, started, host, quick)
    os.makedirs(json_path.parent, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    md_path.write_text(markdown + "\n", encoding="utf-8")
    return json_path, md_path
