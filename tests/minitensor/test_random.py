"""Tests of minitensor.random: one seed pins every draw; explicit seeds are private."""

import random as py_random
import re

import numpy as np
import pytest

from minitensor import random as mt_random
from minitensor import set_random_seed


@pytest.fixture(autouse=True)
def restore_global_random_state():
    """These tests reseed the global generators; leave them as found for the tests that follow."""
    numpy_state, python_state = np.random.get_state(), py_random.getstate()
    yield
    np.random.set_state(numpy_state)
    py_random.setstate(python_state)


def _draws():
    gen = mt_random.generator()
    return (
        gen.uniform(-1, 1, size=4).tolist(),
        gen.normal(size=3).tolist(),
        gen.permutation(6).tolist(),
        gen.random(2).tolist(),
        py_random.random(),
    )


def test_set_random_seed_gives_identical_draws():
    set_random_seed(123)
    first = _draws()
    set_random_seed(123)
    assert _draws() == first
    set_random_seed(124)
    assert _draws() != first


def test_set_random_seed_accepts_numpy_integers():
    set_random_seed(np.int64(7))
    first = _draws()
    set_random_seed(7)
    assert _draws() == first


def test_np_random_seed_pins_the_generator():
    # the classic notebook line `np.random.seed(42)` must pin minitensor's draws too
    np.random.seed(42)
    ours = mt_random.generator().uniform(-1, 1, size=5)
    np.testing.assert_array_equal(ours, np.random.RandomState(42).uniform(-1, 1, size=5))
    np.random.seed(42)
    np.testing.assert_array_equal(np.random.uniform(-1, 1, size=5), ours)


def test_make_generator_is_reproducible_and_independent_of_the_global_state():
    np.random.seed(0)
    a = mt_random.make_generator(5).normal(size=4)
    np.random.seed(1)
    np.random.uniform(size=10)
    b = mt_random.make_generator(5).normal(size=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, mt_random.make_generator(6).normal(size=4))


def test_make_generator_does_not_advance_the_global_state():
    np.random.seed(3)
    expected = np.random.uniform(size=3)
    np.random.seed(3)
    mt_random.make_generator(9).uniform(size=100)
    np.testing.assert_array_equal(mt_random.generator().uniform(size=3), expected)


def test_make_generator_none_shares_the_global_generator():
    np.random.seed(11)
    a = mt_random.make_generator(None).uniform(size=3)
    np.random.seed(11)
    np.testing.assert_array_equal(mt_random.generator().uniform(size=3), a)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", None, True, [1]])
def test_set_random_seed_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match=r"`seed`.*non-negative integer.*Received: seed=" + re.escape(repr(seed))):
        set_random_seed(seed)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, np.int64(-2)])
def test_make_generator_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match=r"`seed`.*None or a non-negative integer.*Received: seed=" + re.escape(repr(seed))):
        mt_random.make_generator(seed)
