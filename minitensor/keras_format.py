"""Reading and writing Keras 3 ``.keras`` files.

A ``.keras`` file is a zip archive of three members:

* ``metadata.json``: who wrote the file and when;
* ``config.json``: the model's architecture and compile settings, as Keras's serialised
  objects (``{"module", "class_name", "config", "registered_name"}``);
* ``model.weights.h5``: an HDF5 file (read and written with ``h5py``) whose groups mirror
  the model: ``layers/<layer>/vars/0, 1, ...`` hold each layer's weights (a Dense layer's
  kernel then bias), where ``<layer>`` is the snake-case class name made unique in layer
  order (``dense``, ``dense_1``, ``dropout``, ...); ``optimizer/vars/0, 1, ...`` hold the
  optimizer's state: the step count, the learning rate, then the slot arrays, one per
  trainable weight and slot, in Keras's order.

:func:`load_model` opens a file written by Keras of a Sequential model that uses only what
minitensor implements (``InputLayer``, ``Dense``, ``Dropout``, ``Activation``, the built-in
activations, initializers, regularizers, losses, metrics and the SGD, RMSprop, Adam and
Adagrad optimizers) and restores its weights and, when compiled, its optimizer state.
Anything else is reported by name with a ``ValueError`` before a model is returned.
:func:`save_model` writes a file that ``keras.models.load_model`` opens with the same
weights, compile settings and optimizer state. ``Sequential.save`` and
``minitensor.models.load_model`` call these for paths ending in ``.keras``.

Needs the ``keras-files`` extra (``pip install "minitensor[keras-files]"``).

Example:
    >>> from minitensor.models import Sequential, load_model
    >>> from minitensor.layers import Dense, Input
    >>> model = Sequential([Input(shape=(3,)), Dense(2, activation="softmax")])
    >>> model.compile(optimizer="adam", loss="categorical_crossentropy")
    >>> model.save("/tmp/example.keras")
    >>> restored = load_model("/tmp/example.keras")
    >>> [w.shape for w in restored.get_weights()], type(restored.optimizer).__name__
    ([(3, 2), (2,)], 'Adam')
"""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import warnings
import zipfile

import numpy as np

from . import activations, initializers, layers as layers_module, losses, metrics as metrics_module, optimizers
from . import regularizers
from .saving import _check_path, write_atomically

__all__ = ["save_model", "load_model", "to_keras_config", "from_keras_config", "FILE_FORMAT_VERSION"]

#: The Keras file format these files follow (recorded as ``keras_version`` in ``metadata.json``).
FILE_FORMAT_VERSION = "3.0.0"

_CONFIG = "config.json"
_METADATA = "metadata.json"
_WEIGHTS = "model.weights.h5"

_SUPPORTED_LAYERS = ("Activation", "Dense", "Dropout", "InputLayer")
_SUPPORTED_OPTIMIZERS = ("SGD", "RMSprop", "Adam", "Adagrad")
_SUPPORTED_LOSSES = (
    "BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
    "MeanSquaredError", "MeanAbsoluteError",
)
_SUPPORTED_METRICS = (
    "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy", "MeanSquaredError", "MeanAbsoluteError",
)
# Keras options minitensor does not implement, with the value that means "off": a file whose
# value differs is rejected by name.
_INACTIVE_LAYER_OPTIONS = {
    "kernel_constraint": None,
    "bias_constraint": None,
    "quantization_config": None,
    "lora_rank": None,
    "lora_alpha": None,
    "sparse": False,
    "ragged": False,
    "optional": False,
}


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError(
            'Reading and writing .keras files needs h5py, which is not installed. Install it with '
            '`pip install "minitensor[keras-files]"`.'
        ) from None
    return h5py


class _Unsupported(ValueError):
    """Something in a file (or a model) that the other side cannot represent."""


# =============================================================================== writing
def _keras_object(module: str, class_name: str, config) -> dict:
    return {"module": module, "class_name": class_name, "config": config, "registered_name": None}


def _dtype_policy(dtype) -> dict:
    return _keras_object("keras", "DTypePolicy", {"name": str(np.dtype(dtype))})


def _keras_initializer(value, where):
    if not isinstance(value, initializers.Initializer):
        raise _Unsupported(f"{where} is a custom callable {value!r}; only built-in initializers can be written")
    return _keras_object("keras.initializers", type(value).__name__, value.get_config())


def _keras_regularizer(value, where):
    if value is None:
        return None
    if type(value) not in (regularizers.L1, regularizers.L2, regularizers.L1L2):
        raise _Unsupported(f"{where} is {type(value).__name__}; only L1, L2 and L1L2 can be written")
    return _keras_object("keras.regularizers", type(value).__name__, value.get_config())


def _keras_activation(value, where):
    try:
        return activations.serialize(value)
    except ValueError:
        raise _Unsupported(f"{where} is a custom callable; only built-in activations can be written") from None


def _keras_layer(layer) -> dict:
    kind = type(layer).__name__
    where = f"layer {layer.name!r}"
    common = {"name": layer.name, "trainable": layer.trainable, "dtype": _dtype_policy(layer.dtype)}
    if type(layer) is layers_module.Dense:
        config = {
            **common,
            "units": layer.units,
            "activation": _keras_activation(layer.activation, f"the activation of {where}"),
            "use_bias": layer.use_bias,
            "kernel_initializer": _keras_initializer(layer.kernel_initializer, f"the kernel_initializer of {where}"),
            "bias_initializer": _keras_initializer(layer.bias_initializer, f"the bias_initializer of {where}"),
            "kernel_regularizer": _keras_regularizer(layer.kernel_regularizer, f"the kernel_regularizer of {where}"),
            "bias_regularizer": _keras_regularizer(layer.bias_regularizer, f"the bias_regularizer of {where}"),
            "kernel_constraint": None,
            "bias_constraint": None,
        }
        if layer.activity_regularizer is not None:
            config["activity_regularizer"] = _keras_regularizer(
                layer.activity_regularizer, f"the activity_regularizer of {where}"
            )
    elif type(layer) is layers_module.Dropout:
        noise_shape = None if layer.noise_shape is None else list(layer.noise_shape)
        config = {**common, "rate": layer.rate, "seed": layer.seed, "noise_shape": noise_shape}
    elif type(layer) is layers_module.Activation:
        config = {**common, "activation": _keras_activation(layer.activation, f"the activation of {where}")}
    else:
        raise _Unsupported(
            f"{where} is a {kind}; a .keras file can hold only {', '.join(_SUPPORTED_LAYERS[:3])} layers"
        )
    return _keras_object("keras.layers", kind, config)


def _keras_loss(loss):
    name = type(loss).__name__
    if name not in _SUPPORTED_LOSSES or getattr(losses, name) is not type(loss):
        raise _Unsupported(f"the loss is {name}; only {', '.join(_SUPPORTED_LOSSES)} can be written")
    return _keras_object("keras.losses", name, loss.get_config())


def _keras_metric(metric):
    if isinstance(metric, str):
        return metric
    name = type(metric).__name__
    if name not in _SUPPORTED_METRICS or getattr(metrics_module, name) is not type(metric):
        raise _Unsupported(f"the metric {metric!r} is a {name}; write metrics by name or as {', '.join(_SUPPORTED_METRICS)}")
    return _keras_object("keras.metrics", name, metric.get_config())


def _keras_optimizer(optimizer):
    name = type(optimizer).__name__
    if name not in _SUPPORTED_OPTIMIZERS or getattr(optimizers, name) is not type(optimizer):
        raise _Unsupported(f"the optimizer is {name}; only {', '.join(_SUPPORTED_OPTIMIZERS)} can be written")
    return _keras_object("keras.optimizers", name, optimizer.get_config())


def to_keras_config(model) -> dict:
    """The contents of ``config.json`` for ``model``: Keras's serialised Sequential model.

    Args:
        model: a built ``Sequential`` of ``Dense``, ``Dropout`` and ``Activation`` layers
            with built-in activations, initializers and regularizers.

    Returns:
        A JSON-ready dict (``class_name`` ``"Sequential"``, its layers, ``build_config`` and,
        when the model is compiled, ``compile_config``).

    Raises:
        ValueError: naming the layer or setting that Keras's format cannot express.

    Example:
        >>> from minitensor.models import Sequential
        >>> from minitensor.layers import Dense, Input
        >>> config = to_keras_config(Sequential([Input(shape=(4,)), Dense(1, name="out")]))
        >>> [layer["class_name"] for layer in config["config"]["layers"]]
        ['InputLayer', 'Dense']
    """
    model._require_built("save")
    try:
        return _to_keras_config(model)
    except _Unsupported as error:
        raise ValueError(f"This model cannot be written as a .keras file: {error}. Received: model {model.name!r}") from None


def _to_keras_config(model) -> dict:
    batch_shape = [None, *model.input_shape[1:]]
    input_layer = _keras_object(
        "keras.layers", "InputLayer",
        {"batch_shape": batch_shape, "dtype": "float32", "sparse": False, "ragged": False, "name": "input_layer"},
    )
    layer_configs = [input_layer]
    shape = tuple(model.input_shape)
    for layer in model.layers:
        spec = _keras_layer(layer)
        spec["build_config"] = {"input_shape": list(shape)}
        shape = layer.compute_output_shape(shape)
        layer_configs.append(spec)
    dtypes = {str(layer.dtype) for layer in model.layers} or {"float32"}
    config = {
        "name": model.name,
        "trainable": True,
        "dtype": _dtype_policy(dtypes.pop() if len(dtypes) == 1 else "float32"),
        "layers": layer_configs,
        "build_input_shape": batch_shape,
    }
    result = _keras_object("keras", "Sequential", config)
    result["build_config"] = {"input_shape": batch_shape}
    if model.compiled:
        result["compile_config"] = {
            "optimizer": _keras_optimizer(model.optimizer),
            "loss": _keras_loss(model.loss),
            "loss_weights": None,
            "metrics": [_keras_metric(m) for m in model._metric_identifiers] or None,
            "weighted_metrics": None,
            "run_eagerly": False,
            "steps_per_execution": 1,
            "jit_compile": bool(model.jit_compile),
        }
    return result


def _layer_paths(kinds) -> list:
    """HDF5 group of each layer: its snake-case class name, numbered from the second on (``dense_1``)."""
    used: dict[str, int] = {}
    paths = []
    for kind in kinds:
        base = re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()
        count = used.get(base)
        used[base] = 0 if count is None else count + 1
        paths.append(f"layers/{base}" if count is None else f"layers/{base}_{count + 1}")
    return paths


# The slots Keras creates per trainable variable, as groups: within a group the slots of one
# variable come together (Adam: m0, v0, m1, v1, ...), groups follow each other. The slot names
# come from the optimizer itself; only Adam's interleaving (see ``Adam._state_slots``) is added here.
def _slot_groups(optimizer) -> list:
    if not isinstance(optimizer, (optimizers.Adam, optimizers.RMSprop, optimizers.SGD, optimizers.Adagrad)):
        raise _Unsupported(
            f"the optimizer is {type(optimizer).__name__}; only {', '.join(_SUPPORTED_OPTIMIZERS)} are supported"
        )
    names = optimizer._slot_names()
    if isinstance(optimizer, optimizers.Adam):
        return [tuple(names[:2])] + [(name,) for name in names[2:]]
    return [(name,) for name in names]


def _slot_order(groups, n_variables) -> list:
    """``(slot, variable index)`` of each slot array, in the state's order."""
    return [(slot, v) for group in groups for v in range(n_variables) for slot in group]


def _optimizer_segments(model, variables) -> list:
    """For each of the optimizer's variables, the trainable weights it holds with their offsets."""
    trainable = model.trainable_weights
    segments = []
    for variable in variables:
        if any(variable is w for w in trainable):
            segments.append([(variable, 0)])
        else:  # one flat buffer holding every weight in order
            weights = model.weights
            offsets = np.cumsum([0] + [w.size for w in weights[:-1]])
            segments.append([(w, int(o)) for w, o in zip(weights, offsets) if any(w is t for t in trainable)])
    return segments


def _keras_optimizer_state(model) -> list:
    """``[iterations, learning_rate, *slots]`` in Keras's variable order (slots per trainable weight)."""
    from .tensor import Tensor

    optimizer = model.optimizer
    groups = _slot_groups(optimizer)
    trainable = model.trainable_weights
    if (
        optimizer.built
        and getattr(model, "_optimizer_variables", None) is not None
        and getattr(model, "_optimizer_owner", None) is optimizer
    ):
        variables = model._optimizer_variables
        state = optimizer.get_state()
    else:  # never stepped: the state Keras would build (fresh slots) on the trainable weights
        fresh = type(optimizer).from_config(optimizer.get_config())
        variables = [Tensor(np.zeros(w.shape, dtype=w.dtype)) for w in trainable]
        fresh.build(variables)
        state = fresh.get_state()
        variables = trainable
    order = _slot_order(groups, len(variables))
    if len(state) != 1 + len(order):
        raise _Unsupported(f"the state of {optimizer.name} has an unexpected layout ({len(state)} arrays)")
    arrays = {key: array for key, array in zip(order, state[1:])}
    segments = _optimizer_segments(model, variables)
    owner = {id(w): (v, offset) for v, segment in enumerate(segments) for w, offset in segment}
    slots = []
    for group in groups:
        for w in trainable:
            v, offset = owner[id(w)]
            for slot in group:
                flat = arrays[(slot, v)].reshape(-1)
                slots.append(flat[offset : offset + w.size].reshape(w.shape).copy())
    iterations = np.array(int(np.asarray(state[0])), dtype=np.int64)
    return [iterations, np.array(optimizer.learning_rate, dtype=np.float32), *slots]


def _weights_file(model) -> bytes:
    h5py = _h5py()
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.create_group("vars").attrs["name"] = model.name
        for layer, path in zip(model.layers, _layer_paths(type(layer).__name__ for layer in model.layers)):
            group = h5.create_group(path).create_group("vars")
            group.attrs["name"] = layer.name
            for i, array in enumerate(layer.get_weights()):
                group.create_dataset(str(i), data=array)
        if model.compiled:
            group = h5.create_group("optimizer").create_group("vars")
            group.attrs["name"] = model.optimizer.name
            for i, array in enumerate(_keras_optimizer_state(model)):
                group.create_dataset(str(i), data=array)
    return buffer.getvalue()


def save_model(model, filepath) -> None:
    """Write ``model`` to ``filepath`` as a Keras 3 ``.keras`` file, atomically.

    Args:
        model: a built ``Sequential`` (see :func:`to_keras_config` for what it may hold).
        filepath: destination path, ending in ``.keras``.

    Raises:
        ValueError: if the path does not end in ``.keras``, the model is not built, or it holds
            something Keras's format cannot express (nothing is written then).
        ImportError: if h5py is missing (``pip install "minitensor[keras-files]"``).

    Example:
        >>> from minitensor.models import Sequential
        >>> from minitensor.layers import Dense, Input
        >>> save_model(Sequential([Input(shape=(2,)), Dense(1)]), "/tmp/tiny.keras")
        >>> sorted(zipfile.ZipFile("/tmp/tiny.keras").namelist())
        ['config.json', 'metadata.json', 'model.weights.h5']
    """
    filepath = _check_path(filepath)
    if not filepath.endswith(".keras"):
        raise ValueError(f"Expected a path ending in `.keras`. Received: filepath={filepath!r}")
    config = to_keras_config(model)
    try:
        weights = _weights_file(model)
    except _Unsupported as error:
        raise ValueError(f"This model cannot be written as a .keras file: {error}. Received: model {model.name!r}") from None
    metadata = {
        "keras_version": FILE_FORMAT_VERSION,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        "saved_by": f"minitensor {_version()}",
    }

    def write(handle):
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(_METADATA, json.dumps(metadata))
            archive.writestr(_CONFIG, json.dumps(config))
            archive.writestr(_WEIGHTS, weights)

    write_atomically(filepath, write)  # as model files: mode kept, links followed, temporaries cleaned


def _version() -> str:
    from . import __version__

    return __version__


# =============================================================================== reading
def _class_name(spec, what) -> str:
    if not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str):
        raise _Unsupported(f"{what} is not a serialised Keras object: {spec!r}")
    return spec["class_name"]


def _dtype_name(value, where) -> str:
    if value is None:
        return "float32"
    name = value.get("config", {}).get("name") if isinstance(value, dict) else value
    if name not in ("float32", "float64"):
        raise _Unsupported(f"{where} computes in {name!r}; minitensor supports float32 and float64 only")
    return name


def _plain(spec):
    """A Keras object spec as minitensor's ``{"class_name", "config"}`` (``None`` stays ``None``)."""
    if spec is None or isinstance(spec, str):
        return spec
    return {"class_name": spec.get("class_name"), "config": spec.get("config") or {}}


def _resolve(getter, spec, what):
    try:
        return getter(_plain(spec))
    except (ValueError, TypeError):
        name = spec.get("class_name") if isinstance(spec, dict) else spec
        raise _Unsupported(f"{what} is {name!r}, which minitensor does not implement") from None


def _check_options(config: dict, known: set, where: str) -> None:
    for key, value in config.items():
        if key in known:
            continue
        if key in _INACTIVE_LAYER_OPTIONS:
            if value != _INACTIVE_LAYER_OPTIONS[key]:
                raise _Unsupported(f"{where} sets {key}={value!r}, which minitensor does not implement")
        elif value is not None:
            raise _Unsupported(f"{where} sets {key}={value!r}, which minitensor does not implement")


def _activation_name(value, where):
    if isinstance(value, dict):  # a function serialised as an object
        value = value.get("config") if value.get("class_name") == "function" else value.get("class_name")
    try:
        activations.get(value)
    except ValueError:
        raise _Unsupported(f"{where} uses the activation {value!r}, which minitensor does not implement") from None
    return value


def _layer_from_keras(spec):
    kind = _class_name(spec, "a layer")
    config = dict(spec.get("config") or {})
    name = config.get("name")
    where = f"layer {name!r} ({kind})"
    if kind not in _SUPPORTED_LAYERS[:3]:
        raise _Unsupported(
            f"{where} is a layer minitensor does not implement; supported layers are {', '.join(_SUPPORTED_LAYERS)}"
        )
    common = {"name": name, "trainable": config.get("trainable", True), "dtype": _dtype_name(config.get("dtype"), where)}
    if kind == "Dense":
        _check_options(config, {"name", "trainable", "dtype", "units", "activation", "use_bias", "kernel_initializer",
                                "bias_initializer", "kernel_regularizer", "bias_regularizer", "activity_regularizer"},
                       where)
        return layers_module.Dense(
            config["units"],
            activation=_activation_name(config.get("activation"), where),
            use_bias=config.get("use_bias", True),
            kernel_initializer=_resolve(initializers.get, config.get("kernel_initializer", "glorot_uniform"),
                                        f"the kernel_initializer of {where}"),
            bias_initializer=_resolve(initializers.get, config.get("bias_initializer", "zeros"),
                                      f"the bias_initializer of {where}"),
            kernel_regularizer=_resolve(regularizers.get, config.get("kernel_regularizer"),
                                        f"the kernel_regularizer of {where}"),
            bias_regularizer=_resolve(regularizers.get, config.get("bias_regularizer"), f"the bias_regularizer of {where}"),
            activity_regularizer=_resolve(regularizers.get, config.get("activity_regularizer"),
                                          f"the activity_regularizer of {where}"),
            **common,
        )
    if kind == "Dropout":
        _check_options(config, {"name", "trainable", "dtype", "rate", "seed", "noise_shape"}, where)
        return layers_module.Dropout(config["rate"], noise_shape=config.get("noise_shape"), seed=config.get("seed"),
                                     **common)
    _check_options(config, {"name", "trainable", "dtype", "activation"}, where)
    return layers_module.Activation(_activation_name(config.get("activation"), where), **common)


def _input_shape(spec) -> tuple:
    config = spec.get("config") or {}
    where = f"input layer {config.get('name')!r}"
    _check_options(config, {"batch_shape", "batch_input_shape", "dtype", "name"}, where)
    _dtype_name(config.get("dtype"), where)
    shape = config.get("batch_shape") or config.get("batch_input_shape")
    if not isinstance(shape, list) or len(shape) < 2:
        raise _Unsupported(f"{where} has no batch_shape")
    return tuple(shape[1:])


def from_keras_config(config: dict):
    """Build the minitensor ``Sequential`` a ``config.json`` describes (weights initialised, not loaded).

    Args:
        config: the parsed ``config.json`` of a Keras 3 Sequential model.

    Returns:
        A ``Sequential`` (built when the config declares its input), not compiled.

    Raises:
        ValueError: naming the model class, layer, option, activation, initializer or
            regularizer that minitensor does not implement.

    Example:
        >>> model = from_keras_config({"class_name": "Sequential", "config": {"name": "m", "layers": [
        ...     {"class_name": "InputLayer", "config": {"batch_shape": [None, 3]}},
        ...     {"class_name": "Dense", "config": {"name": "d", "units": 2, "activation": "relu"}}]}})
        >>> model.count_params()
        8
    """
    try:
        return _from_keras_config(config)
    except _Unsupported as error:
        raise ValueError(f"minitensor cannot build this Keras model: {error}") from None


def _from_keras_config(config: dict):
    from .layers import Input
    from .models import Sequential

    kind = _class_name(config, "the model")
    if kind != "Sequential":
        raise _Unsupported(f"the model is a {kind}; minitensor opens Sequential models only")
    body = config.get("config") or {}
    if body.get("trainable", True) is not True:
        raise _Unsupported("the model is frozen as a whole (trainable=False); freeze its layers instead")
    model = Sequential(name=body.get("name"))
    specs = list(body.get("layers") or [])
    if specs and _class_name(specs[0], "a layer") == "InputLayer":
        model.add(Input(shape=_input_shape(specs.pop(0))))
    for spec in specs:
        if _class_name(spec, "a layer") == "InputLayer":
            raise _Unsupported("an InputLayer appears after the first layer")
        model.add(_layer_from_keras(spec))
    if not model.built:
        shape = body.get("build_input_shape") or (config.get("build_config") or {}).get("input_shape")
        if shape is None and specs:
            shape = (specs[0].get("build_config") or {}).get("input_shape")
        if shape is not None:
            model.build((None, *shape[1:]))
    return model


def _loss_from_keras(spec):
    if isinstance(spec, dict) and spec.get("class_name") == "function":
        spec = spec.get("config")
    if isinstance(spec, (list, tuple)) or (isinstance(spec, dict) and "class_name" not in spec):
        raise _Unsupported("the model has several losses (one per output); minitensor models have one output")
    return _resolve(losses.get, spec, "the loss")


def _metric_from_keras(spec):
    if isinstance(spec, str):
        try:
            metrics_module.get(spec, np.zeros((1, 1)), np.zeros((1, 1)))
        except ValueError:
            raise _Unsupported(f"the metric {spec!r} is not implemented in minitensor") from None
        return spec
    name = _class_name(spec, "a metric")
    if name == "function":
        return _metric_from_keras(spec.get("config"))
    if name not in _SUPPORTED_METRICS:
        raise _Unsupported(f"the metric {name!r} is not implemented in minitensor")
    return getattr(metrics_module, name).from_config(dict(spec.get("config") or {}))


def _compile_from_keras(model, compile_config: dict) -> None:
    for key in ("loss_weights", "weighted_metrics"):
        if compile_config.get(key):
            raise _Unsupported(f"the model is compiled with {key}={compile_config[key]!r}, which minitensor does not implement")
    spec = compile_config.get("optimizer")
    name = _class_name(spec, "the optimizer")
    if name not in _SUPPORTED_OPTIMIZERS:
        raise _Unsupported(f"the optimizer is {name}; minitensor implements {', '.join(_SUPPORTED_OPTIMIZERS)}")
    try:
        optimizer = optimizers.get(_plain(spec))
    except ValueError as error:
        raise _Unsupported(f"the {name} optimizer's settings: {error}") from None
    metrics = compile_config.get("metrics") or []
    if isinstance(metrics, dict):
        raise _Unsupported("the metrics are given per output; minitensor models have one output")
    model.compile(
        optimizer=optimizer,
        loss=_loss_from_keras(compile_config.get("loss")),
        metrics=[_metric_from_keras(m) for m in metrics],
        jit_compile=compile_config.get("jit_compile") is True,
    )


def _read_vars(h5, path) -> list | None:
    """The datasets ``0, 1, ...`` under ``path/vars`` as arrays, or None if the group is absent."""
    if path not in h5 or "vars" not in h5[path]:
        return None
    group = h5[path]["vars"]
    keys = sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else -1)
    if any(not k.isdigit() for k in keys) or [int(k) for k in keys] != list(range(len(keys))):
        raise _Unsupported(f"the weights file holds unexpected entries under {path}/vars: {keys}")
    return [np.asarray(group[k][()]) for k in keys]


def _load_weights(model, h5) -> None:
    for layer, path in zip(model.layers, _layer_paths(type(layer).__name__ for layer in model.layers)):
        arrays = _read_vars(h5, path) or []
        expected = [w.shape for w in layer.weights]
        if [a.shape for a in arrays] != expected:
            raise _Unsupported(
                f"layer {layer.name!r} expects weights of shapes {expected}; the weights file holds "
                f"{[a.shape for a in arrays]} under {path}"
            )
        if arrays:
            layer.set_weights([a.astype(layer.dtype, copy=False) for a in arrays])


def _load_optimizer_state(model, h5) -> None:
    arrays = _read_vars(h5, "optimizer")
    if not arrays:
        return
    optimizer = model.optimizer
    if len(arrays) >= 2:
        optimizer.learning_rate = float(arrays[1])
    groups = _slot_groups(optimizer)
    trainable = model.trainable_weights
    keras_order = _slot_order(groups, len(trainable))
    if len(arrays) <= 2 and keras_order:  # the optimizer had not been built: nothing but its learning rate
        return
    shapes = [trainable[v].shape for _, v in keras_order]
    if len(arrays) != 2 + len(keras_order) or [a.shape for a in arrays[2:]] != shapes:
        warnings.warn(
            f"The optimizer state in the file does not fit this model's {type(optimizer).__name__} "
            f"({len(arrays)} arrays where {2 + len(keras_order)} were expected); the optimizer starts afresh.",
            UserWarning,
            stacklevel=4,
        )
        return
    slots = dict(zip(keras_order, arrays[2:]))
    model._prepare_optimizer()
    variables = model._optimizer_variables
    optimizer.build(variables)
    segments = _optimizer_segments(model, variables)
    index = {id(w): j for j, w in enumerate(trainable)}
    state = [np.array(int(arrays[0]), dtype=np.int64)]
    for slot, v in _slot_order(groups, len(variables)):
        variable = variables[v].data
        buffer = np.empty(variable.size, dtype=variable.dtype)
        for w, offset in segments[v]:
            buffer[offset : offset + w.size] = slots[(slot, index[id(w)])].reshape(-1)
        state.append(buffer.reshape(variable.shape))
    optimizer.set_state(state)


def load_model(filepath, compile: bool = True):  # noqa: A002 - Keras's argument name
    """Open a Keras 3 ``.keras`` file of a Sequential model as a minitensor ``Sequential``.

    Args:
        filepath: path of the ``.keras`` file.
        compile: also restore the compile settings and the optimizer state (default True).

    Returns:
        The model, with the file's weights (and optimizer state, when present).

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: if it is not a readable ``.keras`` file, or it holds a layer, option or
            setting minitensor does not implement (named in the message).
        ImportError: if h5py is missing (``pip install "minitensor[keras-files]"``).

    Example:
        >>> from minitensor.models import Sequential
        >>> from minitensor.layers import Dense, Input
        >>> save_model(Sequential([Input(shape=(2,)), Dense(1)]), "/tmp/tiny.keras")
        >>> load_model("/tmp/tiny.keras").count_params()
        3
    """
    h5py = _h5py()
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No .keras file at {filepath!r}")
    try:
        with zipfile.ZipFile(filepath) as archive:
            names = set(archive.namelist())
            if _CONFIG not in names:
                raise ValueError(f"it has no {_CONFIG}")
            config = json.loads(archive.read(_CONFIG).decode("utf-8"))
            weights = archive.read(_WEIGHTS) if _WEIGHTS in names else None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, UnicodeDecodeError) as error:
        raise ValueError(
            f"Expected a Keras 3 .keras file (a zip of config.json and model.weights.h5). Received: {filepath!r}, "
            f"which could not be read as one ({type(error).__name__}: {error})"
        ) from None
    if weights is None:
        other = sorted(n for n in names if n.startswith("model.weights"))
        raise ValueError(
            f"Expected the weights in {_WEIGHTS} (minitensor reads Keras's default HDF5 weights). "
            f"Received: {filepath!r} with {other or 'no weights file'}"
        )
    try:
        model = _from_keras_config(config)
        compile_config = config.get("compile_config")
        if compile and compile_config:
            _compile_from_keras(model, compile_config)
        with h5py.File(io.BytesIO(weights), "r") as h5:
            if model.built:
                _load_weights(model, h5)
            if model.compiled and model.built:
                _load_optimizer_state(model, h5)
    except _Unsupported as error:
        raise ValueError(f"minitensor cannot open {filepath!r}: {error}") from None
    except OSError as error:
        raise ValueError(f"The weights in {filepath!r} could not be read ({error}); the file may be truncated") from None
    return model
