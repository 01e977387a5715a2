"""``Tensor``: an ndarray that remembers how it was made, and reverse-mode autograd.

A Tensor wraps ``data`` (a NumPy array, float32 by default). When it comes out of
an op and any input ``requires_grad``, it keeps that op (``_op``), which holds its
inputs and whatever its gradient needs. ``backward()`` walks that graph once, in
reverse topological order, calling each op's gradient rule (see ``ops.py``).

Gradients **accumulate** in ``.grad`` of leaf tensors across ``backward()`` calls,
as in PyTorch: call ``zero_grad()`` (or set ``.grad = None``) between steps.
Only leaves (tensors not produced by an op) keep a ``.grad``.

Example:
    >>> import minitensor as mt
    >>> x = mt.Tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad
    array([2., 4., 6.], dtype=float32)
"""

from __future__ import annotations

import numpy as np

__all__ = ["Tensor", "no_grad", "is_grad_enabled", "as_tensor"]

_grad_enabled = True


def is_grad_enabled() -> bool:
    """Return whether new ops record the graph (False inside ``no_grad()``)."""
    return _grad_enabled


class no_grad:
    """Context manager (and decorator) under which ops record no graph.

    Example:
        >>> x = Tensor([1.0], requires_grad=True)
        >>> with no_grad():
        ...     y = x * 2
        >>> y.requires_grad
        False
    """

    def __enter__(self):
        global _grad_enabled
        self._previous = _grad_enabled
        _grad_enabled = False
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous
        return False

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)

        wrapper.__name__ = getattr(fn, "__name__", "wrapper")
        wrapper.__doc__ = getattr(fn, "__doc__", None)
        return wrapper


def _to_array(data, dtype=None) -> np.ndarray:
    """Convert user data to a float ndarray, with a clear error for non-numbers."""
    if isinstance(data, Tensor):
        data = data.data
    explicit_float64 = isinstance(data, (np.ndarray, np.floating)) and data.dtype == np.float64
    try:
        array = np.asarray(data)
    except (ValueError, TypeError) as error:
        raise TypeError(
            f"Expected numeric data (a number, nested list or NumPy array) for a Tensor. "
            f"Received: data of type {type(data).__name__} ({error})"
        ) from None
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"Expected a floating dtype such as 'float32' or 'float64'. Received: dtype={dtype}")
    elif array.dtype.kind == "f" and (explicit_float64 or array.dtype != np.float64):
        dtype = array.dtype
    elif array.dtype.kind in "biuf":
        dtype = np.dtype(np.float32)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            "Expected numeric data (bool, integer or floating point) for a Tensor. "
            f"Received: data with dtype {array.dtype} (e.g. {array.ravel()[:1].tolist()!r})"
        )
    return np.asarray(array, dtype=dtype)


class Tensor:
    """A multi-dimensional array with reverse-mode automatic differentiation.

    Args:
        data: a number, nested list, NumPy array or Tensor. Python data becomes
            float32; a float64 NumPy array stays float64; integers and booleans
            become float32.
        requires_grad: whether ``backward()`` should compute ``.grad`` for it.
        dtype: force a floating dtype (``"float32"`` or ``"float64"``).

    Attributes:
        data: the values, an ``np.ndarray``.
        grad: the accumulated gradient (same shape), or ``None`` before any backward.
        requires_grad: see above.

    Example:
        >>> w = Tensor([[1.0, 2.0]], requires_grad=True)
        >>> loss = (w @ Tensor([[3.0], [4.0]])).sum()
        >>> loss.item()
        11.0
        >>> loss.backward(); w.grad
        array([[3., 4.]], dtype=float32)
    """

    __slots__ = ("data", "grad", "requires_grad", "name", "_op", "_keras_logits", "__weakref__")
    __array_ufunc__ = None  # make `ndarray + Tensor` call Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data = _to_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.name = None
        self._op = None
        self._keras_logits = None

    @classmethod
    def _from_op(cls, data: np.ndarray, op) -> "Tensor":
        """Wrap an op's output without re-validating it (the hot path)."""
        out = cls.__new__(cls)
        out.data = data
        out.grad = None
        out.name = None
        out._keras_logits = None
        out.requires_grad = op is not None
        out._op = op
        return out

    # ----------------------------------------------------------------- basics
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def T(self) -> "Tensor":
        from . import ops

        return ops.transpose(self)

    @property
    def is_leaf(self) -> bool:
        return self._op is None

    def numpy(self) -> np.ndarray:
        """Return the underlying array (not a copy)."""
        return self.data

    def item(self) -> float:
        """Return the value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"Expected a tensor with exactly one element for item(). Received: shape={self.shape}")
        return self.data.item()

    def detach(self) -> "Tensor":
        """Return a new leaf Tensor sharing ``data``, cut from the graph."""
        out = Tensor._from_op(self.data, None)
        return out

    def zero_grad(self) -> None:
        """Reset ``.grad`` to zeros in place (kept as an array so views stay valid)."""
        if self.grad is not None:
            self.grad[...] = 0

    def __len__(self) -> int:
        return len(self.data)

    def __float__(self) -> float:
        return float(self.item())

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        body = np.array2string(self.data, separator=", ", prefix="Tensor(")
        return f"Tensor({body}, dtype={self.dtype}{grad})"

    # --------------------------------------------------------------- backward
    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) into ``.grad`` of every leaf that requires grad.

        Args:
            grad: the upstream gradient, same shape as ``self``. May be omitted
                only when ``self`` has exactly one element (it defaults to 1).

        Raises:
            ValueError: if ``self`` does not require grad, or is not a scalar and
                no ``grad`` is given, or ``grad`` has the wrong shape.

        Example:
            >>> x = Tensor([1.0, 2.0], requires_grad=True)
            >>> (x * 3).backward(np.ones(2, dtype=np.float32)); x.grad
            array([3., 3.], dtype=float32)
        """
        if not self.requires_grad:
            raise ValueError(
                "Expected a tensor that requires grad for backward(): it must come from an op on a tensor "
                "created with requires_grad=True. Received: a tensor with requires_grad=False"
            )
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    "backward() without an upstream gradient needs a scalar (one-element) tensor. "
                    f"Pass grad= with the output's shape. Received: shape={self.shape}"
                )
            grad = np.array(1, dtype=self.data.dtype)  # np.ones_like, for one element, without its Python wrapper
            if self.data.ndim:
                grad = grad.reshape(self.data.shape)
        else:
            grad = _to_array(grad, self.dtype)
            if grad.shape != self.shape:
                raise ValueError(
                    f"Expected `grad` with the shape of the tensor, {self.shape}. Received: grad.shape={grad.shape}"
                )

        if self._op is None:  # a leaf: its gradient is the upstream one
            _accumulate_leaf(self, grad)
            return
        _backpropagate(self, grad)

    # -------------------------------------------------------------- operators
    def __add__(self, other):
        from . import ops

        return ops.add(self, other)

    def __radd__(self, other):
        from . import ops

        return ops.add(other, self)

    def __sub__(self, other):
        from . import ops

        return ops.sub(self, other)

    def __rsub__(self, other):
        from . import ops

        return ops.sub(other, self)

    def __mul__(self, other):
        from . import ops

        return ops.mul(self, other)

    def __rmul__(self, other):
        from . import ops

        return ops.mul(other, self)

    def __truediv__(self, other):
        from . import ops

        return ops.div(self, other)

    def __rtruediv__(self, other):
        from . import ops

        return ops.div(other, self)

    def __matmul__(self, other):
        from . import ops

        return ops.matmul(self, other)

    def __rmatmul__(self, other):
        from . import ops

        return ops.matmul(other, self)

    def __pow__(self, exponent):
        from . import ops

        return ops.pow(self, exponent)

    def __neg__(self):
        from . import ops

        return ops.neg(self)

    def __getitem__(self, index):
        from . import ops

        return ops.getitem(self, index)

    # ------------------------------------------------------- method shortcuts
    def sum(self, axis=None, keepdims=False):
        from . import ops

        return ops.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        from . import ops

        return ops.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        from . import ops

        return ops.max(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        from . import ops

        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.reshape(self, shape)

    def transpose(self, *axes):
        from . import ops

        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return ops.transpose(self, axes or None)


def as_tensor(value, dtype=None) -> Tensor:
    """Return ``value`` if it is a Tensor, else a constant Tensor of it.

    Args:
        value: a Tensor, number, list or array.
        dtype: dtype for a new Tensor (ignored when ``value`` already is one).

    Example:
        >>> as_tensor(2.0).shape
        ()
    """
    if isinstance(value, Tensor):
        return value
    return Tensor(value, dtype=dtype)


def _topological_order(root: Tensor) -> list:
    """Op outputs reachable from ``root`` through tensors that need grad, outputs before inputs.

    Leaves are left out: they have no inputs, so dropping them does not change the
    relative order of the op outputs (and so neither the order in which gradients are
    summed). A chain (each op with at most one such input, as a model's layers) is
    walked directly; other graphs get the depth-first order of :func:`_depth_first_order`.
    """
    order = [root]
    node = root
    while True:
        below = None
        for parent in node._op.inputs:
            if parent._op is not None and parent.requires_grad:
                if below is not None:  # two op inputs: not a chain
                    return _depth_first_order(root)
                below = parent
        if below is None:
            return order
        order.append(below)
        node = below


def _depth_first_order(root: Tensor) -> list:
    """:func:`_topological_order` for any graph: reverse post-order of a depth-first search.

    Iterative, so a 10,000-op chain does not hit the recursion limit.
    """
    order = []
    expanded = set()
    stack = [root]
    append, pop = stack.append, stack.pop
    while stack:
        node = pop()
        if node is None:  # the marker pushed below: the node under it has all its inputs done
            order.append(pop())
            continue
        key = id(node)
        if key in expanded:
            continue
        expanded.add(key)
        append(node)
        append(None)
        for parent in node._op.inputs:
            if parent._op is not None and parent.requires_grad and id(parent) not in expanded:
                append(parent)
    order.reverse()
    return order


def _backpropagate(root: Tensor, grad: np.ndarray) -> None:
    """Run every op's gradient rule from ``root`` (an op output) back to the leaves.

    Each tensor's gradient is the sum of its consumers' contributions, added in the
    order the consumers are visited; a leaf's sum is added to its ``.grad`` at the end.
    """
    grads = {id(root): grad}
    leaves = []
    for node in _topological_order(root):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        op = node._op
        for parent, parent_grad in zip(op.inputs, op.backward(g)):
            if parent_grad is None or not parent.requires_grad:
                continue
            key = id(parent)
            previous = grads.get(key)
            if previous is None:
                grads[key] = parent_grad
                if parent._op is None:
                    leaves.append(parent)
            else:
                # never add in place: an op may hand the same array to several inputs
                grads[key] = previous + parent_grad
    for leaf in leaves:
        g, current = grads[id(leaf)], leaf.grad
        if current is not None and g.shape == leaf.data.shape:
            current += g  # in place, so a .grad that is a view into a flat buffer stays one
        else:
            _accumulate_leaf(leaf, g)


def _accumulate_leaf(leaf: Tensor, grad: np.ndarray) -> None:
    if grad.shape != leaf.data.shape:  # a rule returned a broadcast view; materialise it
        grad = np.broadcast_to(grad, leaf.data.shape)
    if leaf.grad is None:
        leaf.grad = np.array(grad, dtype=leaf.data.dtype, copy=True)
    else:
        leaf.grad += grad
