"""Tests of minitensor.gradcheck: it passes right gradients, and catches and locates wrong ones."""

import re

import numpy as np
import pytest

import warnings

from minitensor import GradcheckError, GradcheckWarning, Tensor, gradcheck, ops


class ScaleByThree(ops.Op):
    """``3 * a``, with a backward that is off by ``error`` (a factor) at one element of ``a``.

    Empty name: it is not registered in ``ops.OPS`` (so it does not leak into the registry test).
    """

    name = ""
    wrong_at = (1, 2)
    error = 1.1

    def forward(self, a):
        return 3 * a

    def backward(self, g):
        grad = 3 * g
        grad[self.wrong_at] *= self.error
        return (grad,)


class NotRepeatable(ops.Op):
    """``2 * a`` whose backward drifts from one call to the next."""

    name = ""

    def forward(self, a):
        self.calls = 0
        return 2 * a

    def backward(self, g):
        self.calls += 1
        return (2 * g + 1e-3 * self.calls,)


def x64(shape, seed=0):
    return Tensor(np.random.default_rng(seed).normal(size=shape), requires_grad=True)


def broken(a, **params):
    return ScaleByThree.apply(a, **params)


def test_test_ops_are_not_registered():
    assert "" not in ops.OPS
    assert ScaleByThree not in ops.OPS.values() and NotRepeatable not in ops.OPS.values()


# ------------------------------------------------------------------ correct gradients pass
@pytest.mark.parametrize("fast_mode", [False, True])
def test_passes_on_correct_gradients(fast_mode):
    a, b = x64((2, 3), seed=1), x64((3, 4), seed=2)
    assert gradcheck(lambda a, b: ops.tanh(a @ b) * 2 + ops.sigmoid(b).sum(), [a, b], fast_mode=fast_mode) is True
    assert gradcheck(lambda t: ops.tanh(t) * t, [x64(())], fast_mode=fast_mode) is True


def test_float64_arrays_are_accepted_as_inputs():
    assert gradcheck(lambda t: t * t, [np.array([0.5, -2.0])]) is True


def test_constant_inputs_are_not_checked_and_may_be_float32():
    const = Tensor([1.0, 2.0])  # float32, requires_grad=False
    assert gradcheck(lambda a, c: a * c, [x64(2), const]) is True


def test_fast_mode_handles_large_inputs():
    w = x64((60, 50))
    assert gradcheck(lambda w: ops.logsumexp(w, axis=0), [w], fast_mode=True) is True


def test_non_contiguous_inputs_are_perturbed_in_place():
    # a transposed (non-contiguous) array: perturbing a flat copy of it would give a numeric gradient of 0
    x = Tensor(np.arange(1.0, 7.0).reshape(3, 2).T, requires_grad=True)
    assert not x.data.flags.c_contiguous
    assert gradcheck(lambda t: t * t, [x]) is True
    with pytest.raises(GradcheckError, match=r"input 0 at index \(1, 2\)"):
        gradcheck(broken, [x])


# ------------------------------------------------------------------ float32 refused
def test_refuses_float32_tensor_inputs():
    with pytest.raises(TypeError, match=r"float64.*Received: inputs\[1\] with dtype float32"):
        gradcheck(lambda a, b: a * b, [x64(2), Tensor([1.0, 2.0], requires_grad=True)])


@pytest.mark.parametrize("array", [np.array([1.0, 2.0], dtype=np.float32), np.array([1, 2])], ids=["float32", "int"])
def test_refuses_non_float64_arrays(array):
    with pytest.raises(TypeError, match=r"float64.*Received: inputs\[0\] with dtype " + str(array.dtype)):
        gradcheck(lambda a: a * a, [array])


def test_needs_an_input_that_requires_grad():
    with pytest.raises(ValueError, match=r"requires_grad=True.*Received: none"):
        gradcheck(lambda a: a * a, [Tensor([1.0], dtype="float64")])


def test_fn_must_return_a_tensor():
    with pytest.raises(TypeError, match=r"`fn` to return a Tensor. Received: ndarray"):
        gradcheck(lambda a: a.data * 2, [x64(2)])


# ------------------------------------------------------------------ wrong gradients are caught and located
def test_names_input_position_and_index_of_a_wrong_gradient():
    a, b = x64((2, 3), seed=1), x64((2, 3), seed=2)
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda a, b: a * 2 + broken(b), [a, b])
    message = str(info.value)
    # the Jacobian of 3b is diagonal: the only wrong entry is output (1, 2) with respect to b[1, 2]
    assert "input 1 at index (1, 2) of output element (1, 2)" in message
    assert "1 element(s) out of tolerance" in message
    values = dict(re.findall(r"(analytic|numeric)=([-+.\de]+)", message))
    assert float(values["analytic"]) == pytest.approx(3 * 1.1, rel=1e-9)  # d(3b)/db = 3, off by 10%
    assert float(values["numeric"]) == pytest.approx(3.0, rel=1e-6)


def test_raise_exception_false_returns_false():
    a = x64((2, 3))
    assert gradcheck(broken, [a], raise_exception=False) is False
    assert gradcheck(broken, [a], raise_exception=False, fast_mode=True) is False


def test_fast_mode_catches_a_wrong_gradient_and_locates_it_with_the_full_check():
    a, b = x64((2, 3), seed=1), x64((2, 3), seed=2)
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda a, b: a * 2 + broken(b), [a, b], fast_mode=True)
    message = str(info.value)
    assert message.startswith("fast_mode: Gradient mismatch for input 1 at a random direction")
    assert "the full check located it. Gradient mismatch for input 1 at index (1, 2) of output element (1, 2)" in message


def test_tolerances_are_honoured():
    a = x64((2, 3))
    # an error of 1e-5 (relative) is within the default rtol=1e-3, and not within rtol=1e-8
    assert gradcheck(lambda t: broken(t, error=1 + 1e-5), [a]) is True
    assert gradcheck(lambda t: broken(t, error=1 + 1e-5), [a], rtol=1e-8, atol=0, raise_exception=False) is False


def test_catches_a_backward_that_is_not_repeatable():
    with pytest.raises(GradcheckError, match=r"not repeatable for input 0"):
        gradcheck(lambda t: NotRepeatable.apply(t), [x64(3)])


# ------------------------------------------------------------------ inputs are left as found
@pytest.mark.parametrize("fast_mode", [False, True])
@pytest.mark.parametrize("fn", [lambda a, b: a * b, lambda a, b: broken(a) * b], ids=["passing", "failing"])
def test_restores_data_and_grad(fn, fast_mode):
    a, b = x64((2, 3), seed=1), x64((2, 3), seed=2)
    data_a, data_b = a.data, b.data
    values_a, values_b = a.data.copy(), b.data.copy()
    previous_grad = np.full((2, 3), 7.0)
    a.grad = previous_grad
    gradcheck(fn, [a, b], fast_mode=fast_mode, raise_exception=False)
    assert a.data is data_a and b.data is data_b
    np.testing.assert_array_equal(a.data, values_a)
    np.testing.assert_array_equal(b.data, values_b)
    assert a.grad is previous_grad
    np.testing.assert_array_equal(previous_grad, 7.0)
    assert b.grad is None


# ------------------------------------------------------------------ mistakes in the call, explained
@pytest.mark.parametrize("fast_mode", [False, True])
def test_a_single_tensor_is_accepted_as_inputs(fast_mode):
    assert gradcheck(lambda t: ops.tanh(t) * t, x64((2, 3)), fast_mode=fast_mode) is True
    with pytest.raises(GradcheckError, match=r"input 0 at index \(1, 2\)"):
        gradcheck(broken, x64((2, 3)), fast_mode=fast_mode)


def test_a_single_float64_array_is_one_input():
    assert gradcheck(lambda t: (t * t).sum(), np.array([[0.5, -2.0], [1.0, 3.0]])) is True


class SquareInFloat32(ops.Op):
    """``a²`` computed in float32 (as a model whose weights are float32 would), with an exact gradient."""

    def forward(self, a):
        self.a = a
        return np.square(a.astype(np.float32))

    def backward(self, g):
        return (2 * self.a * g,)


def test_warns_when_fn_computes_in_float32():
    x = Tensor(np.array([0.3, -1.7, 2.2]), requires_grad=True)
    with pytest.warns(GradcheckWarning, match=r"returned a float32 tensor from float64 inputs.*dtype='float64'"):
        # the gradient is right; the float32 round-off makes the central differences wrong
        assert gradcheck(SquareInFloat32.apply, x, raise_exception=False) is False


def test_no_warning_for_float64_computations():
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradcheckWarning)
        assert gradcheck(lambda t: ops.tanh(t * Tensor([0.1, 0.2, 0.3], dtype="float64")), [x64((3,))])


def test_a_non_deterministic_fn_is_refused_and_nondet_tol_allows_small_differences():
    rng = np.random.default_rng(0)

    def noisy(scale):
        return lambda t: t * 2 + Tensor(scale * rng.standard_normal(t.shape))

    with pytest.raises(GradcheckError, match=r"`fn` is not deterministic: two evaluations at the same inputs differ by up to .*nondet_tol=0\.0.*dropout"):
        gradcheck(noisy(1e-3), [x64((3,))])
    assert gradcheck(noisy(1e-15), [x64((3,))], nondet_tol=1e-12) is True


def test_a_dropout_without_a_fixed_mask_is_caught_as_non_deterministic():
    with pytest.raises(GradcheckError, match="not deterministic"):
        gradcheck(lambda t: ops.dropout(t, 0.5), [x64((20,))])
    keep = np.random.default_rng(1).random(20) > 0.5
    assert gradcheck(lambda t: ops.dropout(t, 0.5, keep=keep), [x64((20,))]) is True


def test_a_mismatch_at_a_kink_says_so():
    x = Tensor(np.array([0.5, 1e-7, -0.3]), requires_grad=True)  # relu's kink at 0 is within eps of x[1]
    with pytest.raises(GradcheckError) as info:
        gradcheck(ops.relu, x)
    message = str(info.value)
    assert "input 0 at index (1,)" in message
    assert re.search(r"one-sided differences disagree there \(left=0\.1, right=1\): the input is within eps=1e-06 of a point where `fn` is not differentiable", message)


def test_a_mismatch_away_from_any_kink_does_not_mention_one():
    with pytest.raises(GradcheckError) as info:
        gradcheck(broken, x64((2, 3)))
    assert "not differentiable" not in str(info.value)


def test_an_fn_that_calls_backward_itself_is_refused_with_an_explanation():
    def fn(t):
        loss = (t * t).sum()
        loss.backward()
        return loss

    x = x64((3,))
    with pytest.raises(ValueError, match=r"`fn` to only compute its output: gradcheck calls backward\(\) on it, and evaluates `fn` under no_grad\(\).*Received: `fn` set \.grad of input\(s\) \[0\]"):
        gradcheck(fn, x)
    assert x.grad is None  # left as found


def test_an_fn_that_calls_backward_only_under_no_grad_gets_the_same_explanation():
    from minitensor import is_grad_enabled

    def fn(t):
        loss = (t * 3.0).sum()
        if not is_grad_enabled():
            loss.backward()
        return loss

    with pytest.raises(ValueError, match=r"evaluates `fn` under no_grad\(\).*where backward\(\) has no graph.*Received: backward\(\) called inside `fn`"):
        gradcheck(fn, x64((3,)))
