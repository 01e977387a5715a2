"""The lesson's data: scikit-learn's digits, split and scaled exactly as the lesson does.

The digits ship with scikit-learn (1797 images of 8x8 pixels, intensities 0..16), so nothing
is downloaded. The lesson splits twice with ``train_test_split(..., random_state=42,
test_size=.2)``: first into train (1437 rows) and test (360), then the train part into
``X_t`` (1149) and ``X_val`` (288). It then divides every split by 16.

Two targets are used: even/odd (``y % 2``, an integer 0/1 vector, for the binary models) and
the digit itself (for the softmax model), as integers and one-hot (float32, as the lesson's
``OneHotEncoder`` output once Keras casts it).

Example:
    >>> d = load_digits_splits()
    >>> d.x_t.shape, d.x_val.shape, d.x_test.shape
    ((1149, 64), (288, 64), (360, 64))
    >>> d.target("binary").y_t[:5]
    array([0, 1, 0, 1, 1])
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["DigitsSplits", "TaskData", "load_digits_splits", "one_hot"]

#: Seed and test fraction of both of the lesson's ``train_test_split`` calls.
SPLIT_RANDOM_STATE = 42
SPLIT_TEST_SIZE = 0.2
#: The largest pixel intensity; the lesson scales by dividing by it.
MAX_INTENSITY = 16.0


def one_hot(labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Return ``labels`` (integers, shape ``(N,)``) one-hot encoded as float32, shape ``(N, num_classes)``.

    Example:
        >>> one_hot(np.array([2, 0]), 3)
        array([[0., 0., 1.],
               [1., 0., 0.]], dtype=float32)
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"Expected a 1-D integer label vector. Received: shape={labels.shape}, dtype={labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"Labels must lie in [0, {num_classes}). Received: min={labels.min()}, max={labels.max()}")
    out = np.zeros((labels.shape[0], num_classes), dtype=np.float32)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


@dataclass(frozen=True)
class TaskData:
    """Inputs and targets of one task (binary or multiclass), ready to give to ``fit``.

    Attributes:
        task: ``"binary"`` (even/odd) or ``"multiclass"`` (the digit).
        x_t, x_val, x_test: scaled inputs (float64, values in [0, 1]), shapes ``(1149, 64)``,
            ``(288, 64)``, ``(360, 64)``.
        y_t, y_val, y_test: the targets the lesson trains on: integer 0/1 vectors for the binary
            task, one-hot float32 ``(N, 10)`` for the multiclass one.
        labels_t, labels_val, labels_test: integer class labels ``(N,)`` (for confusion matrices).
        x_all, y_all: all 1797 rows, unscaled, as the lesson's first ``fit(X, y_binary)`` uses.
    """

    task: str
    x_t: np.ndarray
    x_val: np.ndarray
    x_test: np.ndarray
    y_t: np.ndarray
    y_val: np.ndarray
    y_test: np.ndarray
    labels_t: np.ndarray
    labels_val: np.ndarray
    labels_test: np.ndarray
    x_all: np.ndarray
    y_all: np.ndarray

    @property
    def num_classes(self) -> int:
        """2 for the binary task, 10 for the multiclass one."""
        return 2 if self.task == "binary" else 10


@dataclass(frozen=True)
class DigitsSplits:
    """The digits and the lesson's splits, before choosing a target.

    Attributes:
        x: all images as rows, unscaled (integer-valued float64, ``(1797, 64)``).
        digit: the digit of each row (int, ``(1797,)``).
        x_t, x_val, x_test: the lesson's splits, scaled by 1/16.
        digit_t, digit_val, digit_test: the digit of each row of those splits.
    """

    x: np.ndarray
    digit: np.ndarray
    x_t: np.ndarray
    x_val: np.ndarray
    x_test: np.ndarray
    digit_t: np.ndarray
    digit_val: np.ndarray
    digit_test: np.ndarray

    def target(self, task: str) -> TaskData:
        """Return the inputs and targets for ``task`` (``"binary"`` or ``"multiclass"``).

        The binary target is ``digit % 2`` (1 = odd), as the lesson's ``y_binary``. Splitting
        ``y % 2`` or ``y`` with the same ``random_state`` selects the same rows, so both tasks
        share the inputs.
        """
        if task == "binary":
            return TaskData(
                task=task,
                x_t=self.x_t, x_val=self.x_val, x_test=self.x_test,
                y_t=self.digit_t % 2, y_val=self.digit_val % 2, y_test=self.digit_test % 2,
                labels_t=self.digit_t % 2, labels_val=self.digit_val % 2, labels_test=self.digit_test % 2,
                x_all=self.x, y_all=self.digit % 2,
            )
        if task == "multiclass":
            return TaskData(
                task=task,
                x_t=self.x_t, x_val=self.x_val, x_test=self.x_test,
                y_t=one_hot(self.digit_t), y_val=one_hot(self.digit_val), y_test=one_hot(self.digit_test),
                labels_t=self.digit_t, labels_val=self.digit_val, labels_test=self.digit_test,
                x_all=self.x, y_all=one_hot(self.digit),
            )
        raise ValueError(f"Unknown task {task!r}. Expected 'binary' or 'multiclass'.")


@functools.lru_cache(maxsize=1)
def load_digits_splits() -> DigitsSplits:
    """Load scikit-learn's digits and split and scale them as the lesson does (cached).

    The arrays are marked read-only, since the result is shared between callers.

    Example:
        >>> load_digits_splits().x.shape
        (1797, 64)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x, y = digits.data, digits.target
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, random_state=SPLIT_RANDOM_STATE, test_size=SPLIT_TEST_SIZE
    )
    x_t, x_val, y_t, y_val = train_test_split(
        x_train, y_train, random_state=SPLIT_RANDOM_STATE, test_size=SPLIT_TEST_SIZE
    )
    x_t, x_val, x_test = x_t / MAX_INTENSITY, x_val / MAX_INTENSITY, x_test / MAX_INTENSITY
    arrays = dict(x=x, digit=y, x_t=x_t, x_val=x_val, x_test=x_test, digit_t=y_t, digit_val=y_val, digit_test=y_test)
    for array in arrays.values():
        array.setflags(write=False)
    return DigitsSplits(**arrays)
