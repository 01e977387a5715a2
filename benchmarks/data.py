"""Training arrays for the benchmark models, made once and shared by every engine.

The digits models train on the lesson's ``X_t`` (1149 rows, scaled by 1/16): taken from
:mod:`compare.data` when that package is present, otherwise split here the same way
(scikit-learn's ``load_digits``, ``train_test_split(random_state=42, test_size=.2)`` twice).
Model L trains on random MNIST-sized data (see :func:`mnist_like`).

All inputs are C-contiguous float32 and targets float32 (``(n, 1)`` for the binary models,
one-hot ``(n, 10)`` otherwise), so no engine spends its timed epochs converting dtypes.

Example:
    >>> x, y = training_arrays("A", rows=100)
    >>> x.shape, x.dtype, y.shape
    ((100, 64), dtype('float32'), (100, 1))
"""

from __future__ import annotations

import functools

import numpy as np

from .specs import MODELS

__all__ = ["digits_training_split", "mnist_like", "training_arrays", "BORDER_PIXELS", "border_mask"]

#: Pixels outside the central 20x20 square of a 28x28 image (zero in every row of L's data).
BORDER_PIXELS = 28 * 28 - 20 * 20


def border_mask() -> np.ndarray:
    """Boolean mask over L's 784 inputs: True for the 384 border pixels (always 0 in its data)."""
    image = np.ones((28, 28), dtype=bool)
    image[4:24, 4:24] = False
    return image.ravel()


@functools.lru_cache(maxsize=1)
def digits_training_split():
    """The lesson's training split of the digits: ``(x_t / 16, digit_t)``, 1149 rows."""
    try:
        from compare.data import load_digits_splits
    except ImportError:  # the benchmarks do not require the compare package
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        x_train, _, y_train, _ = train_test_split(digits.data, digits.target, random_state=42, test_size=0.2)
        x_t, _, y_t, _ = train_test_split(x_train, y_train, random_state=42, test_size=0.2)
        return x_t / 16.0, y_t
    splits = load_digits_splits()
    return splits.x_t, splits.digit_t


def mnist_like(rows: int, seed: int = 0):
    """Random data shaped like MNIST: ``rows`` images of 784 float32 pixels and one-hot labels.

    Pixels of the central 20x20 square are uniform in [0, 1); the 384 border pixels are 0 (as in
    MNIST, whose digits are centred in a 20x20 box). Labels are uniform over 10 classes.

    Returns:
        ``(x, y)``: float32 arrays of shapes ``(rows, 784)`` and ``(rows, 10)``.
    """
    rng = np.random.default_rng(seed)
    x = np.zeros((rows, 784), dtype=np.float32)
    inner = ~border_mask()
    x[:, inner] = rng.random((rows, int(inner.sum())), dtype=np.float32)
    y = np.zeros((rows, 10), dtype=np.float32)
    y[np.arange(rows), rng.integers(0, 10, size=rows)] = 1.0
    return x, y


def training_arrays(model: str, rows: int | None = None, seed: int = 0):
    """The ``(x, y)`` float32 training arrays of ``model``, its first ``rows`` rows (all by default).

    Raises:
        ValueError: if ``rows`` is not between 1 and the model's full row count.
    """
    spec = MODELS[model]
    rows = spec.full_rows if rows is None else int(rows)
    if not 1 <= rows <= spec.full_rows:
        raise ValueError(f"Expected rows for model {model} between 1 and {spec.full_rows}. Received: rows={rows}")
    if spec.data == "mnist-random":
        return mnist_like(rows, seed)
    x, digit = digits_training_split()
    x = np.ascontiguousarray(x[:rows], dtype=np.float32)
    digit = np.asarray(digit[:rows])
    if spec.data == "digits-binary":
        y = (digit % 2).astype(np.float32).reshape(-1, 1)
    else:
        y = np.zeros((rows, 10), dtype=np.float32)
        y[np.arange(rows), digit] = 1.0
    return x, y
