"""Tests of minitensor.ops: every registered op, forward and gradient.

For each op in ``ops.OPS``, :data:`OP_CASES` holds a Hypothesis strategy that draws
its inputs (shapes with broadcasting, size-1 axes and 0-d where the op allows them;
values from an explicit domain) and a NumPy/SciPy reference for its forward value.
Gradients are proved with ``gradcheck`` in float64. Domains keep away from points
where the op is not differentiable (kinks of relu/abs/clip, ties of max/maximum) and
from the poles of log/sqrt/pow; the extremes are tested separately (stability tests).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
import scipy.special as sps
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minitensor as mt
from minitensor import Tensor, gradcheck, ops

EXAMPLES = 30
GRADIENT_EXAMPLES = 40
# Above this many Jacobian entries (output size x input sizes), check a random projection.
FULL_JACOBIAN_LIMIT = 4096
KINK_MARGIN = 1e-3


# ------------------------------------------------------------------ strategies
@dataclass
class Example:
    """One drawn call: float64 differentiable inputs and constant keyword parameters."""

    arrays: tuple
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OpCase:
    strategy: st.SearchStrategy  # draws an Example
    call: Callable  # (*tensors, **params) -> Tensor
    reference: Callable  # (*float64 arrays, **params) -> ndarray


def floats(low, high):
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def away_from(points, low=-3.0, high=3.0, margin=KINK_MARGIN):
    """Floats in [low, high] at least ``margin`` from every point in ``points``."""
    return floats(low, high).filter(lambda v: all(abs(v - p) > margin for p in points))


def arrays(shape, elements, **kwargs):
    return hnp.arrays(np.float64, shape, elements=elements, **kwargs)


def shapes(min_dims=0, max_dims=3):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=4)


@st.composite
def broadcast_to_shape(draw, shape):
    """A shape that broadcasts to ``shape``: leading axes dropped, some axes set to 1."""
    n_drop = draw(st.integers(0, len(shape)))
    return tuple(1 if draw(st.booleans()) else n for n in shape[n_drop:])


@st.composite
def axis_args(draw, ndim, allow_none=True, allow_tuple=True):
    """``None``, an int or a tuple of distinct ints (negative ones too) valid for ``ndim``."""
    kinds = (["none"] if allow_none or ndim == 0 else []) + (["int", "tuple"][: 1 + allow_tuple] if ndim else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    return draw(hnp.valid_tuple_axes(ndim, min_size=1))  # distinct axes, some negative


@st.composite
def unary(draw, elements, min_dims=0):
    return Example((draw(arrays(draw(shapes(min_dims)), elements)),))


@st.composite
def binary(draw, a_elements, b_elements):
    a_shape, b_shape = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4)).input_shapes
    return Example((draw(arrays(a_shape, a_elements)), draw(arrays(b_shape, b_elements))))


@st.composite
def pow_case(draw):
    exponent = draw(st.sampled_from([0, 1, 2, 3, -1, -2, 0.5, 1.5, -0.5, 2.5, 1 / 3]))
    if float(exponent).is_integer():
        # negative bases are fine for integer exponents; keep clear of the pole at 0
        elements = away_from([0.0], margin=0.1) if exponent < 1 else floats(-3, 3)
    else:
        elements = floats(0.1, 3)
    return Example((draw(arrays(draw(shapes()), elements)),), {"exponent": exponent})


@st.composite
def matmul_case(draw):
    m, k, n = (draw(st.integers(1, 4)) for _ in range(3))
    kind = draw(st.sampled_from(["vv", "vm", "mv", "mm", "batched", "batched", "batched", "v-batched", "batched-v"]))
    batch_a, batch_b = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3)).input_shapes
    a_shape = {"vv": (k,), "vm": (k,), "v-batched": (k,), "mv": (m, k), "mm": (m, k)}.get(kind, batch_a + (m, k))
    b_shape = {"vv": (k,), "mv": (k,), "batched-v": (k,), "vm": (k, n), "mm": (k, n)}.get(kind, batch_b + (k, n))
    elements = floats(-2, 2)
    return Example((draw(arrays(a_shape, elements)), draw(arrays(b_shape, elements))))


@st.composite
def linear_case(draw):
    lead = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    elements = floats(-2, 2)
    return Example(
        (draw(arrays(lead + (n_in,), elements)), draw(arrays((n_in, n_out), elements)), draw(arrays((n_out,), elements)))
    )


@st.composite
def dense_case(draw):
    # relu's kink is at a pre-activation of 0: keep every one of them clear of it
    x, kernel, bias = draw(linear_case()).arrays
    activation = draw(st.sampled_from(["relu", "tanh"]))
    if activation == "relu":
        assume(np.all(np.abs(x @ kernel + bias) > 1e-2))
    return Example((x, kernel, bias), {"activation": activation})


def _dense_reference(x, kernel, bias, activation):
    z = x @ kernel + bias
    return np.maximum(z, 0.0) if activation == "relu" else np.tanh(z)


@st.composite
def reduction(draw, elements=floats(-3, 3), unique=False):
    shape = draw(shapes())
    x = draw(arrays(shape, elements, unique=unique))
    return Example((x,), {"axis": draw(axis_args(len(shape))), "keepdims": draw(st.booleans())})


# distinct multiples of 0.01: no two candidates for a maximum are within KINK_MARGIN of each other
SEPARATED = st.integers(-300, 300).map(lambda i: i / 100)


@st.composite
def maximum_case(draw):
    # a on the half-grid, b on the grid: |a - b| >= 0.05 everywhere, and either may win
    a_elements = st.integers(-30, 29).map(lambda i: i / 10 + 0.05)
    b_elements = st.integers(-30, 30).map(lambda i: i / 10)
    example = draw(binary(a_elements, b_elements))
    shift = draw(floats(-1, 1))  # a common shift keeps the gaps
    return Example(tuple(x + shift for x in example.arrays))


@st.composite
def clip_case(draw):
    shape = draw(shapes())
    if draw(st.booleans()):  # elementwise bounds, arrays that broadcast to x's shape
        bound_shape = draw(broadcast_to_shape(shape))
        low = draw(st.none() | arrays(bound_shape, floats(-2, 1)))
        high = draw(st.none() | arrays(bound_shape, floats(-1, 2)))
        if low is not None and high is not None:
            low, high = np.minimum(low, high), np.maximum(low, high)
        x = draw(arrays(shape, floats(-3, 3)))
        # away from the bounds, where clip is not differentiable
        for bound in (low, high):
            if bound is not None:
                near = np.abs(x - bound) < KINK_MARGIN
                x = np.where(near, x + 4 * KINK_MARGIN, x)
        return Example((x,), {"low": low, "high": high})
    low = draw(st.none() | floats(-2, 1))
    high = draw(st.none() | floats(-1, 2))
    if low is not None and high is not None and low > high:
        low, high = high, low
    bounds = [b for b in (low, high) if b is not None]
    x = draw(arrays(shape, away_from(bounds)))
    return Example((x,), {"low": low, "high": high})


@st.composite
def where_case(draw):
    c_shape, a_shape, b_shape = draw(
        hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=4)
    ).input_shapes
    condition = draw(hnp.arrays(np.bool_, c_shape))
    elements = floats(-3, 3)
    return Example((draw(arrays(a_shape, elements)), draw(arrays(b_shape, elements))), {"condition": condition})


@st.composite
def softmax_case(draw, elements=floats(-5, 5)):
    shape = draw(shapes(min_dims=1))
    return Example((draw(arrays(shape, elements)),), {"axis": draw(axis_args(len(shape), allow_none=False))})


@st.composite
def reshape_case(draw):
    shape = draw(shapes())
    size = int(np.prod(shape))
    targets = [(size,), (-1,), shape[::-1], (1,) + shape, shape + (1,), (size, 1), (1, -1)]
    if len(shape) >= 2:
        targets.append((shape[0] * shape[1],) + shape[2:])
    if size == 1:
        targets.append(())
    return Example((draw(arrays(shape, floats(-3, 3))),), {"shape": draw(st.sampled_from(targets))})


@st.composite
def transpose_case(draw):
    shape = draw(shapes(max_dims=4))
    ndim = len(shape)
    axes = None
    if draw(st.booleans()):
        axes = tuple(a - ndim if draw(st.booleans()) else a for a in draw(st.permutations(range(ndim))))
    return Example((draw(arrays(shape, floats(-3, 3))),), {"axes": axes})


@st.composite
def getitem_case(draw):
    shape = draw(shapes(min_dims=1))
    kind = draw(st.sampled_from(["basic", "integer arrays", "repeated list", "array and slice"]))
    if kind == "basic":
        index = draw(hnp.basic_indices(shape, allow_newaxis=True))
    elif kind == "integer arrays":
        index = draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=5)))
    else:
        positions = st.integers(-shape[0], shape[0] - 1)
        rows = draw(st.lists(positions, min_size=1, max_size=6))
        rows = rows + rows[:1]  # at least one repeat: its gradient must count twice
        if kind == "repeated list":
            index = rows
        else:
            step = draw(st.sampled_from([1, -1, 2]))
            index = (np.array(rows), Ellipsis) if len(shape) == 1 else (np.array(rows), slice(None, None, step))
    return Example((draw(arrays(shape, floats(-3, 3))),), {"index": index})


@st.composite
def dropout_case(draw):
    shape = draw(shapes())
    keep = draw(hnp.arrays(np.bool_, draw(broadcast_to_shape(shape))))
    rate = draw(floats(0, 0.95) | st.just(1.0))
    return Example((draw(arrays(shape, floats(-3, 3))),), {"rate": rate, "keep": keep})


@st.composite
def sigmoid_ce_case(draw):
    # labels may broadcast against the logits either way; the gradient is reduced to the logits' shape
    z_shape, y_shape = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4)).input_shapes
    labels = draw(arrays(y_shape, floats(0, 1)))
    return Example((draw(arrays(z_shape, floats(-10, 10))),), {"labels": labels})


@st.composite
def softmax_ce_case(draw):
    shape = draw(shapes(min_dims=1))
    labels_shape = draw(broadcast_to_shape(shape))
    if draw(st.booleans()):  # labels of a higher rank than the logits
        labels_shape = (1,) * (len(shape) - len(labels_shape)) + labels_shape  # aligned with the logits' axes
        labels_shape = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))) + labels_shape
    labels = draw(arrays(labels_shape, floats(0, 1)))  # soft, not normalised
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return Example((draw(arrays(shape, floats(-5, 5))),), {"labels": labels, "axis": axis})


@st.composite
def sigmoid_ce_mean_case(draw):
    shape = draw(shapes(min_dims=1))
    return Example((draw(arrays(shape, floats(-10, 10))),), {"labels": draw(arrays(shape, floats(0, 1)))})


@st.composite
def softmax_ce_mean_case(draw):
    shape = draw(shapes(min_dims=1))
    labels = draw(arrays(shape, floats(0, 1)))  # soft, not normalised
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return Example((draw(arrays(shape, floats(-5, 5))),), {"labels": labels, "axis": axis})


@st.composite
def sparse_ce_case(draw):
    lead = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=4))
    classes = draw(st.integers(1, 5))
    labels = draw(hnp.arrays(np.int64, lead, elements=st.integers(0, classes - 1)))
    return Example((draw(arrays(lead + (classes,), floats(-5, 5))),), {"labels": labels})


# ------------------------------------------------------------------ references
def _dropout_reference(a, rate, keep):
    # inverted dropout as Keras: kept units scaled by 1 / (1 - rate); rate 1 drops everything
    return np.zeros_like(a) if rate == 1 else np.where(keep, a / (1 - rate), 0.0)


def _sigmoid_ce_reference(z, labels):
    # -y log(sigmoid(z)) - (1 - y) log(1 - sigmoid(z)), with log(sigmoid(z)) = -log(1 + e^-z)
    return labels * np.logaddexp(0, -z) + (1 - labels) * np.logaddexp(0, z)


def _sparse_ce_reference(z, labels):
    return -np.take_along_axis(sps.log_softmax(z, axis=-1), labels[..., None], axis=-1)[..., 0]


def _logsumexp_reference(a, axis, keepdims):
    # SciPy returns at least 1-D; NumPy's reductions (and so ours) keep a 0-d input 0-d
    return np.reshape(sps.logsumexp(a, axis=axis, keepdims=keepdims), np.sum(a, axis=axis, keepdims=keepdims).shape)


OP_CASES: dict[str, OpCase] = {
    "add": OpCase(binary(floats(-3, 3), floats(-3, 3)), ops.add, np.add),
    "sub": OpCase(binary(floats(-3, 3), floats(-3, 3)), ops.sub, np.subtract),
    "mul": OpCase(binary(floats(-3, 3), floats(-3, 3)), ops.mul, np.multiply),
    "div": OpCase(binary(floats(-3, 3), away_from([0.0], margin=0.2)), ops.div, np.divide),
    "neg": OpCase(unary(floats(-3, 3)), ops.neg, np.negative),
    "pow": OpCase(pow_case(), ops.pow, lambda a, exponent: np.power(a, exponent)),
    "matmul": OpCase(matmul_case(), ops.matmul, np.matmul),
    "linear": OpCase(linear_case(), ops.linear, lambda x, kernel, bias: x @ kernel + bias),
    "dense": OpCase(dense_case(), ops.dense, _dense_reference),
    "sum": OpCase(reduction(), ops.sum, lambda a, axis, keepdims: np.sum(a, axis=axis, keepdims=keepdims)),
    "mean": OpCase(reduction(), ops.mean, lambda a, axis, keepdims: np.mean(a, axis=axis, keepdims=keepdims)),
    "max": OpCase(
        reduction(SEPARATED, unique=True), ops.max, lambda a, axis, keepdims: np.max(a, axis=axis, keepdims=keepdims)
    ),
    "logsumexp": OpCase(reduction(floats(-5, 5)), ops.logsumexp, _logsumexp_reference),
    "reshape": OpCase(reshape_case(), ops.reshape, np.reshape),
    "transpose": OpCase(transpose_case(), ops.transpose, np.transpose),
    "getitem": OpCase(getitem_case(), ops.getitem, lambda a, index: a[np.asarray(index) if isinstance(index, list) else index]),
    "exp": OpCase(unary(floats(-5, 5)), ops.exp, np.exp),
    "log": OpCase(unary(floats(0.1, 10)), ops.log, np.log),
    "sqrt": OpCase(unary(floats(0.1, 10)), ops.sqrt, np.sqrt),
    "abs": OpCase(unary(away_from([0.0])), ops.abs, np.abs),
    "maximum": OpCase(maximum_case(), ops.maximum, np.maximum),
    "clip": OpCase(clip_case(), ops.clip, lambda a, low, high: np.clip(a, low, high)),
    "where": OpCase(where_case(), lambda a, b, condition: ops.where(condition, a, b), lambda a, b, condition: np.where(condition, a, b)),
    "relu": OpCase(unary(away_from([0.0])), ops.relu, lambda a: np.maximum(a, 0.0)),
    "sigmoid": OpCase(unary(floats(-10, 10)), ops.sigmoid, sps.expit),
    "tanh": OpCase(unary(floats(-5, 5)), ops.tanh, np.tanh),
    "softmax": OpCase(softmax_case(), ops.softmax, sps.softmax),
    "log_softmax": OpCase(softmax_case(), ops.log_softmax, sps.log_softmax),
    "dropout": OpCase(dropout_case(), ops.dropout, _dropout_reference),
    "sigmoid_cross_entropy_with_logits": OpCase(
        sigmoid_ce_case(),
        lambda z, labels: ops.sigmoid_cross_entropy_with_logits(labels, z),
        _sigmoid_ce_reference,
    ),
    "softmax_cross_entropy_with_logits": OpCase(
        softmax_ce_case(),
        lambda z, labels, axis: ops.softmax_cross_entropy_with_logits(labels, z, axis=axis),
        # the class axis counted from the end, so that it names the same axis in the broadcast pair
        lambda z, labels, axis: -np.sum(labels * sps.log_softmax(z, axis=axis), axis=axis - z.ndim if axis >= 0 else axis),
    ),
    "sigmoid_cross_entropy_mean": OpCase(
        sigmoid_ce_mean_case(),
        lambda z, labels: ops.sigmoid_cross_entropy_mean(labels, z),
        lambda z, labels: np.mean(np.mean(_sigmoid_ce_reference(z, labels), axis=-1)),
    ),
    "softmax_cross_entropy_mean": OpCase(
        softmax_ce_mean_case(),
        lambda z, labels, axis: ops.softmax_cross_entropy_mean(labels, z, axis=axis),
        lambda z, labels, axis: np.mean(-np.sum(labels * sps.log_softmax(z, axis=axis), axis=axis)),
    ),
    "sparse_softmax_cross_entropy_with_logits": OpCase(
        sparse_ce_case(),
        lambda z, labels: ops.sparse_softmax_cross_entropy_with_logits(labels, z),
        _sparse_ce_reference,
    ),
}

OP_NAMES = sorted(OP_CASES)


@pytest.fixture(autouse=True)
def check_every_backward_contract(monkeypatch):
    """Hold this module's ops to the contract that backward() checks for ops defined elsewhere."""
    monkeypatch.setattr(ops.Op, "_check_backward", True)


def test_the_contract_check_is_on_for_every_op_here():
    assert all(cls._check_backward for cls in ops.OPS.values())


def _call(case: OpCase, example: Example, dtype=np.float64, requires_grad=True):
    tensors = [Tensor(np.asarray(x, dtype=dtype), requires_grad=requires_grad) for x in example.arrays]
    return tensors, case.call(*tensors, **example.params)


# ------------------------------------------------------------------ the registry
def test_every_registered_op_has_a_case():
    """A new op cannot skip its gradient test: adding it to ops.OPS fails here until OP_CASES has it."""
    assert set(ops.OPS) == set(OP_CASES)


@pytest.mark.parametrize("name", sorted(ops.OPS))
def test_every_registered_op_has_a_readable_name(name):
    assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name


def test_an_op_prints_as_its_name_and_input_shapes():
    x = Tensor(np.ones((32, 12)), requires_grad=True)
    assert repr(ops.relu(x).op) == "relu(input shapes: (32, 12))"
    kernel, bias = Tensor(np.ones((12, 8)), requires_grad=True), Tensor(np.zeros(8), requires_grad=True)
    assert repr(ops.linear(x, kernel, bias).op) == "linear(input shapes: (32, 12), (12, 8), (8,))"
    assert repr(ops.Relu()) == "relu(not recorded in a graph)"


def test_an_op_class_without_a_name_is_named_after_its_class_and_not_registered():
    class Twice(ops.Op):
        def forward(self, a):
            return 2 * a

        def backward(self, g):
            return (2 * g,)

    assert Twice.name == "Twice" and "Twice" not in ops.OPS
    out = Twice.apply(Tensor([1.0], requires_grad=True))
    assert repr(out.op) == "Twice(input shapes: (1,))" and "op=Twice" in repr(out)


def test_ops_defined_outside_minitensor_register_only_when_asked(monkeypatch):
    monkeypatch.setattr(ops, "OPS", dict(ops.OPS))  # keep the real registry as it is

    class Halve(ops.Op):
        name = "halve"

    assert "halve" not in ops.OPS

    class HalveRegistered(ops.Op, register=True):
        name = "halve"

    assert ops.OPS["halve"] is HalveRegistered


def test_registering_a_second_op_under_a_taken_name_is_an_error(monkeypatch):
    monkeypatch.setattr(ops, "OPS", dict(ops.OPS))
    with pytest.raises(ValueError, match=r"new name for the op class .*MyRelu.*'relu' is already registered.*minitensor\.ops\.Relu"):

        class MyRelu(ops.Op, register=True):
            name = "relu"

    assert ops.OPS["relu"] is ops.Relu


@pytest.mark.parametrize("name", sorted(ops.OPS))
def test_registry_names_match_classes_and_functions(name):
    assert ops.OPS[name].name == name
    assert issubclass(ops.OPS[name], ops.Op)
    assert callable(getattr(ops, name)), f"ops.{name}: every registered op has a functional form"


# ------------------------------------------------------------------ forward and gradient, per op
@pytest.mark.parametrize("name", OP_NAMES)
@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_forward_matches_reference(name, data):
    case = OP_CASES[name]
    example = data.draw(case.strategy, label=name)
    _, out = _call(case, example)
    expected = np.asarray(case.reference(*example.arrays, **example.params))
    assert out.dtype == np.float64
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", OP_NAMES)
@settings(max_examples=GRADIENT_EXAMPLES, deadline=None)
@given(data=st.data())
def test_gradient(name, data):
    case = OP_CASES[name]
    example = data.draw(case.strategy, label=name)
    tensors, out = _call(case, example)
    jacobian_entries = out.size * sum(t.size for t in tensors)
    assert gradcheck(
        lambda *ts: case.call(*ts, **example.params), tensors, fast_mode=jacobian_entries > FULL_JACOBIAN_LIMIT
    )


@pytest.mark.parametrize("name", OP_NAMES)
@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(data=st.data())
def test_float32_stays_float32_and_agrees_with_float64(name, data):
    """float32 in, float32 out (value and gradients), matching the float64 result to float32 precision."""
    case = OP_CASES[name]
    example = data.draw(case.strategy, label=name)
    results = {}
    for dtype in (np.float32, np.float64):
        tensors, out = _call(case, example, dtype=dtype)
        assert out.dtype == dtype
        upstream = np.linspace(-1.0, 1.0, out.size).reshape(out.shape)
        out.backward(upstream)
        for t in tensors:
            assert t.grad.dtype == dtype and t.grad.shape == t.shape
        results[dtype] = (out.data, *[t.grad for t in tensors])
    for low, high in zip(results[np.float32], results[np.float64]):
        scale = max(1.0, float(np.max(np.abs(high), initial=0.0)))
        np.testing.assert_allclose(low, high, rtol=1e-4, atol=1e-5 * scale)


# ------------------------------------------------------------------ numerical stability at the extremes
@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture(params=[1e3, 1e4], ids=["1e3", "1e4"])
def big(request):
    return request.param


def _value_and_grad(fn, x, dtype, weights=None):
    """fn(x) and d(sum(weights * fn(x)))/dx, asserting both are finite and of ``dtype``."""
    x = Tensor(np.asarray(x, dtype=dtype), requires_grad=True)
    out = fn(x)
    weights = np.ones(out.shape) if weights is None else np.asarray(weights, dtype=np.float64)
    out.backward(weights.astype(dtype))
    assert out.dtype == dtype and x.grad.dtype == dtype
    assert np.all(np.isfinite(out.data)), out.data
    assert np.all(np.isfinite(x.grad)), x.grad
    return out.data, x.grad


def _close(actual, expected, dtype):
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-30)


def test_sigmoid_extremes(dtype, big):
    value, grad = _value_and_grad(ops.sigmoid, [-big, 0.0, big], dtype)
    _close(value, [0.0, 0.5, 1.0], dtype)
    _close(grad, [0.0, 0.25, 0.0], dtype)  # sigmoid' = s (1 - s), below float range at |x| >= 1e3


def test_softmax_extremes(dtype, big):
    w = np.array([[0.5, -1.0, 2.0], [0.5, -1.0, 2.0]])
    value, grad = _value_and_grad(ops.softmax, [[big, -big, 0.0], [-big, -big, -big]], dtype, w)
    _close(value, [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], dtype)
    # d(w · s)/dx = s * (w - w · s): zero for a one-hot s, (w - mean(w)) / 3 for a uniform one
    _close(grad, [[0.0, 0.0, 0.0], (w[1] - w[1].mean()) / 3], dtype)


def test_log_softmax_extremes(dtype, big):
    w = np.array([[0.5, -1.0, 2.0], [0.5, -1.0, 2.0]])
    value, grad = _value_and_grad(ops.log_softmax, [[big, -big, 0.0], [-big, -big, -big]], dtype, w)
    _close(value, [[0.0, -2 * big, -big], [-np.log(3)] * 3], dtype)
    # d(w · log s)/dx = w - s Σw
    _close(grad, [[0.5 - 1.5, -1.0, 2.0], w[1] - 1.5 / 3], dtype)


def test_logsumexp_extremes(dtype, big):
    value, grad = _value_and_grad(ops.logsumexp, [[big, big], [-big, -big], [big, -big]], dtype)
    _close(value, [big + np.log(2), -big + np.log(2), big], dtype)
    _close(grad, [[0.5, 0.5], [0.5, 0.5], [1.0, 0.0]], dtype)  # the gradient is the softmax


def test_logsumexp_all_axes_extremes(dtype, big):
    value, grad = _value_and_grad(lambda x: ops.logsumexp(x, axis=None), [[big, -big], [big, -big]], dtype)
    _close(value, big + np.log(2), dtype)
    _close(grad, [[0.5, 0.0], [0.5, 0.0]], dtype)


def test_sigmoid_cross_entropy_extremes(dtype, big):
    labels = np.array([1.0, 0.0, 1.0, 0.0, 0.5], dtype=dtype)
    value, grad = _value_and_grad(
        lambda z: ops.sigmoid_cross_entropy_with_logits(labels, z), [big, big, -big, -big, 0.0], dtype
    )
    # -y log s - (1 - y) log(1 - s): 0 when right and confident, |z| when wrong and confident
    _close(value, [0.0, big, big, 0.0, np.log(2)], dtype)
    _close(grad, [0.0, 1.0, -1.0, 0.0, 0.0], dtype)  # sigmoid(z) - y: never saturates when wrong


def test_softmax_cross_entropy_extremes(dtype, big):
    labels = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=dtype)
    value, grad = _value_and_grad(
        lambda z: ops.softmax_cross_entropy_with_logits(labels, z), [[big, -big], [big, -big]], dtype
    )
    _close(value, [0.0, 2 * big], dtype)
    _close(grad, [[0.0, 0.0], [1.0, -1.0]], dtype)  # softmax(z) - y


def test_sparse_softmax_cross_entropy_extremes(dtype, big):
    labels = np.array([0, 1])
    value, grad = _value_and_grad(
        lambda z: ops.sparse_softmax_cross_entropy_with_logits(labels, z), [[big, -big], [big, -big]], dtype
    )
    _close(value, [0.0, 2 * big], dtype)
    _close(grad, [[0.0, 0.0], [1.0, -1.0]], dtype)


@pytest.mark.parametrize(
    "name, reference",
    [
        ("sigmoid", sps.expit),
        ("softmax", sps.softmax),
        ("log_softmax", sps.log_softmax),
        ("logsumexp", sps.logsumexp),
    ],
)
@settings(max_examples=EXAMPLES, deadline=None)
@given(x=hnp.arrays(np.float64, shapes(min_dims=1), elements=floats(-1e4, 1e4)))
def test_wide_range_forward_matches_reference(name, reference, x):
    out = getattr(ops, name)(Tensor(x))
    np.testing.assert_allclose(out.data, reference(x, axis=-1) if name != "sigmoid" else reference(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "fn, expected",
    [
        (lambda x: ops.sum(x, axis=0), 0.7),
        (lambda x: ops.max(x, axis=-1), 0.7),
        (ops.logsumexp, 0.7),  # default axis=-1
        (ops.softmax, 1.0),
        (ops.log_softmax, 0.0),
    ],
    ids=["sum axis=0", "max axis=-1", "logsumexp", "softmax", "log_softmax"],
)
def test_0d_input_over_axis_0_or_minus_1(fn, expected):
    # the axis check accepts axis 0 / -1 for a 0-d tensor, as NumPy's sum and max do: one element, reduced
    x = Tensor(np.array(0.7), requires_grad=True)
    out = fn(x)
    assert out.shape == ()
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    assert gradcheck(fn, [x])


# ------------------------------------------------------------------ documented behaviour at kinks and ties
def _grad(fn, x, dtype=np.float64):
    x = Tensor(np.asarray(x, dtype=dtype), requires_grad=True)
    fn(x).sum().backward()
    return x.grad


def test_max_ties_share_the_gradient_equally():
    np.testing.assert_array_equal(_grad(ops.max, [1.0, 3.0, 3.0]), [0.0, 0.5, 0.5])
    np.testing.assert_array_equal(_grad(lambda x: ops.max(x, axis=1), [[2.0, 2.0, 2.0, 2.0], [1.0, 0.0, 1.0, 0.0]]),
                                  [[0.25] * 4, [0.5, 0.0, 0.5, 0.0]])


def test_maximum_tie_sends_the_gradient_to_the_first_argument():
    a = Tensor([1.0, 2.0], requires_grad=True)
    b = Tensor([1.0, 1.0], requires_grad=True)
    ops.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [1.0, 1.0])
    np.testing.assert_array_equal(b.grad, [0.0, 0.0])


def test_relu_and_abs_have_zero_gradient_at_zero():
    np.testing.assert_array_equal(_grad(ops.relu, [-1.0, 0.0, 2.0]), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(_grad(ops.abs, [-1.0, 0.0, 2.0]), [-1.0, 0.0, 1.0])


def test_sigmoid_and_softmax_remember_their_logits():
    x = Tensor([[0.5, -1.0]])
    assert ops.sigmoid(x)._keras_logits is x
    assert ops.softmax(x)._keras_logits is x
    assert ops.tanh(x)._keras_logits is None


# ------------------------------------------------------------------ unbroadcast
@settings(max_examples=EXAMPLES, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=1, max_dims=4, max_side=3), data=st.data())
def test_unbroadcast_sums_each_gradient_element_into_its_source(shapes, data):
    (small,), big = shapes.input_shapes, shapes.result_shape
    grad = data.draw(arrays(big, floats(-3, 3)))
    expected = np.zeros(small)
    offset = len(big) - len(small)
    for index in np.ndindex(*big):
        source = tuple(0 if n == 1 else i for n, i in zip(small, index[offset:]))
        expected[source] += grad[index]
    np.testing.assert_allclose(ops.unbroadcast(grad, small), expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ dropout's random mask
@pytest.fixture
def restore_global_random_state():
    state = np.random.get_state()
    yield
    np.random.set_state(state)


@pytest.mark.usefixtures("restore_global_random_state")
def test_dropout_draws_its_mask_from_the_seeded_generator():
    x = Tensor(np.ones((200, 50), dtype=np.float32))
    mt.set_random_seed(3)
    first = ops.dropout(x, 0.3).data
    mt.set_random_seed(3)
    np.testing.assert_array_equal(ops.dropout(x, 0.3).data, first)
    assert set(np.unique(first)) == {0.0, np.float32(1 / 0.7)}
    # 10,000 Bernoulli(0.3) draws: the dropped fraction is within 5 standard deviations (0.023) of 0.3
    assert abs(np.mean(first == 0) - 0.3) < 0.023


@pytest.mark.usefixtures("restore_global_random_state")
def test_dropout_with_explicit_rng_is_reproducible_and_independent_of_the_global_seed():
    x = Tensor(np.ones(1000))
    mt.set_random_seed(0)
    a = ops.dropout(x, 0.5, rng=np.random.default_rng(11)).data
    mt.set_random_seed(1)
    b = ops.dropout(x, 0.5, rng=np.random.default_rng(11)).data
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rate, expected", [(0.0, [1.0, -2.0]), (1.0, [0.0, 0.0])])
def test_dropout_rate_limits(rate, expected):
    np.testing.assert_array_equal(ops.dropout(Tensor([1.0, -2.0]), rate).data, expected)


# ------------------------------------------------------------------ argument errors
@pytest.mark.parametrize("rate", [-0.1, 1.5, "0.5", True, None])
def test_dropout_rejects_bad_rate(rate):
    with pytest.raises(ValueError, match=r"`rate`.*Received: rate=" + re.escape(repr(rate))):
        ops.dropout(Tensor([1.0]), rate)


@pytest.mark.parametrize("exponent", [Tensor(2.0), np.array([2.0]), "2", True])
def test_pow_rejects_non_constant_exponent(exponent):
    with pytest.raises(TypeError, match=r"`exponent`.*Received: exponent of type " + type(exponent).__name__):
        ops.pow(Tensor([1.0]), exponent)


def test_clip_rejects_low_above_high():
    with pytest.raises(ValueError, match=r"low <= high.*Received: low=2, high=1"):
        ops.clip(Tensor([1.0]), 2, 1)
    with pytest.raises(ValueError, match=r"low <= high everywhere.*Received: low > high at index \(1,\)"):
        ops.clip(Tensor([1.0, 2.0]), np.array([0.0, 3.0]), np.array([1.0, 2.0]))


def test_clip_with_array_bounds_clamps_elementwise():
    x = Tensor(np.array([[-2.0, 0.5, 3.0], [0.0, 0.0, 0.0]]), requires_grad=True)
    low, high = np.array([-1.0, 0.6, 0.0]), Tensor(np.array([[1.0], [0.7]]))
    y = ops.clip(x, low, high)
    np.testing.assert_array_equal(y.data, [[-1.0, 0.6, 1.0], [0.0, 0.6, 0.0]])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])  # bounds included
    z = Tensor(np.array([0.5, -3.0]), requires_grad=True)
    ops.clip(z, np.array([0.0, -4.0]), np.array([1.0, -2.0])).sum().backward()
    np.testing.assert_array_equal(z.grad, [1.0, 1.0])


def test_clip_rejects_bounds_that_do_not_fit_or_require_grad():
    x = Tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"`low` to broadcast to the shape of the tensor clipped, \(2, 3\)\. Received: low.shape=\(4,\)"):
        ops.clip(x, np.zeros(4), 1.0)
    with pytest.raises(ValueError, match=r"`high` to broadcast.*Received: high.shape=\(3, 2, 3\)"):
        ops.clip(x, None, np.ones((3, 2, 3)))  # would grow the output
    with pytest.raises(TypeError, match=r"does not differentiate with respect to its bounds.*`low.detach\(\)`"):
        ops.clip(x, Tensor(np.zeros(3), requires_grad=True), None)


def test_softmax_cross_entropy_with_labels_of_higher_rank_matches_the_broadcast_logits():
    rng = np.random.default_rng(3)
    z = Tensor(rng.normal(size=(4,)), requires_grad=True)
    labels = rng.random((3, 4))
    loss = ops.softmax_cross_entropy_with_logits(labels, z)
    assert loss.shape == (3,)
    loss.sum().backward()
    stretched = Tensor(np.broadcast_to(z.data, (3, 4)).copy(), requires_grad=True)
    ops.softmax_cross_entropy_with_logits(labels, stretched).sum().backward()
    np.testing.assert_allclose(z.grad, stretched.grad.sum(axis=0), rtol=1e-12)
    assert gradcheck(lambda t: ops.softmax_cross_entropy_with_logits(labels, t, axis=0), [Tensor(z.data.copy(), requires_grad=True)])


def test_softmax_cross_entropy_rejects_labels_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"`labels` whose shape broadcasts with the logits'.*Received: labels.shape=\(2, 5\), logits.shape=\(2, 4\)"):
        ops.softmax_cross_entropy_with_logits(np.zeros((2, 5)), Tensor(np.zeros((2, 4))))
    with pytest.raises(ValueError, match=r"rank >= 1"):
        ops.softmax_cross_entropy_with_logits(np.zeros(()), Tensor(0.0))


@pytest.mark.parametrize("fn", [ops.sum, ops.mean, ops.max, ops.logsumexp, ops.softmax, ops.log_softmax])
@pytest.mark.parametrize("axis", [2, -3, 1.0, (0, 5)])
def test_reductions_reject_out_of_range_axis(fn, axis):
    with pytest.raises(ValueError, match=r"`axis`.*\[-2, 2\).*shape \(2, 3\).*Received: axis=" + re.escape(repr(axis))):
        fn(Tensor(np.ones((2, 3))), axis=axis)


def test_linear_rejects_mismatched_kernel():
    with pytest.raises(ValueError, match=r"last dimension 4.*Received: inputs.shape=\(2, 3\)"):
        ops.linear(Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5))), Tensor(np.zeros(5)))


# ------------------------------------------------------------------ fused ops: the same numbers as the ops they fuse
def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _value_and_grads(build, arrays, upstream=None):
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    out = build(*tensors)
    out.backward(upstream)
    return out.data, [t.grad for t in tensors]


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_is_linear_then_its_activation_bit_for_bit(activation, dtype):
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=shape).astype(dtype) for shape in ((6, 5), (5, 3), (3,))]
    upstream = rng.normal(size=(6, 3)).astype(dtype)  # negative upstream values too: a relu mask gives -0.0
    fused = _value_and_grads(lambda x, k, b: ops.dense(x, k, b, activation), arrays, upstream)
    chain = _value_and_grads(lambda x, k, b: getattr(ops, activation)(ops.linear(x, k, b)), arrays, upstream)
    assert _same_bits(fused[0], chain[0])
    assert all(_same_bits(f, c) for f, c in zip(fused[1], chain[1]))


def test_dense_rejects_other_activations_and_mismatched_kernels():
    x, kernel, bias = Tensor(np.ones((2, 3))), Tensor(np.ones((3, 4))), Tensor(np.zeros(4))
    with pytest.raises(ValueError, match="'relu', 'tanh'.*Received: activation='sigmoid'"):
        ops.dense(x, kernel, bias, "sigmoid")
    with pytest.raises(ValueError, match=r"last dimension 4 .*inputs.shape=\(2, 3\)"):
        ops.dense(x, Tensor(np.ones((4, 4))), bias)


@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_cross_entropy_mean_is_the_elementwise_loss_then_two_means(classes, dtype):
    rng = np.random.default_rng(1)
    z = (rng.normal(size=(7, classes)) * 4).astype(dtype)
    labels = rng.random((7, classes)).astype(dtype)

    def chain(t):
        values = ops.sigmoid_cross_entropy_with_logits(labels, t)
        per_sample = ops.reshape(values, (7,)) if classes == 1 else ops.mean(values, axis=-1)
        return ops.mean(per_sample)

    def reusing(t):  # given the sigmoid op of the same logits, as the losses pass it
        return ops.SigmoidCrossEntropyMean.apply(t, labels=labels, sigmoid_op=ops.sigmoid(t)._op)

    expected = _value_and_grads(chain, [z])
    for build in (lambda t: ops.sigmoid_cross_entropy_mean(labels, t), reusing):
        value, grads = _value_and_grads(build, [z])
        assert _same_bits(value, expected[0]) and _same_bits(grads[0], expected[1][0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_mean_is_the_per_sample_loss_then_a_mean(dtype):
    rng = np.random.default_rng(2)
    z = (rng.normal(size=(9, 4)) * 4).astype(dtype)
    labels = np.eye(4, dtype=dtype)[rng.integers(0, 4, 9)]

    def reusing(t):  # given the softmax op of the same logits, as the losses pass it
        return ops.SoftmaxCrossEntropyMean.apply(t, labels=labels, axis=-1, softmax_op=ops.softmax(t)._op)

    expected = _value_and_grads(lambda t: ops.mean(ops.softmax_cross_entropy_with_logits(labels, t)), [z])
    for build in (lambda t: ops.softmax_cross_entropy_mean(labels, t), reusing):
        value, grads = _value_and_grads(build, [z])
        assert _same_bits(value, expected[0]) and _same_bits(grads[0], expected[1][0])


@pytest.mark.parametrize("fn", [ops.sigmoid_cross_entropy_mean, ops.softmax_cross_entropy_mean])
def test_cross_entropy_means_need_labels_of_the_logits_shape(fn):
    with pytest.raises(ValueError, match=r"same shape.*labels.shape=\(2,\), logits.shape=\(2, 1\)"):
        fn(np.zeros(2), Tensor(np.zeros((2, 1))))
    with pytest.raises(ValueError, match="rank >= 1"):
        fn(np.float32(1), Tensor(np.float32(0)))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("size", [0, 1, 7, 100, 1000])
def test_mean_all_is_numpy_mean(dtype, size):
    a = (np.random.default_rng(size).normal(size=size) * 1e3).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of nothing
        assert _same_bits(ops._mean_all(a), np.asarray(a.mean()))
