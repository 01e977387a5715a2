"""Small helpers with Keras's names: ``set_random_seed`` and ``to_categorical``.

Example:
    >>> to_categorical([0, 2], num_classes=3).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
"""

from __future__ import annotations

import numpy as np

from .random import set_random_seed

__all__ = ["set_random_seed", "to_categorical"]


def to_categorical(x, num_classes=None) -> np.ndarray:
    """One-hot encode integer class labels (float64, as Keras).

    Args:
        x: integer labels, shape ``(n,)`` or ``(n, 1)``.
        num_classes: number of classes (``max(x) + 1`` when omitted).

    Returns:
        An array of shape ``(n, num_classes)``.

    Example:
        >>> to_categorical([1, 0]).shape
        (2, 2)
    """
    labels = np.asarray(x)
    if labels.dtype.kind == "f":
        if not np.array_equal(labels, np.round(labels)):
            raise ValueError(f"Expected integer class labels in `x`. Received: non-integer values such as {labels.ravel()[0]}")
        labels = labels.astype(np.int64)
    if labels.dtype.kind not in "iub":
        raise TypeError(f"Expected integer class labels in `x`. Received: dtype {labels.dtype}")
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.size and labels.min() < 0:
        raise ValueError(f"Expected non-negative class labels. Received: a minimum of {labels.min()}")
    inferred = int(labels.max()) + 1 if labels.size else 0
    if num_classes is None:
        num_classes = inferred
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < inferred:
        raise ValueError(
            f"Expected `num_classes` to be an integer above every label (at least {inferred}). "
            f"Received: num_classes={num_classes!r}"
        )
    out = np.zeros(labels.shape + (int(num_classes),), dtype=np.float64)
    np.put_along_axis(out, labels[..., None].astype(np.intp), 1.0, axis=-1)
    return out
