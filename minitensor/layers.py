"""Keras-compatible layers: ``Input``, ``Dense``, ``Dropout``, ``Activation``.

A layer follows Keras's life cycle: ``__init__`` validates and stores its
configuration, ``build(input_shape)`` creates its weights, ``call(inputs,
training)`` computes its output from minitensor ops (so autograd differentiates
it). ``get_config()``/``from_config()`` round-trip the configuration and
``get_weights()``/``set_weights()`` move the values (a Dense layer's are
``[kernel (in, out), bias (out,)]``, as Keras).

Example:
    >>> import numpy as np
    >>> from minitensor.layers import Dense
    >>> layer = Dense(3, activation="relu")
    >>> layer(np.ones((2, 4), dtype="float32")).shape
    (2, 3)
"""

from __future__ import annotations

import contextlib
import re
import threading
import warnings

import numpy as np

from . import activations, initializers, ops, regularizers
from .identifiers import serialize as _serialize
from .random import make_generator
from .tensor import Tensor

__all__ = ["Layer", "InputLayer", "Input", "Dense", "Dropout", "Activation", "get", "deserialize", "keep_pre_activations"]

_name_counters: dict[str, int] = {}


def _unique_name(base: str) -> str:
    """Keras-style automatic names: ``dense``, ``dense_1``, ``dense_2``, ..."""
    count = _name_counters.get(base, 0)
    _name_counters[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _check_bool(value, argument) -> bool:
    """``value`` if it is a boolean (a string such as ``'False'`` would read as True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"Expected `{argument}` to be True or False. Received: {argument}={value!r}")
    return bool(value)


def _check_float_dtype(dtype):
    dtype = np.dtype(dtype if dtype is not None else "float32")
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"Expected dtype 'float32' or 'float64'. Received: dtype={dtype}")
    return dtype


class Layer:
    """Base class of all layers.

    Args:
        name: the layer's name (unique names like ``dense_1`` are generated when omitted).
        trainable: whether the optimizer updates its weights.
        dtype: ``"float32"`` (default) or ``"float64"`` for its weights and computation.
        input_shape / input_dim: legacy Keras-2 way to declare the model's input on the
            first layer (accepted with a ``UserWarning``, as Keras 3 does).

    Unknown keyword arguments are rejected with a ``ValueError``.
    """

    def __init__(self, name=None, trainable=True, dtype=None, input_shape=None, input_dim=None, **kwargs):
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to {type(self).__name__}: {kwargs}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"Expected `name` to be a non-empty string. Received: name={name!r}")
        trainable = _check_bool(trainable, "trainable")
        dtype = _check_float_dtype(dtype)
        self.name = name or _unique_name(_snake_case(type(self).__name__))
        self.trainable = trainable
        self.dtype = dtype
        self.built = False
        self._weights: list[Tensor] = []
        self._declared_input_shape = None
        if input_shape is not None or input_dim is not None:
            warnings.warn(
                "Do not pass an `input_shape`/`input_dim` argument to a layer. When using Sequential models, "
                "prefer using an `Input(shape)` object as the first layer in the model instead.",
                UserWarning,
                stacklevel=3,
            )
            if input_dim is not None:
                if isinstance(input_dim, bool) or not isinstance(input_dim, (int, np.integer)) or input_dim <= 0:
                    raise ValueError(f"Expected `input_dim` to be a positive integer. Received: input_dim={input_dim!r}")
                self._declared_input_shape = (None, int(input_dim))
            else:
                self._declared_input_shape = (None, *_check_shape(input_shape, "input_shape"))

    # -------------------------------------------------------------- weights
    def add_weight(self, shape, initializer, name, regularizer=None, trainable=True) -> Tensor:
        """Create a weight Tensor of ``shape`` filled by ``initializer``."""
        value = initializers.get(initializer)(tuple(shape), dtype=self.dtype)
        weight = Tensor(np.asarray(value, dtype=self.dtype), requires_grad=trainable and self.trainable)
        weight.name = f"{self.name}/{name}"
        self._weights.append(weight)
        return weight

    @property
    def weights(self) -> list:
        """The layer's weight Tensors, in Keras order."""
        return list(self._weights)

    @property
    def trainable_weights(self) -> list:
        return [w for w in self._weights if w.requires_grad] if self.trainable else []

    def get_weights(self) -> list:
        """Copies of the weight values as NumPy arrays."""
        return [w.data.copy() for w in self._weights]

    def set_weights(self, weights) -> None:
        """Copy ``weights`` (a list of arrays, same order and shapes) into the layer, in place."""
        if len(weights) != len(self._weights):
            raise ValueError(
                f"Layer {self.name} expects {len(self._weights)} weight arrays. Received: {len(weights)} arrays"
            )
        arrays = [np.asarray(w) for w in weights]
        for weight, array in zip(self._weights, arrays):
            if array.shape != weight.shape:
                raise ValueError(
                    f"Layer {self.name} weight shape {weight.shape} is not compatible with provided weight "
                    f"shape {array.shape}."
                )
        for weight, array in zip(self._weights, arrays):
            weight.data[...] = array

    def count_params(self) -> int:
        return int(sum(w.size for w in self._weights))

    # ------------------------------------------------------------ computing
    def build(self, input_shape) -> None:
        self.built = True

    def call(self, inputs: Tensor, training: bool = False) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute_output_shape(self, input_shape) -> tuple:
        return tuple(input_shape)

    def regularization_losses(self) -> list:
        """Weight penalties of this layer (scalar Tensors) at the current weights."""
        return []

    def __call__(self, inputs, training: bool = False) -> Tensor:
        if not isinstance(inputs, Tensor):
            inputs = Tensor(np.asarray(inputs), dtype=self.dtype)
        if not self.built:
            self.build(inputs.shape)
        return self.call(inputs, training=training)

    # --------------------------------------------------------------- config
    def get_config(self) -> dict:
        config = {"name": self.name, "trainable": self.trainable, "dtype": str(self.dtype)}
        return config

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


def _check_shape(shape, argument) -> tuple:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise ValueError(f"Expected `{argument}` to be a tuple of positive integers. Received: {argument}={shape!r}") from None
    if not shape or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d <= 0 for d in shape):
        raise ValueError(f"Expected `{argument}` to be a tuple of positive integers. Received: {argument}={shape!r}")
    return tuple(int(d) for d in shape)


class InputLayer(Layer):
    """Declares the input shape of a model (what ``Input(shape)`` creates).

    Args:
        shape: the shape of one sample, e.g. ``(64,)``.
        name: optional name.

    Example:
        >>> InputLayer(shape=(64,)).batch_shape
        (None, 64)
    """

    def __init__(self, shape=None, name=None, dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        self.batch_shape = (None, *_check_shape(shape, "shape"))
        self.built = True

    def call(self, inputs, training=False):
        return inputs

    def get_config(self):
        config = super().get_config()
        config.pop("trainable")
        config["shape"] = list(self.batch_shape[1:])
        return config


def Input(shape, name=None, dtype=None) -> InputLayer:
    """Declare a model input of per-sample ``shape`` (use as the first layer of a Sequential).

    Example:
        >>> Input(shape=(64,)).batch_shape
        (None, 64)
    """
    return InputLayer(shape=shape, name=name, dtype=dtype)


class Dense(Layer):
    """Densely connected layer: ``activation(inputs @ kernel + bias)``.

    Args:
        units: positive integer, the output size.
        activation: name or callable (``None`` means linear).
        use_bias: whether to add a bias vector.
        kernel_initializer: default ``"glorot_uniform"``.
        bias_initializer: default ``"zeros"``.
        kernel_regularizer / bias_regularizer: penalties added to the loss.
        activity_regularizer: penalty on the output, divided by the batch size (as Keras).
        **kwargs: ``name``, ``trainable``, ``dtype``, legacy ``input_dim``/``input_shape``.

    Shapes: input (batch, in) -> output (batch, units); kernel (in, units), bias (units,).

    Example:
        >>> Dense(12, activation="relu").units
        12
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        **kwargs,
    ):
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(
                f"Received an invalid value for `units`, expected a positive integer. Received: units={units!r}"
            )
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = _check_bool(use_bias, "use_bias")
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        super().__init__(**kwargs)
        self.kernel = None
        self.bias = None

    def build(self, input_shape):
        in_features = input_shape[-1]
        if in_features is None:
            raise ValueError(f"Dense layer {self.name} needs a known last input dimension. Received: {input_shape}")
        self.kernel = self.add_weight((int(in_features), self.units), self.kernel_initializer, "kernel")
        if self.use_bias:
            self.bias = self.add_weight((self.units,), self.bias_initializer, "bias")
        self.built = True

    def call(self, inputs, training=False):
        """``activation(inputs @ kernel + bias)``, its tensors named ``<name>/pre_activation`` and ``<name>/output``.

        The pre-activation of relu and tanh is computed inside one fused op and not kept,
        unless the call runs inside :func:`keep_pre_activations` (the same numbers either way).
        """
        activation = self.activation
        if not self.use_bias:
            return self._activate(ops.matmul(inputs, self.kernel))
        # relu and tanh fuse with the product into one graph node (the same numbers)
        fused = "relu" if activation is activations.relu else "tanh" if activation is activations.tanh else None
        if fused and _keeping and threading.get_ident() in _keeping:  # inside keep_pre_activations()
            fused = None
        if isinstance(inputs, Tensor) and inputs._data.shape[-1:] == self.kernel._data.shape[:1]:
            # shapes checked: skip the ops' own checks, as this runs every training step
            if fused:
                out = ops.Dense.apply(inputs, self.kernel, self.bias, activation=fused)
                out.name = self.name + "/output"
                return out
            return self._activate(ops.Linear.apply(inputs, self.kernel, self.bias))
        if fused:
            out = ops.dense(inputs, self.kernel, self.bias, fused)
            out.name = self.name + "/output"
            return out
        return self._activate(ops.linear(inputs, self.kernel, self.bias))

    def _activate(self, pre_activation):
        pre_activation.name = self.name + "/pre_activation"
        out = self.activation(pre_activation)
        if out is not pre_activation:  # a linear layer's output is its pre-activation
            out.name = self.name + "/output"
        return out

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape)[:-1], self.units)

    def regularization_losses(self):
        penalties = []
        if self.kernel_regularizer is not None:
            penalties.append(self.kernel_regularizer(self.kernel))
        if self.bias_regularizer is not None and self.use_bias:
            penalties.append(self.bias_regularizer(self.bias))
        return penalties

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            activation=activations.serialize(self.activation),
            use_bias=self.use_bias,
            kernel_initializer=_serialize(self.kernel_initializer),
            bias_initializer=_serialize(self.bias_initializer),
            kernel_regularizer=_serialize(self.kernel_regularizer),
            bias_regularizer=_serialize(self.bias_regularizer),
            activity_regularizer=_serialize(self.activity_regularizer),
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("kernel_initializer", "bias_initializer"):
            config[key] = initializers.get(config[key])
        for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
            config[key] = regularizers.get(config.get(key))
        return cls(**config)


# Study mode is per thread, as grad mode: the depth of keep_pre_activations() blocks of each thread
# inside one, by thread ident, so that the usual case, no thread inside, costs one test of an empty dict
_keeping: dict = {}


@contextlib.contextmanager
def keep_pre_activations():
    """Within this block, ``Dense`` layers keep their pre-activation as a tensor of its own.

    A relu or tanh ``Dense`` layer normally computes ``activation(x @ kernel + bias)`` in one
    fused op that does not keep ``x @ kernel + bias``. Inside this block it computes the
    pre-activation (named ``<layer>/pre_activation``) and then the activation as two ops:
    the same numbers, forward and backward, with the pre-activation and its gradient
    (``retain_grad()``, hooks) open to study. The setting is per thread.

    Example:
        >>> import numpy as np
        >>> layer = Dense(2, activation="relu", name="study_dense")
        >>> with keep_pre_activations():
        ...     out = layer(np.ones((1, 3), dtype="float32"))
        >>> out.name
        'study_dense/output'
    """
    ident = threading.get_ident()
    _keeping[ident] = _keeping.get(ident, 0) + 1
    try:
        yield
    finally:
        depth = _keeping.pop(ident, 1)
        if depth > 1:
            _keeping[ident] = depth - 1


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability ``rate``, scale the rest by ``1/(1-rate)``.

    Identity at inference (``evaluate``, ``predict``, validation).

    Args:
        rate: float in [0, 1], the fraction of units dropped.
        noise_shape: shape of the binary mask, broadcast to the input (``None`` entries
            take the input's size), e.g. ``(None, 1)``.
        seed: optional integer seed for a private generator (else minitensor's generator).

    Example:
        >>> import numpy as np
        >>> Dropout(0.5)(np.ones((1, 4), dtype="float32")).data   # not training: identity
        array([[1., 1., 1., 1.]], dtype=float32)
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating, np.integer)) or not 0 <= rate <= 1:
            raise ValueError(
                f"Invalid value received for argument `rate`. Expected a float value between 0 and 1. Received: rate={rate!r}"
            )
        if noise_shape is not None and (
            not isinstance(noise_shape, (tuple, list))
            or any(d is not None and (isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1)
                   for d in noise_shape)
        ):
            raise ValueError(
                "Expected `noise_shape` to be None or a tuple of positive integers and None entries, "
                f"e.g. (None, 1). Received: noise_shape={noise_shape!r}"
            )
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(None if d is None else int(d) for d in noise_shape)
        self.seed = seed
        self._rng = make_generator(seed)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        mask_shape = inputs.shape
        if self.noise_shape is not None:
            mask_shape = tuple(d if n is None else n for d, n in zip(inputs.shape, self.noise_shape))
        keep = self._rng.random(mask_shape) >= self.rate
        out = ops.dropout(inputs, self.rate, keep=keep)
        out.name = self.name + "/output"
        return out

    @property
    def generator(self):
        """The random generator the training masks are drawn from: the layer's own (with a ``seed``)
        or minitensor's global one (without). Code that draws the masks elsewhere (the compiled
        training path) draws them from it, in the same order, so that both give the same masks.

        Example:
            >>> Dropout(0.5, seed=3).generator is Dropout(0.5, seed=3).generator   # one generator per layer
            False
        """
        return self._rng

    def __getstate__(self):
        # without a seed the layer draws from the global generator: a copy (pickle, deepcopy,
        # scikit-learn's clone) must go on sharing it, not freeze a private copy of its state
        state = dict(self.__dict__)
        if self.seed is None:
            state["_rng"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._rng is None:
            self._rng = make_generator(None)

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, noise_shape=None if self.noise_shape is None else list(self.noise_shape), seed=self.seed)
        return config


class Activation(Layer):
    """Applies an activation function (name or callable) to its input.

    Example:
        >>> import numpy as np
        >>> Activation("relu")(np.array([[-1.0, 2.0]], dtype="float32")).data
        array([[0., 2.]], dtype=float32)
    """

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def call(self, inputs, training=False):
        out = self.activation(inputs)
        if out is not inputs:
            out.name = self.name + "/output"
        return out

    def get_config(self):
        config = super().get_config()
        config["activation"] = activations.serialize(self.activation)
        return config


_LAYER_CLASSES = {cls.__name__: cls for cls in (InputLayer, Dense, Dropout, Activation)}


def deserialize(spec: dict) -> Layer:
    """Build a layer from ``{"class_name": ..., "config": ...}`` (as saved by models)."""
    try:
        cls = _LAYER_CLASSES[spec["class_name"]]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown layer specification. Expected one of {sorted(_LAYER_CLASSES)}. Received: {spec!r}") from None
    return cls.from_config(spec["config"])


def get(identifier) -> Layer:
    """Return a Layer instance, or build one from a config dict."""
    if isinstance(identifier, Layer):
        return identifier
    return deserialize(identifier)
