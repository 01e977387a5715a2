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
            grad = np.ones_like(self.data)
        else:
            grad = _to_array(grad, self.dtype)
            if grad.shape != self.shape:
                raise ValueError(
                    f"Expected `grad` with the shape of the tensor, {self.shape}. Received: grad.shape={grad.shape}"
                )

        order = _topological_order(self)
        grads = {id(self): grad}
        for node in order:
            g = grads.pop(id(node), None)
            if g is None:
                continue
            op = node._op
            if op is None:
                _accumulate_leaf(node, g)
                continue
            for parent, parent_grad in zip(op.inputs, op.backward(g)):
                if parent_grad is None or not parent.requires_grad:
                    continue
                key = id(parent)
                previous = grads.get(key)
                # never add in place: an op may hand the same array to several inputs
                grads[key] = parent_grad if previous is None else previous + parent_grad

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
    """Tensors reachable from ``root`` through ops that need grad, outputs before inputs.

    Iterative depth-first search, so a 10,000-op chain does not hit the recursion limit.
    """
    order = []
    expanded = set()
    stack = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in expanded:
            continue
        expanded.add(id(node))
        stack.append((node, True))
        op = node._op
        if op is not None:
            for parent in op.inputs:
                if parent.requires_grad and id(parent) not in expanded:
                    stack.append((parent, False))
    order.reverse()
    return order


def _accumulate_leaf(leaf: Tensor, grad: np.ndarray) -> None:
    if grad.shape != leaf.data.shape:  # a rule returned a broadcast view; materialise it
        grad = np.broadcast_to(grad, leaf.data.shape)
    if leaf.grad is None:
        leaf.grad = np.array(grad, dtype=leaf.data.dtype, copy=True)
    else:
        leaf.grad += grad
