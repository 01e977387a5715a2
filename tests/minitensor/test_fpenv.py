"""Flush-to-zero blocks: subnormal results and inputs are 0 inside, IEEE behaviour is back after."""

import threading

import numpy as np
import pytest

from minitensor import fpenv

SUBNORMAL = np.float32(1e-39)
needs_fpenv = pytest.mark.skipif(not fpenv.AVAILABLE, reason="no x86-64 glibc floating-point environment")


@needs_fpenv
def test_inside_the_block_subnormal_results_and_inputs_are_zero():
    a = np.full(64, 1e-38, dtype=np.float32)  # normal; half of it is subnormal
    with fpenv.flush_subnormals():
        halved = a * np.float32(0.5)
        passed_through = np.full(64, SUBNORMAL) + np.float32(0)
    assert np.all(halved == 0)
    assert np.all(passed_through == 0)


def test_after_the_block_arithmetic_is_ieee_again():
    with fpenv.flush_subnormals():
        pass
    assert np.float32(1e-38) * np.float32(0.5) == np.float32(5e-39)
    assert SUBNORMAL + np.float32(0) == SUBNORMAL


@needs_fpenv
def test_the_environment_is_restored_after_an_exception_and_the_instance_reused():
    block = fpenv.flush_subnormals()
    with pytest.raises(RuntimeError):
        with block:
            raise RuntimeError("inside")
    assert SUBNORMAL * np.float32(1) == SUBNORMAL
    with block:
        assert SUBNORMAL * np.float32(1) == 0
    assert SUBNORMAL * np.float32(1) == SUBNORMAL


@needs_fpenv
def test_normal_numbers_are_unchanged_and_other_threads_are_not_affected():
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000).astype(np.float32)
    go, seen = threading.Event(), []

    def other_thread():  # started before the block: it keeps its own environment
        go.wait()
        seen.append(SUBNORMAL * np.float32(1))

    worker = threading.Thread(target=other_thread)
    worker.start()
    with fpenv.flush_subnormals():
        inside = np.sqrt(np.abs(x)) * x + np.float32(1e-7)
        go.set()
        worker.join()
    np.testing.assert_array_equal(inside, np.sqrt(np.abs(x)) * x + np.float32(1e-7))
    assert seen == [SUBNORMAL]
