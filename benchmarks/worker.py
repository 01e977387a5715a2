"""One engine training one model in its own process: run as ``python -m benchmarks.worker``.

In the default isolation (``--isolation process``) the harness starts one worker per model and
engine. Each imports only its own engine, loads the run's training arrays from the ``.npy`` files
the harness wrote (so neither scikit-learn nor the data generator is counted), builds the model,
and then waits for commands. Only one worker trains at a time; the others sit blocked on a read,
so an engine is never timed while another framework's thread pools are still busy in the same
process (on a 2-core machine TensorFlow's threads and OpenBLAS's otherwise take turns with the
engine being timed).

Protocol: one JSON object per line. The worker writes a line when it is ready (or failed to
build), and answers every command with one line on its original standard output; everything else
the engine prints goes to standard error.

* ready: ``{"ready": true, "setup_rss_mib": ..., "source": "VmHWM", "numba_cache_dir": ...}`` or
  ``{"error": ..., "type": ...}`` (``numba_cache_dir``: the ``NUMBA_CACHE_DIR`` the worker runs
  with, ``null`` when unset: Numba then caches next to the kernels' sources);
* ``{"cmd": "epoch", "epochs": 1, "preset": false}`` -> ``{"epoch_s": [...], "fit_s": ..., "peak_rss_mib": ...}``
  trains ``epochs`` consecutive epochs in one call (``preset`` first sets Ls's subnormal Adam
  moments), one time per epoch; the peak after the first epoch is the
  peak memory the report gives: interpreter, framework, data and one epoch of training;
* ``{"cmd": "report"}`` -> ``{"fell_back": ..., "notes": [...], "diagnostics": {...}}``;
* ``{"cmd": "quit"}`` -> the worker exits.

A failing command answers ``{"error": "...", "type": "RuntimeError"}`` and the worker keeps
serving. The peak resident set size is the kernel's high-water mark ``VmHWM`` from
``/proc/self/status`` (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` where that file does not exist).

Example (a shell; the worker answers on stdout)::

    printf '{"cmd": "epoch"}\\n{"cmd": "quit"}\\n' | python -m benchmarks.worker --model A --engine minitensor-reference --rows 64
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from .specs import ENGINE_NAMES, MODEL_NAMES

__all__ = ["peak_rss_mib", "answer", "serve", "main"]


def peak_rss_mib():
    """This process's peak resident set size in MiB, and where it was read from."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0, "VmHWM"
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "ru_maxrss"


def _error(error: BaseException) -> dict:
    return {"error": str(error), "type": type(error).__name__}


def answer(trainer, command: dict) -> dict:
    """``trainer``'s answer to ``command`` (``epoch`` or ``report``; see the module docstring), without
    the peak memory; the harness also uses it for engines trained in its own process."""
    name = command.get("cmd")
    if name == "epoch":
        if command.get("preset") and trainer.spec.subnormal_moments:
            trainer.preset_subnormal_moments()
        timing = trainer.train(int(command.get("epochs", 1)))
        return {"epoch_s": timing.epoch_s, "fit_s": timing.fit_s}
    if name == "report":
        return {"fell_back": trainer.fell_back, "notes": list(trainer.notes), "diagnostics": trainer.diagnostics()}
    raise ValueError(f"Unknown command {name!r}")


def _answer(trainer, command: dict) -> dict:
    """:func:`answer`, with this process's peak memory after an epoch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the compiled engine records its own fallback warnings
        message = answer(trainer, command)
    if command.get("cmd") == "epoch":
        peak, source = peak_rss_mib()
        message.update(peak_rss_mib=round(peak, 1), source=source)
    return message


def serve(trainer, commands, reply) -> None:
    """Answer each JSON command line of ``commands`` with ``reply(dict)`` until ``quit`` or end of input."""
    for line in commands:
        if not line.strip():
            continue
        command = json.loads(line)
        if command.get("cmd") == "quit":
            return
        try:
            reply(_answer(trainer, command))
        except Exception as error:  # noqa: BLE001 (reported to the harness, which marks the row)
            reply(_error(error))


def main(argv=None) -> int:
    """Build ``--model`` in ``--engine``, report ready, then serve commands from standard input."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=MODEL_NAMES)
    parser.add_argument("--engine", required=True, choices=ENGINE_NAMES)
    parser.add_argument("--rows", type=int, help="rows to make when --x/--y are not given (default: all)")
    parser.add_argument("--x", help="a .npy file with the inputs")
    parser.add_argument("--y", help="a .npy file with the targets")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    # answers go to the original stdout; anything the engines print goes to stderr
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr

    def reply(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    try:
        import numpy as np

        from .data import training_arrays
        from .engines import make_trainer, probe

        available, reason, _ = probe(args.engine)
        if not available:
            raise RuntimeError(reason)
        if args.x and args.y:
            x, y = np.load(args.x), np.load(args.y)
        else:
            x, y = training_arrays(args.model, args.rows, args.seed)
        trainer = make_trainer(args.engine, args.model, x, y, args.seed)
    except Exception as error:  # noqa: BLE001
        reply(_error(error))
        return 1
    setup, source = peak_rss_mib()
    reply({"ready": True, "setup_rss_mib": round(setup, 1), "source": source,
           "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR")})
    serve(trainer, sys.stdin, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
