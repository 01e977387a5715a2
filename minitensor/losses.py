"""Losses, as ``keras.losses``: per-sample functions and reducing ``Loss`` objects.

Function forms (``binary_crossentropy``, ``categorical_crossentropy``,
``sparse_categorical_crossentropy``, ``mean_squared_error``, ``mean_absolute_error``)
return one value per sample, as Tensors built from :mod:`minitensor.ops`, so
``backward()`` differentiates them. ``Loss`` objects call them and reduce the result
to a scalar: ``"sum_over_batch_size"`` is ``sum(values) / values.size``
(docs/keras-formulas.md §2.4).

Cross-entropy follows Keras exactly (§2.2/§2.3): when ``y_pred`` came out of
``ops.sigmoid`` / ``ops.softmax`` it carries ``_keras_logits`` and the stable logits
formula is used on those logits (whatever ``from_logits`` says); otherwise
probabilities are clipped to ``[ε, 1 − ε]`` with ``ε = float32(1e-7)``, where
``1 − ε`` rounds to ``1 − 2⁻²³`` in float32.

``y_true`` is data, never differentiated: an ndarray, list or Tensor, cast to
``y_pred``'s dtype (integer class ids for the sparse loss). ``y_pred`` is a Tensor
(arrays are wrapped as constants).

Example:
    >>> import numpy as np
    >>> from minitensor import Tensor, ops, losses
    >>> z = Tensor([[3.0], [-2.0]], requires_grad=True)
    >>> loss = losses.BinaryCrossentropy()(np.array([1.0, 0.0]), ops.sigmoid(z))
    >>> round(loss.item(), 6)
    0.087758
    >>> loss.backward(); z.grad.ravel().round(6)   # (sigmoid(z) - y) / n
    array([-0.023713,  0.059601], dtype=float32)
"""

from __future__ import annotations

import re
import warnings

import numpy as np

from . import ops
from .tensor import Tensor

__all__ = [
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "mean_squared_error",
    "mean_absolute_error",
    "Loss",
    "LossFunctionWrapper",
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "get",
    "squeeze_or_expand_to_same_rank",
]

EPSILON = 1e-7
"""Keras' ``backend.epsilon()``: a Python float, rounded to the loss dtype where used."""

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


# --------------------------------------------------------------------- helpers
def _const(array: np.ndarray) -> Tensor:
    """A constant Tensor around an array we already validated (no copy, no checks)."""
    return Tensor._from_op(array, None)


def _as_prediction(y_pred, dtype=None) -> Tensor:
    """``y_pred`` as a Tensor: Tensors pass through (keeping ``_keras_logits``)."""
    if isinstance(y_pred, Tensor):
        return y_pred
    try:
        return Tensor(y_pred, dtype=dtype)
    except TypeError as error:
        raise TypeError(f"Expected `y_pred` to be a Tensor or numeric array. Received: {error}") from None


def _as_target(y_true, dtype) -> np.ndarray:
    """``y_true`` as an ndarray of ``dtype`` (data: no gradient flows into it)."""
    if isinstance(y_true, Tensor):
        y_true = y_true.data
    try:
        array = np.asarray(y_true, dtype=dtype)
    except (TypeError, ValueError):
        raise TypeError(
            "Expected `y_true` to be numeric (a NumPy array, nested list or Tensor). "
            f"Received: y_true of type {type(y_true).__name__}"
        ) from None
    return array


def _reshape(x, shape):
    return ops.reshape(x, shape) if isinstance(x, Tensor) else x.reshape(shape)


def squeeze_or_expand_to_same_rank(x1, x2, expand_rank_1=True):
    """Make two arrays/Tensors the same rank when their ranks differ by one trailing 1.

    As Keras' helper: if one has an extra trailing axis of size 1, the other is
    expanded (when it is rank 1 and ``expand_rank_1``) or the extra axis is
    squeezed. So ``y (N,)`` against ``y_pred (N, 1)`` becomes ``(N, 1)``, never the
    ``(N, N)`` broadcast. Tensors are reshaped with ``ops.reshape`` (differentiably;
    the result no longer carries ``_keras_logits``, as in Keras).

    Args:
        x1, x2: ndarrays or Tensors.
        expand_rank_1: expand a rank-1 operand rather than squeeze the other. Defaults to True.

    Returns:
        ``(x1, x2)``, possibly reshaped.

    Example:
        >>> a, b = squeeze_or_expand_to_same_rank(np.zeros(4), np.zeros((4, 1)))
        >>> a.shape, b.shape
        ((4, 1), (4, 1))
    """
    rank1, rank2 = x1.ndim, x2.ndim
    if rank1 == rank2:
        return x1, x2
    shape1, shape2 = x1.shape, x2.shape
    if rank1 == rank2 + 1 and shape1[-1] == 1:
        if rank2 == 1 and expand_rank_1:
            x2 = _reshape(x2, shape2 + (1,))
        else:
            x1 = _reshape(x1, shape1[:-1])
    if rank2 == rank1 + 1 and shape2[-1] == 1:
        if rank1 == 1 and expand_rank_1:
            x1 = _reshape(x1, shape1 + (1,))
        else:
            x2 = _reshape(x2, shape2[:-1])
    return x1, x2


def _check_flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Expected `{name}` to be a boolean. Received: {name}={value!r}")
    return bool(value)


def _check_label_smoothing(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 <= value <= 1:
        raise ValueError(f"Expected `label_smoothing` to be a number in [0, 1]. Received: label_smoothing={value!r}")
    return float(value)


def _check_axis_argument(axis) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"Expected `axis` to be an integer. Received: axis={axis!r} of type {type(axis).__name__}")
    return int(axis)


def _check_axis_in_range(axis: int, ndim: int, fn_name: str) -> None:
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"Expected `axis` in [-{ndim}, {ndim}) for `y_pred` of rank {ndim} in {fn_name}. Received: axis={axis}"
        )


def _recover_logits(y_pred: Tensor, from_logits: bool, activation: str, fn_name: str):
    """Keras' ``_get_logits``: prefer the logits a sigmoid/softmax output remembers.

    Like Keras, any ``_keras_logits`` is used, whichever of sigmoid/softmax set it.
    """
    logits = y_pred._keras_logits
    if logits is None:
        return y_pred, from_logits
    if from_logits:
        warnings.warn(
            f"`{fn_name}` received `from_logits=True`, but the `output` argument was produced by a "
            f"{activation} activation and thus does not represent logits. Was this intended?",
            UserWarning,
            stacklevel=3,
        )
    return logits, True


def _clip_bounds(dtype: np.dtype):
    """``(ε, 1 − ε)`` rounded to ``dtype``; in float32 the upper bound is ``1 − 2⁻²³``."""
    return dtype.type(EPSILON), dtype.type(1.0 - EPSILON)


# -------------------------------------------------------------- function forms
def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1) -> Tensor:
    """Per-sample binary cross-entropy, averaged over ``axis``.

    Formula, per element, then ``mean`` over ``axis``:

    * logits ``z`` (``from_logits=True``, or ``y_pred`` from a sigmoid/softmax, whose
      logits are used): ``e = max(z, 0) - z·y + log1p(exp(-|z|))`` (stable; gradient
      ``sigmoid(z) - y``);
    * probabilities ``p``: ``p = clip(p, ε, 1-ε)``,
      ``e = -(y·log(p) + (1-y)·log(1-p))``, ``ε = 1e-7`` (max ``e`` = 15.942385 in float32).

    With ``label_smoothing = s``: ``y ← y·(1-s) + 0.5·s``.

    Args:
        y_true: targets in [0, 1], the shape of ``y_pred`` (array, list or Tensor).
        y_pred: probabilities (or logits) Tensor.
        from_logits: whether ``y_pred`` holds logits. Defaults to ``False``.
        label_smoothing: ``s`` in [0, 1]. Defaults to ``0.0``.
        axis: axis averaged over. Defaults to ``-1``.

    Returns:
        Tensor of ``y_pred``'s shape without ``axis``, e.g. ``(N,)`` for ``(N, k)``.

    Raises:
        ValueError: if the shapes of ``y_true`` and ``y_pred`` differ.

    Example:
        >>> binary_crossentropy([[0.0, 1.0], [0.0, 0.0]], Tensor([[0.6, 0.4], [0.4, 0.6]])).data.round(4)
        array([0.9163, 0.7136], dtype=float32)
    """
    from_logits = _check_flag("from_logits", from_logits)
    label_smoothing = _check_label_smoothing(label_smoothing)
    axis = _check_axis_argument(axis)
    y_pred = _as_prediction(y_pred)
    dtype = y_pred.data.dtype
    y = _as_target(y_true, dtype)
    if y.shape != y_pred.shape:
        raise ValueError(
            "Expected `y_true` and `y_pred` to have the same shape in binary_crossentropy. "
            f"Received: y_true.shape={y.shape}, y_pred.shape={y_pred.shape}"
        )
    _check_axis_in_range(axis, y_pred.ndim, "binary_crossentropy")
    if label_smoothing:
        y = y * dtype.type(1.0 - label_smoothing) + dtype.type(0.5 * label_smoothing)
    output, from_logits = _recover_logits(y_pred, from_logits, "Sigmoid", "binary_crossentropy")
    if from_logits:
        elementwise = ops.sigmoid_cross_entropy_with_logits(y, output)
    else:
        low, high = _clip_bounds(dtype)
        p = ops.clip(output, low, high)
        # -(y·log p + (1-y)·log(1-p)), in the order TensorFlow evaluates it
        elementwise = -(ops.log(p) * _const(y) + ops.log(dtype.type(1) - p) * _const(dtype.type(1) - y))
    return _mean_over(elementwise, axis)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1) -> Tensor:
    """Per-sample categorical cross-entropy over ``axis`` (one-hot or soft targets).

    Formula:

    * logits ``z`` (``from_logits=True``, or ``y_pred`` from a softmax/sigmoid, whose
      logits are used): ``logsumexp(z) - Σ y·z`` (gradient ``softmax(z) - y``);
    * probabilities ``p``: ``p ← p / Σ p`` (renormalise first), ``p ← clip(p, ε, 1-ε)``,
      ``-Σ y·log(p)``.

    With ``label_smoothing = s`` and ``k`` classes: ``y ← y·(1-s) + s/k``.

    Args:
        y_true: targets, the shape of ``y_pred``.
        y_pred: probabilities (or logits) Tensor, classes along ``axis``.
        from_logits: whether ``y_pred`` holds logits. Defaults to ``False``.
        label_smoothing: ``s`` in [0, 1]. Defaults to ``0.0``.
        axis: the class axis. Defaults to ``-1``.

    Returns:
        Tensor of ``y_pred``'s shape without ``axis``.

    Raises:
        ValueError: if the shapes differ (both are named) or ``axis`` is not an integer.

    Warns:
        SyntaxWarning: if ``y_pred`` has a single class (use binary cross-entropy).

    Example:
        >>> categorical_crossentropy([[0, 1, 0], [0, 0, 1]], Tensor([[0.05, 0.95, 0], [0.1, 0.8, 0.1]])).data.round(4)
        array([0.0513, 2.3026], dtype=float32)
    """
    from_logits = _check_flag("from_logits", from_logits)
    label_smoothing = _check_label_smoothing(label_smoothing)
    axis = _check_axis_argument(axis)
    y_pred = _as_prediction(y_pred)
    dtype = y_pred.data.dtype
    y = _as_target(y_true, dtype)
    if y_pred.ndim < 1 or y.shape != y_pred.shape:
        raise ValueError(
            "Expected `y_true` and `y_pred` to have the same shape (of rank >= 1) in categorical_crossentropy. "
            f"Received: y_true.shape={y.shape}, y_pred.shape={y_pred.shape}"
        )
    _check_axis_in_range(axis, y_pred.ndim, "categorical_crossentropy")
    if y_pred.shape[-1] == 1:
        warnings.warn(
            "In loss categorical_crossentropy, expected y_pred.shape to be (batch_size, num_classes) with "
            f"num_classes > 1. Received: y_pred.shape={y_pred.shape}. "
            "Consider using 'binary_crossentropy' if you only have 2 classes.",
            SyntaxWarning,
            stacklevel=2,
        )
    if label_smoothing:
        # as Keras: float32(s) / float32(k), evaluated in the loss dtype
        y = y * dtype.type(1.0 - label_smoothing) + dtype.type(label_smoothing) / dtype.type(y.shape[-1])
    output, from_logits = _recover_logits(y_pred, from_logits, "Softmax", "categorical_crossentropy")
    if from_logits:
        return ops.softmax_cross_entropy_with_logits(y, output, axis=axis)
    low, high = _clip_bounds(dtype)
    p = output / ops.sum(output, axis=axis, keepdims=True)
    p = ops.clip(p, low, high)
    return -ops.sum(ops.log(p) * _const(y), axis=axis)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1) -> Tensor:
    """Per-sample categorical cross-entropy for integer class ids.

    Formula: with logits ``z`` (``from_logits=True``, or ``y_pred`` from a
    softmax/sigmoid, whose logits are used) ``logsumexp(z) - z[y]``; with
    probabilities ``p`` the same formula on ``z = log(clip(p, ε, 1-ε))`` (the
    log-softmax renormalises ``p``).

    Args:
        y_true: class ids, shape ``y_pred.shape[:-1]`` (or with a trailing 1); floats
            are truncated to integers, as Keras casts them.
        y_pred: probabilities (or logits) Tensor, classes along the last axis.
        from_logits: whether ``y_pred`` holds logits. Defaults to ``False``.
        ignore_class: a class id whose samples get loss 0 (and, in a ``Loss`` object,
            are left out of the mean), or ``None``. As in Keras, it masks ``y_pred``
            first, so a softmax output then takes the probability path. Defaults to ``None``.
        axis: must be the last axis. Defaults to ``-1``.

    Returns:
        Tensor of shape ``y_pred.shape[:-1]``.

    Raises:
        ValueError: for mismatched shapes, labels outside ``[0, num_classes)`` or another axis.

    Example:
        >>> sparse_categorical_crossentropy([1, 2], Tensor([[0.05, 0.95, 0], [0.1, 0.8, 0.1]])).data.round(4)
        array([0.0513, 2.3026], dtype=float32)
    """
    values, _ = _sparse_categorical_crossentropy(y_true, y_pred, from_logits, ignore_class, axis)
    return values


def _sparse_categorical_crossentropy(y_true, y_pred, from_logits, ignore_class, axis):
    """Sparse CCE returning ``(values, valid_mask or None)`` (the mask feeds the reduction)."""
    from_logits = _check_flag("from_logits", from_logits)
    axis = _check_axis_argument(axis)
    if ignore_class is not None and (
        isinstance(ignore_class, bool) or not isinstance(ignore_class, (int, np.integer))
    ):
        raise ValueError(f"Expected `ignore_class` to be an integer or None. Received: ignore_class={ignore_class!r}")
    y_pred = _as_prediction(y_pred)
    if y_pred.ndim < 1:
        raise ValueError("Expected `y_pred` of rank >= 1 in sparse_categorical_crossentropy. Received: y_pred.shape=()")
    if axis != -1 and axis != y_pred.ndim - 1:
        raise ValueError(f"Only axis=-1 is currently supported. Received: axis={axis}")
    labels = _as_target(y_true, None)
    given_shape = labels.shape
    if labels.dtype.kind not in "biuf":
        raise TypeError(f"Expected numeric class ids for `y_true`. Received: y_true with dtype {labels.dtype}")
    if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
        labels = labels.reshape(labels.shape[:-1])
    if labels.shape != y_pred.shape[:-1]:
        raise ValueError(
            "Expected `y_true` of shape y_pred.shape[:-1] (one class id per sample) in "
            f"sparse_categorical_crossentropy. Received: y_true.shape={given_shape}, y_pred.shape={y_pred.shape}"
        )
    valid = None
    if ignore_class is not None:
        valid = labels != ignore_class
        labels = np.where(valid, labels, 0)
        # as Keras: the masked y_pred no longer carries `_keras_logits`
        y_pred = ops.where(valid[..., None], y_pred, y_pred.data.dtype.type(0))
    if labels.dtype.kind != "i":
        labels = labels.astype(np.int64)
    num_classes = y_pred.shape[-1]
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)].ravel()[0]
        raise ValueError(
            f"Received a label value of {bad} which is outside the valid range of [0, {num_classes}). "
            f"Expected class ids in [0, {num_classes}) for y_pred.shape={y_pred.shape}. "
            f"Received: labels in [{labels.min()}, {labels.max()}]"
        )
    output, from_logits = _recover_logits(y_pred, from_logits, "Softmax", "sparse_categorical_crossentropy")
    if not from_logits:
        low, high = _clip_bounds(output.data.dtype)
        output = ops.log(ops.clip(output, low, high))
    values = ops.sparse_softmax_cross_entropy_with_logits(labels, output)
    if valid is not None:
        values = ops.where(valid, values, values.data.dtype.type(0))
    return values, valid


def _fusable_logits(loss, fn, y_true, y_pred):
    """``(labels, logits)`` when ``loss`` may use a fused cross-entropy-mean op, else ``None``.

    That is: ``loss`` wraps ``fn`` without label smoothing (and no subclass replaced how it
    computes its values); ``y_pred`` is a 2-D, non-empty
    Tensor whose logits are known (it came out of ``ops.sigmoid``/``ops.softmax`` and
    ``from_logits`` is False, or ``from_logits`` is True and it did not); ``axis`` is the
    last; ``y_true`` is an ndarray of ``y_pred``'s dtype with its shape, or ``(n,)`` against
    ``(n, 1)``. Anything else (including what would warn or raise) takes the general path.
    """
    kwargs = loss._fn_kwargs
    if loss.fn is not fn or kwargs["label_smoothing"]:
        return None
    if type(y_true) is not np.ndarray or not isinstance(y_pred, Tensor):
        return None
    if type(loss).call is not LossFunctionWrapper.call or type(loss)._call_with_mask is not Loss._call_with_mask:
        return None  # a subclass computes its own values
    pred = y_pred._data
    if pred.ndim != 2 or pred.size == 0 or kwargs["axis"] not in (-1, 1) or y_true.dtype != pred.dtype:
        return None
    logits = y_pred._keras_logits
    if kwargs["from_logits"]:
        if logits is not None:  # the general path warns about this
            return None
        logits = y_pred
    elif logits is None:
        return None
    if y_true.shape != pred.shape:
        if y_true.shape != pred.shape[:1] or pred.shape[1] != 1:
            return None
        y_true = y_true.reshape(pred.shape)
    return y_true, logits


def _mean_over(values: Tensor, axis: int) -> Tensor:
    """``ops.mean`` over ``axis``; over an axis of length 1 a reshape (the same numbers, a cheaper graph)."""
    shape = values.shape
    if shape[axis] == 1:
        axis %= len(shape)
        return ops.reshape(values, shape[:axis] + shape[axis + 1:])
    return ops.mean(values, axis=axis)


def _check_broadcastable(y: np.ndarray, y_pred: Tensor, fn_name: str) -> None:
    if y.shape != y_pred.shape:
        try:
            np.broadcast_shapes(y.shape, y_pred.shape)
        except ValueError:
            raise ValueError(
                f"Expected `y_true` and `y_pred` with broadcastable shapes in {fn_name}. "
                f"Received: y_true.shape={y.shape}, y_pred.shape={y_pred.shape}"
            ) from None


def mean_squared_error(y_true, y_pred) -> Tensor:
    """Per-sample mean squared error ``mean((y_true - y_pred)², axis=-1)``.

    ``y_true`` is first squeezed or expanded to ``y_pred``'s rank (``(N,)`` against
    ``(N, 1)`` becomes ``(N, 1)``, not an ``(N, N)`` broadcast).

    Args:
        y_true: targets (array, list or Tensor).
        y_pred: predictions Tensor.

    Returns:
        Tensor of ``y_pred``'s shape without the last axis.

    Example:
        >>> mean_squared_error([1.0, 0.0], Tensor([[0.5], [0.5]])).data
        array([0.25, 0.25], dtype=float32)
    """
    y_pred = _as_prediction(y_pred)
    y = _as_target(y_true, y_pred.data.dtype)
    y, y_pred = squeeze_or_expand_to_same_rank(y, y_pred)
    _check_broadcastable(y, y_pred, "mean_squared_error")
    return _mean_over(ops.pow(_const(y) - y_pred, 2), -1)


def mean_absolute_error(y_true, y_pred) -> Tensor:
    """Per-sample mean absolute error ``mean(|y_true - y_pred|, axis=-1)``.

    Ranks are matched as in :func:`mean_squared_error`.

    Args:
        y_true: targets (array, list or Tensor).
        y_pred: predictions Tensor.

    Returns:
        Tensor of ``y_pred``'s shape without the last axis.

    Example:
        >>> mean_absolute_error([1.0, 0.0], Tensor([[0.5], [0.25]])).data
        array([0.5 , 0.25], dtype=float32)
    """
    y_pred = _as_prediction(y_pred)
    y = _as_target(y_true, y_pred.data.dtype)
    y, y_pred = squeeze_or_expand_to_same_rank(y, y_pred)
    _check_broadcastable(y, y_pred, "mean_absolute_error")
    return _mean_over(ops.abs(_const(y) - y_pred), -1)


# ---------------------------------------------------------------- reduction
def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(
            "Invalid value for argument `reduction`. "
            f"Expected one of {list(REDUCTIONS)}. Received: reduction={reduction!r}"
        )
    return reduction


def _reduce_weighted(values: Tensor, sample_weight, mask, reduction) -> Tensor:
    """Keras' ``reduce_weighted_values``: weight, then sum and divide (§2.4)."""
    dtype = values.data.dtype
    if mask is not None:
        if reduction in ("mean", "sum_over_batch_size"):
            # valid entries weigh total/valid, so the mean runs over the valid ones only
            total, valid = dtype.type(mask.size), dtype.type(np.count_nonzero(mask))
            weight = total / valid if valid else dtype.type(0)
            float_mask = np.where(mask, weight, dtype.type(0)).astype(dtype, copy=False)
        else:
            float_mask = mask.astype(dtype)
    if sample_weight is not None:
        if isinstance(sample_weight, Tensor):
            sample_weight = sample_weight.data
        try:
            sample_weight = np.asarray(sample_weight, dtype=dtype)
        except (TypeError, ValueError):
            raise TypeError(
                f"Expected a numeric `sample_weight`. Received: sample_weight of type {type(sample_weight).__name__}"
            ) from None
        if mask is not None:
            float_mask, sample_weight = squeeze_or_expand_to_same_rank(float_mask, sample_weight)
            sample_weight = sample_weight * float_mask
    elif mask is not None:
        sample_weight = float_mask
    if sample_weight is not None:
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        if sample_weight.shape != values.shape:
            try:
                np.broadcast_shapes(values.shape, sample_weight.shape)
            except ValueError:
                raise ValueError(
                    "Expected `sample_weight` broadcastable to the per-sample losses. "
                    f"Received: sample_weight.shape={sample_weight.shape}, losses shape={values.shape}"
                ) from None
        values = values * _const(sample_weight)
    if reduction is None or reduction == "none" or values.ndim == 0 or values.shape == (0,):
        return values
    if sample_weight is None and reduction in ("mean", "sum_over_batch_size"):
        # one op instead of sum-then-divide; the same float32 result (a correctly rounded quotient)
        return ops.mean(values)
    loss = ops.sum(values)
    if reduction == "sum":
        return loss
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        divisor = sample_weight.sum(dtype=dtype)
    else:
        divisor = dtype.type(values.size)
    if divisor == 0:  # divide_no_nan: 0, and no gradient
        return ops.where(False, loss, dtype.type(0))
    return loss / _const(np.asarray(divisor, dtype=dtype))


# ------------------------------------------------------------------- classes
def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Loss:
    """Base class of losses: ``loss(y_true, y_pred, sample_weight=None)`` -> reduced Tensor.

    Subclasses implement ``call(y_true, y_pred)`` returning per-sample values; the
    base class converts the inputs, applies ``sample_weight`` and reduces:

    * ``"sum_over_batch_size"`` / ``"mean"``: ``Σ w·v / values.size`` (the number of
      per-sample values, not Σw);
    * ``"mean_with_sample_weight"``: ``Σ w·v / Σ w``;
    * ``"sum"``: ``Σ w·v``; ``None`` / ``"none"``: the weighted values themselves.

    A zero divisor gives 0 (``divide_no_nan``).

    Args:
        name: the loss's name. Defaults to the snake-case class name.
        reduction: one of the above. Defaults to ``"sum_over_batch_size"``.

    Example:
        >>> class Half(Loss):
        ...     def call(self, y_true, y_pred):
        ...         return y_pred.mean(axis=-1) * 0.5
        >>> Half()(np.zeros((2, 1)), Tensor([[1.0], [3.0]])).item()
        1.0
    """

    def __init__(self, name=None, reduction="sum_over_batch_size"):
        self.reduction = _check_reduction(reduction)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Expected `name` to be a string or None. Received: name={name!r}")
        self.name = name or _snake_case(type(self).__name__)

    def __call__(self, y_true, y_pred, sample_weight=None) -> Tensor:
        """Compute the reduced loss.

        Args:
            y_true: targets (ndarray, list or Tensor), cast to ``y_pred``'s dtype.
            y_pred: predictions Tensor (an array is wrapped as a float32 constant).
            sample_weight: optional per-sample weights (broadcastable), or ``None``.

        Returns:
            A scalar Tensor (or the weighted per-sample values for reduction ``None``).
        """
        if sample_weight is None and self.reduction in ("sum_over_batch_size", "mean"):
            fused = self._fused_mean(y_true, y_pred)
            if fused is not None:
                return fused
        if not isinstance(y_pred, Tensor):
            y_pred = _as_prediction(y_pred, dtype="float32")
        y_true = _as_target(y_true, y_pred.data.dtype)
        values, mask = self._call_with_mask(y_true, y_pred)
        return _reduce_weighted(values, sample_weight, mask, self.reduction)

    def _fused_mean(self, y_true, y_pred):
        """The unweighted mean loss as one fused op, or ``None`` where only the general path applies.

        Subclasses return a result only when it is the general path's, number for number.
        """
        return None

    def _call_with_mask(self, y_true, y_pred):
        return self.call(y_true, y_pred), None

    def call(self, y_true, y_pred) -> Tensor:
        """Per-sample loss values; implemented by subclasses."""
        raise NotImplementedError(f"{type(self).__name__} must implement call(y_true, y_pred)")

    def get_config(self) -> dict:
        """Return ``{"name": ..., "reduction": ...}`` (subclasses add their arguments)."""
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config: dict):
        """Rebuild a loss from :meth:`get_config`'s output."""
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


class LossFunctionWrapper(Loss):
    """A ``Loss`` around a per-sample function ``fn(y_true, y_pred, **kwargs)``.

    Before calling ``fn``, ``y_true`` and ``y_pred`` are brought to the same rank
    (:func:`squeeze_or_expand_to_same_rank`), so ``y (N,)`` works with ``y_pred (N, 1)``.

    Args:
        fn: the per-sample loss function.
        reduction: see :class:`Loss`. Defaults to ``"sum_over_batch_size"``.
        name: defaults to ``fn.__name__``.
        **kwargs: passed to ``fn`` on every call.

    Example:
        >>> LossFunctionWrapper(mean_squared_error, name="mse")([1.0, 3.0], Tensor([[0.0], [1.0]])).item()
        2.5
    """

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, **kwargs):
        if not callable(fn):
            raise TypeError(f"Expected `fn` to be a callable loss function. Received: fn={fn!r}")
        super().__init__(name=name or getattr(fn, "__name__", None), reduction=reduction)
        self.fn = fn
        self._fn_kwargs = kwargs

    def call(self, y_true, y_pred) -> Tensor:
        """Match the ranks of ``y_true`` and ``y_pred``, then return ``fn(y_true, y_pred, **kwargs)``."""
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self) -> dict:
        """Return name, reduction, ``fn`` (its name) and the keyword arguments given to ``fn``."""
        config = super().get_config()
        config["fn"] = getattr(self.fn, "__name__", repr(self.fn))
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
                    f"Could not interpret loss function name. Expected one of {sorted(_FUNCTIONS)}. Received: fn={fn!r}"
                )
            fn = _FUNCTIONS[fn]
        return cls(fn, **config)

    def __repr__(self) -> str:
        return f"<LossFunctionWrapper({getattr(self.fn, '__name__', self.fn)}, kwargs={self._fn_kwargs})>"


class _BuiltinLoss(LossFunctionWrapper):
    """A built-in loss class: its config is name, reduction and the attributes in ``_config_keys``."""

    _config_keys: tuple = ()

    def get_config(self) -> dict:
        """Return ``{"name", "reduction"}`` plus this loss's own arguments (as Keras)."""
        config = Loss.get_config(self)
        config.update({key: getattr(self, key) for key in self._config_keys})
        return config


class BinaryCrossentropy(_BuiltinLoss):
    """Binary cross-entropy, reduced (see :func:`binary_crossentropy` for the formula).

    For one batch of ``n`` samples with ``k`` outputs and the default reduction,
    ``L = (1/n) Σ_i (1/k) Σ_j e_ij``; for a sigmoid output its gradient w.r.t. the
    logits is exactly ``(sigmoid(z) - y) / (n·k)``.

    Args:
        from_logits: whether ``y_pred`` holds logits. Defaults to ``False``.
        label_smoothing: in [0, 1]: targets move towards 0.5. Defaults to ``0.0``.
        axis: axis averaged per sample. Defaults to ``-1``.
        reduction: see :class:`Loss`. Defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"binary_crossentropy"``.

    Example:
        >>> bce = BinaryCrossentropy(from_logits=True)
        >>> round(bce(np.array([0, 1, 0, 0]), Tensor([-18.6, 0.51, 2.94, -12.8])).item(), 4)
        0.8655
    """

    _config_keys = ("from_logits", "label_smoothing", "axis")

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="binary_crossentropy"):
        from_logits = _check_flag("from_logits", from_logits)
        label_smoothing = _check_label_smoothing(label_smoothing)
        axis = _check_axis_argument(axis)
        super().__init__(binary_crossentropy, reduction=reduction, name=name, from_logits=from_logits,
                         label_smoothing=label_smoothing, axis=axis)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = axis

    def _fused_mean(self, y_true, y_pred):
        fusable = _fusable_logits(self, binary_crossentropy, y_true, y_pred)
        if fusable is None:
            return None
        labels, logits = fusable
        op = y_pred._op  # the sigmoid of these logits already computed part of the loss: reuse it
        sigmoid_op = op if type(op) is ops.Sigmoid and op.inputs[0] is logits else None
        return ops.SigmoidCrossEntropyMean.apply(logits, labels=labels, sigmoid_op=sigmoid_op)  # checked already


class CategoricalCrossentropy(_BuiltinLoss):
    """Categorical cross-entropy, reduced (see :func:`categorical_crossentropy`).

    For a softmax output its gradient w.r.t. the logits is ``(softmax(z) - y) / n``.

    Args:
        from_logits: whether ``y_pred`` holds logits. Defaults to ``False``.
        label_smoothing: in [0, 1]: targets become ``y·(1-s) + s/k``. Defaults to ``0.0``.
        axis: the class axis. Defaults to ``-1``.
        reduction: see :class:`Loss`. Defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"categorical_crossentropy"``.

    Example:
        >>> cce = CategoricalCrossentropy()
        >>> round(cce([[0, 1, 0], [0, 0, 1]], Tensor([[0.05, 0.95, 0], [0.1, 0.8, 0.1]])).item(), 4)
        1.1769
    """

    _config_keys = ("from_logits", "label_smoothing", "axis")

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="categorical_crossentropy"):
        from_logits = _check_flag("from_logits", from_logits)
        label_smoothing = _check_label_smoothing(label_smoothing)
        axis = _check_axis_argument(axis)
        super().__init__(categorical_crossentropy, reduction=reduction, name=name, from_logits=from_logits,
                         label_smoothing=label_smoothing, axis=axis)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = axis

    def _fused_mean(self, y_true, y_pred):
        fusable = _fusable_logits(self, categorical_crossentropy, y_true, y_pred)
        if fusable is None or y_pred.shape[-1] == 1:  # one class: the general path warns
            return None
        labels, logits = fusable
        op = y_pred._op  # the softmax of these logits already computed part of the loss: reuse it
        same = type(op) is ops.Softmax and op.inputs[0] is logits and op.axis in (-1, 1)
        return ops.SoftmaxCrossEntropyMean.apply(logits, labels=labels, axis=-1, softmax_op=op if same else None)


class SparseCategoricalCrossentropy(_BuiltinLoss):
    """Categorical cross-entropy for integer labels, reduced (see :func:`sparse_categorical_crossentropy`).

    With ``ignore_class``, samples of that class get weight 0 and the
    ``"sum_over_batch_size"`` mean runs over the remaining ones (as Keras' mask).

    Args:
        from_logits: whether ``y_pred`` holds logits. Defaults to ``False``.
        ignore_class: a class id to leave out, or ``None``. Defaults to ``None``.
        reduction: see :class:`Loss`. Defaults to ``"sum_over_batch_size"``.
        axis: must be the last axis. Defaults to ``-1``.
        name: defaults to ``"sparse_categorical_crossentropy"``.

    Example:
        >>> scce = SparseCategoricalCrossentropy()
        >>> round(scce([1, 2], Tensor([[0.05, 0.95, 0], [0.1, 0.8, 0.1]])).item(), 4)
        1.1769
    """

    _config_keys = ("from_logits", "ignore_class")  # as Keras: `axis` is not saved

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size", axis=-1,
                 name="sparse_categorical_crossentropy"):
        from_logits = _check_flag("from_logits", from_logits)
        axis = _check_axis_argument(axis)
        if ignore_class is not None and (
            isinstance(ignore_class, bool) or not isinstance(ignore_class, (int, np.integer))
        ):
            raise ValueError(
                f"Expected `ignore_class` to be an integer or None. Received: ignore_class={ignore_class!r}"
            )
        super().__init__(sparse_categorical_crossentropy, reduction=reduction, name=name,
                         from_logits=from_logits, ignore_class=ignore_class, axis=axis)
        self.from_logits = from_logits
        self.ignore_class = ignore_class
        self.axis = axis

    def _call_with_mask(self, y_true, y_pred):
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        return _sparse_categorical_crossentropy(y_true, y_pred, self.from_logits, self.ignore_class, self.axis)


class MeanSquaredError(_BuiltinLoss):
    """Mean squared error, reduced: ``mean((y_true - y_pred)²)`` (see :func:`mean_squared_error`).

    Args:
        reduction: see :class:`Loss`. Defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"mean_squared_error"``.

    Example:
        >>> round(MeanSquaredError()([1.0, 0.0, 1.0], Tensor([0.9, 0.1, 0.8])).item(), 4)
        0.02
    """

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error"):
        super().__init__(mean_squared_error, reduction=reduction, name=name)


class MeanAbsoluteError(_BuiltinLoss):
    """Mean absolute error, reduced: ``mean(|y_true - y_pred|)`` (see :func:`mean_absolute_error`).

    Args:
        reduction: see :class:`Loss`. Defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"mean_absolute_error"``.

    Example:
        >>> round(MeanAbsoluteError()([1.0, 0.0], Tensor([0.5, 0.25])).item(), 4)
        0.375
    """

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error"):
        super().__init__(mean_absolute_error, reduction=reduction, name=name)


# --------------------------------------------------------------------- get
_FUNCTIONS = {
    fn.__name__: fn
    for fn in (binary_crossentropy, categorical_crossentropy, sparse_categorical_crossentropy,
               mean_squared_error, mean_absolute_error)
}
_CLASSES = {
    cls.__name__: cls
    for cls in (BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy,
                MeanSquaredError, MeanAbsoluteError)
}
_CLASS_OF_FUNCTION = {
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
}
_ALIASES = {
    "bce": "binary_crossentropy",
    "BCE": "binary_crossentropy",
    "mse": "mean_squared_error",
    "MSE": "mean_squared_error",
    "mae": "mean_absolute_error",
    "MAE": "mean_absolute_error",
}


def get(identifier):
    """Return a :class:`Loss` object for ``identifier``.

    Args:
        identifier: one of

            * a function name (``"binary_crossentropy"``, ``"categorical_crossentropy"``,
              ``"sparse_categorical_crossentropy"``, ``"mean_squared_error"``,
              ``"mean_absolute_error"``) or an alias (``"bce"``/``"BCE"``,
              ``"mse"``/``"MSE"``, ``"mae"``/``"MAE"``): that loss with default
              arguments, named after the string given;
            * a class name (``"BinaryCrossentropy"``, ...): a default instance;
            * a ``Loss`` instance (returned as is), a ``Loss`` subclass (instantiated),
              another callable ``fn(y_true, y_pred)`` (wrapped in
              :class:`LossFunctionWrapper`), or a ``{"class_name", "config"}`` dict;
            * ``None``: returns ``None``.

    Returns:
        A ``Loss`` (or ``None``).

    Raises:
        ValueError: for an unknown identifier.

    Example:
        >>> type(get("mse")).__name__, get("mse").name
        ('MeanSquaredError', 'mse')
    """
    if identifier is None:
        return None
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        function_name = _ALIASES.get(identifier, identifier)
        if function_name in _CLASS_OF_FUNCTION:
            return _CLASS_OF_FUNCTION[function_name](name=identifier)
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
    elif isinstance(identifier, dict) and "class_name" in identifier:
        cls = _CLASSES.get(identifier["class_name"])
        if cls is not None:
            return cls.from_config(identifier.get("config", {}))
    elif isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    elif callable(identifier):
        return LossFunctionWrapper(identifier)
    known = sorted(_FUNCTIONS) + sorted(_ALIASES) + sorted(_CLASSES)
    raise ValueError(
        f"Could not interpret loss identifier: {identifier!r}. Expected a Loss, a callable or one of {known}. "
        f"Received: identifier={identifier!r}"
    )
