"""Differentiable ops: each one class, its forward and its gradient side by side.

An op subclasses :class:`Op`, sets ``name`` and implements

* ``forward(*arrays)`` -> ndarray, saving on ``self`` what the gradient needs, and
* ``backward(g)`` -> one gradient (or ``None``) per input, each already reduced to
  that input's shape with :func:`unbroadcast`.

Non-differentiable arguments (axes, exponents, masks, labels) are keyword
parameters, set on the op before ``forward``. Every op of this module is registered
in :data:`OPS` by name, so the tests can enumerate them and a new op cannot skip its
gradient check; an op defined elsewhere is registered only when it asks to
(``class MyOp(Op, register=True)``). Call ops through the functions at the bottom of
this module (or Tensor operators), not through the classes. ``docs/custom-ops.md``
shows how to write and test a new op.

Example:
    >>> from minitensor import Tensor, ops
    >>> x = Tensor([[-1.0, 2.0]], requires_grad=True)
    >>> ops.relu(x).sum().backward(); x.grad
    array([[0., 1.]], dtype=float32)
"""

from __future__ import annotations

import builtins
from operator import attrgetter

import numpy as np

from .tensor import Tensor, _clock, _get_ident, _no_grad_depth

OPS: dict[str, type["Op"]] = {}
_data = attrgetter("_data")  # the array itself: reading .data would take a snapshot (see Tensor.data)


class _Constants(dict):
    """dtype -> a 0-d array of one value in that dtype, made on first use.

    NumPy mixes a 0-d array of the operand's dtype into a ufunc faster than a Python
    number, and the values are the same (0 and 1 are exact in every float dtype).
    """

    def __init__(self, value):
        super().__init__()
        self.value = value

    def __missing__(self, dtype):
        constant = self[dtype] = np.full((), self.value, dtype=dtype)
        return constant


_ZERO, _ONE = _Constants(0), _Constants(1)


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``grad`` over the axes that broadcasting added or stretched, to get ``shape``.

    The one place where broadcasting is undone; every op's gradient goes through it.

    Example:
        >>> unbroadcast(np.ones((4, 3)), (3,)).tolist()
        [4.0, 4.0, 4.0]
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


class Op:
    """Base class of a differentiable operation (one node of the graph).

    A subclass sets ``name`` (a short readable name such as ``"relu"``; the class name
    when left out) and implements ``forward`` and ``backward``. Ops of this module are
    registered in :data:`OPS` under their name; pass ``register=True`` in the class
    statement to register an op defined elsewhere (``register=False`` to keep one of
    this module out).

    Attributes:
        name: the op's name, shown by ``repr`` of its outputs and by graph drawings.
        inputs: the input Tensors, in order (set by :meth:`apply` when the op is
            recorded in the graph).

    Example:
        >>> from minitensor import Tensor, ops
        >>> y = ops.relu(Tensor(np.ones((32, 12)), requires_grad=True))
        >>> y.op
        relu(input shapes: (32, 12))
        >>> y.op.name, y.op.inputs[0].shape
        ('relu', (32, 12))
    """

    name: str = ""
    # backward()'s results are checked against the contract for ops defined outside this module
    # (this module's ops are checked by the tests, which switch this on for them)
    _check_backward = False

    def __init_subclass__(cls, register=None, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = cls.__name__
        if cls.__module__ != __name__:
            cls._check_backward = True
        if register is None:
            register = cls.__module__ == __name__
        if register:
            known = OPS.get(cls.name)
            if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
                raise ValueError(
                    f"Expected a new name for the op class {cls.__qualname__}: an op named {cls.name!r} is already "
                    f"registered ({known.__module__}.{known.__qualname__}). Received: name={cls.name!r}"
                )
            OPS[cls.name] = cls

    def __repr__(self) -> str:
        inputs = self.__dict__.get("inputs")
        if inputs is None:
            return f"{self.name}(not recorded in a graph)"
        shapes = ", ".join(str(t.shape) for t in inputs)
        return f"{self.name}(input shapes: {shapes})"

    def forward(self, *arrays):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError(f"The op '{self.name}' has no gradient rule")

    @classmethod
    def apply(cls, *inputs, **params) -> Tensor:
        """Run the op on Tensors (or constants) and record it in the graph if needed."""
        op = cls.__new__(cls)
        if params:
            op.__dict__.update(params)
        for value in inputs:
            if not isinstance(value, Tensor):
                inputs = _as_tensors(inputs)
                break
        out = op.forward(*map(_data, inputs))
        if out.__class__ is not np.ndarray:
            out = _forward_result(op, out)
        if not _no_grad_depth or _get_ident() not in _no_grad_depth:  # grad mode, per thread
            for t in inputs:
                if t.requires_grad:
                    op.inputs = inputs
                    stamp = next(_clock)  # for the in-place check (see Tensor.data)
                    for t in inputs:
                        t._watch = stamp
                    return Tensor._from_op(out, op, stamp)
        return Tensor._from_op(out, None)


def _forward_result(op, out) -> np.ndarray:
    """A NumPy scalar from ``forward`` becomes a 0-d array; anything else but an array is an error."""
    if isinstance(out, np.generic):
        return np.asarray(out)
    if isinstance(out, np.ndarray):  # a subclass (np.matrix, a masked array): its plain array
        return np.asarray(out)
    raise TypeError(
        f"The forward() of op {op.name} ({type(op).__module__}.{type(op).__qualname__}) must return a NumPy "
        f"array. Received: a {type(out).__name__}"
    )


def _as_tensors(inputs) -> tuple:
    """Wrap constants as Tensors of the dtype of the Tensor inputs (no silent float64 upcast)."""
    dtype = None
    for value in inputs:
        if isinstance(value, Tensor):
            dtype = value._data.dtype
            break
    return tuple(value if isinstance(value, Tensor) else Tensor(value, dtype=dtype) for value in inputs)


# ------------------------------------------------------------------ arithmetic
class Add(Op):
    name = "add"

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, g):
        return unbroadcast(g, self.shapes[0]), unbroadcast(g, self.shapes[1])


class Sub(Op):
    name = "sub"

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, g):
        return unbroadcast(g, self.shapes[0]), unbroadcast(-g, self.shapes[1])


class Mul(Op):
    name = "mul"

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        return unbroadcast(g * self.b, self.a.shape), unbroadcast(g * self.a, self.b.shape)


class Div(Op):
    name = "div"

    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        ga = g / self.b
        return unbroadcast(ga, self.a.shape), unbroadcast(-ga * self.a / self.b, self.b.shape)


class Neg(Op):
    name = "neg"

    def forward(self, a):
        return -a

    def backward(self, g):
        return (-g,)


class Pow(Op):
    """``a ** exponent`` for a constant (non-Tensor) exponent."""

    name = "pow"
    exponent: float

    def forward(self, a):
        self.a = a
        return np.power(a, self.a.dtype.type(self.exponent))

    def backward(self, g):
        p = self.a.dtype.type(self.exponent)
        if p == 0:  # d/da a**0 = 0 everywhere, including a = 0 where p * a**(p-1) would be 0 * inf
            return (np.zeros_like(self.a),)
        return (g * p * np.power(self.a, p - 1),)


class MatMul(Op):
    """``a @ b`` for 1-D, 2-D and batched (broadcast) operands, as ``np.matmul``."""

    name = "matmul"

    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        # 1-D operands are promoted to matrices, as np.matmul does, so one rule serves all
        self.a = a[None, :] if a.ndim == 1 else a
        self.b = b[:, None] if b.ndim == 1 else b
        out = self.a @ self.b
        self.out_shape = out.shape
        if a.ndim == 1:
            out = out[..., 0, :]
        if b.ndim == 1:
            out = out[..., 0]
        return out

    def backward(self, g):
        g = g.reshape(self.out_shape)
        ga = g @ np.swapaxes(self.b, -1, -2)
        gb = np.swapaxes(self.a, -1, -2) @ g
        ga = unbroadcast(ga, self.a.shape).reshape(self.a_shape)
        gb = unbroadcast(gb, self.b.shape).reshape(self.b_shape)
        return ga, gb


class Linear(Op):
    """Fused dense layer ``x @ kernel + bias`` for ``x`` of shape (..., in).

    Shapes: x (..., in), kernel (in, out), bias (out,) -> (..., out).
    Gradients: dx = g @ kernelᵀ, dkernel = xᵀ @ g, dbias = Σ_rows g.
    """

    name = "linear"

    def forward(self, x, kernel, bias):
        self.x, self.kernel = x, kernel
        out = x @ kernel
        out += bias
        return out

    def backward(self, g):
        x = self.x
        x2 = x if x.ndim == 2 else x.reshape(-1, x.shape[-1])
        g2 = g if g.ndim == 2 else g.reshape(-1, g.shape[-1])
        # a model's input needs no gradient: skip the largest product of the first layer
        dx = g @ self.kernel.T if self.inputs[0].requires_grad else None
        return dx, x2.T @ g2, np.add.reduce(g2, axis=0)  # g2.sum(axis=0), without its Python wrapper


class Dense(Linear):
    """Fused dense layer with its activation: ``activation(x @ kernel + bias)``.

    ``activation`` is ``"relu"`` or ``"tanh"``: functions whose derivative is a function
    of their output, so the gradient needs only the saved output (relu' = ``out > 0``,
    tanh' = ``1 - out²``), then the rule of :class:`Linear`. It computes the same
    numbers as ``linear`` followed by ``relu``/``tanh``, with one graph node instead of two.
    """

    name = "dense"
    activation = "relu"

    def forward(self, x, kernel, bias):
        z = Linear.forward(self, x, kernel, bias)
        # the pre-activation is not needed again: overwrite it
        self.out = np.maximum(z, _ZERO[z.dtype], out=z) if self.activation == "relu" else np.tanh(z, out=z)
        return self.out

    def backward(self, g):
        out = self.out
        if self.activation == "relu":
            return Linear.backward(self, g * (out > _ZERO[out.dtype]))
        return Linear.backward(self, g * (1 - out * out))


# ------------------------------------------------------------------ reductions
def _expand_reduced(g, shape, axis, keepdims):
    """Re-insert reduced axes into ``g`` so it broadcasts against an input of ``shape``."""
    if not keepdims and axis is not None:
        if not shape:  # a 0-d input "reduced" over axis 0 or -1 (as NumPy allows) had no axis removed
            return g
        axes = (axis,) if np.isscalar(axis) else tuple(axis)
        g = np.expand_dims(g, tuple(a % len(shape) for a in axes))
    elif not keepdims:
        g = np.reshape(g, (1,) * len(shape))
    return g


class Sum(Op):
    name = "sum"
    axis = None
    keepdims = False

    def forward(self, a):
        self.shape = a.shape
        return np.asarray(a.sum(axis=self.axis, keepdims=self.keepdims))

    def backward(self, g):
        return (np.broadcast_to(_expand_reduced(g, self.shape, self.axis, self.keepdims), self.shape),)


class Mean(Op):
    name = "mean"
    axis = None
    keepdims = False

    def forward(self, a):
        self.shape = a.shape
        if self.axis is None and not self.keepdims:
            out = _mean_all(a)
        else:
            out = np.asarray(a.mean(axis=self.axis, keepdims=self.keepdims))
        self.count = a.size // out.size if out.size else 1
        return out

    def backward(self, g):
        if self.axis is None:
            return (np.full(self.shape, g / g.dtype.type(self.count), dtype=g.dtype),)
        g = _expand_reduced(g, self.shape, self.axis, self.keepdims) / g.dtype.type(self.count)
        return (np.broadcast_to(g, self.shape),)


class Max(Op):
    """Maximum over ``axis``; tied maxima share the gradient equally."""

    name = "max"
    axis = None
    keepdims = False

    def forward(self, a):
        self.a = a
        self.out_keep = np.asarray(a.max(axis=self.axis, keepdims=True))
        if self.keepdims:
            return self.out_keep
        return np.asarray(a.max(axis=self.axis, keepdims=False))

    def backward(self, g):
        mask = (self.a == self.out_keep).astype(self.a.dtype)
        mask /= mask.sum(axis=self.axis, keepdims=True)
        return (_expand_reduced(g, self.a.shape, self.axis, self.keepdims) * mask,)


class LogSumExp(Op):
    """``log(Σ exp(a))`` over ``axis``, computed after subtracting the max (stable)."""

    name = "logsumexp"
    axis = -1
    keepdims = False

    def forward(self, a):
        self.a = a
        shift = a.max(axis=self.axis, keepdims=True)
        shift = np.where(np.isfinite(shift), shift, 0)
        exp = np.exp(a - shift)
        total = exp.sum(axis=self.axis, keepdims=True)
        self.softmax = exp / total
        out = np.log(total) + shift
        return out if self.keepdims else np.squeeze(out, axis=self.axis)

    def backward(self, g):
        return (_expand_reduced(g, self.a.shape, self.axis, self.keepdims) * self.softmax,)


# ------------------------------------------------------------- shape movement
class Reshape(Op):
    name = "reshape"
    shape: tuple

    def forward(self, a):
        self.in_shape = a.shape
        return a.reshape(self.shape)

    def backward(self, g):
        return (g.reshape(self.in_shape),)


class Transpose(Op):
    name = "transpose"
    axes = None

    def forward(self, a):
        return np.transpose(a, self.axes)

    def backward(self, g):
        if self.axes is None:
            return (np.transpose(g),)
        # normalise negative axes first: argsort((-1, 0)) is not the inverse of that permutation
        return (np.transpose(g, np.argsort([a % g.ndim for a in self.axes])),)


class GetItem(Op):
    """``a[index]`` for basic (slices, ints) and integer-array indexing."""

    name = "getitem"
    index = None

    def forward(self, a):
        self.shape, self.dtype = a.shape, a.dtype
        return a[self.index]

    def backward(self, g):
        out = np.zeros(self.shape, dtype=self.dtype)
        # np.add.at adds repeated integer indices once per occurrence; `out[index] += g` would not
        np.add.at(out, self.index, g)
        return (out,)


# -------------------------------------------------------------- elementwise
class Exp(Op):
    name = "exp"

    def forward(self, a):
        self.out = np.exp(a)
        return self.out

    def backward(self, g):
        return (g * self.out,)


class Log(Op):
    name = "log"

    def forward(self, a):
        self.a = a
        return np.log(a)

    def backward(self, g):
        return (g / self.a,)


class Sqrt(Op):
    name = "sqrt"

    def forward(self, a):
        self.out = np.sqrt(a)
        return self.out

    def backward(self, g):
        return (g / (2 * self.out),)


class Abs(Op):
    name = "abs"

    def forward(self, a):
        self.a = a
        return np.abs(a)

    def backward(self, g):
        return (g * np.sign(self.a),)


class Maximum(Op):
    """Elementwise max of two tensors; where they tie, the gradient goes to ``a``."""

    name = "maximum"

    def forward(self, a, b):
        self.a_wins = a >= b
        self.shapes = a.shape, b.shape
        return np.maximum(a, b)

    def backward(self, g):
        ga = np.where(self.a_wins, g, 0)
        gb = np.where(self.a_wins, 0, g)
        return unbroadcast(ga, self.shapes[0]), unbroadcast(gb, self.shapes[1])


class Clip(Op):
    """Clamp to ``[low, high]``; the gradient passes only inside the interval."""

    name = "clip"
    low = None
    high = None

    def forward(self, a):
        self.inside = np.ones(a.shape, dtype=bool)
        if self.low is not None:
            self.inside &= a >= self.low
        if self.high is not None:
            self.inside &= a <= self.high
        return np.clip(a, self.low, self.high).astype(a.dtype, copy=False)

    def backward(self, g):
        return (np.where(self.inside, g, 0).astype(g.dtype, copy=False),)


class Where(Op):
    """``condition ? a : b`` elementwise; ``condition`` is a constant boolean array."""

    name = "where"
    condition = None

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return np.where(self.condition, a, b)

    def backward(self, g):
        ga = np.where(self.condition, g, 0).astype(g.dtype, copy=False)
        gb = np.where(self.condition, 0, g).astype(g.dtype, copy=False)
        return unbroadcast(ga, self.shapes[0]), unbroadcast(gb, self.shapes[1])


class Relu(Op):
    """``max(a, 0)``; its gradient at exactly 0 is 0, as in TensorFlow."""

    name = "relu"

    def forward(self, a):
        self.out = np.maximum(a, 0)
        return self.out

    def backward(self, g):
        return (g * (self.out > 0),)


def _sigmoid_from(a, e):
    """``sigmoid(a)`` given ``e = exp(-|a|)``.

    For ``a < 0`` the textbook form overflows ``exp(-a)``; ``e / (1 + e)`` is the same value, safely.
    """
    one = _ONE[e.dtype]
    # (a >= 0 ? 1 : e) / (1 + e): one division, the same quotients as 1/(1 + e) and e/(1 + e)
    out = np.where(a >= _ZERO[a.dtype], one, e) / (e + one)
    return out if out.ndim else np.asarray(out)  # 0-d operands give a NumPy scalar: keep an array


def _softmax_parts(a, axis):
    """``(a - max(a), Σ exp(a - max(a)), softmax(a))`` over ``axis`` (kept dims), stably.

    Shared by the softmax and softmax cross-entropy ops, so both compute the same numbers.
    """
    shifted = a - np.maximum.reduce(a, axis=axis, keepdims=True)  # a.max(...) without its Python wrapper
    exp = np.exp(shifted)
    total = np.add.reduce(exp, axis=axis, keepdims=True)
    return shifted, total, exp / total


class Sigmoid(Op):
    """``1 / (1 + exp(-a))``, evaluated with ``exp(-|a|)`` so it never overflows."""

    name = "sigmoid"

    def forward(self, a):
        self.e = np.exp(-np.abs(a))  # kept: a cross-entropy on the same logits reuses it
        self.out = _sigmoid_from(a, self.e).astype(a.dtype, copy=False)
        return self.out

    def backward(self, g):
        return (g * self.out * (1 - self.out),)


class Tanh(Op):
    name = "tanh"

    def forward(self, a):
        self.out = np.tanh(a)
        return self.out

    def backward(self, g):
        return (g * (1 - self.out * self.out),)


class Softmax(Op):
    """``exp(a) / Σ exp(a)`` over ``axis``, after subtracting the max (stable)."""

    name = "softmax"
    axis = -1

    def forward(self, a):
        # the shifted logits and the sum are kept: a cross-entropy on the same logits reuses them
        self.shifted, self.total, self.out = _softmax_parts(a, self.axis)
        return self.out

    def backward(self, g):
        inner = (g * self.out).sum(axis=self.axis, keepdims=True)
        return (self.out * (g - inner),)


class LogSoftmax(Op):
    """``a - logsumexp(a)`` over ``axis`` (stable; never takes log of a softmax)."""

    name = "log_softmax"
    axis = -1

    def forward(self, a):
        shift = a.max(axis=self.axis, keepdims=True)
        shifted = a - shift
        exp = np.exp(shifted)
        total = exp.sum(axis=self.axis, keepdims=True)
        self.softmax = exp / total
        return shifted - np.log(total)

    def backward(self, g):
        return (g - self.softmax * g.sum(axis=self.axis, keepdims=True),)


class Dropout(Op):
    """Inverted dropout: ``where(keep, a / (1 - rate), 0)``.

    ``keep`` is a boolean mask of ``a``'s shape (or broadcastable to it). Give it to
    hold the mask fixed (as a gradient check must); otherwise it is drawn as
    ``U >= rate`` from ``rng`` (minitensor's generator by default).
    """

    name = "dropout"
    rate = 0.5
    keep = None
    rng = None

    def forward(self, a):
        if self.keep is None:
            from .random import generator

            rng = self.rng if self.rng is not None else generator()
            self.keep = rng.random(a.shape) >= self.rate
        scale = a.dtype.type(1.0 / (1.0 - self.rate)) if self.rate < 1 else a.dtype.type(0)
        self.factor = np.where(self.keep, scale, a.dtype.type(0))
        return a * self.factor

    def backward(self, g):
        return (g * self.factor,)


# ------------------------------------------------------ fused losses (logits)
class SigmoidCrossEntropyWithLogits(Op):
    """Elementwise binary cross-entropy from logits ``z`` and targets ``labels``.

    ``relu(z) - z*y + log1p(exp(-|z|))``: finite for any ``z``; its gradient is
    ``sigmoid(z) - y`` and never saturates to zero.
    """

    name = "sigmoid_cross_entropy_with_logits"
    labels = None

    def forward(self, z):
        y = np.asarray(self.labels, dtype=z.dtype)
        self.y = y
        self.z = z
        self.e = self._exp_neg_abs(z)  # the gradient's sigmoid needs it again
        return np.maximum(z, _ZERO[z.dtype]) - z * y + np.log1p(self.e)

    def backward(self, g):
        return (unbroadcast(g * (self._sigmoid() - self.y), self.z.shape),)

    def _exp_neg_abs(self, z):
        return np.exp(-np.abs(z))

    def _sigmoid(self):
        return _sigmoid_from(self.z, self.e)


def _mean_all(a: np.ndarray) -> np.ndarray:
    """``np.asarray(a.mean())``, without ``np.mean``'s Python wrapper for float32/float64 arrays.

    The same sum; ``mean`` divides it by the count in float64 and rounds to ``a``'s dtype,
    which for float32 operands is the correctly rounded float32 quotient computed here.
    """
    if a.size == 0 or a.dtype not in _FAST_MEAN_DTYPES:
        return np.asarray(a.mean())
    cast = a.dtype.type
    return np.asarray(np.add.reduce(a, axis=None) / cast(a.size))


_FAST_MEAN_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class SigmoidCrossEntropyMean(SigmoidCrossEntropyWithLogits):
    """Binary cross-entropy from logits, reduced to a scalar as Keras's loss does by default.

    The mean over the last axis (one value per sample), then the mean over the samples:
    the same numbers as ``sigmoid_cross_entropy_with_logits`` followed by those two means,
    as one graph node. ``labels`` must have the shape of ``z``.

    ``sigmoid_op``, when given, is the :class:`Sigmoid` op applied to these same logits
    (a model's output, whose loss Keras computes from its logits): its ``exp(-|z|)``
    and its output are the values this op would compute, so they are reused.
    """

    name = "sigmoid_cross_entropy_mean"
    sigmoid_op = None  # optional: the Sigmoid op of these same logits, whose exp(-|z|) and output are reused

    def _exp_neg_abs(self, z):
        return SigmoidCrossEntropyWithLogits._exp_neg_abs(self, z) if self.sigmoid_op is None else self.sigmoid_op.e

    def _sigmoid(self):
        return SigmoidCrossEntropyWithLogits._sigmoid(self) if self.sigmoid_op is None else self.sigmoid_op.out

    def forward(self, z):
        per_element = SigmoidCrossEntropyWithLogits.forward(self, z)
        classes = z.shape[-1]
        # over an axis of length 1 the mean is a reshape (the same numbers)
        per_sample = per_element.reshape(z.shape[:-1]) if classes == 1 else per_element.mean(axis=-1)
        self.counts = per_sample.size, classes
        return _mean_all(per_sample)

    def backward(self, g):
        samples, classes = self.counts
        g = g[()]  # a NumPy scalar: the same arithmetic, cheaper on one number
        scale = g / g.dtype.type(samples)
        if classes != 1:
            scale = scale / g.dtype.type(classes)
        return SigmoidCrossEntropyWithLogits.backward(self, scale)


class SoftmaxCrossEntropyWithLogits(Op):
    """Per-sample categorical cross-entropy ``logsumexp(z) - Σ y·z`` over ``axis``.

    Gradient: ``softmax(z)·Σy - y`` (``softmax(z) - y`` for targets that sum to 1).
    """

    name = "softmax_cross_entropy_with_logits"
    labels = None
    axis = -1

    def forward(self, z):
        y = np.asarray(self.labels, dtype=z.dtype)
        shifted, total, self.softmax = self._softmax_parts(z)
        self.y = y
        self.z_shape = z.shape
        return np.add.reduce(y * (np.log(total) - shifted), axis=self.axis)

    def _softmax_parts(self, z):
        return _softmax_parts(z, self.axis)

    def backward(self, g):
        # labels of a higher rank than the logits stretch them: sum those copies' gradients
        return (unbroadcast(np.expand_dims(g, self.axis) * self._unit_gradient(), self.z_shape),)

    def _unit_gradient(self):
        """d(loss)/dz for an upstream gradient of 1 per sample: ``softmax·Σy - y`` (broadcast shape)."""
        y, softmax = self.y, self.softmax
        if y.shape != softmax.shape:  # labels may broadcast, as in forward, either way
            y, softmax = np.broadcast_arrays(y, softmax)
        total_y = y.sum(axis=self.axis, keepdims=True)
        return softmax * total_y - y


class SoftmaxCrossEntropyMean(SoftmaxCrossEntropyWithLogits):
    """Categorical cross-entropy from logits, averaged over the samples (Keras's default reduction).

    The same numbers as ``softmax_cross_entropy_with_logits`` followed by a mean, as one
    graph node. ``softmax_op``, when given, is the :class:`Softmax` op applied to these same
    logits over the same axis: its shifted logits, sum and output are reused.
    """

    name = "softmax_cross_entropy_mean"
    softmax_op = None  # optional: the Softmax op of these same logits and axis, whose pieces are reused

    def _softmax_parts(self, z):
        op = self.softmax_op
        return SoftmaxCrossEntropyWithLogits._softmax_parts(self, z) if op is None else (op.shifted, op.total, op.out)

    def forward(self, z):
        per_sample = SoftmaxCrossEntropyWithLogits.forward(self, z)
        self.samples = per_sample.size
        return _mean_all(per_sample)

    def backward(self, g):
        g = g[()]  # a NumPy scalar: the same arithmetic, cheaper on one number
        return ((g / g.dtype.type(self.samples)) * self._unit_gradient(),)


class SparseSoftmaxCrossEntropyWithLogits(Op):
    """Per-sample ``logsumexp(z) - z[label]`` over the last axis, for integer labels."""

    name = "sparse_softmax_cross_entropy_with_logits"
    labels = None

    def forward(self, z):
        labels = np.asarray(self.labels).astype(np.intp)
        shift = z.max(axis=-1, keepdims=True)
        shifted = z - shift
        exp = np.exp(shifted)
        total = exp.sum(axis=-1, keepdims=True)
        self.softmax = exp / total
        self.labels = labels
        picked = np.take_along_axis(shifted, labels[..., None], axis=-1)[..., 0]
        return np.log(total[..., 0]) - picked

    def backward(self, g):
        grad = self.softmax.copy()
        np.put_along_axis(grad, self.labels[..., None], np.take_along_axis(grad, self.labels[..., None], -1) - 1, -1)
        return (g[..., None] * grad,)


# ============================================================ functional API
def _check_axis(x: Tensor, axis, argument="axis"):
    if axis is None:
        return None
    axes = (axis,) if np.isscalar(axis) else tuple(axis)
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or not -builtins.max(x.ndim, 1) <= a < builtins.max(x.ndim, 1):
            raise ValueError(
                f"Expected `{argument}` to be an integer in [-{x.ndim}, {x.ndim}) for a tensor of shape {x.shape}. "
                f"Received: {argument}={axis!r}"
            )
    return axis if np.isscalar(axis) else tuple(int(a) for a in axis)


def add(a, b) -> Tensor:
    """Elementwise ``a + b`` with NumPy broadcasting."""
    return Add.apply(a, b)


def sub(a, b) -> Tensor:
    """Elementwise ``a - b`` with NumPy broadcasting."""
    return Sub.apply(a, b)


def mul(a, b) -> Tensor:
    """Elementwise ``a * b`` with NumPy broadcasting."""
    return Mul.apply(a, b)


def div(a, b) -> Tensor:
    """Elementwise ``a / b`` with NumPy broadcasting."""
    return Div.apply(a, b)


def neg(a) -> Tensor:
    """``-a``."""
    return Neg.apply(a)


def pow(a, exponent) -> Tensor:  # noqa: A001 - mirrors the operator's name
    """``a ** exponent`` for a constant number ``exponent``.

    Example:
        >>> pow(Tensor([3.0]), 2).data
        array([9.], dtype=float32)
    """
    if isinstance(exponent, Tensor) or not np.isscalar(exponent) or isinstance(exponent, (str, bool)):
        raise TypeError(
            "Expected `exponent` to be a constant Python or NumPy number. "
            f"Received: exponent of type {type(exponent).__name__}"
        )
    return Pow.apply(a, exponent=float(exponent))


def matmul(a, b) -> Tensor:
    """Matrix product ``a @ b`` (1-D, 2-D or batched), as ``np.matmul``.

    Raises:
        ValueError: if the contracted dimensions differ.

    Example:
        >>> matmul(Tensor(np.ones((2, 3))), Tensor(np.ones((3, 4)))).shape
        (2, 4)
    """
    a_shape = a.shape if isinstance(a, (Tensor, np.ndarray)) else np.shape(a)
    b_shape = b.shape if isinstance(b, (Tensor, np.ndarray)) else np.shape(b)
    if len(a_shape) == 0 or len(b_shape) == 0:
        raise ValueError(f"matmul needs operands with at least one dimension. Received: shapes {a_shape} and {b_shape}")
    k_b = b_shape[0] if len(b_shape) == 1 else b_shape[-2]
    if a_shape[-1] != k_b:
        raise ValueError(
            "Expected the last dimension of `a` to equal the second-to-last of `b` in matmul. "
            f"Received: a.shape={a_shape}, b.shape={b_shape}"
        )
    return MatMul.apply(a, b)


def linear(x, kernel, bias) -> Tensor:
    """Fused ``x @ kernel + bias`` (a dense layer without activation).

    Args:
        x: (..., in). kernel: (in, out). bias: (out,).

    Example:
        >>> linear(Tensor(np.ones((2, 3))), Tensor(np.ones((3, 4))), Tensor(np.zeros(4))).shape
        (2, 4)
    """
    if x.shape[-1] != kernel.shape[0]:
        raise ValueError(
            f"Expected inputs with last dimension {kernel.shape[0]} (the kernel's input size). "
            f"Received: inputs.shape={x.shape}"
        )
    return Linear.apply(x, kernel, bias)


_DENSE_ACTIVATIONS = ("relu", "tanh")


def dense(x, kernel, bias, activation="relu") -> Tensor:
    """Fused ``activation(x @ kernel + bias)`` for ``activation`` ``"relu"`` or ``"tanh"``.

    The same numbers as ``relu(linear(x, kernel, bias))`` (or ``tanh``), as one graph node.

    Args:
        x: (..., in). kernel: (in, out). bias: (out,).
        activation: ``"relu"`` (default) or ``"tanh"``.

    Example:
        >>> dense(Tensor([[1.0, -2.0]]), Tensor([[1.0, 0.0], [0.0, 1.0]]), Tensor([0.0, 0.0])).data
        array([[1., 0.]], dtype=float32)
    """
    if activation not in _DENSE_ACTIVATIONS:
        raise ValueError(
            f"Expected `activation` to be one of {_DENSE_ACTIVATIONS}. Received: activation={activation!r}"
        )
    if x.shape[-1] != kernel.shape[0]:
        raise ValueError(
            f"Expected inputs with last dimension {kernel.shape[0]} (the kernel's input size). "
            f"Received: inputs.shape={x.shape}"
        )
    return Dense.apply(x, kernel, bias, activation=activation)


def sum(a, axis=None, keepdims=False) -> Tensor:  # noqa: A001
    """Sum over ``axis`` (all axes when ``None``)."""
    a = _as_tensors((a,))[0]
    return Sum.apply(a, axis=_check_axis(a, axis), keepdims=bool(keepdims))


def mean(a, axis=None, keepdims=False) -> Tensor:
    """Mean over ``axis`` (all axes when ``None``)."""
    a = _as_tensors((a,))[0]
    return Mean.apply(a, axis=_check_axis(a, axis), keepdims=bool(keepdims))


def max(a, axis=None, keepdims=False) -> Tensor:  # noqa: A001
    """Maximum over ``axis``; tied maxima share the gradient equally."""
    a = _as_tensors((a,))[0]
    return Max.apply(a, axis=_check_axis(a, axis), keepdims=bool(keepdims))


def logsumexp(a, axis=-1, keepdims=False) -> Tensor:
    """Stable ``log(sum(exp(a), axis))``.

    Example:
        >>> float(logsumexp(Tensor([1000.0, 1000.0])).item()) - 1000.0 < 1
        True
    """
    a = _as_tensors((a,))[0]
    return LogSumExp.apply(a, axis=_check_axis(a, axis), keepdims=bool(keepdims))


def reshape(a, shape) -> Tensor:
    """Reshape to ``shape`` (one entry may be -1)."""
    return Reshape.apply(a, shape=tuple(shape) if not np.isscalar(shape) else (int(shape),))


def transpose(a, axes=None) -> Tensor:
    """Permute axes (reverse them when ``axes`` is ``None``)."""
    return Transpose.apply(a, axes=None if axes is None else tuple(axes))


def getitem(a, index) -> Tensor:
    """``a[index]`` with basic or integer-array indexing."""
    if isinstance(index, Tensor):
        index = index.data.astype(np.intp)
    elif isinstance(index, list):
        index = np.asarray(index)
    return GetItem.apply(a, index=index)


def exp(a) -> Tensor:
    """Elementwise ``e ** a``."""
    return Exp.apply(a)


def log(a) -> Tensor:
    """Elementwise natural logarithm (defined for ``a > 0``)."""
    return Log.apply(a)


def sqrt(a) -> Tensor:
    """Elementwise square root (differentiable for ``a > 0``)."""
    return Sqrt.apply(a)


def abs(a) -> Tensor:  # noqa: A001
    """Elementwise ``|a|`` (gradient ``sign(a)``, 0 at 0)."""
    return Abs.apply(a)


def maximum(a, b) -> Tensor:
    """Elementwise maximum of two tensors (ties send the gradient to ``a``)."""
    return Maximum.apply(a, b)


def clip(a, low=None, high=None) -> Tensor:
    """Clamp values to ``[low, high]``; the gradient passes only inside (bounds included).

    Args:
        a: Tensor.
        low, high: ``None`` (no bound), a number, or an array (or Tensor) that broadcasts
            to ``a``'s shape, elementwise bounds. Bounds are constants: the gradient is
            taken with respect to ``a`` only.

    Raises:
        ValueError: if ``low > high`` anywhere, or a bound does not broadcast to ``a``'s shape.
        TypeError: if a bound is a Tensor that requires grad.

    Example:
        >>> clip(Tensor([-2.0, 0.5, 3.0]), np.array([-1.0, 0.0, 0.0]), 1.0).data
        array([-1. ,  0.5,  1. ], dtype=float32)
    """
    a = _as_tensors((a,))[0]
    low, high = _clip_bound(low, "low", a), _clip_bound(high, "high", a)
    if low is not None and high is not None and np.any(low > high):
        if np.ndim(low) == 0 and np.ndim(high) == 0:
            raise ValueError(f"Expected low <= high in clip. Received: low={low}, high={high}")
        where = np.argwhere(np.broadcast_to(low > high, np.broadcast_shapes(np.shape(low), np.shape(high))))[0]
        raise ValueError(
            f"Expected low <= high everywhere in clip. Received: low > high at index {tuple(int(i) for i in where)}"
        )
    return Clip.apply(a, low=low, high=high)


def _clip_bound(bound, argument, a: Tensor):
    """A clip bound as a number or an array of ``a``'s dtype that broadcasts to ``a``'s shape."""
    if bound is None:
        return None
    if isinstance(bound, Tensor):
        if bound.requires_grad:
            raise TypeError(
                f"clip does not differentiate with respect to its bounds: pass `{argument}` as an array, or "
                f"`{argument}.detach()`. Received: a Tensor {argument} that requires grad"
            )
        bound = bound.data
    if np.ndim(bound) == 0:
        return bound
    array = np.asarray(bound, dtype=a.dtype)
    try:
        fits = np.broadcast_shapes(a.shape, array.shape) == a.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"Expected `{argument}` to broadcast to the shape of the tensor clipped, {a.shape}. "
            f"Received: {argument}.shape={array.shape}"
        )
    return array


def where(condition, a, b) -> Tensor:
    """Pick ``a`` where ``condition`` is true, else ``b`` (``condition`` is not differentiated)."""
    if isinstance(condition, Tensor):
        condition = condition.data
    return Where.apply(a, b, condition=np.asarray(condition, dtype=bool))


def relu(a) -> Tensor:
    """Rectified linear unit ``max(a, 0)``."""
    return Relu.apply(a)


def sigmoid(a) -> Tensor:
    """Logistic sigmoid, stable for any input. The result remembers its logits.

    Like Keras, the output carries ``_keras_logits`` (its input), so a
    cross-entropy loss can use the exact logits formula instead of clipping.
    """
    if not isinstance(a, Tensor):
        a = _as_tensors((a,))[0]
    out = Sigmoid.apply(a)
    out._keras_logits = a
    return out


def tanh(a) -> Tensor:
    """Hyperbolic tangent."""
    return Tanh.apply(a)


def softmax(a, axis=-1) -> Tensor:
    """Stable softmax over ``axis``. The result remembers its logits (see :func:`sigmoid`)."""
    if not isinstance(a, Tensor):
        a = _as_tensors((a,))[0]
    out = Softmax.apply(a, axis=_check_axis(a, axis))
    out._keras_logits = a
    return out


def log_softmax(a, axis=-1) -> Tensor:
    """Stable ``log(softmax(a))`` over ``axis``."""
    a = _as_tensors((a,))[0]
    return LogSoftmax.apply(a, axis=_check_axis(a, axis))


def dropout(a, rate, keep=None, rng=None) -> Tensor:
    """Inverted dropout with drop probability ``rate``.

    Args:
        a: input tensor.
        rate: float in [0, 1]: the fraction of units set to zero.
        keep: optional boolean mask (True = keep), broadcastable to ``a``; drawn when omitted.
        rng: generator for the mask (minitensor's by default).

    Example:
        >>> dropout(Tensor([2.0, 2.0]), 0.5, keep=np.array([True, False])).data
        array([4., 0.], dtype=float32)
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not 0 <= rate <= 1:
        raise ValueError(f"Expected `rate` to be a number in [0, 1]. Received: rate={rate!r}")
    if keep is not None:
        keep = np.asarray(keep, dtype=bool)
    return Dropout.apply(a, rate=float(rate), keep=keep, rng=rng)


def sigmoid_cross_entropy_with_logits(labels, logits) -> Tensor:
    """Elementwise binary cross-entropy of targets ``labels`` and ``logits`` (stable)."""
    labels = labels.data if isinstance(labels, Tensor) else labels
    return SigmoidCrossEntropyWithLogits.apply(logits, labels=labels)


def softmax_cross_entropy_with_logits(labels, logits, axis=-1) -> Tensor:
    """Per-sample categorical cross-entropy of (one-hot or soft) ``labels`` and ``logits``.

    Args:
        labels: targets whose shape broadcasts with the logits' (either may have more
            leading axes: the loss is that of the broadcast pair).
        logits: Tensor.
        axis: the class axis of ``logits``.

    Returns:
        The broadcast shape without ``axis``.

    Example:
        >>> labels = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> softmax_cross_entropy_with_logits(labels, Tensor([0.0, 0.0])).data.round(4)
        array([0.6931, 0.6931], dtype=float32)
    """
    labels = labels.data if isinstance(labels, Tensor) else labels
    logits = _as_tensors((logits,))[0]
    if logits.ndim == 0:
        raise ValueError("Expected `logits` of rank >= 1 (a class axis) in softmax_cross_entropy_with_logits. Received: shape ()")
    axis = _check_axis(logits, axis)
    if not np.isscalar(axis):
        raise ValueError(f"Expected `axis` to be one integer (the class axis). Received: axis={axis!r}")
    labels_shape = np.shape(labels)
    try:
        np.broadcast_shapes(labels_shape, logits.shape)
    except ValueError:
        raise ValueError(
            "Expected `labels` whose shape broadcasts with the logits' in softmax_cross_entropy_with_logits. "
            f"Received: labels.shape={labels_shape}, logits.shape={logits.shape}"
        ) from None
    # counted from the end, the class axis is the same one in the logits and in the broadcast pair
    axis = int(axis) - logits.ndim if axis >= 0 else int(axis)
    return SoftmaxCrossEntropyWithLogits.apply(logits, labels=labels, axis=axis)


def _check_same_shape(labels, logits, fn_name):
    labels_shape = labels.shape if isinstance(labels, np.ndarray) else np.shape(labels)
    if labels_shape != logits.shape or len(labels_shape) == 0:
        raise ValueError(
            f"Expected `labels` and `logits` of the same shape, of rank >= 1, in {fn_name}. "
            f"Received: labels.shape={labels_shape}, logits.shape={logits.shape}"
        )


def sigmoid_cross_entropy_mean(labels, logits) -> Tensor:
    """Binary cross-entropy from ``logits``: mean over the last axis, then over the rest (a scalar).

    Args:
        labels: targets in [0, 1], the shape of ``logits`` (rank >= 1).
        logits: Tensor.

    Example:
        >>> round(sigmoid_cross_entropy_mean(np.array([[1.0], [0.0]]), Tensor([[0.0], [0.0]])).item(), 4)
        0.6931
    """
    labels = labels.data if isinstance(labels, Tensor) else labels
    logits = _as_tensors((logits,))[0]
    _check_same_shape(labels, logits, "sigmoid_cross_entropy_mean")
    return SigmoidCrossEntropyMean.apply(logits, labels=labels)


def softmax_cross_entropy_mean(labels, logits, axis=-1) -> Tensor:
    """Categorical cross-entropy from ``logits`` over ``axis``, averaged over the samples (a scalar).

    Args:
        labels: one-hot or soft targets, the shape of ``logits`` (rank >= 1).
        logits: Tensor. axis: the class axis.

    Example:
        >>> round(softmax_cross_entropy_mean(np.array([[1.0, 0.0]]), Tensor([[0.0, 0.0]])).item(), 4)
        0.6931
    """
    labels = labels.data if isinstance(labels, Tensor) else labels
    logits = _as_tensors((logits,))[0]
    _check_same_shape(labels, logits, "softmax_cross_entropy_mean")
    return SoftmaxCrossEntropyMean.apply(logits, labels=labels, axis=_check_axis(logits, axis))


def sparse_softmax_cross_entropy_with_logits(labels, logits) -> Tensor:
    """Per-sample cross-entropy of integer class ``labels`` and ``logits`` (last axis)."""
    labels = labels.data if isinstance(labels, Tensor) else labels
    return SparseSoftmaxCrossEntropyWithLogits.apply(logits, labels=labels)

