"""Initializers: the starting values of weights, as Keras 3 defines them.

An initializer is called as ``init(shape, dtype="float32")`` and returns a NumPy array.
The random ones follow Keras's formulas exactly (scales, fans, the truncated-normal
correction), but draw with NumPy, so their *values* differ from Keras's (TensorFlow's
stateless generator cannot be reproduced in NumPy: to start both engines from the same
weights, copy them with ``get_weights()``).

Where the random numbers come from:

* ``seed=None`` (the default): :func:`minitensor.random.generator` at **call** time, i.e.
  NumPy's global generator, so ``np.random.seed(42)`` (or ``set_random_seed``) pins every
  weight that follows. Calling the same unseeded instance twice gives different values.
  (Keras instead draws a seed when the initializer is *constructed*, so one unseeded
  instance repeats its values; we follow the NumPy-notebook convention on purpose.)
* ``seed=<int>``: a fresh ``minitensor.random.make_generator(seed)`` on every call, so the
  same seed always gives the same values, as in Keras.

Arrays are filled in C order, drawing in float64 and rounding to ``dtype``.

Example:
    >>> import numpy as np
    >>> w = GlorotUniform(seed=0)((64, 12))
    >>> w.dtype, bool(np.abs(w).max() <= np.sqrt(6 / 76))
    (dtype('float32'), True)
    >>> get("zeros")((2,)).tolist()
    [0.0, 0.0]
"""

from __future__ import annotations

import math
import re

import numpy as np

from . import random as _random
from .identifiers import resolve

__all__ = [
    "Initializer",
    "Zeros",
    "Ones",
    "Constant",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "VarianceScaling",
    "GlorotUniform",
    "GlorotNormal",
    "HeUniform",
    "HeNormal",
    "LecunUniform",
    "LecunNormal",
    "compute_fans",
    "get",
]

# stddev of a standard normal truncated to [-2, 2]: scipy.stats.truncnorm.std(a=-2, b=2)
_TRUNCATED_NORMAL_STDDEV = 0.87962566103423978
_TRUNCATION = 2.0  # truncated normals keep |x - mean| <= 2 stddev, as TensorFlow's


# ----------------------------------------------------------------------------- helpers
def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _check_finite(name: str, value) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"Argument `{name}` must be a finite number. Received: {name}={value!r}")
    return float(value)


def _check_seed(seed):
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"Argument `seed` must be None or a non-negative integer. Received: seed={seed!r}")
    return int(seed)


def _standardize_shape(shape) -> tuple:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, (bool, np.bool_)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(
            f"Expected `shape` to be a tuple of non-negative integers. Received: shape={shape!r}"
        ) from None
    for d in dims:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < 0:
            raise ValueError(f"Expected `shape` to be a tuple of non-negative integers. Received: shape={shape!r}")
    return tuple(int(d) for d in dims)


def _standardize_dtype(dtype, floating: bool) -> np.dtype:
    try:
        dtype = np.dtype("float32" if dtype is None else dtype)
    except TypeError:
        raise ValueError(f"Expected a NumPy dtype such as 'float32'. Received: dtype={dtype!r}") from None
    if floating and dtype.kind != "f":
        raise ValueError(
            f"Expected a floating dtype (such as 'float32') for a random initializer. Received: dtype={dtype}"
        )
    return dtype


def compute_fans(shape, input_axes=None, output_axes=None) -> tuple:
    """Return ``(fan_in, fan_out)`` for a weight shape, as Keras.

    * given ``input_axes`` and ``output_axes``: the products of those dimensions;
    * scalar: ``(1, 1)``; 1-D ``(n,)``: ``(n, n)``; 2-D ``(in, out)``: ``(in, out)``;
    * ≥3-D (a convolution kernel ``(..., in, out)``): both multiplied by the receptive field
      ``prod(shape[:-2])``.

    Example:
        >>> compute_fans((64, 12))
        (64, 12)
        >>> compute_fans((3, 3, 16, 32))
        (144, 288)
    """
    shape = _standardize_shape(shape)
    if input_axes is not None and output_axes is not None:
        return int(np.prod([shape[a] for a in input_axes])), int(np.prod([shape[a] for a in output_axes]))
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive_field = int(np.prod(shape[:-2]))
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _truncated_standard_normal(rng, size: tuple) -> np.ndarray:
    """Standard normal draws, redrawing those beyond ±2 until none are (rejection sampling)."""
    values = np.asarray(rng.normal(0.0, 1.0, size=size), dtype=np.float64)
    flat = values.reshape(-1)
    outside = np.flatnonzero(np.abs(flat) > _TRUNCATION)
    while outside.size:
        flat[outside] = rng.normal(0.0, 1.0, size=outside.size)
        outside = outside[np.abs(flat[outside]) > _TRUNCATION]
    return values


# ----------------------------------------------------------------------------- base classes
class Initializer:
    """Base class: an initializer is ``init(shape, dtype="float32") -> np.ndarray``.

    Subclasses implement ``__call__`` and, when they take arguments, ``get_config``.

    Example:
        >>> class Twos(Initializer):
        ...     def __call__(self, shape, dtype="float32"):
        ...         return np.full(shape, 2.0, dtype=dtype)
        >>> Twos()((2,)).tolist()
        [2.0, 2.0]
    """

    def __call__(self, shape, dtype="float32") -> np.ndarray:
        raise NotImplementedError("Initializer subclasses must implement the `__call__()` method.")

    def get_config(self) -> dict:
        """Return the constructor arguments as a JSON-serialisable dict (empty for the base)."""
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Initializer":
        """Create an initializer from :meth:`get_config`'s dict.

        Example:
            >>> RandomUniform.from_config({"minval": -1.0, "maxval": 1.0, "seed": None}).maxval
            1.0
        """
        return cls(**config)

    def clone(self) -> "Initializer":
        """Return a new initializer with the same config."""
        return type(self).from_config(self.get_config())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _RandomInitializer(Initializer):
    """An initializer that draws: holds ``seed`` and picks the generator per call."""

    def __init__(self, seed=None):
        self.seed = _check_seed(seed)

    def _generator(self):
        # a fresh private generator per call when seeded (same seed, same values, as Keras);
        # otherwise the shared one, read at call time so np.random.seed pins it
        return _random.make_generator(self.seed) if self.seed is not None else _random.generator()

    def get_config(self) -> dict:
        return {"seed": self.seed}


# ----------------------------------------------------------------------------- constants
class Zeros(Initializer):
    """All zeros.

    Example:
        >>> Zeros()((2, 2)).tolist()
        [[0.0, 0.0], [0.0, 0.0]]
    """

    def __call__(self, shape, dtype="float32") -> np.ndarray:
        return np.zeros(_standardize_shape(shape), dtype=_standardize_dtype(dtype, floating=False))


class Ones(Initializer):
    """All ones.

    Example:
        >>> Ones()((3,)).tolist()
        [1.0, 1.0, 1.0]
    """

    def __call__(self, shape, dtype="float32") -> np.ndarray:
        return np.ones(_standardize_shape(shape), dtype=_standardize_dtype(dtype, floating=False))


class Constant(Initializer):
    """Every element equal to one scalar ``value``.

    Args:
        value: a number, default 0.0.

    Example:
        >>> Constant(0.5)((2,)).tolist()
        [0.5, 0.5]
    """

    def __init__(self, value=0.0):
        if not _is_number(value):
            raise ValueError(f"Argument `value` must be a number (only scalars are allowed). Received: value={value!r}")
        self.value = value.item() if isinstance(value, np.generic) else value

    def __call__(self, shape, dtype="float32") -> np.ndarray:
        return np.full(_standardize_shape(shape), self.value, dtype=_standardize_dtype(dtype, floating=False))

    def get_config(self) -> dict:
        """Return ``{"value": value}``."""
        return {"value": self.value}


# ----------------------------------------------------------------------------- simple random
class RandomNormal(_RandomInitializer):
    """Normal draws: ``N(mean, stddev²)``.

    Args:
        mean: number, default 0.0.
        stddev: non-negative number, default 0.05.
        seed: ``None`` (draw from minitensor's generator at call time) or an int (same values each call).

    Example:
        >>> RandomNormal(stddev=1.0, seed=3)((2,)).shape
        (2,)
    """

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean = _check_finite("mean", mean)
        self.stddev = _check_finite("stddev", stddev)
        if self.stddev < 0:
            raise ValueError(f"Argument `stddev` must be non-negative. Received: stddev={stddev!r}")
        super().__init__(seed)

    def __call__(self, shape, dtype="float32") -> np.ndarray:
        shape, dtype = _standardize_shape(shape), _standardize_dtype(dtype, floating=True)
        return np.asarray(self._generator().normal(self.mean, self.stddev, size=shape), dtype=dtype)

    def get_config(self) -> dict:
        """Return ``{"seed", "mean", "stddev"}``."""
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class RandomUniform(_RandomInitializer):
    """Uniform draws between ``minval`` and ``maxval``.

    Args:
        minval: number, default -0.05.
        maxval: number >= ``minval``, default 0.05.
        seed: ``None`` or an int (see :class:`RandomNormal`).

    Example:
        >>> w = RandomUniform(-1, 1, seed=0)((100,))
        >>> bool((w >= -1).all() and (w <= 1).all())
        True
    """

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval = _check_finite("minval", minval)
        self.maxval = _check_finite("maxval", maxval)
        if self.minval > self.maxval:
            raise ValueError(f"Expected `minval <= maxval`. Received: minval={minval!r}, maxval={maxval!r}")
        super().__init__(seed)

    def __call__(self, shape, dtype="float32") -> np.ndarray:
        shape, dtype = _standardize_shape(shape), _standardize_dtype(dtype, floating=True)
        return np.asarray(self._generator().uniform(self.minval, self.maxval, size=shape), dtype=dtype)

    def get_config(self) -> dict:
        """Return ``{"seed", "minval", "maxval"}``."""
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}


class TruncatedNormal(_RandomInitializer):
    """Normal draws ``N(mean, stddev²)``, redrawn while more than 2 stddev from the mean.

    The result's standard deviation is ``0.8796·stddev`` (the truncation narrows it).

    Args:
        mean: number, default 0.0.
        stddev: non-negative number, default 0.05.
        seed: ``None`` or an int (see :class:`RandomNormal`).

    Example:
        >>> w = TruncatedNormal(stddev=1.0, seed=0)((1000,))
        >>> bool(np.abs(w).max() <= 2)
        True
    """

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean = _check_finite("mean", mean)
        self.stddev = _check_finite("stddev", stddev)
        if self.stddev < 0:
            raise ValueError(f"Argument `stddev` must be non-negative. Received: stddev={stddev!r}")
        super().__init__(seed)

    def __call__(self, shape, dtype="float32") -> np.ndarray:
        shape, dtype = _standardize_shape(shape), _standardize_dtype(dtype, floating=True)
        values = _truncated_standard_normal(self._generator(), shape)
        return np.asarray(self.mean + self.stddev * values, dtype=dtype)

    def get_config(self) -> dict:
        """Return ``{"seed", "mean", "stddev"}``."""
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


# ----------------------------------------------------------------------------- variance scaling
class VarianceScaling(_RandomInitializer):
    """Draws scaled to the weight's fan-in/fan-out; the base of Glorot, He and LeCun.

    Formula::

        n = fan_in | fan_out | (fan_in + fan_out)/2        (mode; see compute_fans)
        s = scale / max(1, n)
        "truncated_normal":   truncated normal with stddev = sqrt(s) / 0.87962566103423978
                              (so that the truncated draws have variance s)
        "untruncated_normal": normal with stddev = sqrt(s)
        "uniform":            uniform in [-limit, limit], limit = sqrt(3·s)

    Args:
        scale: positive number, default 1.0.
        mode: ``"fan_in"`` (default), ``"fan_out"`` or ``"fan_avg"``.
        distribution: ``"truncated_normal"`` (default; ``"normal"`` means the same),
            ``"untruncated_normal"`` or ``"uniform"`` (case-insensitive).
        seed: ``None`` or an int (see :class:`RandomNormal`).
        input_axes, output_axes: optional lists of axes whose sizes give the fans.

    Example:
        >>> w = VarianceScaling(2.0, "fan_in", "uniform", seed=0)((50, 10))
        >>> bool(np.abs(w).max() <= np.sqrt(3 * 2.0 / 50))
        True
    """

    def __init__(
        self,
        scale=1.0,
        mode="fan_in",
        distribution="truncated_normal",
        seed=None,
        input_axes=None,
        output_axes=None,
    ):
        if not _is_number(scale) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"Argument `scale` must be positive float. Received: scale={scale!r}")
        allowed_modes = ("fan_in", "fan_out", "fan_avg")
        if mode not in allowed_modes:
            raise ValueError(f"Invalid `mode` argument: {mode!r}. Please use one of {allowed_modes}")
        allowed = ("truncated_normal", "untruncated_normal", "uniform")
        name = distribution.lower() if isinstance(distribution, str) else distribution
        if name == "normal":
            name = "truncated_normal"
        if name not in allowed:
            raise ValueError(f"Invalid `distribution` argument: {distribution!r}. Please use one of {allowed}")
        if (input_axes is None) != (output_axes is None):
            raise ValueError(
                "Pass both `input_axes` and `output_axes`, or neither. "
                f"Received: input_axes={input_axes!r}, output_axes={output_axes!r}"
            )
        super().__init__(seed)
        self.scale = float(scale)
        self.mode = mode
        self.distribution = name
        self.input_axes = None if input_axes is None else list(input_axes)
        self.output_axes = None if output_axes is None else list(output_axes)

    def __call__(self, shape, dtype="float32") -> np.ndarray:
        shape, dtype = _standardize_shape(shape), _standardize_dtype(dtype, floating=True)
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        scale = self.scale / max(1.0, n)
        rng = self._generator()
        if self.distribution == "truncated_normal":
            stddev = math.sqrt(scale) / _TRUNCATED_NORMAL_STDDEV
            values = stddev * _truncated_standard_normal(rng, shape)
        elif self.distribution == "untruncated_normal":
            values = rng.normal(0.0, math.sqrt(scale), size=shape)
        else:
            limit = math.sqrt(3.0 * scale)
            values = rng.uniform(-limit, limit, size=shape)
        return np.asarray(values, dtype=dtype)

    def get_config(self) -> dict:
        """Return ``{"seed", "scale", "mode", "distribution", "input_axes", "output_axes"}``."""
        return {
            **super().get_config(),
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "input_axes": self.input_axes,
            "output_axes": self.output_axes,
        }


class _NamedVarianceScaling(VarianceScaling):
    """A VarianceScaling with fixed (scale, mode, distribution); its config is the seed and axes."""

    _preset: tuple = ()

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        scale, mode, distribution = self._preset
        super().__init__(scale, mode, distribution, seed=seed, input_axes=input_axes, output_axes=output_axes)

    def get_config(self) -> dict:
        return {"seed": self.seed, "input_axes": self.input_axes, "output_axes": self.output_axes}


class GlorotUniform(_NamedVarianceScaling):
    """Glorot (Xavier) uniform: ``U(-limit, limit)``, ``limit = sqrt(6 / (fan_in + fan_out))``.

    ``VarianceScaling(1.0, "fan_avg", "uniform")``; Keras's default kernel initializer.

    Args:
        seed: ``None`` or an int (see :class:`RandomNormal`).
        input_axes, output_axes: see :class:`VarianceScaling`.

    Example:
        >>> w = GlorotUniform(seed=1)((64, 12))
        >>> bool(np.abs(w).max() <= np.sqrt(6 / 76))
        True
    """

    _preset = (1.0, "fan_avg", "uniform")


class GlorotNormal(_NamedVarianceScaling):
    """Glorot (Xavier) normal: truncated normal, ``stddev = sqrt(2 / (fan_in + fan_out)) / 0.8796``.

    ``VarianceScaling(1.0, "fan_avg", "truncated_normal")``.

    Args:
        seed: ``None`` or an int (see :class:`RandomNormal`).
        input_axes, output_axes: see :class:`VarianceScaling`.

    Example:
        >>> GlorotNormal(seed=1)((64, 12)).shape
        (64, 12)
    """

    _preset = (1.0, "fan_avg", "truncated_normal")


class HeUniform(_NamedVarianceScaling):
    """He uniform: ``U(-limit, limit)``, ``limit = sqrt(6 / fan_in)``.

    ``VarianceScaling(2.0, "fan_in", "uniform")``; suited to ReLU layers.

    Args:
        seed: ``None`` or an int (see :class:`RandomNormal`).
        input_axes, output_axes: see :class:`VarianceScaling`.

    Example:
        >>> bool(np.abs(HeUniform(seed=1)((24, 8))).max() <= 0.5)
        True
    """

    _preset = (2.0, "fan_in", "uniform")


class HeNormal(_NamedVarianceScaling):
    """He normal: truncated normal, ``stddev = sqrt(2 / fan_in) / 0.8796``.

    ``VarianceScaling(2.0, "fan_in", "truncated_normal")``.

    Args:
        seed: ``None`` or an int (see :class:`RandomNormal`).
        input_axes, output_axes: see :class:`VarianceScaling`.

    Example:
        >>> HeNormal(seed=1)((24, 8)).dtype
        dtype('float32')
    """

    _preset = (2.0, "fan_in", "truncated_normal")


class LecunUniform(_NamedVarianceScaling):
    """LeCun uniform: ``U(-limit, limit)``, ``limit = sqrt(3 / fan_in)``.

    ``VarianceScaling(1.0, "fan_in", "uniform")``.

    Args:
        seed: ``None`` or an int (see :class:`RandomNormal`).
        input_axes, output_axes: see :class:`VarianceScaling`.

    Example:
        >>> bool(np.abs(LecunUniform(seed=1)((12, 8))).max() <= 0.5)
        True
    """

    _preset = (1.0, "fan_in", "uniform")


class LecunNormal(_NamedVarianceScaling):
    """LeCun normal: truncated normal, ``stddev = sqrt(1 / fan_in) / 0.8796``.

    ``VarianceScaling(1.0, "fan_in", "truncated_normal")``; the SELU initializer.

    Args:
        seed: ``None`` or an int (see :class:`RandomNormal`).
        input_axes, output_axes: see :class:`VarianceScaling`.

    Example:
        >>> LecunNormal(seed=1)((12, 8)).shape
        (12, 8)
    """

    _preset = (1.0, "fan_in", "truncated_normal")


# ----------------------------------------------------------------------------- lookup
def _snake_case(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


_CLASSES = (
    Zeros,
    Ones,
    Constant,
    RandomNormal,
    RandomUniform,
    TruncatedNormal,
    VarianceScaling,
    GlorotUniform,
    GlorotNormal,
    HeUniform,
    HeNormal,
    LecunUniform,
    LecunNormal,
)
# Keras's names: the class name and its snake_case (case-sensitive), plus a few aliases
_BY_NAME = {cls.__name__: cls for cls in _CLASSES}
_BY_NAME.update({_snake_case(cls.__name__): cls for cls in _CLASSES})
_BY_NAME.update({"normal": RandomNormal, "uniform": RandomUniform, "one": Ones, "zero": Zeros})


def get(identifier):
    """Return an initializer for ``identifier``, as ``keras.initializers.get``.

    Args:
        identifier: ``None`` (returns ``None``); an :class:`Initializer` or any callable
            (returned as is); an Initializer class (instantiated with defaults); a name as Keras
            spells it, case-sensitive: ``"glorot_uniform"``/``"GlorotUniform"``, ``"he_normal"``,
            ``"lecun_uniform"``, ``"random_normal"``, ``"random_uniform"``, ``"truncated_normal"``,
            ``"variance_scaling"``, ``"zeros"``, ``"ones"``, ``"constant"``, ``"normal"``,
            ``"uniform"``, ``"zero"``, ``"one"``...; or a dict ``{"class_name": ..., "config": {...}}``.

    Raises:
        ValueError: ``Could not interpret initializer identifier: ...`` otherwise.

    Example:
        >>> type(get("he_normal")).__name__
        'HeNormal'
        >>> get({"class_name": "Constant", "config": {"value": 2.0}})((1,)).tolist()
        [2.0]
    """
    return resolve(identifier, _BY_NAME, Initializer, "initializer")
