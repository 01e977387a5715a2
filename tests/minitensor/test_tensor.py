"""Tests of minitensor.tensor: construction, properties, operators and backward()."""

import math
import re

import numpy as np
import pytest

from minitensor import Tensor, as_tensor, is_grad_enabled, no_grad, ops


# ------------------------------------------------------------------ construction and dtype rules
@pytest.mark.parametrize(
    "data",
    [1.5, 3, True, [1.0, 2.0], [[1, 2], [3, 4]], [True, False], np.array([1, 2], dtype=np.int64), np.array([True])],
    ids=["float", "int", "bool", "float list", "int lists", "bool list", "int64 array", "bool array"],
)
def test_python_data_and_integers_become_float32(data):
    t = Tensor(data)
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t.data, np.asarray(data, dtype=np.float64))
    assert t.requires_grad is False and t.grad is None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_float_arrays_keep_their_dtype(dtype):
    array = np.array([[0.1, 0.2]], dtype=dtype)
    t = Tensor(array)
    assert t.dtype == dtype
    np.testing.assert_array_equal(t.data, array)


def test_dtype_argument_overrides():
    assert Tensor([1.0, 2.0], dtype="float64").dtype == np.float64
    assert Tensor(np.array([0.1]), dtype=np.float32).dtype == np.float32
    assert Tensor(np.array([1, 2]), dtype="float64").dtype == np.float64
    np.testing.assert_array_equal(Tensor([0.1], dtype="float64").data, [0.1])  # not rounded through float32


def test_dtype_argument_must_be_floating():
    with pytest.raises(TypeError, match=r"floating dtype.*Received: dtype=int32"):
        Tensor([1, 2], dtype="int32")


@pytest.mark.parametrize(
    "data, received",
    [
        ("abc", "<U3"),
        (None, "object"),
        ({"a": 1}, "object"),
        ([1.0, "x"], "<U"),
        (1 + 2j, "complex128"),
    ],
    ids=["str", "None", "dict", "mixed list", "complex"],
)
def test_non_numeric_data_is_a_type_error_naming_what_was_received(data, received):
    with pytest.raises(TypeError, match=r"numeric data.*Received: data with dtype " + re.escape(received)):
        Tensor(data)


def test_ragged_data_is_a_type_error_naming_its_type():
    with pytest.raises(TypeError, match=r"numeric data.*Received: data of type list"):
        Tensor([[1.0], [1.0, 2.0]])


def test_as_tensor_passes_tensors_through_and_wraps_the_rest():
    t = Tensor([1.0])
    assert as_tensor(t) is t
    wrapped = as_tensor([1.0, 2.0], dtype="float64")
    assert isinstance(wrapped, Tensor) and wrapped.dtype == np.float64 and not wrapped.requires_grad


# ------------------------------------------------------------------ properties
def test_shape_ndim_size_len():
    t = Tensor(np.zeros((2, 3, 4)))
    assert (t.shape, t.ndim, t.size, len(t)) == ((2, 3, 4), 3, 24, 2)
    assert Tensor(2.0).shape == () and Tensor(2.0).ndim == 0


def test_T_transposes_and_is_differentiable():
    x = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    y = x.T
    np.testing.assert_array_equal(y.data, x.data.T)
    (y * Tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])).sum().backward()
    np.testing.assert_array_equal(x.grad, [[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]])


def test_item_and_float():
    assert Tensor([[2.5]]).item() == 2.5
    assert isinstance(Tensor(2.5).item(), float)
    assert float(Tensor([0.25])) == 0.25
    with pytest.raises(ValueError, match=r"exactly one element.*Received: shape=\(2,\)"):
        Tensor([1.0, 2.0]).item()


def test_numpy_returns_the_data_itself():
    t = Tensor([1.0, 2.0])
    assert t.numpy() is t.data


def test_detach_shares_data_and_cuts_the_graph():
    x = Tensor([1.0, 2.0], requires_grad=True)
    d = (x * 2).detach()
    assert d.requires_grad is False and d.is_leaf
    np.testing.assert_array_equal(d.data, [2.0, 4.0])
    xd = x.detach()
    assert xd.data is x.data
    # y = x * stop_gradient(x): only the live factor contributes, dy/dx = x (not 2x)
    (x * x.detach()).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 2.0])


def test_zero_grad_zeroes_in_place():
    x = Tensor([1.0, 2.0], requires_grad=True)
    x.zero_grad()
    assert x.grad is None
    (x * 3).sum().backward()
    grad = x.grad
    x.zero_grad()
    assert x.grad is grad
    np.testing.assert_array_equal(grad, [0.0, 0.0])


def test_repr_names_dtype_and_requires_grad():
    text = repr(Tensor([1.0, 2.0], requires_grad=True))
    assert text.startswith("Tensor(") and "float32" in text and "requires_grad=True" in text
    assert "requires_grad" not in repr(Tensor([1.0]))


def test_repr_shows_values_shape_dtype_name_and_op():
    x = Tensor(np.array([[1.0, -2.0]]), requires_grad=True)
    x.name = "inputs"
    assert repr(x) == "Tensor([[ 1., -2.]], shape=(1, 2), dtype=float64, name='inputs', requires_grad=True)"
    y = ops.relu(x)
    assert repr(y) == "Tensor([[1., 0.]], shape=(1, 2), dtype=float64, op=relu, requires_grad=True)"
    y.name = "dense_1/output"
    assert "name='dense_1/output', op=relu" in repr(y)
    assert "op=" not in repr(Tensor([1.0])) and "name=" not in repr(Tensor([1.0]))


def test_op_inputs_and_is_leaf_expose_the_graph():
    x = Tensor([[1.0, 2.0]], requires_grad=True)
    w = Tensor([[3.0], [4.0]], requires_grad=True)
    y = x @ w
    z = ops.relu(y) * 2.0
    assert x.is_leaf and x.op is None and x.inputs == ()
    assert not y.is_leaf and isinstance(y.op, ops.MatMul) and y.op.name == "matmul"
    assert isinstance(y.inputs, tuple) and y.inputs[0] is x and y.inputs[1] is w
    assert z.op.name == "mul" and z.inputs[0].op.name == "relu" and z.inputs[0].inputs[0] is y
    assert z.inputs[1].is_leaf and z.inputs[1].item() == 2.0  # a constant, wrapped as a leaf
    assert y.op.inputs[0] is x  # the op's own attribute, which inputs mirrors


def test_results_that_need_no_gradient_are_leaves_without_op():
    x = Tensor([1.0, 2.0])
    assert (x * 2).op is None and (x * 2).inputs == () and (x * 2).is_leaf
    with no_grad():
        y = Tensor([1.0], requires_grad=True) * 2
    assert y.op is None and y.is_leaf


def test_backward_with_create_graph_says_higher_order_gradients_are_out_of_scope():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(NotImplementedError, match="higher-order gradients.*out of minitensor's scope"):
        (x * x).sum().backward(create_graph=True)
    assert x.grad is None


def test_method_shortcuts_match_numpy():
    a = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7
    t = Tensor(a)
    np.testing.assert_allclose(t.sum(axis=1).data, a.sum(axis=1))
    np.testing.assert_allclose(t.mean(axis=(0, 2), keepdims=True).data, a.mean(axis=(0, 2), keepdims=True))
    np.testing.assert_allclose(t.max().data, a.max())
    np.testing.assert_array_equal(t.reshape(4, 6).data, a.reshape(4, 6))
    np.testing.assert_array_equal(t.reshape((6, -1)).data, a.reshape(6, -1))
    np.testing.assert_array_equal(t.transpose(1, 0, 2).data, a.transpose(1, 0, 2))
    np.testing.assert_array_equal(t.transpose().data, a.transpose())


# ------------------------------------------------------------------ operators
A = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.5]])
B = np.array([2.0, -0.5, 4.0])

BINARY = [
    ("+", lambda x, y: x + y),
    ("-", lambda x, y: x - y),
    ("*", lambda x, y: x * y),
    ("/", lambda x, y: x / y),
]


@pytest.mark.parametrize("symbol, op", BINARY, ids=[s for s, _ in BINARY])
def test_binary_operators_broadcast_like_numpy(symbol, op):
    expected = op(A, B)
    for left, right in [(Tensor(A), Tensor(B)), (Tensor(A), B), (A, Tensor(B))]:
        out = op(left, right)
        assert isinstance(out, Tensor), symbol
        np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    np.testing.assert_allclose(op(Tensor(A), 2.0).data, op(A, 2.0), rtol=1e-12)
    np.testing.assert_allclose(op(2.0, Tensor(A)).data, op(2.0, A), rtol=1e-12)


@pytest.mark.parametrize("symbol, op", BINARY, ids=[s for s, _ in BINARY])
def test_reflected_operators_differentiate_the_tensor_operand(symbol, op):
    # d/dx of (c op x), summed, against the textbook derivative
    expected = {"+": np.ones(3), "-": -np.ones(3), "*": B, "/": -B / A[0] ** 2}[symbol]
    x = Tensor(A[0], requires_grad=True)
    op(B, x).sum().backward()  # ndarray on the left: Tensor.__r*__ must run, not NumPy
    np.testing.assert_allclose(x.grad, expected, rtol=1e-12)


@pytest.mark.parametrize("symbol, op", BINARY, ids=[s for s, _ in BINARY])
def test_float32_tensor_with_float64_constant_stays_float32(symbol, op):
    t = Tensor([1.0, 2.0, 3.0])
    for constant in (np.array([0.5, 0.25, 2.0]), np.float64(0.5), 0.5):
        assert op(t, constant).dtype == np.float32, (symbol, type(constant))
        assert op(constant, t).dtype == np.float32, (symbol, type(constant))


def test_matmul_operators():
    x, w = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4) / 5
    np.testing.assert_allclose((Tensor(x) @ Tensor(w)).data, x @ w)
    np.testing.assert_allclose((x @ Tensor(w)).data, x @ w)
    np.testing.assert_allclose((Tensor(x) @ w).data, x @ w)
    assert (Tensor(x, dtype="float32") @ w).dtype == np.float32


def test_pow_and_neg_operators():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    np.testing.assert_allclose((x**2).data, [1.0, 4.0, 9.0])
    np.testing.assert_allclose((-x).data, [-1.0, -2.0, -3.0])
    (x**3 - x).sum().backward()
    np.testing.assert_allclose(x.grad, 3 * np.array([1.0, 4.0, 9.0]) - 1)


def test_broadcast_gradient_is_reduced_to_each_input_shape():
    a = Tensor(A, requires_grad=True)
    b = Tensor(B, requires_grad=True)
    c = Tensor([[2.0], [3.0]], requires_grad=True)
    (a * b + c).sum().backward()
    np.testing.assert_allclose(a.grad, np.broadcast_to(B, A.shape))
    np.testing.assert_allclose(b.grad, A.sum(axis=0))
    np.testing.assert_allclose(c.grad, [[3.0], [3.0]])


# ------------------------------------------------------------------ backward
def test_diamond_graph_sums_both_paths():
    x = Tensor([2.0, -1.0], requires_grad=True)
    a = x + 1
    left, right = a * 2, a * 3
    (left + right).sum().backward()  # d = 5 (x + 1)
    np.testing.assert_array_equal(x.grad, [5.0, 5.0])


def test_value_used_twice_in_one_op_and_across_ops():
    x = Tensor([3.0], requires_grad=True, dtype="float64")
    y = x * 2
    (y * y + y).sum().backward()  # z = 4x² + 2x, z' = 8x + 2
    np.testing.assert_array_equal(x.grad, [26.0])


def test_long_chain_does_not_hit_the_recursion_limit():
    x = Tensor([1.0], requires_grad=True, dtype="float64")
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001**10_000], rtol=1e-10)


def test_gradients_accumulate_across_backward_calls_in_place():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    first = x.grad
    np.testing.assert_array_equal(first, [2.0, 4.0])
    y.backward()  # the same graph again: gradients add, as in PyTorch
    assert x.grad is first
    np.testing.assert_array_equal(x.grad, [4.0, 8.0])
    (x * 3).sum().backward()  # a new graph adds too
    np.testing.assert_array_equal(x.grad, [7.0, 11.0])


def test_grad_that_is_a_view_into_a_flat_buffer_stays_one():
    buffer = np.zeros(5, dtype=np.float32)
    x = Tensor([1.0, 2.0], requires_grad=True)
    x.grad = buffer[1:3]
    (x * 3).sum().backward()
    np.testing.assert_array_equal(buffer, [0.0, 3.0, 3.0, 0.0, 0.0])


def test_only_leaves_that_require_grad_keep_a_grad():
    x = Tensor([1.0, 2.0], requires_grad=True)
    c = Tensor([3.0, 4.0])
    y = x * c
    y.sum().backward()
    assert y.grad is None and c.grad is None
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])
    assert not y.is_leaf and x.is_leaf


def test_backward_with_an_upstream_gradient():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).backward(np.array([1.0, 0.5, -1.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, -6.0])
    assert x.grad.dtype == np.float32


def test_leaf_grad_keeps_the_leaf_dtype():
    x = Tensor([1.0, 2.0], requires_grad=True)  # float32
    (x * Tensor([0.1, 0.2], dtype="float64")).sum().backward()  # promotes to float64 on the way
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, [0.1, 0.2], rtol=1e-7)


def test_backward_needs_requires_grad():
    with pytest.raises(ValueError, match=r"requires grad.*Received: a tensor with requires_grad=False"):
        (Tensor([1.0]) * 2).sum().backward()


def test_backward_without_upstream_needs_a_scalar():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"scalar.*grad=.*Received: shape=\(2, 3\)"):
        (x * 2).backward()
    assert x.grad is None


def test_backward_rejects_upstream_of_the_wrong_shape():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"`grad` with the shape of the tensor, \(2, 3\).*Received: grad.shape=\(3,\)"):
        (x * 2).backward(np.ones(3))
    assert x.grad is None


def test_backward_on_a_leaf_accumulates_the_upstream_gradient():
    x = Tensor([1.0, 2.0], requires_grad=True)
    x.backward(np.array([0.5, -1.0]))
    x.backward(np.array([0.5, 0.0]))
    np.testing.assert_array_equal(x.grad, [1.0, -1.0])


@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backward_without_upstream_seeds_a_one_of_the_output_shape_and_dtype(shape, dtype):
    x = Tensor(np.full(shape, 3.0), requires_grad=True, dtype=dtype)
    (x * x).backward()
    assert x.grad.shape == shape and x.grad.dtype == dtype
    np.testing.assert_array_equal(x.grad, np.full(shape, 6.0))


def _check_order(order, root):
    """Every op output reachable from root, once each, each before its op inputs; no leaves."""
    position = {id(t): i for i, t in enumerate(order)}
    assert len(position) == len(order) and order[0] is root
    for t in order:
        assert not t.is_leaf
        for parent in t._op.inputs:
            if not parent.is_leaf and parent.requires_grad:
                assert position[id(parent)] > position[id(t)]


def test_topological_order_of_a_chain_is_the_depth_first_order():
    from minitensor.tensor import _depth_first_order, _topological_order

    w = Tensor([1.0, 2.0], requires_grad=True)
    out = ops.sigmoid(ops.relu(w * 2.0) + Tensor([1.0, 1.0])).sum()
    order = _topological_order(out)
    assert [type(t._op).__name__ for t in order] == ["Sum", "Sigmoid", "Add", "Relu", "Mul"]
    assert order == _depth_first_order(out)
    _check_order(order, out)


def test_topological_order_of_graphs_with_shared_values():
    from minitensor.tensor import _topological_order

    x = Tensor([1.0, -2.0], requires_grad=True)
    a = x * 2.0
    b = ops.exp(a) * a  # a is used by two ops
    out = (b + a * a + ops.tanh(b)).sum()
    _check_order(_topological_order(out), out)
    out.backward()
    a64 = 2.0 * np.array([1.0, -2.0])
    b64 = np.exp(a64) * a64
    db = 1 + (1 - np.tanh(b64) ** 2)
    expected = 2.0 * (db * (np.exp(a64) * a64 + np.exp(a64)) + 2 * a64)
    np.testing.assert_allclose(x.grad, expected, rtol=1e-5)


# ------------------------------------------------------------------ no_grad
def test_no_grad_context_manager_records_nothing_and_restores():
    x = Tensor([1.0], requires_grad=True)
    assert is_grad_enabled()
    with no_grad():
        assert not is_grad_enabled()
        y = x * 2
        with no_grad():
            pass
        assert not is_grad_enabled()  # leaving a nested block keeps the outer one in force
    assert is_grad_enabled()
    assert y.requires_grad is False and y.is_leaf
    np.testing.assert_array_equal(y.data, [2.0])


def test_no_grad_restores_after_an_exception():
    with pytest.raises(RuntimeError):
        with no_grad():
            raise RuntimeError("boom")
    assert is_grad_enabled()


def test_no_grad_as_decorator():
    @no_grad()
    def double(t):
        """Twice t."""
        assert not is_grad_enabled()
        return t * 2

    x = Tensor([1.0], requires_grad=True)
    assert double(x).requires_grad is False
    assert is_grad_enabled()
    assert double.__name__ == "double" and double.__doc__ == "Twice t."
    assert (x * 2).requires_grad  # recording resumes after the call


# ------------------------------------------------------------------ indexing
def test_getitem_with_slices():
    a = np.arange(12.0).reshape(3, 4)
    x = Tensor(a, requires_grad=True)
    y = x[1:, ::2]
    np.testing.assert_array_equal(y.data, a[1:, ::2])
    y.sum().backward()
    expected = np.zeros((3, 4))
    expected[1:, ::2] = 1
    np.testing.assert_array_equal(x.grad, expected)


@pytest.mark.parametrize(
    "index", [[0, 2, 0, 0], np.array([0, 2, 0, 0]), Tensor([0.0, 2.0, 0.0, 0.0])], ids=["list", "ndarray", "Tensor"]
)
def test_getitem_with_repeated_integer_indices_counts_each_use(index):
    x = Tensor([10.0, 20.0, 30.0], requires_grad=True)
    y = x[index]
    np.testing.assert_array_equal(y.data, [10.0, 30.0, 10.0, 10.0])
    (y * Tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0 + 3.0 + 4.0, 0.0, 2.0])


def test_getitem_with_integer_arrays_on_two_axes():
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    y = x[np.array([1, 1, 0]), np.array([2, 2, -1])]
    np.testing.assert_array_equal(y.data, [5.0, 5.0, 2.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 0.0, 1.0], [0.0, 0.0, 2.0]])


# ------------------------------------------------------------------ bad input
def test_matmul_with_mismatched_shapes_names_both():
    with pytest.raises(ValueError, match=r"last dimension of `a`.*Received: a.shape=\(2, 3\), b.shape=\(4, 5\)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"Received: a.shape=\(3,\), b.shape=\(2,\)"):
        ops.matmul(Tensor(np.ones(3)), np.ones(2))


def test_matmul_with_a_scalar_operand():
    with pytest.raises(ValueError, match=r"at least one dimension.*Received: shapes \(\) and \(2,\)"):
        ops.matmul(Tensor(2.0), Tensor(np.ones(2)))


def test_pow_with_a_tensor_exponent_is_a_type_error():
    with pytest.raises(TypeError, match=r"`exponent`.*Received: exponent of type Tensor"):
        Tensor([2.0]) ** Tensor([2.0])


def test_ops_on_constants_record_no_graph():
    y = Tensor([1.0]) * Tensor([2.0])
    assert y.requires_grad is False and y.is_leaf
    assert math.isclose(y.item(), 2.0)


# ------------------------------------------------------------------ data is an ndarray; truth values
@pytest.mark.parametrize("index", [(0, 1), (1,), 0], ids=["two ints", "tuple of one", "int"])
def test_indexing_gives_ndarray_data_even_for_one_element(index):
    x = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x[index]
    assert type(y.data) is np.ndarray
    np.testing.assert_array_equal(y.data, np.array(x.data[index]))
    y.sum().backward()
    expected = np.zeros((2, 2), dtype=np.float32)
    expected[index] = 1.0
    np.testing.assert_array_equal(x.grad, expected)


def test_a_0_d_element_keeps_its_dtype_and_shape():
    y = Tensor(np.array([[1.0, 2.0]]))[0, 1]
    assert y.data.shape == () and y.dtype == np.float64 and y.item() == 2.0


@pytest.mark.parametrize("value, truth", [(0.0, False), (-0.5, True), ([0.0], False), ([[3.0]], True)])
def test_truth_value_of_a_one_element_tensor_is_its_value(value, truth):
    assert bool(Tensor(value)) is truth
    assert (1 if Tensor(value) else 0) == int(truth)


def test_truth_value_of_a_larger_tensor_raises_as_numpy_does():
    with pytest.raises(ValueError, match="truth value of an array with more than one element is ambiguous"):
        bool(Tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(np.array([1.0, 2.0]))  # the same error as NumPy's own
