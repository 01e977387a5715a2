"""The contract of a custom Op, checked when backward() runs: each mistake is a clear error naming op and input."""

import numpy as np
import pytest

from minitensor import Tensor, gradcheck, ops


class Scale(ops.Op):
    """``factor * a``, with a backward chosen by ``mistake`` (a test parameter)."""

    name = "scale"
    factor = 3.0
    mistake = None

    def forward(self, a):
        return self.factor * a

    def backward(self, g):
        grad = self.factor * g
        if self.mistake == "bare array":
            return grad
        if self.mistake == "list of one":
            return [grad]
        if self.mistake == "python float":
            return (float(grad.sum()),)
        if self.mistake == "nested list":
            return (grad.tolist(),)
        return (grad,)


class AddBias(ops.Op):
    """``a + b`` for ``b`` broadcast along the rows of ``a``; ``mistake`` breaks its backward."""

    name = "add_bias"
    mistake = None

    def forward(self, a, b):
        return a + b

    def backward(self, g):
        if self.mistake == "too few":
            return (g,)
        if self.mistake == "too many":
            return g, ops.unbroadcast(g, self.inputs[1].shape), g
        if self.mistake == "not unbroadcast":
            return g, g
        if self.mistake == "None for b":
            return g, None
        return g, ops.unbroadcast(g, self.inputs[1].shape)


def x64(shape, seed=0):
    return Tensor(np.random.default_rng(seed).normal(size=shape), requires_grad=True)


def test_custom_ops_are_not_registered_and_keep_their_names():
    assert "scale" not in ops.OPS and "add_bias" not in ops.OPS
    assert Scale._check_backward and AddBias._check_backward and not ops.Relu._check_backward


def test_a_correct_custom_op_passes_gradcheck():
    a, b = x64((4, 3)), x64((3,), seed=1)
    assert gradcheck(lambda a, b: AddBias.apply(a, b) * Scale.apply(a), [a, b])


def test_a_bare_array_instead_of_a_tuple_is_an_error():
    """Before the check, zip() over the rows of the array gave every row the gradient of row 0's input."""
    a = x64((4, 3))
    y = Scale.apply(a, mistake="bare array").sum()
    with pytest.raises(TypeError, match=r"backward\(\) of op scale \(.*Scale\) must return a tuple with one gradient \(or None\) per input: 1 for this op\. Received: an array of shape \(4, 3\) \(for one input, return `\(grad,\)`\)"):
        y.backward()
    assert a.grad is None


def test_a_list_with_one_gradient_per_input_is_accepted():
    a = x64((2, 2))
    Scale.apply(a, mistake="list of one").sum().backward()
    np.testing.assert_array_equal(a.grad, np.full((2, 2), 3.0))


@pytest.mark.parametrize("mistake, received", [("too few", "a tuple of 1"), ("too many", "a tuple of 3")])
def test_a_wrong_number_of_gradients_is_an_error(mistake, received):
    """Before the check, a missing gradient left the other inputs' .grad silently None."""
    a, b = x64((4, 3)), x64((3,), seed=1)
    y = AddBias.apply(a, b, mistake=mistake).sum()
    with pytest.raises(TypeError, match=rf"op add_bias .* must return one gradient \(or None\) per input: 2 for this op\. Received: {received}"):
        y.backward()
    assert a.grad is None and b.grad is None


def test_a_gradient_not_reduced_to_its_input_s_shape_is_an_error_naming_the_input():
    a, b = x64((4, 3)), x64((3,), seed=1)
    b.name = "bias"
    y = AddBias.apply(a, b, mistake="not unbroadcast").sum()
    with pytest.raises(ValueError, match=r"op add_bias .* returned a gradient of shape \(4, 3\) for input 1 \(tensor 'bias' of shape \(3,\), a leaf\).*ops\.unbroadcast.*Received: shape \(4, 3\), expected \(3,\)"):
        y.backward()


@pytest.mark.parametrize("mistake, kind", [("python float", "float"), ("nested list", "list")])
def test_a_gradient_that_is_not_an_array_is_an_error(mistake, kind):
    a = x64((2,))
    with pytest.raises(TypeError, match=rf"op scale .* must return NumPy arrays \(or None\)\. Received: a {kind} for input 0"):
        Scale.apply(a, mistake=mistake).sum().backward()


def test_none_means_no_gradient_for_that_input():
    a, b = x64((4, 3)), x64((3,), seed=1)
    AddBias.apply(a, b, mistake="None for b").sum().backward()
    np.testing.assert_array_equal(a.grad, np.ones((4, 3)))
    assert b.grad is None


def test_a_numpy_scalar_is_a_gradient_of_a_0_d_input():
    class Square(ops.Op):
        def forward(self, a):
            self.a = a
            return a * a

        def backward(self, g):
            return (g * 2 * self.a[()],)  # a NumPy scalar, shape ()

    a = Tensor(np.array(3.0), requires_grad=True)
    Square.apply(a).backward()
    assert a.grad == 6.0 and a.grad.shape == ()


def test_forward_must_return_an_array():
    class ToList(ops.Op):
        def forward(self, a):
            return a.tolist()

    with pytest.raises(TypeError, match=r"forward\(\) of op ToList \(.*ToList\) must return a NumPy array\. Received: a list"):
        ToList.apply(Tensor([1.0]))


def test_a_numpy_scalar_from_forward_becomes_a_0_d_array():
    class Total(ops.Op):
        def forward(self, a):
            return a.sum()  # a NumPy scalar

        def backward(self, g):
            return (np.broadcast_to(g, self.inputs[0].shape),)

    out = Total.apply(Tensor(np.ones(3), requires_grad=True))
    assert type(out.data) is np.ndarray and out.data.shape == ()


# ------------------------------------------------------------------ docs/custom-ops.md runs as written
def _doc_blocks():
    """The page's ```python blocks, each with the ```text block that follows it (its output) or None."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "custom-ops.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```(\w+)\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    pairs = []
    for i, (language, code) in enumerate(blocks):
        if language == "python":
            following = blocks[i + 1] if i + 1 < len(blocks) else None
            pairs.append((code, following[1] if following and following[0] == "text" else None))
    return pairs


def test_the_custom_ops_page_runs_and_prints_what_it_says(capsys):
    """Every block runs, in order, in one namespace; a block followed by a text block prints that text."""
    import doctest

    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    namespace = {"__name__": "custom_ops_doc"}
    pairs = _doc_blocks()
    assert len(pairs) >= 10
    for code, expected in pairs:
        exec(compile(code, "docs/custom-ops.md", "exec"), namespace)
        printed = capsys.readouterr().out
        if expected is None:
            assert printed == "", f"a block without an output block printed:\n{printed}"
        else:
            assert checker.check_output(expected, printed, flags), f"expected:\n{expected}\nprinted:\n{printed}"
    assert "softplus" not in ops.OPS  # the page's ops did not join the registry
