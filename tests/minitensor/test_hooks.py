"""Tests of the study side of minitensor.tensor: retain_grad(), register_hook() and their handles."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minitensor import Tensor, gradcheck, ops


def x64(shape, seed=0, scale=1.0):
    return Tensor(np.random.default_rng(seed).normal(scale=scale, size=shape), requires_grad=True)


def lesson_like_graph(seed=0):
    """``x @ w + b -> relu -> (· @ w2) -> sigmoid cross-entropy``, float64; returns (leaves, pre, hidden, loss)."""
    rng = np.random.default_rng(seed)
    x = Tensor(rng.normal(size=(5, 4)))
    y = (rng.random((5, 1)) > 0.5).astype(np.float64)
    w, b, w2 = x64((4, 3), seed + 1), x64((3,), seed + 2), x64((3, 1), seed + 3)
    pre = x @ w + b
    hidden = ops.relu(pre)
    loss = ops.sigmoid_cross_entropy_with_logits(y, hidden @ w2).mean()
    return (x, y, w, b, w2), pre, hidden, loss


# ------------------------------------------------------------------ retain_grad
def test_retain_grad_equals_the_gradient_of_the_graph_split_by_hand():
    (x, y, w, b, w2), pre, hidden, loss = lesson_like_graph()
    pre.retain_grad()
    hidden.retain_grad()
    loss.backward()

    # the same graph cut by hand at `hidden`: a new leaf holding its values
    cut = Tensor(hidden.data.copy(), requires_grad=True)
    w2_again = Tensor(w2.data.copy(), requires_grad=True)
    ops.sigmoid_cross_entropy_with_logits(y, cut @ w2_again).mean().backward()
    np.testing.assert_allclose(hidden.grad, cut.grad, rtol=1e-12, atol=0)
    np.testing.assert_allclose(w2.grad, w2_again.grad, rtol=1e-12, atol=0)

    # ... and at `pre`: relu's half alone, fed the gradient found above
    cut_pre = Tensor(pre.data.copy(), requires_grad=True)
    ops.relu(cut_pre).backward(cut.grad)
    np.testing.assert_allclose(pre.grad, cut_pre.grad, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(pre.grad, np.where(pre.data > 0, hidden.grad, 0.0))

    # the first layer fed that gradient gives the leaves' gradients
    w_again, b_again = Tensor(w.data.copy(), requires_grad=True), Tensor(b.data.copy(), requires_grad=True)
    (x @ w_again + b_again).backward(cut_pre.grad)
    np.testing.assert_allclose(w.grad, w_again.grad, rtol=1e-12, atol=0)
    np.testing.assert_allclose(b.grad, b_again.grad, rtol=1e-12, atol=0)


def test_retained_gradient_sums_every_use_and_matches_central_differences():
    x = x64((3,), seed=4)
    h = x * 2.0
    h.retain_grad()
    out = (h * h + ops.exp(h)).sum()  # h used three times
    out.backward()
    # d out / d h = 2h + exp(h), computed independently of the graph
    np.testing.assert_allclose(h.grad, 2 * h.data + np.exp(h.data), rtol=1e-12)
    # and numerically, on h as a leaf
    assert gradcheck(lambda t: (t * t + ops.exp(t)).sum(), [Tensor(h.data.copy(), requires_grad=True)])


def test_retained_gradient_accumulates_over_backward_calls_like_a_leaf():
    x = x64((2,), seed=5)
    h = x * 3.0
    h.retain_grad()
    (h * h).sum().backward()
    first = h.grad.copy()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, 2 * first)
    assert h.grad.dtype == h.dtype


def test_without_retain_grad_a_non_leaf_keeps_no_grad():
    (_, _, w, _, _), pre, hidden, loss = lesson_like_graph()
    loss.backward()
    assert pre.grad is None and hidden.grad is None and w.grad is not None


def test_retain_grad_on_a_leaf_changes_nothing():
    x = x64((2,))
    x.retain_grad()
    (x * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_retain_grad_needs_a_tensor_that_requires_grad():
    with pytest.raises(RuntimeError, match=r"retain_grad\(\) needs a tensor that requires grad.*requires_grad=False"):
        (Tensor([1.0]) * 2).retain_grad()


def test_retain_grad_of_the_root_is_the_seed():
    x = x64((2,))
    out = (x * x).sum()
    out.retain_grad()
    out.backward()
    assert out.grad == 1.0


# ------------------------------------------------------------------ hooks that observe
def test_a_hook_sees_the_gradient_that_retain_grad_keeps():
    (_, _, w, _, _), pre, hidden, loss = lesson_like_graph()
    seen = []
    hidden.register_hook(lambda g: seen.append(g.copy()))
    hidden.retain_grad()
    loss.backward()
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], hidden.grad)
    assert seen[0].shape == hidden.shape


def test_a_leaf_hook_sees_this_backward_s_gradient_not_the_accumulated_one():
    x = x64((2,))
    seen = []
    x.register_hook(lambda g: seen.append(g.copy()))
    (x * 2.0).sum().backward()
    (x * 5.0).sum().backward()
    np.testing.assert_array_equal(seen[0], [2.0, 2.0])
    np.testing.assert_array_equal(seen[1], [5.0, 5.0])
    np.testing.assert_array_equal(x.grad, [7.0, 7.0])


def test_a_hook_is_called_when_backward_starts_from_a_leaf():
    x = x64((2,))
    seen = []
    x.register_hook(lambda g: seen.append(g.copy()))
    x.backward(np.array([1.0, -1.0]))
    np.testing.assert_array_equal(seen[0], [1.0, -1.0])


def test_a_hook_gets_a_read_only_gradient():
    x = x64((3,))
    h = x * 1.0

    def edits_in_place(g):
        g *= 2

    h.register_hook(edits_in_place)
    with pytest.raises(ValueError, match="read-only"):
        h.sum().backward()


def test_a_hook_of_a_tensor_no_gradient_reaches_is_not_called():
    x, unused = x64((2,)), x64((2,), seed=1)
    h = unused * 2.0
    calls = []
    h.register_hook(calls.append)
    (x * 2.0).sum().backward()
    assert calls == []


# ------------------------------------------------------------------ hooks that replace
def _numeric_gradient(fn, x, eps=1e-6):
    """Central differences of a scalar fn of the float64 array x (independent of the graph)."""
    grad = np.empty_like(x)
    for i in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += eps
        minus[i] -= eps
        grad[i] = (fn(plus) - fn(minus)) / (2 * eps)
    return grad


@pytest.mark.parametrize("scale", [2.0, -0.5, 0.0])
def test_a_replaced_gradient_reaches_the_leaves(scale):
    rng = np.random.default_rng(7)
    x0, w0 = rng.normal(size=(4, 3)), rng.normal(size=(3, 2))
    x, w = Tensor(x0, requires_grad=True), Tensor(w0, requires_grad=True)
    h = ops.tanh(x @ w)
    h.register_hook(lambda g: scale * g)
    (h * h).sum().backward()
    # the hook scales d loss / d h, and everything below h is linear in it
    np.testing.assert_allclose(x.grad, scale * _numeric_gradient(lambda a: np.sum(np.tanh(a @ w0) ** 2), x0), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(w.grad, scale * _numeric_gradient(lambda a: np.sum(np.tanh(x0 @ a) ** 2), w0), rtol=1e-6, atol=1e-8)


def test_a_hook_can_clip_a_gradient_and_the_leaves_get_the_clipped_one():
    (x, y, w, b, w2), pre, hidden, loss = lesson_like_graph(seed=3)
    pre.register_hook(lambda g: np.clip(g, -0.01, 0.01))
    pre.retain_grad()
    loss.backward()
    assert np.abs(pre.grad).max() <= 0.01  # retain_grad keeps the hooked gradient
    w_again = Tensor(w.data.copy(), requires_grad=True)
    (x @ w_again + Tensor(b.data)).backward(pre.grad)
    np.testing.assert_allclose(w.grad, w_again.grad, rtol=1e-12)


def test_a_leaf_hook_replaces_what_is_added_to_grad():
    x = x64((2,))
    x.register_hook(lambda g: g + 1.0)
    (x * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


def test_hooks_run_in_registration_order_each_on_the_previous_result():
    x = x64((2,))
    h = x * 1.0
    h.register_hook(lambda g: g + 1.0)
    h.register_hook(lambda g: g * 10.0)
    h.sum().backward()
    np.testing.assert_array_equal(x.grad, [20.0, 20.0])


def test_a_hook_returning_the_wrong_shape_is_an_error_naming_hook_and_tensor():
    x = x64((2, 3))
    h = x * 1.0
    h.name = "hidden"

    def bad_hook(g):
        return g.sum(axis=0)

    h.register_hook(bad_hook)
    with pytest.raises(ValueError, match=r"hook 'test_a_hook.*bad_hook' on tensor 'hidden' of shape \(2, 3\), made by mul.*shape \(2, 3\)\. Received: shape \(3,\)"):
        h.sum().backward()


# ------------------------------------------------------------------ handles
def test_handle_remove_unregisters_only_its_hook():
    x = x64((2,))
    h = x * 1.0
    calls = []
    first = h.register_hook(lambda g: calls.append("first"))
    h.register_hook(lambda g: calls.append("second"))
    h.sum().backward()
    first.remove()
    first.remove()  # twice is harmless
    h.sum().backward()
    assert calls == ["first", "second", "second"]


def test_a_removed_replacing_hook_no_longer_changes_gradients():
    x = x64((2,))
    handle = x.register_hook(lambda g: 100 * g)
    handle.remove()
    (x * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_register_hook_checks_its_argument_and_the_tensor():
    with pytest.raises(TypeError, match=r"callable for `fn`.*Received: fn of type int"):
        x64((1,)).register_hook(3)
    with pytest.raises(RuntimeError, match=r"register_hook\(\) needs a tensor that requires grad"):
        Tensor([1.0]).register_hook(print)


# ------------------------------------------------------------------ random graphs
FIRST_HALVES = {
    "tanh(x*w)": lambda x, w: ops.tanh(x * w),
    "exp(x)-w": lambda x, w: ops.exp(x) - w,
    "logsumexp(x+w)": lambda x, w: ops.logsumexp(x + w, axis=-1, keepdims=True),
}
SECOND_HALVES = {
    "sum(h*h)": lambda h, w: (h * h * w).sum(),
    "mean(sigmoid(h))": lambda h, w: ops.sigmoid(h + w).mean(),
    "max(h)": lambda h, w: ops.max(h * w),
}


@settings(max_examples=30, deadline=None)
@given(
    shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
    first=st.sampled_from(sorted(FIRST_HALVES)),
    second=st.sampled_from(sorted(SECOND_HALVES)),
    scale=st.sampled_from([1.0, -2.0, 0.5]),
    seed=st.integers(0, 2**16),
)
def test_retained_and_hooked_gradients_equal_the_graph_split_by_hand(shape, first, second, scale, seed):
    rng = np.random.default_rng(seed)
    x0, w0, v0 = (rng.uniform(-1.5, 1.5, size=shape) for _ in range(3))
    x, w, v = (Tensor(a, requires_grad=True) for a in (x0, w0, v0))
    h = FIRST_HALVES[first](x, w)
    h.retain_grad()
    h.register_hook(lambda g: scale * g)
    SECOND_HALVES[second](h, v).backward()

    cut = Tensor(h.data.copy(), requires_grad=True)
    SECOND_HALVES[second](cut, Tensor(v0)).backward()
    np.testing.assert_allclose(h.grad, scale * cut.grad, rtol=1e-12, atol=1e-300)  # kept after the hook
    x_again, w_again = Tensor(x0, requires_grad=True), Tensor(w0, requires_grad=True)
    FIRST_HALVES[first](x_again, w_again).backward(scale * cut.grad)
    np.testing.assert_allclose(x.grad, x_again.grad, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(w.grad, w_again.grad, rtol=1e-12, atol=1e-300)
