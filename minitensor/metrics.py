"""Metrics, as ``keras.metrics``: stateful float32 means over an epoch, in plain NumPy.

A metric accumulates float32 ``total`` and ``count``; ``result()`` is
``total / count`` (0 when ``count`` is 0) as a Python float. Accuracy metrics wrap a
per-sample function, so epoch accuracy = correct samples / samples seen
(docs/keras-formulas.md §3.2). Metrics never build a graph: ``update_state`` takes
NumPy arrays (Tensors are read through ``.data``) and costs a few vectorised
NumPy calls per batch.

``get(identifier, y_true, y_pred)`` resolves ``"accuracy"``/``"acc"`` from the shapes
of the first batch, as Keras' compile does (§3.1), and names the metric after the
string given.

Example:
    >>> import numpy as np
    >>> from minitensor import metrics
    >>> m = metrics.get("acc", np.zeros((4,)), np.zeros((4, 1)))
    >>> type(m).__name__, m.name
    ('BinaryAccuracy', 'acc')
    >>> m.update_state(np.array([1, 0, 1, 0]), np.array([[0.9], [0.2], [0.5], [0.7]]))
    >>> m.result()
    0.5
"""

from __future__ import annotations

import math
import re

import numpy as np

from . import losses as _losses
from .losses import squeeze_or_expand_to_same_rank
from .tensor import Tensor

__all__ = [
    "Metric",
    "Mean",
    "MeanMetricWrapper",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "SparseCategoricalAccuracy",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "binary_accuracy",
    "categorical_accuracy",
    "sparse_categorical_accuracy",
    "get",
]


def _array(x) -> np.ndarray:
    """NumPy view of an array-like or Tensor (no copy for arrays and Tensors).

    Python floats become float32, as TensorFlow converts them.
    """
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, Tensor):
        return x.data
    array = np.asarray(x)
    return array.astype(np.float32) if array.dtype == np.float64 else array


def _mean_trailing(values: np.ndarray, start: int) -> np.ndarray:
    """Mean over axes ``start..`` (a reshape when they hold one element: same numbers)."""
    trailing = values.shape[start:]
    if not trailing:
        return values
    if math.prod(trailing) == 1:
        return values.reshape(values.shape[:start])
    return values.mean(axis=tuple(range(start, values.ndim)))


# -------------------------------------------------------- per-sample functions
def binary_accuracy(y_true, y_pred, threshold=0.5) -> np.ndarray:
    """Per-element binary accuracy ``float(y_true == float(y_pred > threshold))``.

    The comparison is strict (``0.5`` is predicted 0), and ``y_true`` must be
    exactly 0 or 1. Ranks are first matched (``y (N,)`` with ``y_pred (N, 1)``
    gives ``(N, 1)``).

    Args:
        y_true: 0/1 labels (array-like or Tensor).
        y_pred: scores, thresholded as given (probabilities or logits alike).
        threshold: decision threshold (compared in float32). Defaults to ``0.5``.

    Returns:
        float32 array of the matched shape.

    Example:
        >>> binary_accuracy(np.array([1, 1, 0]), np.array([0.5, 0.6, 0.4], dtype="float32"))
        array([0., 1., 1.], dtype=float32)
    """
    y_pred = _array(y_pred)
    y_true = _array(y_true)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    predicted = (y_pred > np.float32(threshold)).astype(y_true.dtype)
    return (y_true == predicted).astype(np.float32)


def categorical_accuracy(y_true, y_pred) -> np.ndarray:
    """Per-sample ``float(argmax(y_true) == argmax(y_pred))`` over the last axis.

    Ties go to the first maximal index, as ``tf.argmax``.

    Args:
        y_true: one-hot (or soft) targets, ``(..., k)``.
        y_pred: scores ``(..., k)`` (probabilities or logits alike).

    Returns:
        float32 array of shape ``y_pred.shape[:-1]``.

    Example:
        >>> categorical_accuracy(np.eye(3)[[0, 1]], np.array([[0.4, 0.4, 0.2], [0.4, 0.4, 0.2]]))
        array([1., 0.], dtype=float32)
    """
    y_pred = _array(y_pred)
    true_class = np.argmax(_array(y_true), axis=-1)
    original_shape = true_class.shape
    reshape_matches = true_class.ndim == y_pred.ndim
    if reshape_matches:
        true_class = np.squeeze(true_class, -1)
    matches = (true_class == np.argmax(y_pred, axis=-1)).astype(np.float32)
    if reshape_matches:
        matches = matches.reshape(original_shape)
    return matches


def sparse_categorical_accuracy(y_true, y_pred) -> np.ndarray:
    """Per-sample ``float(y_true == argmax(y_pred))`` for integer class ids.

    ``y_true`` of shape ``(N, 1)`` is squeezed; ties in ``y_pred`` go to the first
    maximal index.

    Args:
        y_true: class ids, ``(N,)`` or ``(N, 1)``.
        y_pred: scores ``(N, k)``.

    Returns:
        float32 array of shape ``(N,)``.

    Example:
        >>> sparse_categorical_accuracy(np.array([[2], [1]]), np.array([[0.1, 0.6, 0.3], [0.05, 0.95, 0.0]]))
        array([0., 1.], dtype=float32)
    """
    y_pred = _array(y_pred)
    y_true = _array(y_true)
    original_shape = y_true.shape
    reshape_matches = y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1
    if reshape_matches:
        y_true = y_true.reshape(original_shape[:-1])
    # Keras compares in y_pred's float dtype (exact for class ids below 2**24)
    matches = (y_true.astype(y_pred.dtype, copy=False) == np.argmax(y_pred, axis=-1)).astype(np.float32)
    if reshape_matches:
        matches = matches.reshape(original_shape)
    if matches.ndim > 1 and matches.shape[-1] == 1:
        matches = matches.reshape(matches.shape[:-1])
    return matches


def _mean_squared_error(y_true, y_pred) -> np.ndarray:
    """Per-sample ``mean((y_true - y_pred)², axis=-1)`` in ``y_pred``'s float dtype (NumPy)."""
    y_pred = _array(y_pred)
    if y_pred.dtype.kind != "f":
        y_pred = y_pred.astype(np.float32)
    y_true = _array(y_true).astype(y_pred.dtype, copy=False)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    diff = y_true - y_pred
    return (diff * diff).mean(axis=-1)


def _mean_absolute_error(y_true, y_pred) -> np.ndarray:
    """Per-sample ``mean(|y_true - y_pred|, axis=-1)`` in ``y_pred``'s float dtype (NumPy)."""
    y_pred = _array(y_pred)
    if y_pred.dtype.kind != "f":
        y_pred = y_pred.astype(np.float32)
    y_true = _array(y_true).astype(y_pred.dtype, copy=False)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    return np.abs(y_true - y_pred).mean(axis=-1)


# --------------------------------------------------------------------- classes
def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Metric:
    """Base class of stateful metrics.

    Subclasses implement ``update_state(y_true, y_pred, sample_weight=None)``,
    ``result()`` and ``reset_state()``.

    Attributes:
        name: the metric's name (its key in history logs).
        dtype: the state dtype, ``"float32"``.
        _direction: ``"up"`` (higher is better), ``"down"`` or ``None`` (unknown, as
            Keras' ``Mean``); ``EarlyStopping(mode="auto")`` reads it.

    Args:
        name: defaults to the snake-case class name.
        dtype: state dtype, a floating dtype name. Defaults to ``None`` (``"float32"``).

    Example:
        >>> m = BinaryAccuracy()
        >>> m(np.array([1, 0]), np.array([0.9, 0.9]))   # update_state, then result
        0.5
    """

    _direction = None

    def __init__(self, name=None, dtype=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Expected `name` to be a string or None. Received: name={name!r}")
        try:
            dtype = np.dtype(dtype or "float32")
        except TypeError:
            raise ValueError(
                f"Expected `dtype` to be a floating dtype such as 'float32'. Received: dtype={dtype!r}"
            ) from None
        if dtype.kind != "f":
            raise ValueError(f"Expected `dtype` to be a floating dtype such as 'float32'. Received: dtype={dtype}")
        self.name = name or _snake_case(type(self).__name__)
        self._dtype = dtype

    @property
    def dtype(self) -> str:
        """The state dtype's name, e.g. ``"float32"``."""
        return self._dtype.name

    def update_state(self, *args, **kwargs):  # pragma: no cover - abstract
        """Accumulate one batch into the state (implemented by subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} must implement update_state()")

    def result(self) -> float:  # pragma: no cover - abstract
        """The metric's current value as a Python float (implemented by subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} must implement result()")

    def reset_state(self) -> None:  # pragma: no cover - abstract
        """Forget every update (implemented by subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} must implement reset_state()")

    def __call__(self, *args, **kwargs) -> float:
        """``update_state(*args, **kwargs)``, then return ``result()``."""
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self) -> dict:
        """Return ``{"name": ..., "dtype": ...}`` (subclasses add their arguments)."""
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: dict):
        """Rebuild a metric from :meth:`get_config`'s output."""
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


class Mean(Metric):
    """Weighted mean of values over many updates, with float32 state.

    Formula: ``total += Σ w·v``, ``count += Σ w`` (``w = 1`` when no weights: ``count``
    grows by the number of samples, ``values.shape[0]``); ``result = total / count``.
    Values of rank > 1 are first averaged over their trailing axes (one value per
    sample), as Keras does.

    Args:
        name: defaults to ``"mean"``.
        dtype: state dtype. Defaults to ``None`` (``"float32"``).

    Example:
        >>> m = Mean()
        >>> m.update_state([1, 3, 5, 7]); m.result()
        4.0
        >>> m.reset_state(); m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0]); m.result()
        2.0
    """

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.reset_state()

    def reset_state(self) -> None:
        """Set ``total`` and ``count`` back to 0."""
        self.total = self._dtype.type(0)
        self.count = self._dtype.type(0)

    def update_state(self, values, sample_weight=None) -> None:
        """Add ``Σ w·v`` to ``total`` and ``Σ w`` to ``count``.

        Args:
            values: array-like or Tensor; one value per sample (trailing axes are averaged).
            sample_weight: ``None`` or weights broadcastable to the per-sample values.

        Raises:
            ValueError: if ``sample_weight`` cannot be matched to ``values`` (state unchanged).
        """
        dtype = self._dtype
        values = _array(values).astype(dtype, copy=False)
        if isinstance(sample_weight, Tensor):
            sample_weight = sample_weight.data
        if values.ndim == 0 and sample_weight is not None and np.ndim(sample_weight) == 0:
            # one value with one weight (the loss tracker: a batch mean weighted by the batch size)
            weight = dtype.type(sample_weight)
            self.total = dtype.type(self.total + values * weight)
            self.count = dtype.type(self.count + weight)
            return
        if sample_weight is None:
            if values.ndim > 1:
                values = _mean_trailing(values, 1)
            num_samples = dtype.type(values.shape[0] if values.ndim >= 1 else 1)
        else:
            weight = _array(sample_weight).astype(dtype, copy=False)
            values, weight = squeeze_or_expand_to_same_rank(values, weight)
            if values.ndim > weight.ndim:
                values = _mean_trailing(values, weight.ndim)
            try:
                weight = np.broadcast_to(weight, values.shape)
            except ValueError:
                raise ValueError(
                    f"Expected `sample_weight` broadcastable to the values of shape {values.shape}. "
                    f"Received: sample_weight.shape={np.shape(sample_weight)}"
                ) from None
            values = values * weight
            if weight.ndim > 1:
                weight = _mean_trailing(weight, 1)
            if values.ndim > 1:
                values = _mean_trailing(values, 1)
            num_samples = weight.sum(dtype=dtype)
        # both increments are computed before either is stored
        total = dtype.type(self.total + values.sum(dtype=dtype))
        self.count = dtype.type(self.count + num_samples)
        self.total = total

    def _add_weighted(self, value: np.ndarray, weight: int) -> None:
        """``update_state(value, sample_weight=weight)`` for a 0-d array and a Python integer, unchecked.

        The trainer's loss tracker calls it every step (a batch's mean loss, weighted by
        the batch size, ``len`` of the batch); it adds exactly what :meth:`update_state` would.
        """
        # a state-dtype scalar times or plus a Python integer is computed in the state dtype
        # (a NumPy integer would promote float32 to float64)
        value = value[()] if value.dtype == self._dtype else self._dtype.type(value)
        self.total = self.total + value * weight
        self.count = self.count + weight

    def _add_hits(self, hits: int, samples: int) -> None:
        """Add ``hits`` ones among ``samples`` per-sample 0/1 values (an accuracy's batch), unweighted.

        The same state as :meth:`update_state` on those values: their float sum is the
        exact count (below 2**24 per batch).
        """
        # state-dtype scalars plus Python integers (exact in the state dtype): computed in that dtype
        # (a NumPy integer would promote float32 to float64)
        self.total = self.total + int(hits)
        self.count = self.count + int(samples)

    def get_state(self) -> tuple:
        """The state ``(total, count)`` as state-dtype scalars.

        Example:
            >>> m = Mean(); m.update_state([1, 3]); m.get_state()
            (np.float32(4.0), np.float32(2.0))
        """
        return self.total, self.count

    def set_state(self, state) -> None:
        """Restore a :meth:`get_state` pair ``(total, count)`` (cast to the state dtype).

        Example:
            >>> m = Mean(); m.set_state((6.0, 4.0)); m.result()
            1.5
        """
        total, count = state
        scalar = self._dtype.type
        # state-dtype scalars (what get_state returns) are kept as they are: immutable, and equal to their cast
        self.total = total if type(total) is scalar else scalar(total)
        self.count = count if type(count) is scalar else scalar(count)

    def result(self) -> float:
        """``total / count`` in the state dtype (0.0 when ``count`` is 0), as a Python float."""
        if self.count == 0:
            return 0.0
        return float(self._dtype.type(self.total / self.count))


class MeanMetricWrapper(Mean):
    """Mean of a per-sample function ``fn(y_true, y_pred, **kwargs)`` over all samples seen.

    Args:
        fn: the per-sample function; it may return an ndarray or a Tensor.
        name: defaults to ``fn.__name__``.
        dtype: state dtype. Defaults to ``None`` (``"float32"``).
        direction: ``"up"``, ``"down"`` or ``None``. Defaults to ``None``, which means
            ``"down"`` when ``fn`` is one of :mod:`minitensor.losses`' functions (as Keras).
        **kwargs: passed to ``fn`` on every update.

    Example:
        >>> m = MeanMetricWrapper(binary_accuracy, threshold=0.7)
        >>> m.update_state(np.array([1, 1]), np.array([0.6, 0.8])); m.result()
        0.5
    """

    def __init__(self, fn, name=None, dtype=None, direction=None, **kwargs):
        if not callable(fn):
            raise TypeError(f"Expected `fn` to be a callable metric function. Received: fn={fn!r}")
        if direction not in (None, "up", "down"):
            raise ValueError(f"Expected `direction` to be 'up', 'down' or None. Received: direction={direction!r}")
        super().__init__(name=name or getattr(fn, "__name__", None), dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs
        if direction is None and (fn in _losses._FUNCTIONS.values() or isinstance(fn, _losses.Loss)):
            direction = "down"
        if direction is not None:
            self._direction = direction

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        """Evaluate ``fn`` on the batch and add its per-sample values to the mean.

        Args:
            y_true: targets (array-like or Tensor).
            y_pred: predictions (array-like or Tensor; only ``.data`` is read).
            sample_weight: ``None`` or per-sample weights.
        """
        values = self._fn(y_true, y_pred, **self._fn_kwargs)
        if isinstance(values, Tensor):
            values = values.data
        super().update_state(values, sample_weight=sample_weight)

    def get_config(self) -> dict:
        """Return name, dtype, ``fn`` (its name) and the keyword arguments given to ``fn``."""
        config = super().get_config()
        config["fn"] = getattr(self._fn, "__name__", repr(self._fn))
        config.update(self._fn_kwargs)
        return config

    @classmethod
    def from_config(cls, config: dict):
        """Rebuild from :meth:`get_config`; ``fn`` may be the name of a function of this module."""
        config = dict(config)
        if "fn" not in config:  # the built-in classes fix their own fn
            return cls(**config)
        fn = config.pop("fn")
        if isinstance(fn, str):
            if fn not in _FUNCTIONS:
                raise ValueError(
                    "Could not interpret metric function name. "
                    f"Expected one of {sorted(_FUNCTIONS)}. Received: fn={fn!r}"
                )
            fn = _FUNCTIONS[fn]
        return cls(fn, **config)


class _BuiltinMetric(MeanMetricWrapper):
    """A built-in metric class: its config is name, dtype and the attributes in ``_config_keys``."""

    _config_keys: tuple = ()

    def get_config(self) -> dict:
        """Return ``{"name", "dtype"}`` plus this metric's own arguments (as Keras)."""
        config = Metric.get_config(self)
        config.update({key: getattr(self, key) for key in self._config_keys})
        return config


class BinaryAccuracy(_BuiltinMetric):
    """How often ``y_pred > threshold`` equals the 0/1 label (see :func:`binary_accuracy`).

    Args:
        name: defaults to ``"binary_accuracy"``.
        dtype: state dtype. Defaults to ``None`` (``"float32"``).
        threshold: decision threshold, strict ``>``. Defaults to ``0.5``.

    Example:
        >>> m = BinaryAccuracy()
        >>> m.update_state([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]]); m.result()
        0.75
    """

    _direction = "up"
    _config_keys = ("threshold",)

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
            raise TypeError(f"Expected `threshold` to be a number. Received: threshold={threshold!r}")
        super().__init__(binary_accuracy, name=name, dtype=dtype, direction="up", threshold=threshold)

    @property
    def threshold(self):
        """The decision threshold: the one ``update_state`` uses and ``get_config`` reports.

        Example:
            >>> BinaryAccuracy(threshold=0.7).get_config()["threshold"]
            0.7
        """
        return self._fn_kwargs["threshold"]

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        """Count the batch's correct predictions (see :meth:`MeanMetricWrapper.update_state`)."""
        if (
            sample_weight is None and self._fn is binary_accuracy
            and type(y_true) is np.ndarray and type(y_pred) is np.ndarray
        ):
            # one prediction per sample, (n,) or (n, 1), labels (n,) or alike: count the hits
            if y_true.shape != y_pred.shape and y_true.ndim == 1 and y_pred.shape == (*y_true.shape, 1):
                y_true = y_true.reshape(y_pred.shape)
            if y_true.shape == y_pred.shape and (y_pred.ndim == 1 or (y_pred.ndim == 2 and y_pred.shape[1] == 1)):
                predicted = (y_pred > self._threshold32()).astype(y_true.dtype)  # as binary_accuracy
                self._add_hits(np.count_nonzero(y_true == predicted), len(y_pred))
                return
        super().update_state(y_true, y_pred, sample_weight=sample_weight)

    def _threshold32(self):
        """``np.float32(threshold)`` as a 0-d array (cheaper in a comparison), remade when the threshold changes."""
        threshold = self._fn_kwargs["threshold"]
        cached = self.__dict__.get("_threshold_cache")
        if cached is None or cached[0] != threshold:
            cached = self._threshold_cache = (threshold, np.asarray(np.float32(threshold)))
        return cached[1]


class CategoricalAccuracy(_BuiltinMetric):
    """How often ``argmax(y_pred)`` equals ``argmax(y_true)`` (see :func:`categorical_accuracy`).

    Args:
        name: defaults to ``"categorical_accuracy"``.
        dtype: state dtype. Defaults to ``None`` (``"float32"``).

    Example:
        >>> m = CategoricalAccuracy()
        >>> m.update_state([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]]); m.result()
        0.5
    """

    _direction = "up"

    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(categorical_accuracy, name=name, dtype=dtype, direction="up")

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        """Count the batch's correct predictions (see :meth:`MeanMetricWrapper.update_state`)."""
        if (
            sample_weight is None and self._fn is categorical_accuracy and type(y_true) is np.ndarray
            and type(y_pred) is np.ndarray and y_pred.ndim == 2 and y_true.shape == y_pred.shape
        ):
            hits = np.count_nonzero(np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1))
            self._add_hits(hits, len(y_pred))
            return
        super().update_state(y_true, y_pred, sample_weight=sample_weight)


class SparseCategoricalAccuracy(_BuiltinMetric):
    """How often ``argmax(y_pred)`` equals the integer label (see :func:`sparse_categorical_accuracy`).

    Args:
        name: defaults to ``"sparse_categorical_accuracy"``.
        dtype: state dtype. Defaults to ``None`` (``"float32"``).

    Example:
        >>> m = SparseCategoricalAccuracy()
        >>> m.update_state([[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]]); m.result()
        0.5
    """

    _direction = "up"

    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(sparse_categorical_accuracy, name=name, dtype=dtype, direction="up")


class MeanSquaredError(_BuiltinMetric):
    """Mean over samples of ``mean((y_true - y_pred)², axis=-1)``; lower is better.

    Args:
        name: defaults to ``"mean_squared_error"``.
        dtype: state dtype. Defaults to ``None`` (``"float32"``).

    Example:
        >>> m = MeanSquaredError()
        >>> m.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]]); m.result()
        0.25
    """

    _direction = "down"

    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(_mean_squared_error, name=name, dtype=dtype, direction="down")


class MeanAbsoluteError(_BuiltinMetric):
    """Mean over samples of ``mean(|y_true - y_pred|, axis=-1)``; lower is better.

    Args:
        name: defaults to ``"mean_absolute_error"``.
        dtype: state dtype. Defaults to ``None`` (``"float32"``).

    Example:
        >>> m = MeanAbsoluteError()
        >>> m.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]]); m.result()
        0.25
    """

    _direction = "down"

    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(_mean_absolute_error, name=name, dtype=dtype, direction="down")


# --------------------------------------------------------------------- get
_FUNCTIONS = {
    fn.__name__: fn for fn in (binary_accuracy, categorical_accuracy, sparse_categorical_accuracy)
}
_BY_NAME = {
    "binary_accuracy": BinaryAccuracy,
    "BinaryAccuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "CategoricalAccuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "SparseCategoricalAccuracy": SparseCategoricalAccuracy,
    "mean_squared_error": MeanSquaredError,
    "MeanSquaredError": MeanSquaredError,
    "mse": MeanSquaredError,
    "MSE": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "MeanAbsoluteError": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
    "MAE": MeanAbsoluteError,
}


def _shape_of(value, argument: str) -> tuple:
    if value is None:
        raise ValueError(
            f"Resolving 'accuracy' needs the first batch's `y_true` and `y_pred` (their shapes pick binary, "
            f"categorical or sparse categorical accuracy). Received: {argument}=None"
        )
    shape = value.shape if hasattr(value, "shape") else np.shape(value)
    if len(shape) == 0:
        raise ValueError(f"Expected `{argument}` of rank >= 1 to resolve 'accuracy'. Received: {argument}.shape=()")
    return tuple(shape)


def is_binary_or_sparse_categorical(y_true, y_pred) -> tuple:
    """Keras' rule: ``(is_binary, is_sparse_categorical)`` from the shapes alone.

    ``is_binary = y_pred.shape[-1] == 1``;
    ``is_sparse = rank(y_true) < rank(y_pred) or (y_true.shape[-1] == 1 and y_pred.shape[-1] > 1)``.

    Args:
        y_true, y_pred: arrays or Tensors (only their shapes are read).

    Example:
        >>> is_binary_or_sparse_categorical(np.zeros(8), np.zeros((8, 3)))
        (False, True)
    """
    true_shape, pred_shape = _shape_of(y_true, "y_true"), _shape_of(y_pred, "y_pred")
    is_binary = pred_shape[-1] == 1
    is_sparse = len(true_shape) < len(pred_shape) or (true_shape[-1] == 1 and pred_shape[-1] > 1)
    return is_binary, is_sparse


def get(identifier, y_true=None, y_pred=None) -> Metric:
    """Return the :class:`Metric` for a compile-time identifier, as Keras' ``compile``.

    * ``"accuracy"`` / ``"acc"`` (any case): chosen from the shapes of the first
      batch, the loss being ignored (docs/keras-formulas.md §3.1): ``BinaryAccuracy`` if
      ``y_pred.shape[-1] == 1``, else ``SparseCategoricalAccuracy`` if ``y_true`` has
      lower rank or a trailing 1, else ``CategoricalAccuracy``.
    * other names: ``"binary_accuracy"``, ``"categorical_accuracy"``,
      ``"sparse_categorical_accuracy"``, ``"mse"``/``"MSE"``/``"mean_squared_error"``,
      ``"mae"``/``"MAE"``/``"mean_absolute_error"`` and the class names.

    A string names the metric (so ``"acc"`` gives history keys ``acc``/``val_acc``).
    A ``Metric`` instance is returned as is; a ``Metric`` subclass is instantiated;
    another callable ``fn(y_true, y_pred)`` is wrapped in :class:`MeanMetricWrapper`.

    Args:
        identifier: see above.
        y_true: the first batch's targets (needed for ``"accuracy"``). Defaults to ``None``.
        y_pred: the first batch's predictions (needed for ``"accuracy"``). Defaults to ``None``.

    Returns:
        A new ``Metric`` (or ``identifier`` itself when it is one).

    Raises:
        ValueError: for ``None``, an unknown name, or ``"accuracy"`` without shapes.

    Example:
        >>> get("accuracy", np.zeros((8, 3)), np.zeros((8, 3))).name
        'accuracy'
        >>> type(get("accuracy", np.zeros((8, 3)), np.zeros((8, 3)))).__name__
        'CategoricalAccuracy'
    """
    if identifier is None:
        raise ValueError("Expected a metric identifier (a name, a Metric or a callable). Received: None")
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        if identifier.lower() in ("accuracy", "acc"):
            is_binary, is_sparse = is_binary_or_sparse_categorical(y_true, y_pred)
            if is_binary:
                return BinaryAccuracy(name=identifier)
            if is_sparse:
                return SparseCategoricalAccuracy(name=identifier)
            return CategoricalAccuracy(name=identifier)
        cls = _BY_NAME.get(identifier)
        if cls is not None:
            return cls(name=identifier)
    elif isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    elif callable(identifier):
        return MeanMetricWrapper(identifier)
    raise ValueError(
        f"Could not interpret metric identifier: {identifier!r}. Expected a Metric, a callable, "
        f"'accuracy'/'acc' or one of {sorted(_BY_NAME)}. Received: identifier={identifier!r}"
    )
