"""compare.data: the lesson's splits, scaling and targets."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from compare.data import load_digits_splits, one_hot


def test_splits_follow_the_lesson():
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(digits.data, digits.target, random_state=42, test_size=0.2)
    x_t, x_val, y_t, y_val = train_test_split(x_train, y_train, random_state=42, test_size=0.2)
    d = load_digits_splits()
    np.testing.assert_array_equal(d.x_t, x_t / 16)
    np.testing.assert_array_equal(d.x_val, x_val / 16)
    np.testing.assert_array_equal(d.x_test, x_test / 16)
    np.testing.assert_array_equal(d.digit_t, y_t)
    np.testing.assert_array_equal(d.digit_val, y_val)
    np.testing.assert_array_equal(d.digit_test, y_test)
    assert (len(d.x_t), len(d.x_val), len(d.x_test)) == (1149, 288, 360)


def test_scaling_and_unscaled_rows():
    d = load_digits_splits()
    for x in (d.x_t, d.x_val, d.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    assert d.x.shape == (1797, 64) and d.x.max() == 16.0


def test_binary_target_is_even_odd():
    d = load_digits_splits()
    b = d.target("binary")
    np.testing.assert_array_equal(b.y_t, d.digit_t % 2)
    np.testing.assert_array_equal(b.y_all, d.digit % 2)
    assert set(np.unique(b.y_t)) == {0, 1}
    assert b.num_classes == 2


def test_multiclass_target_is_one_hot_float32():
    d = load_digits_splits()
    m = d.target("multiclass")
    for y, labels in ((m.y_t, m.labels_t), (m.y_val, m.labels_val), (m.y_test, m.labels_test)):
        assert y.dtype == np.float32 and y.shape == (len(labels), 10)
        np.testing.assert_array_equal(y.sum(axis=1), 1.0)
        np.testing.assert_array_equal(y.argmax(axis=1), labels)
    assert m.num_classes == 10


def test_shared_arrays_are_read_only():
    d = load_digits_splits()
    with pytest.raises(ValueError):
        d.x_t[0, 0] = 5.0


def test_unknown_task_and_bad_labels():
    with pytest.raises(ValueError, match="Unknown task"):
        load_digits_splits().target("regression")
    with pytest.raises(ValueError):
        one_hot(np.array([0, 10]), 10)
    with pytest.raises(ValueError):
        one_hot(np.array([0.5]), 10)
