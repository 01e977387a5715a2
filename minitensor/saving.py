"""Saving and loading a whole model in one file.

The file is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays, no pickles) holding:

* ``format``: ``{"format": "minitensor.model", "version": 1}`` as JSON;
* ``config``: the model's layer configuration and its compile settings, as JSON;
* ``weight_000``, ``weight_001``, ...: the weights in ``get_weights()`` order;
* ``optimizer_000``, ...: the optimizer state (step count and slots), so training resumes exactly.

It is written to a temporary file next to the target and renamed over it, so a
crash never leaves a half-written model. Loading checks the format name and
version and reports a truncated or foreign file as a ``ValueError``.

Example:
    >>> from minitensor.models import Sequential, load_model
    >>> from minitensor.layers import Dense, Input
    >>> model = Sequential([Input(shape=(3,)), Dense(2)])
    >>> model.save("/tmp/example.minitensor")
    >>> load_model("/tmp/example.minitensor").count_params()
    8
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from .identifiers import serialize as _serialize

FORMAT_NAME = "minitensor.model"
FORMAT_VERSION = 1

__all__ = ["save_model", "load_model", "FORMAT_VERSION"]


def _json_array(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)


def _read_json(archive, key):
    return json.loads(bytes(archive[key]).decode("utf-8"))


def _compile_config(model):
    if not model.compiled:
        return None
    metrics = []
    for identifier in model._metric_identifiers:
        if isinstance(identifier, str):
            metrics.append(identifier)
        else:
            metrics.append(_serialize(identifier))
    return {
        "optimizer": _serialize(model.optimizer),
        "loss": _serialize(model.loss),
        "metrics": metrics,
        "jit_compile": model.jit_compile,
    }


def save_model(model, filepath) -> None:
    """Write ``model`` (config, weights, optimizer state) to ``filepath`` atomically.

    Args:
        model: a built ``Sequential``.
        filepath: destination path (any extension; ``.minitensor`` is customary).
    """
    model._require_built("save")
    filepath = os.fspath(filepath)
    arrays = {
        "format": _json_array({"format": FORMAT_NAME, "version": FORMAT_VERSION}),
        "config": _json_array({"model": model.get_config(), "compile": _compile_config(model)}),
    }
    for i, w in enumerate(model.get_weights()):
        arrays[f"weight_{i:03d}"] = w
    optimizer = model.optimizer
    if optimizer is not None and getattr(optimizer, "built", False):
        for i, a in enumerate(optimizer.get_state()):
            arrays[f"optimizer_{i:03d}"] = np.asarray(a)
    directory = os.path.dirname(os.path.abspath(filepath))
    fd, tmp = tempfile.mkstemp(prefix=".minitensor-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_model(filepath, compile: bool = True):  # noqa: A002 - Keras's argument name
    """Read a model written by :func:`save_model`.

    Args:
        filepath: the file to read.
        compile: also restore the compile settings and optimizer state (default True).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the file is truncated, not a minitensor model, or from a newer format.
    """
    from . import losses, metrics as metrics_module, optimizers
    from .models import Sequential

    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No model file at {filepath!r}")
    try:
        with np.load(filepath, allow_pickle=False) as archive:
            contents = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:
        raise ValueError(
            f"Expected a minitensor model file written by model.save(). Received: {filepath!r}, which could not be "
            f"read as one ({type(error).__name__}: {error}); it may be truncated or of another format"
        ) from None
    if "format" not in contents or "config" not in contents:
        raise ValueError(f"Expected a minitensor model file written by model.save(). Received: {filepath!r} without a format header")
    header = _read_json(contents, "format")
    if header.get("format") != FORMAT_NAME:
        raise ValueError(f"Expected a file of format {FORMAT_NAME!r}. Received: format {header.get('format')!r} in {filepath!r}")
    if header.get("version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"This file was written by a newer minitensor (format version {header['version']}); this version reads "
            f"up to {FORMAT_VERSION}. Received: {filepath!r}. Upgrade minitensor to load it."
        )
    config = _read_json(contents, "config")
    model = Sequential.from_config(config["model"])
    weights = [contents[k] for k in sorted(k for k in contents if k.startswith("weight_"))]
    if weights:
        model.set_weights(weights)
    compile_config = config.get("compile")
    if compile and compile_config is not None:
        optimizer = optimizers.get(compile_config["optimizer"])
        loss = losses.get(compile_config["loss"])
        metrics = [
            m if isinstance(m, str) else getattr(metrics_module, m["class_name"]).from_config(m["config"])
            for m in compile_config["metrics"]
        ]
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=compile_config.get("jit_compile", False))
        state = [contents[k] for k in sorted(k for k in contents if k.startswith("optimizer_"))]
        if state:
            model._prepare_optimizer()
            optimizer.build(model._optimizer_variables)
            optimizer.set_state(state)
    return model
