"""tf.keras results on disk, keyed by everything that determines them.

Training tf.keras takes most of a comparison's time, and its results do not change when only
minitensor does. :class:`ResultCache` keeps each tf.keras run (its :class:`~compare.engines.RunResult`
and the weights it started from) in one ``.npz`` file named by a hash of its key, and
:func:`keras_run_key` builds that key from:

* the experiment's training spec (layers, loss, optimizer and settings, epochs after any
  ``--epochs-scale``, batch size, validation, early stopping, data): its name is left out, so two
  experiments that train the same model the same way share an entry;
* the run: seed, mode, the batch order (``pre-permuted`` by ``numpy.random.default_rng(seed)``
  or Keras's own shuffle), whether per-step losses were recorded, and for a sensitivity run
  the nudge seed and the run it parts from; the epochs scale, for the record;
* the software and the machine: the versions of TensorFlow, Keras, NumPy, scikit-learn (which
  ships the digits and splits them) and Python, Keras's backend, ``TF_ENABLE_ONEDNN_OPTS``, the
  processor, and :data:`RUNNER_VERSION`, which changes whenever the way :mod:`compare.engines`
  drives Keras changes.

Any difference gives another key, so a stale entry is never read: it is simply not found. The
key is stored in the file and compared on reading, so a hash collision cannot return the wrong
run either. Files are written to a temporary name and renamed, so an interrupted write leaves
no half file. A file that cannot be read is treated as missing (and replaced).

The folder is ``$MINITENSOR_COMPARE_CACHE`` if set, else ``~/.cache/minitensor/compare``.

Example:
    >>> import tempfile
    >>> cache = ResultCache(tempfile.mkdtemp())
    >>> cache.load({"experiment": "none"}) is None
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["RUNNER_VERSION", "ResultCache", "default_cache_dir", "keras_run_key", "software_fingerprint"]

#: Bumped whenever :mod:`compare.engines` changes how it builds, trains or measures a Keras model.
RUNNER_VERSION = 2
_FORMAT = 1


def default_cache_dir() -> Path:
    """``$MINITENSOR_COMPARE_CACHE``, or ``~/.cache/minitensor/compare``."""
    configured = os.environ.get("MINITENSOR_COMPARE_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "minitensor" / "compare"


def _processor() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _distribution_version(package: str) -> str:
    """The installed version of the distribution that provides the importable ``package``."""
    from importlib import metadata

    names = metadata.packages_distributions().get(package) or [package]
    for name in names:
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


@functools.lru_cache(maxsize=1)
def _fingerprint(backend: str, onednn: str) -> tuple:
    return (
        ("tensorflow", _distribution_version("tensorflow")),
        ("keras", _distribution_version("keras")),
        ("keras_backend", backend),
        ("numpy", np.__version__),
        ("scikit-learn", _distribution_version("sklearn")),  # the digits and the lesson's splits
        ("python", sys.version.split()[0]),
        ("tf_enable_onednn_opts", onednn),
        ("machine", platform.machine()),
        ("processor", _processor()),
        ("runner_version", RUNNER_VERSION),
    )


def software_fingerprint() -> dict:
    """The versions and settings a tf.keras result depends on.

    Read from the installed packages' metadata, without importing TensorFlow, so that a run
    served entirely from the cache never pays for that import.

    Example:
        >>> sorted(software_fingerprint())[:3]
        ['keras', 'keras_backend', 'machine']
    """
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    return dict(_fingerprint(backend, os.environ.get("TF_ENABLE_ONEDNN_OPTS", "")))


def keras_run_key(
    experiment,
    *,
    seed: int,
    mode: str,
    record_steps: bool,
    epochs_scale: float = 1.0,
    nudge_seed: int | None = None,
    software: dict | None = None,
) -> dict:
    """The cache key (a JSON-ready dict) of one tf.keras run of ``experiment``.

    Args:
        experiment: the :class:`~compare.experiments.Experiment` as run (epochs already scaled).
        seed: the run's seed.
        mode: ``"parity"`` (weights drawn by Keras, rows pre-permuted by the seed,
            ``shuffle=False``) or ``"independent"`` (Keras's own shuffle).
        record_steps: whether per-step losses were recorded.
        epochs_scale: the ``--epochs-scale`` the experiment's epochs came from.
        nudge_seed: for a sensitivity run (weights nudged by one ulp after every step), its seed.
        software: :func:`software_fingerprint` (computed if omitted).

    Example:
        >>> from compare.experiments import EXPERIMENTS
        >>> soft = {"tensorflow": "x"}
        >>> a = keras_run_key(EXPERIMENTS["deep"], seed=1, mode="parity", record_steps=True, software=soft)
        >>> b = keras_run_key(EXPERIMENTS["no-early-stop"], seed=1, mode="parity", record_steps=True, software=soft)
        >>> a == b   # the same model trained the same way under another name
        True
    """
    spec = experiment.to_dict()
    for name in ("name", "section", "title", "architecture"):
        spec.pop(name, None)
    return {
        "format": _FORMAT,
        "kind": "sensitivity" if nudge_seed is not None else "run",
        "engine": "keras",
        "spec": spec,
        "seed": int(seed),
        "mode": mode,
        "order": "pre-permuted numpy.random.default_rng(seed)" if mode == "parity" else "keras shuffle=True",
        "record_steps": bool(record_steps),
        "nudge_seed": None if nudge_seed is None else int(nudge_seed),
        "epochs_scale": float(epochs_scale),
        "software": software if software is not None else software_fingerprint(),
    }


def _digest(key: dict) -> str:
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


_ARRAY_FIELDS = ("test_predictions", "confusion")


class ResultCache:
    """A folder of tf.keras runs, one file per key.

    Args:
        directory: where the files live (created on the first store); default
            :func:`default_cache_dir`.

    Attributes:
        hits, misses: how many :meth:`load` calls found, and did not find, their entry.
    """

    def __init__(self, directory=None):
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    def path(self, key: dict) -> Path:
        """The file that holds ``key``'s entry."""
        return self.directory / f"{_digest(key)}.npz"

    def load(self, key: dict):
        """``(RunResult, start_weights)`` stored under ``key``, or ``None``.

        The result's ``from_cache`` is set to ``True``.
        """
        from .engines import RunResult

        path = self.path(key)
        try:
            with np.load(path, allow_pickle=False) as stored:
                meta = json.loads(str(stored["meta"]))
                if meta.get("key") != json.loads(json.dumps(key)):
                    raise ValueError("key mismatch")
                n_final, n_start = meta["n_final"], meta["n_start"]
                final = [stored[f"final_{i}"] for i in range(n_final)]
                start = [stored[f"start_{i}"] for i in range(n_start)]
                arrays = {name: stored[name] if name in stored.files else None for name in _ARRAY_FIELDS}
        except Exception:  # missing, truncated, not a zip, another key: all a miss, never an error
            self.misses += 1
            return None
        fields = meta["result"]
        result = RunResult(**fields, final_weights=final, **arrays)
        result.from_cache = True
        self.hits += 1
        return result, start

    def store(self, key: dict, result, start_weights) -> Path:
        """Write ``result`` and ``start_weights`` under ``key`` (atomically); return the file."""
        fields = {
            f.name: getattr(result, f.name)
            for f in dataclasses.fields(result)
            if f.name not in ("final_weights", "from_cache", *_ARRAY_FIELDS)
        }
        meta = {"key": key, "result": fields, "n_final": len(result.final_weights), "n_start": len(start_weights)}
        arrays = {f"final_{i}": np.asarray(w) for i, w in enumerate(result.final_weights)}
        arrays.update({f"start_{i}": np.asarray(w) for i, w in enumerate(start_weights)})
        for name in _ARRAY_FIELDS:
            value = getattr(result, name)
            if value is not None:
                arrays[name] = np.asarray(value)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        handle, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(out, meta=np.array(json.dumps(meta)), **arrays)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path
