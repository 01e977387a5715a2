"""Saving and loading a whole model in one file.

The file is a zip archive of ``.npy`` arrays (NumPy's ``.npz`` layout, stored without
compression, no pickles) holding:

* ``format``: ``{"format": "minitensor.model", "version": 2, "sha256": {...}}`` as UTF-8 JSON;
  ``sha256`` maps every other member's name to the SHA-256 of its bytes;
* ``config``: the model's layer configuration and its compile settings, as UTF-8 JSON;
* ``weight_000``, ``weight_001``, ...: the weights in ``get_weights()`` order;
* ``optimizer_000``, ...: the optimizer state (step count and slots), so training resumes exactly.

Loading returns exactly the model that was saved or raises: it checks every member's
checksum (version 2), that the weights are those the config implies (their number, shapes
and dtypes, computed from the config before any weight is allocated), that the optimizer
state fits the optimizer the config declares, and that nothing else is in the file. Any
problem with the file's content is a ``ValueError`` naming the file and what is wrong; a
missing file is a ``FileNotFoundError``. Weights or optimizer slots holding NaN or inf load
with a ``RuntimeWarning``. Version-1 files (no checksums) are still read, with every other check.

Saving is atomic: the file is written next to the target under a temporary name, flushed
to disk and renamed over it, so a crash or a kill never leaves a half-written model. It keeps
an existing file's permissions, writes through a symbolic link to its target, and removes
the temporary files that earlier killed saves of the same target left behind.
``docs/saving.md`` describes the format and these guarantees in full.

Example:
    >>> from minitensor.models import Sequential, load_model
    >>> from minitensor.layers import Dense, Input
    >>> model = Sequential([Input(shape=(3,)), Dense(2)])
    >>> model.save("/tmp/example.minitensor")
    >>> load_model("/tmp/example.minitensor").count_params()
    8
"""

from __future__ import annotations

import copy
import errno
import hashlib
import io
import json
import math
import os
import re
import secrets
import stat
import warnings
import zipfile

import numpy as np

from .identifiers import serialize as _serialize

try:  # POSIX: a save holds a lock on its temporary file, so a later save can tell a dead one's
    import fcntl
except ImportError:  # pragma: no cover - Windows: stale temporary files are not cleaned
    fcntl = None

FORMAT_NAME = "minitensor.model"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)

__all__ = ["save_model", "load_model", "write_atomically", "FORMAT_NAME", "FORMAT_VERSION", "READABLE_VERSIONS"]

_TEMP_SUFFIX = ".minitensor-tmp"
_JSON_MEMBER_LIMIT = 64 << 20  # the format header and the config are JSON text, never this large
_MEMBER = re.compile(r"(format|config|weight_(\d{3,})|optimizer_(\d{3,}))\.npy")


def _check_path(filepath):
    if isinstance(filepath, (str, bytes, os.PathLike)):
        path = os.fsdecode(os.fspath(filepath))
        if path:
            return path
    raise ValueError(
        f"Expected `filepath` to be a non-empty path (str or os.PathLike). Received: filepath={filepath!r}"
    )


# ============================================================================ saving
def _json_array(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)


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


class _HashingWriter:
    """A write-only file object that passes bytes on and hashes them on the way."""

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def write(self, data):
        self.sha256.update(data)
        return self.raw.write(data)


def _write_archive(handle, arrays: dict) -> None:
    """Write ``arrays`` as ``.npy`` members, then the format header holding their checksums."""
    digests = {}
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, array in arrays.items():
            name = f"{key}.npy"
            with archive.open(name, "w", force_zip64=True) as member:
                writer = _HashingWriter(member)
                np.lib.format.write_array(writer, np.asarray(array), allow_pickle=False)
            digests[name] = writer.sha256.hexdigest()
        header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "sha256": digests}
        with archive.open("format.npy", "w") as member:
            np.lib.format.write_array(member, _json_array(header), allow_pickle=False)


def _temp_prefix(base: str) -> str:
    """Temporary files of a save to ``base`` are named ``.{base}.{pid}-{random}.minitensor-tmp``."""
    if len(os.fsencode(base)) > 160:  # keep the temporary name within the file system's limit
        base = hashlib.sha256(os.fsencode(base)).hexdigest()[:32]
    return f".{base}."


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def _remove_stale_temporaries(directory: str, base: str) -> None:
    """Remove temporary files left by killed saves of ``base`` (best effort, never raises).

    A file is removed only when its name is one this module gives to a save of ``base``,
    the process named in it is gone, and no process holds the lock a save holds on it
    for its whole life.
    """
    if fcntl is None:  # pragma: no cover - no advisory locks to tell a live save from a dead one
        return
    prefix = _temp_prefix(base)
    middle = re.compile(r"(\d+)-[0-9a-f]{16}")
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(_TEMP_SUFFIX)):
            continue
        match = middle.fullmatch(name[len(prefix) : -len(_TEMP_SUFFIX)])
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _process_alive(pid):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not stat.S_ISREG(os.fstat(fd).st_mode) or not os.path.samestat(os.fstat(fd), os.lstat(entry.path)):
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        finally:
            os.close(fd)


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (where the platform can open directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems do not sync directories
        pass
    finally:
        os.close(fd)


def _as_path_error(error: OSError, filepath: str) -> OSError:
    """The same kind of error, naming the path asked for (not the temporary file)."""
    return type(error)(error.errno, error.strerror, filepath)


def save_model(model, filepath) -> None:
    """Write ``model`` (config, weights, optimizer state) to ``filepath`` atomically.

    The file is written next to its target under a temporary name, flushed to disk and renamed
    over the target, so an interrupted save leaves the previous file intact. An existing file
    keeps its permission bits (a new one gets the usual ``0666 & ~umask``); a symbolic link is
    followed and its target replaced (the link stays); temporary files left behind by saves of
    the same target that were killed are removed.

    Args:
        model: a built ``Sequential``.
        filepath: destination path (any extension; ``.minitensor`` is customary).

    Raises:
        ValueError: if the model is not built, ``filepath`` is not a path, or it names
            something other than a regular file (a device, a pipe, ...).
        OSError: (``FileNotFoundError``, ``PermissionError``, ``IsADirectoryError``, ...) when
            the file cannot be written; the error names ``filepath``.

    Example:
        >>> import os
        >>> from minitensor.models import Sequential
        >>> from minitensor.layers import Dense, Input
        >>> save_model(Sequential([Input(shape=(2,)), Dense(1)]), "/tmp/example_save.minitensor")
        >>> os.path.exists("/tmp/example_save.minitensor")
        True
    """
    filepath = _check_path(filepath)
    model._require_built("save")
    arrays = {
        "config": _json_array({"model": model.get_config(), "compile": _compile_config(model)}),
    }
    for i, w in enumerate(model.get_weights()):
        arrays[f"weight_{i:03d}"] = w
    optimizer = model.optimizer
    if optimizer is not None and getattr(optimizer, "built", False):
        for i, a in enumerate(optimizer.get_state()):
            arrays[f"optimizer_{i:03d}"] = np.asarray(a)
    write_atomically(filepath, lambda handle: _write_archive(handle, arrays))


def write_atomically(filepath, write) -> None:
    """Write a file as a careful editor saves one: ``write(handle)`` fills a temporary file next to
    the target, which is flushed to disk and renamed over it (the directory synced after).

    An interrupted save leaves the previous file intact. An existing file keeps its permission
    bits (a new one gets the usual ``0666 & ~umask``); a symbolic link is followed and its target
    replaced (the link stays); temporary files left behind by saves of the same target that were
    killed are removed. Both model formats (this module's and ``.keras``) save through it.

    Args:
        filepath: destination path (checked: a non-empty str or os.PathLike).
        write: a function writing the whole file to the binary handle it is given.

    Raises:
        ValueError: if ``filepath`` is not a path or names something other than a regular file.
        OSError: when the file cannot be written; the error names ``filepath``.

    Example:
        >>> write_atomically("/tmp/example_atomic.bin", lambda handle: handle.write(b"data"))
        >>> open("/tmp/example_atomic.bin", "rb").read()
        b'data'
    """
    filepath = _check_path(filepath)
    target = os.path.realpath(filepath)  # through symbolic links: replace the target, keep the link
    try:
        existing = os.stat(target)
    except FileNotFoundError:
        existing = None
    except OSError as error:
        raise _as_path_error(error, filepath) from None
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), filepath)
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        raise ValueError(
            f"Expected `filepath` to name a regular file or a new one. Received: filepath={filepath!r}, "
            "not a regular file"
        )

    directory, base = os.path.split(target)
    _remove_stale_temporaries(directory, base)
    tmp = os.path.join(directory, f"{_temp_prefix(base)}{os.getpid()}-{secrets.token_hex(8)}{_TEMP_SUFFIX}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o666)  # the umask applies, as for any new file
    except OSError as error:
        raise _as_path_error(error, filepath) from None
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until closed: this save is alive
        if existing is not None:  # keep the permission bits (owner, ACLs and hard links are not kept)
            os.chmod(fd if os.chmod in os.supports_fd else tmp, stat.S_IMODE(existing.st_mode))
        with open(fd, "wb", closefd=False) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as error:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        os.close(fd)
        if isinstance(error, OSError):
            raise _as_path_error(error, filepath) from None
        raise
    os.close(fd)
    _fsync_directory(directory)


# ============================================================================ loading
class _Invalid(Exception):
    """What is wrong with a file (becomes a ValueError naming the file)."""


def _read_member(archive, info, file_digests):
    """Bytes of one member, its CRC (and SHA-256, when the header lists them) checked."""
    data = archive.read(info)  # zipfile checks the CRC-32 once the member is read to its end
    if len(data) != info.file_size:
        raise _Invalid(f"whose member {info.filename!r} is truncated")
    if file_digests is not None and hashlib.sha256(data).hexdigest() != file_digests[info.filename]:
        raise _Invalid(f"whose member {info.filename!r} does not match its SHA-256 checksum (the file is corrupted)")
    return data


def _parse_npy(data: bytes, name: str):
    """``(shape, dtype, array)`` from ``.npy`` bytes, refusing object arrays and any byte too few or too many."""
    buffer = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buffer)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(buffer)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(buffer)
        else:
            raise _Invalid(f"whose member {name!r} is an .npy array of unsupported version {version}")
    except (ValueError, EOFError, SyntaxError, TypeError) as error:
        raise _Invalid(f"whose member {name!r} is not a valid .npy array ({error})") from None
    if dtype.hasobject or dtype.kind not in "biuf" or dtype.subdtype is not None or dtype.names is not None:
        raise _Invalid(
            f"whose member {name!r} holds an array of dtype {dtype}, which no model file holds "
            "(object arrays are never loaded)"
        )
    count = math.prod(shape)
    offset = buffer.tell()
    if len(data) - offset != count * dtype.itemsize:
        raise _Invalid(
            f"whose member {name!r} declares {count * dtype.itemsize} bytes of shape {shape} and dtype {dtype} "
            f"but holds {len(data) - offset}"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    array = array.reshape(shape[::-1]).T if fortran else array.reshape(shape)
    return array


def _read_json(archive, info, file_digests, what):
    if info.file_size > _JSON_MEMBER_LIMIT:
        raise _Invalid(f"whose {what} is {info.file_size} bytes, more than any model's")
    array = _parse_npy(_read_member(archive, info, file_digests), info.filename)
    if array.dtype != np.uint8 or array.ndim != 1:
        raise _Invalid(f"whose {what} is not UTF-8 JSON text (an array of shape {array.shape} and dtype {array.dtype})")
    try:
        return json.loads(array.tobytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise _Invalid(f"whose {what} is not valid UTF-8") from None
    except (ValueError, RecursionError) as error:
        raise _Invalid(f"whose {what} is not valid JSON ({error})") from None


def _open_archive(handle, size):
    """The archive's members by name: every one a stored ``.npy`` of a known name, each once."""
    try:
        archive = zipfile.ZipFile(handle)
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, ValueError, EOFError, OSError) as error:
        raise _Invalid(
            f"which could not be read as a zip archive ({type(error).__name__}: {error}); it may be truncated or of "
            "another format"
        ) from None
    members = {}
    for info in infos:
        if _MEMBER.fullmatch(info.filename) is None:
            raise _Invalid(f"with an unexpected member {info.filename!r}")
        if info.filename in members:
            raise _Invalid(f"with member {info.filename!r} twice")
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise _Invalid(f"with member {info.filename!r} compressed (model files store their members uncompressed)")
        if info.flag_bits & 0x1:
            raise _Invalid(f"with member {info.filename!r} encrypted")
        members[info.filename] = info
    if sum(info.compress_size for info in infos) > size:
        raise _Invalid("whose members declare more bytes than the file holds; it may be truncated")
    return archive, members


def _numbered(members, prefix):
    """Member infos ``{prefix}_000.npy, {prefix}_001.npy, ...`` in order; their numbering must be 0..n-1."""
    found = []
    for name in members:
        if name.startswith(prefix + "_"):
            found.append((int(name[len(prefix) + 1 : -len(".npy")]), name))
    found.sort()
    for expected, (index, name) in enumerate(found):
        if name != f"{prefix}_{expected:03d}.npy":
            raise _Invalid(f"whose {prefix} members are not numbered 0, 1, 2, ... (found {name!r})")
    return [members[name] for _, name in found]


def _check_header(header):
    if not isinstance(header, dict):
        raise _Invalid(f"whose format header is a JSON {type(header).__name__}, not an object")
    if header.get("format") != FORMAT_NAME:
        raise _Invalid(f"of format {header.get('format')!r}, not {FORMAT_NAME!r}")
    version = header.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _Invalid(f"with format version {version!r}, not a positive integer")
    if version > FORMAT_VERSION:
        raise _Invalid(
            f"written by a newer minitensor (format version {version}); this version reads up to {FORMAT_VERSION}. "
            "Upgrade minitensor to load it"
        )
    return version


def _check_digests(header, members):
    digests = header.get("sha256")
    expected = set(members) - {"format.npy"}
    if not isinstance(digests, dict) or not all(
        isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) for v in digests.values()
    ):
        raise _Invalid("whose format header lacks its members' SHA-256 checksums")
    if set(digests) != expected:
        missing, extra = sorted(set(digests) - expected), sorted(expected - set(digests))
        raise _Invalid(f"whose members differ from those its header lists (missing: {missing}, unlisted: {extra})")
    return digests


def _check_config(config):
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict) or "compile" not in config:
        raise _Invalid("whose config is not an object with a `model` object and a `compile` entry")
    model = config["model"]
    if not isinstance(model.get("layers"), list) or not all(isinstance(s, dict) for s in model["layers"]):
        raise _Invalid("whose model config has no list of layer objects under `layers`")
    if model.get("name") is not None and not isinstance(model["name"], str):
        raise _Invalid(f"whose model name is {model['name']!r}, not a string")
    shape = model.get("input_shape")
    if (
        not isinstance(shape, list)
        or not shape
        or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in shape)
    ):
        raise _Invalid(f"whose model config declares input_shape={shape!r}, not a list of positive integers")
    compile_config = config["compile"]
    if compile_config is not None:
        if not isinstance(compile_config, dict) or not {"optimizer", "loss", "metrics"} <= set(compile_config):
            raise _Invalid("whose compile config is not an object with `optimizer`, `loss` and `metrics`")
        if not isinstance(compile_config["metrics"], list):
            raise _Invalid("whose compile config has no list of metrics")
        jit_compile = compile_config.get("jit_compile", False)
        if not (jit_compile is True or jit_compile is False or jit_compile == "auto"):
            raise _Invalid(f"whose compile config has jit_compile={jit_compile!r}, not True, False or 'auto'")
    return model, compile_config


def _layers_and_weight_shapes(model_config):
    """The config's layers (not built) and the ``(name, shape)`` of every weight they will create.

    Each layer's ``build`` runs on a shallow copy whose ``add_weight`` only records the shape,
    so a config declaring an enormous layer is compared with the file before anything is allocated.
    """
    from .layers import InputLayer, deserialize

    layers, shapes = [], []
    shape = (None, *model_config["input_shape"])
    for spec in model_config["layers"]:
        layer = deserialize(spec)
        if isinstance(layer, InputLayer):
            raise _Invalid("whose model config lists an Input among its layers")
        probe = copy.copy(layer)
        probe._weights = []

        def record(weight_shape, initializer, name, regularizer=None, trainable=True, _layer=layer):
            weight_shape = tuple(int(d) for d in weight_shape)
            shapes.append((f"{_layer.name}/{name}", weight_shape))

        probe.add_weight = record
        probe.build(shape)
        shape = layer.compute_output_shape(shape)
        layers.append(layer)
    return layers, shapes


def _compile_objects(compile_config):
    from . import losses, metrics as metrics_module, optimizers

    optimizer = optimizers.get(compile_config["optimizer"])
    loss = losses.get(compile_config["loss"])
    metrics = []
    for m in compile_config["metrics"]:
        if isinstance(m, str):
            metrics.append(m)
            continue
        named = isinstance(m, dict) and isinstance(m.get("class_name"), str)
        cls = getattr(metrics_module, m["class_name"], None) if named else None
        if (
            not isinstance(cls, type)
            or not issubclass(cls, metrics_module.Metric)
            or cls is metrics_module.Metric  # the abstract base measures nothing
            or m["class_name"] not in metrics_module.__all__
            or not isinstance(m.get("config"), dict)
        ):
            raise _Invalid(f"whose compile config lists an unknown metric {m!r}")
        metrics.append(cls.from_config(m["config"]))
    return optimizer, loss, metrics


def _read_weights(archive, infos, digests, expected):
    if len(infos) != len(expected):
        raise _Invalid(f"holding {len(infos)} weight arrays where its config implies {len(expected)}")
    arrays = []
    for i, (info, (name, shape)) in enumerate(zip(infos, expected)):
        # the stored size, known before reading, must be about the expected one: a config declaring a
        # huge layer is caught here, with no memory spent on it
        if info.file_size < math.prod(shape) * 4:
            raise _Invalid(f"whose weight {i} ({name}) is too small for the shape {shape} its config implies")
        array = _parse_npy(_read_member(archive, info, digests), info.filename)
        if array.shape != shape:
            raise _Invalid(f"whose weight {i} ({name}) has shape {array.shape} where its config implies {shape}")
        if array.dtype.kind != "f":
            raise _Invalid(f"whose weight {i} ({name}) has dtype {array.dtype}, not a float dtype")
        arrays.append(array)
    return arrays


def _check_dtypes(arrays, tensors, what):
    for i, (array, tensor) in enumerate(zip(arrays, tensors)):
        if array.dtype != tensor.dtype:
            raise _Invalid(
                f"whose {what} {i} ({tensor.name}) has dtype {array.dtype} where the model's is {tensor.dtype}"
            )


def _warn_non_finite(filepath, named_arrays) -> None:
    bad = [name for name, array in named_arrays if array.dtype.kind == "f" and not np.isfinite(array).all()]
    if bad:
        warnings.warn(
            f"The model loaded from {filepath!r} has NaN or inf values in {', '.join(bad)}. It was loaded as saved; "
            "its predictions and further training will likely be NaN.",
            RuntimeWarning,
            stacklevel=4,
        )


def _load(filepath, handle, size, compile):
    from .layers import Input
    from .models import Sequential

    archive, members = _open_archive(handle, size)
    with archive:
        if "format.npy" not in members or "config.npy" not in members:
            raise _Invalid("without a format header and config")
        header = _read_json(archive, members["format.npy"], None, "format header")
        version = _check_header(header)
        digests = _check_digests(header, members) if version >= 2 else None
        config = _read_json(archive, members["config.npy"], digests, "config")
        model_config, compile_config = _check_config(config)
        weight_infos = _numbered(members, "weight")
        state_infos = _numbered(members, "optimizer")
        if compile_config is None and state_infos:
            raise _Invalid("holding optimizer state for a model that was not compiled")
        try:
            layers, shapes = _layers_and_weight_shapes(model_config)
        except _Invalid:
            raise
        except Exception as error:
            raise _Invalid(f"whose model config could not be restored ({type(error).__name__}: {error})") from None
        weights = _read_weights(archive, weight_infos, digests, shapes)
        state = []
        for info in state_infos:
            state.append(_parse_npy(_read_member(archive, info, digests), info.filename))

    # the weights are in memory with the shapes the config implies: building the model now costs no more
    model = Sequential(name=model_config.get("name"))
    model.add(Input(shape=tuple(model_config["input_shape"])))
    for layer in layers:
        model.add(layer)
    _check_dtypes(weights, model.weights, "weight")
    model.set_weights(weights)
    named = [(w.name, a) for w, a in zip(model.weights, weights)]
    if compile and compile_config is not None:
        try:
            optimizer, loss, metrics = _compile_objects(compile_config)
            jit_compile = compile_config.get("jit_compile", False)
            model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit_compile)
        except _Invalid:
            raise
        except Exception as error:
            raise _Invalid(f"whose compile settings could not be restored ({type(error).__name__}: {error})") from None
        if state:
            model._prepare_optimizer()
            variables = model._optimizer_variables
            dtypes = sorted({str(v.dtype) for v in variables})
            for i, array in enumerate(state[1:], start=1):
                if str(array.dtype) not in dtypes:
                    raise _Invalid(
                        f"whose optimizer state {i} has dtype {array.dtype} where the model's weights are {dtypes}"
                    )
            optimizer.build(variables)
            try:
                optimizer.set_state(state)
            except ValueError as error:
                raise _Invalid(
                    f"whose optimizer state does not fit its {type(optimizer).__name__} optimizer: {error}"
                ) from None
            named += [(f"optimizer state {i}", a) for i, a in enumerate(state)]
    _warn_non_finite(filepath, named)
    return model


def load_model(filepath, compile: bool = True):  # noqa: A002 - Keras's argument name
    """Read a model written by :func:`save_model`: exactly the model saved, or an error.

    Args:
        filepath: the file to read.
        compile: also restore the compile settings and optimizer state (default True).

    Returns:
        A ``Sequential`` with the saved config and weights (and optimizer state, when compiled).

    Raises:
        FileNotFoundError: if nothing exists at ``filepath``.
        PermissionError: if the operating system refuses to open the file.
        ValueError: for anything wrong with the file itself (a directory or empty file, not a
            minitensor model, truncated, corrupted, from a newer format, weights or optimizer
            state that do not fit its config, unknown members); the message names the file.

    Warns:
        RuntimeWarning: if weights or optimizer slots hold NaN or inf (the model is loaded as saved).

    Example:
        >>> from minitensor.models import Sequential
        >>> from minitensor.layers import Dense, Input
        >>> save_model(Sequential([Input(shape=(2,)), Dense(1)]), "/tmp/example_load.minitensor")
        >>> load_model("/tmp/example_load.minitensor").get_weights()[0].shape
        (2, 1)
    """
    filepath = _check_path(filepath)
    if not isinstance(compile, bool):
        raise ValueError(f"Expected `compile` to be True or False. Received: compile={compile!r}")
    expected = f"Expected a minitensor model file written by model.save(). Received: {filepath!r}"
    try:
        info = os.stat(filepath)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "No model file at this path", filepath) from None
    except OSError as error:
        raise ValueError(f"{expected}, which could not be examined ({error.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ValueError(f"{expected}, which is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{expected}, which is not a regular file")
    if info.st_size == 0:
        raise ValueError(f"{expected}, which is empty")
    with open(filepath, "rb") as handle:
        try:
            return _load(filepath, handle, os.fstat(handle.fileno()).st_size, compile)
        except _Invalid as problem:
            raise ValueError(f"{expected}, {problem}") from None
        except MemoryError:
            raise
        except Exception as error:
            raise ValueError(
                f"{expected}, which could not be read ({type(error).__name__}: {error}); it may be truncated, "
                "corrupted or of another format"
            ) from error
