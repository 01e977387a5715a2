"""Turning what users pass to ``fit``/``evaluate``/``predict`` into checked arrays.

Everything here runs before a model touches its weights, so a bad argument
leaves the model exactly as it was. Lists, NumPy arrays, pandas objects and
Tensors are accepted; floating data becomes float32 (Keras casts to ``floatx``).

Example:
    >>> to_array([[1, 2], [3, 4]], "x").dtype
    dtype('float32')
"""

from __future__ import annotations

import numpy as np

from .tensor import Tensor

__all__ = ["to_array", "check_finite", "check_x", "check_targets", "sample_weights", "train_validation_split"]


def to_array(data, argument: str, dtype=np.float32, keep_integers: bool = False) -> np.ndarray:
    """Convert ``data`` to an ndarray, naming ``argument`` in any error.

    Args:
        data: array-like (list, ndarray, pandas DataFrame/Series, Tensor).
        argument: the argument's name for error messages (``"x"``, ``"y"``...).
        dtype: floating dtype for the result.
        keep_integers: keep integer arrays as integers (class labels).
    """
    if data is None:
        raise ValueError(f"Expected an array for `{argument}`. Received: {argument}=None")
    if isinstance(data, Tensor):
        data = data.data
    elif hasattr(data, "to_numpy") and not isinstance(data, np.ndarray):  # pandas
        data = data.to_numpy()
    elif hasattr(data, "toarray") and hasattr(data, "nnz"):  # scipy sparse, e.g. OneHotEncoder's default
        data = data.toarray()
    try:
        array = np.asarray(data)
    except (ValueError, TypeError) as error:
        raise TypeError(f"Expected `{argument}` to be a numeric array. Received: {type(data).__name__} ({error})") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"Expected `{argument}` to hold numbers (bool, int or float). Received: {argument} with dtype {array.dtype}"
        )
    if array.ndim == 0:
        raise ValueError(f"Expected `{argument}` to be an array with one row per sample. Received: a scalar {array!r}")
    if len(array) == 0:
        raise ValueError(f"Expected `{argument}` to hold at least one sample. Received: {argument} with shape {array.shape}")
    if keep_integers and array.dtype.kind in "biu":
        return array
    return np.ascontiguousarray(array, dtype=dtype)


def check_finite(array: np.ndarray, argument: str) -> None:
    """Raise ``ValueError`` if a floating ``array`` holds NaN or inf, saying where."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        value = array[tuple(bad)]
        count = int((~np.isfinite(array)).sum())
        raise ValueError(
            f"Expected finite values in `{argument}`. Received: {count} non-finite value(s), "
            f"the first {value} at index {tuple(int(i) for i in bad)}"
        )


def check_x(x, input_shape, argument="x", dtype=np.float32) -> np.ndarray:
    """Convert and check model inputs against the model's ``input_shape`` (``(None, features)``)."""
    x = to_array(x, argument, dtype=dtype)
    check_finite(x, argument)
    if x.ndim < 2:
        raise ValueError(
            f"Expected `{argument}` with shape (samples, features). Received: {argument} with shape {x.shape}; "
            "reshape a single feature with x.reshape(-1, 1) or a single sample with x.reshape(1, -1)"
        )
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape[1:]):
        raise ValueError(
            f"Expected `{argument}` with {tuple(input_shape[1:])} features per sample, the model's input. "
            f"Received: {argument} with shape {x.shape}"
        )
    return x


def check_targets(y, n_rows: int, loss, output_shape, argument="y", dtype=np.float32) -> np.ndarray:
    """Convert and check targets: row count, shape and values against the loss and the model's output."""
    from . import losses

    sparse = isinstance(loss, losses.SparseCategoricalCrossentropy)
    y = to_array(y, argument, dtype=dtype, keep_integers=sparse)
    check_finite(y, argument)
    if len(y) != n_rows:
        raise ValueError(
            f"Expected `x` and `{argument}` to have the same number of samples. Received: x has {n_rows} rows, "
            f"{argument} has {len(y)}"
        )
    units = output_shape[-1] if output_shape is not None else None
    if isinstance(loss, losses.CategoricalCrossentropy):
        if units is not None and (y.ndim != 2 or y.shape[1] != units):
            hint = (
                " Integer class labels need loss='sparse_categorical_crossentropy', or one-hot encode them "
                "with minitensor.utils.to_categorical."
                if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)
                else ""
            )
            raise ValueError(
                f"Expected one-hot `{argument}` of shape (samples, {units}) for categorical_crossentropy. "
                f"Received: {argument} with shape {y.shape}.{hint}"
            )
        if y.min() < 0 or y.max() > 1:
            raise ValueError(
                f"Expected targets in [0, 1] for categorical_crossentropy (one-hot, multi-hot or class "
                f"probabilities). Received: values from {y.min()} to {y.max()} in `{argument}`"
            )
    elif sparse:
        labels = y.reshape(len(y), -1)
        if labels.shape[1] != 1:
            raise ValueError(
                f"Expected integer class labels of shape (samples,) or (samples, 1) for "
                f"sparse_categorical_crossentropy. Received: {argument} with shape {y.shape}; for one-hot "
                "targets use loss='categorical_crossentropy'"
            )
        if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
            raise ValueError(f"Expected integer class labels in `{argument}`. Received: non-integer values such as {y[y != np.round(y)][0]}")
        if units is not None and (y.min() < 0 or y.max() >= units):
            raise ValueError(
                f"Expected class labels in [0, {units}) for a model with {units} outputs. "
                f"Received: labels from {y.min()} to {y.max()} in `{argument}`"
            )
        y = y.astype(np.int64, copy=False)
    elif isinstance(loss, losses.BinaryCrossentropy):
        if y.min() < 0 or y.max() > 1:
            raise ValueError(
                f"Expected targets in [0, 1] for binary_crossentropy. Received: values from {y.min()} to {y.max()} "
                f"in `{argument}`; for class labels 0..k-1 use sparse_categorical_crossentropy"
            )
        _check_elementwise_shape(y, output_shape, argument, "binary_crossentropy")
    elif (regression := _regression_loss_name(loss)) is not None:
        _check_elementwise_shape(y, output_shape, argument, regression)
    return y


def _regression_loss_name(loss):
    """The function name of an elementwise regression loss (class or wrapped function), else None."""
    from . import losses

    for cls, fn in ((losses.MeanSquaredError, losses.mean_squared_error),
                    (losses.MeanAbsoluteError, losses.mean_absolute_error)):
        if isinstance(loss, cls) or getattr(loss, "fn", None) is fn:
            return fn.__name__
    return None


def _check_elementwise_shape(y, output_shape, argument, loss_name):
    if output_shape is None:
        return
    units = output_shape[-1]
    ok = (y.ndim == 1 and units == 1) or (y.ndim == 2 and y.shape[1] == units)
    if not ok:
        raise ValueError(
            f"Expected `{argument}` of shape (samples,) or (samples, {units}) for {loss_name} with a model "
            f"of {units} output(s). Received: {argument} with shape {y.shape}"
        )


def sample_weights(sample_weight, class_weight, y: np.ndarray, n_rows: int):
    """Per-sample float32 weights from ``sample_weight`` or ``class_weight`` (or ``None``)."""
    if sample_weight is not None and class_weight is not None:
        raise ValueError("Expected at most one of `sample_weight` and `class_weight`. Received: both")
    if sample_weight is not None:
        weights = to_array(sample_weight, "sample_weight").reshape(-1)
        check_finite(weights, "sample_weight")
        if len(weights) != n_rows:
            raise ValueError(f"Expected `sample_weight` with one value per sample ({n_rows}). Received: {len(weights)} values")
        if (weights < 0).any():
            raise ValueError(f"Expected non-negative `sample_weight`. Received: a minimum of {weights.min()}")
        return weights
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise ValueError(f"Expected `class_weight` to be a dict {{class: weight}}. Received: {class_weight!r}")
        for key, value in class_weight.items():
            numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            if not numeric or not np.isfinite(value) or value < 0:
                raise ValueError(
                    "Expected `class_weight` values to be non-negative finite numbers. "
                    f"Received: class_weight[{key!r}]={value!r}"
                )
        labels = y.argmax(axis=1) if y.ndim == 2 and y.shape[1] > 1 else np.round(y.reshape(len(y), -1)[:, 0]).astype(int)
        missing = sorted(set(np.unique(labels).tolist()) - set(class_weight))
        if missing:
            raise ValueError(f"Expected `class_weight` to give a weight for every class in y. Received: no weight for {missing}")
        return np.asarray([class_weight[int(c)] for c in labels], dtype=np.float32)
    return None


def train_validation_split(arrays, validation_split: float):
    """Split each array into (train, validation): the validation part is the LAST fraction, before shuffling."""
    n = len(arrays[0])
    split_at = int(np.floor(n * (1.0 - validation_split)))
    if split_at == 0 or split_at == n:
        raise ValueError(
            f"`validation_split` leaves no data for {'training' if split_at == 0 else 'validation'}: "
            f"{n} samples with validation_split={validation_split}. Received: validation_split={validation_split}"
        )
    train = tuple(None if a is None else a[:split_at] for a in arrays)
    val = tuple(None if a is None else a[split_at:] for a in arrays)
    return train, val
