"""Peak memory of a process that trains one model: run as ``python -m benchmarks.child``.

The harness starts one fresh Python process per model and engine; it imports the engine, loads
the timed run's training arrays from the ``.npy`` files the harness wrote (so neither scikit-learn
nor the data generator is counted), builds the model and fits one epoch, then prints one JSON
line with its own peak resident set size. The peak is the kernel's high-water mark
``VmHWM`` from ``/proc/self/status`` (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` where that
file does not exist), so it covers the interpreter, the framework, the data and training.

Output (last line of stdout)::

    {"peak_rss_mib": 612.3, "setup_rss_mib": 598.0, "source": "VmHWM", "fell_back": false}

``setup_rss_mib`` is the high-water mark before training (imports, data, model built).

Example (a shell)::

    python -m benchmarks.child --model A --engine minitensor-reference --rows 256

(without ``--x``/``--y`` the child makes the arrays itself, as :func:`benchmarks.data.training_arrays`).
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["peak_rss_mib", "main"]


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


def main(argv=None) -> int:
    """Train one epoch of ``--model`` in ``--engine`` on ``--rows`` rows and print the JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.child", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--engine", required=True)
    parser.add_argument("--rows", type=int, help="rows to make when --x/--y are not given (default: all)")
    parser.add_argument("--x", help="a .npy file with the inputs")
    parser.add_argument("--y", help="a .npy file with the targets")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import warnings

    import numpy as np

    from .data import training_arrays
    from .engines import make_trainer, probe

    available, reason, _ = probe(args.engine)
    if not available:
        print(json.dumps({"error": reason}))
        return 1
    if args.x and args.y:
        x, y = np.load(args.x), np.load(args.y)
    else:
        x, y = training_arrays(args.model, args.rows, args.seed)
    trainer = make_trainer(args.engine, args.model, x, y, args.seed)
    setup, _ = peak_rss_mib()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.epoch()
    peak, source = peak_rss_mib()
    print(json.dumps({"peak_rss_mib": round(peak, 1), "setup_rss_mib": round(setup, 1), "source": source,
                      "fell_back": trainer.fell_back}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
