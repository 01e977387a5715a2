"""``Tensor``: an ndarray that remembers how it was made, and reverse-mode autograd.

A Tensor wraps ``data`` (a NumPy array, float32 by default). When it comes out of
an op and any input ``requires_grad``, it keeps that op (``_op``), which holds its
inputs and whatever its gradient needs. ``backward()`` walks that graph once, in
reverse topological order, calling each op's gradient rule (see ``ops.py``).

Gradients **accumulate** in ``.grad`` of leaf tensors across ``backward()`` calls,
as in PyTorch: call ``zero_grad()`` (or set ``.grad = None``) between steps.
Only leaves (tensors not produced by an op) keep a ``.grad``, unless a non-leaf asks
for it with ``retain_grad()``. ``register_hook(fn)`` shows (or replaces) a tensor's
gradient while ``backward()`` runs.

The graph is public: ``t.op`` is the op that made ``t`` (``None`` for a leaf),
``t.inputs`` the tensors that op was applied to, ``t.is_leaf`` whether it has no op.

Example:
    >>> import minitensor as mt
    >>> x = mt.Tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad
    array([2., 4., 6.], dtype=float32)
"""

from __future__ import annotations

import itertools
import threading

import numpy as np

__all__ = ["Tensor", "no_grad", "is_grad_enabled", "as_tensor", "RemovableHandle"]

# Grad mode is per thread: the no_grad() depth of each thread that is inside one, by thread
# ident. Ops read it on every call, so the usual case, no thread inside no_grad(), costs one
# test of an empty dict (a threading.local attribute costs more); each thread writes only its
# own key. A new thread starts outside, whatever the thread that started it was doing.
_no_grad_depth: dict = {}
_get_ident = threading.get_ident


def is_grad_enabled() -> bool:
    """Return whether new ops record the graph in this thread (False inside ``no_grad()``).

    Grad mode is per thread: ``no_grad()`` in one thread does not change another's.

    Example:
        >>> is_grad_enabled()
        True
    """
    return not _no_grad_depth or _get_ident() not in _no_grad_depth


class no_grad:
    """Context manager (and decorator) under which ops record no graph, in this thread.

    Grad mode is per thread: other threads keep recording while one runs inside
    ``no_grad()``, and a new thread starts with recording on. Blocks nest, and one
    ``no_grad`` object may be entered by several threads at once.

    Example:
        >>> x = Tensor([1.0], requires_grad=True)
        >>> with no_grad():
        ...     y = x * 2
        >>> y.requires_grad
        False
    """

    def __enter__(self):
        ident = _get_ident()
        _no_grad_depth[ident] = _no_grad_depth.get(ident, 0) + 1
        return self

    def __exit__(self, *exc):
        ident = _get_ident()
        depth = _no_grad_depth.get(ident, 0)
        if depth > 1:
            _no_grad_depth[ident] = depth - 1
        else:  # (absent only when a generator that entered in another thread is closed here)
            _no_grad_depth.pop(ident, None)
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
        data = data._data
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
            Kept for leaves, and for non-leaves that called :meth:`retain_grad`.
        requires_grad: see above.
        name: an optional label (``None`` by default), shown by ``repr`` and graph drawings.
        op: the op that made this tensor, ``None`` for a leaf (see :attr:`op`).
        inputs: the tensors ``op`` was applied to, ``()`` for a leaf.

    Example:
        >>> w = Tensor([[1.0, 2.0]], requires_grad=True)
        >>> loss = (w @ Tensor([[3.0], [4.0]])).sum()
        >>> loss.item()
        11.0
        >>> loss.backward(); w.grad
        array([[3., 4.]], dtype=float32)
    """

    __slots__ = (
        "_data", "grad", "requires_grad", "name", "_op", "_keras_logits", "_hooks",
        "_stamp", "_watch", "_snap", "__weakref__",
    )
    __array_ufunc__ = None  # make `ndarray + Tensor` call Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self._data = _to_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.name = None
        self._op = None
        self._keras_logits = None
        self._hooks = None  # a _Hooks once register_hook() or retain_grad() is called
        # in-place change detection (see `data`): when the op that made it was recorded (0 for a
        # leaf); the stamp of the latest op that saved it while that op awaits backward() and no
        # snapshot was taken since (else 0); the latest snapshot of its values: (array, bytes,
        # stamp of the snapshot, stamp of the latest new array assigned to .data before it)
        self._stamp = self._watch = 0
        self._snap = None

    @classmethod
    def _from_op(cls, data: np.ndarray, op, stamp: int = 0) -> "Tensor":
        """Wrap an op's output without re-validating it (the hot path); ``stamp``: when ``op`` was recorded."""
        out = cls.__new__(cls)
        out._data = data
        out.grad = None
        out.name = None
        out._keras_logits = None
        out._hooks = None
        out._snap = None
        out._watch = 0
        out._stamp = stamp
        out.requires_grad = op is not None
        out._op = op
        return out

    # ------------------------------------------------------------------- data
    @property
    def data(self) -> np.ndarray:
        """The values, an ``np.ndarray`` (0-d for a scalar), shared, not copied.

        Changing it in place after an op saved it as an input (the forward pass) and
        before ``backward()`` would make that op's gradient wrong: ``backward()`` raises a
        ``RuntimeError`` naming the op and the input instead. It sees every change made
        through ``.data`` (``t.data[...] = x``, ``t.data += x``, or an array taken from
        ``t.data`` after the op): the first read of ``.data`` of a tensor that an op saved
        and ``backward()`` has not yet been through keeps a copy of its values, and
        ``backward()`` compares. It cannot see writes through arrays that share memory but
        were taken before the op saved the tensor: the NumPy array the tensor was made
        from, ``t.data`` kept from before, another tensor's ``.data`` (``t.detach()``
        shares it), a flat parameter buffer; nor changes made after the first
        ``backward()`` through the op, nor a change to the tensor ``backward()`` starts
        from (it is no op's input). Assigning a new array (``t.data = other``) is not an
        in-place change: ops keep the array they saw. See ``docs/custom-ops.md``.

        Example:
            >>> v = Tensor([1.0, 2.0], requires_grad=True)
            >>> y = (v * v).sum()
            >>> v.data[...] = 100
            >>> y.backward()  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            RuntimeError: The op mul saved its input 0 (tensor of shape (2,), a leaf) for its gradient, and its values were changed in place after the forward pass (found at backward())...
        """
        if self._watch:  # an op saved it, awaits backward(), and no snapshot was taken since
            _take_snapshot(self)
        return self._data

    @data.setter
    def data(self, value) -> None:
        if value is self._data:  # `t.data += x` (the values changed in place: the snapshot sees it)
            return
        self._data = value
        # ops that saved the old array keep it: nothing to watch, and no snapshot of this new
        # array is to be compared for them (their stamps are older than this one)
        self._snap = (None, None, 0, next(_clock))
        self._watch = 0

    # ----------------------------------------------------------------- basics
    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def T(self) -> "Tensor":
        from . import ops

        return ops.transpose(self)

    @property
    def is_leaf(self) -> bool:
        """Whether this tensor was not made by a recorded op (a leaf of the graph).

        Example:
            >>> x = Tensor([1.0], requires_grad=True)
            >>> x.is_leaf, (x * 2).is_leaf
            (True, False)
        """
        return self._op is None

    @property
    def op(self):
        """The :class:`~minitensor.ops.Op` that made this tensor, or ``None`` for a leaf.

        Only ops recorded in the graph are kept: under ``no_grad()``, or when no input
        requires grad, the result is a leaf.

        Example:
            >>> x = Tensor([[1.0, -2.0]], requires_grad=True)
            >>> y = x * 2
            >>> y.op
            mul(input shapes: (1, 2), ())
            >>> y.op.name, x.op is None
            ('mul', True)
        """
        return self._op

    @property
    def inputs(self) -> tuple:
        """The tensors :attr:`op` was applied to, in order (``()`` for a leaf).

        Example:
            >>> x = Tensor([1.0], requires_grad=True)
            >>> y = x * 3
            >>> y.inputs[0] is x, y.inputs[1].item()
            (True, 3.0)
        """
        return () if self._op is None else tuple(self._op.inputs)

    def numpy(self) -> np.ndarray:
        """Return the underlying array (not a copy): the same as :attr:`data`."""
        return self.data

    def item(self) -> float:
        """Return the value of a one-element tensor as a Python number."""
        if self._data.size != 1:
            raise ValueError(f"Expected a tensor with exactly one element for item(). Received: shape={self.shape}")
        return self._data.item()

    def detach(self) -> "Tensor":
        """Return a new leaf Tensor sharing ``data``, cut from the graph."""
        out = Tensor._from_op(self._data, None)
        return out

    def zero_grad(self) -> None:
        """Reset ``.grad`` to zeros in place (kept as an array so views stay valid)."""
        if self.grad is not None:
            self.grad[...] = 0

    def __len__(self) -> int:
        return len(self._data)

    def __bool__(self) -> bool:
        """The truth value of a one-element tensor; more elements raise, as NumPy does.

        Example:
            >>> bool(Tensor(0.0)), bool(Tensor([2.0]))
            (False, True)
        """
        return bool(self._data)

    def __float__(self) -> float:
        return float(self.item())

    def __repr__(self) -> str:
        """The values, then shape, dtype, name (when set), op (for a non-leaf) and requires_grad.

        Example:
            >>> x = Tensor([1.0, -2.0], requires_grad=True)
            >>> x.name = "x"
            >>> x * 2
            Tensor([ 2., -4.], shape=(2,), dtype=float32, op=mul, requires_grad=True)
            >>> x
            Tensor([ 1., -2.], shape=(2,), dtype=float32, name='x', requires_grad=True)
        """
        body = np.array2string(self._data, separator=", ", prefix="Tensor(")
        parts = [body, f"shape={self.shape}", f"dtype={self.dtype}"]
        if self.name is not None:
            parts.append(f"name={self.name!r}")
        if self._op is not None:
            parts.append(f"op={self._op.name}")
        if self.requires_grad:
            parts.append("requires_grad=True")
        return f"Tensor({', '.join(parts)})"

    # ----------------------------------------------------- study: hooks, retain
    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in ``.grad`` after ``backward()`` (as PyTorch).

        Like a leaf's, the kept gradient accumulates over ``backward()`` calls. On a leaf
        this does nothing (leaves keep theirs anyway). The gradient kept is the one after
        any hooks registered with :meth:`register_hook` replaced it.

        Raises:
            RuntimeError: if the tensor does not require grad.

        Example:
            >>> x = Tensor([1.0, 2.0], requires_grad=True)
            >>> h = x * 3
            >>> h.retain_grad()
            >>> (h * h).sum().backward()
            >>> h.grad
            array([ 6., 12.], dtype=float32)
        """
        if not self.requires_grad:
            raise RuntimeError(
                "retain_grad() needs a tensor that requires grad (one that backward() reaches). "
                "Received: a tensor with requires_grad=False"
            )
        if self._op is None:
            return
        if self._hooks is None:
            self._hooks = _Hooks()
        self._hooks.retain = True

    def register_hook(self, fn) -> "RemovableHandle":
        """Call ``fn(grad)`` with this tensor's gradient each time ``backward()`` computes it.

        ``grad`` is a read-only array of this tensor's shape: the whole gradient of the
        tensor ``backward()`` started from with respect to this one, summed over every
        use. If ``fn`` returns an array, it replaces the gradient: ops below this tensor,
        and ``.grad`` of a leaf, receive it instead (as PyTorch's ``register_hook``).
        Hooks run in the order they were registered, each on the previous one's result.
        On a leaf, the hook sees the gradient of this ``backward()`` before it is added
        to ``.grad``.

        Args:
            fn: a callable taking one array and returning ``None`` or an array of the same shape.

        Returns:
            A :class:`RemovableHandle`; its ``remove()`` unregisters ``fn``.

        Raises:
            TypeError: if ``fn`` is not callable.
            RuntimeError: if the tensor does not require grad.

        Example:
            >>> x = Tensor([1.0, 2.0], requires_grad=True)
            >>> h = x * 3
            >>> seen = []
            >>> handle = h.register_hook(lambda g: seen.append(g.copy()))
            >>> double = x.register_hook(lambda g: 2 * g)
            >>> h.sum().backward()
            >>> seen[0], x.grad
            (array([1., 1.], dtype=float32), array([6., 6.], dtype=float32))
            >>> handle.remove(); double.remove()
        """
        if not callable(fn):
            raise TypeError(f"Expected a callable for `fn` in register_hook. Received: fn of type {type(fn).__name__}")
        if not self.requires_grad:
            raise RuntimeError(
                "register_hook() needs a tensor that requires grad (one that backward() reaches). "
                "Received: a tensor with requires_grad=False"
            )
        if self._hooks is None:
            self._hooks = _Hooks()
        return self._hooks.add(fn)

    # --------------------------------------------------------------- backward
    def backward(self, grad=None, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``.grad`` of every leaf that requires grad.

        Args:
            grad: the upstream gradient, same shape as ``self``. May be omitted
                only when ``self`` has exactly one element (it defaults to 1).
            create_graph: must be ``False``: higher-order gradients (a graph of the
                backward pass itself) are out of minitensor's scope.

        Raises:
            ValueError: if ``self`` does not require grad, or is not a scalar and
                no ``grad`` is given, or ``grad`` has the wrong shape.
            NotImplementedError: if ``create_graph`` is true.

        Example:
            >>> x = Tensor([1.0, 2.0], requires_grad=True)
            >>> (x * 3).backward(np.ones(2, dtype=np.float32)); x.grad
            array([3., 3.], dtype=float32)
        """
        if create_graph:
            raise NotImplementedError(
                "backward(create_graph=True): higher-order gradients (differentiating a gradient) "
                "are out of minitensor's scope; backward() computes first-order gradients only"
            )
        if not self.requires_grad:
            raise ValueError(
                "Expected a tensor that requires grad for backward(): it must come from an op on a tensor "
                "created with requires_grad=True. Received: a tensor with requires_grad=False"
            )
        if grad is None:
            if self._data.size != 1:
                raise ValueError(
                    "backward() without an upstream gradient needs a scalar (one-element) tensor. "
                    f"Pass grad= with the output's shape. Received: shape={self.shape}"
                )
            grad = np.array(1, dtype=self._data.dtype)  # np.ones_like, for one element, without its Python wrapper
            if self._data.ndim:
                grad = grad.reshape(self._data.shape)
        else:
            grad = _to_array(grad, self.dtype)
            if grad.shape != self.shape:
                raise ValueError(
                    f"Expected `grad` with the shape of the tensor, {self.shape}. Received: grad.shape={grad.shape}"
                )

        if self._op is None:  # a leaf: its gradient is the upstream one
            if self._hooks is not None:
                grad = self._hooks.run(self, grad)
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
    grads = {root: grad}  # keyed by the tensors themselves: a Tensor hashes and compares by identity
    leaves = []
    last = root._stamp  # its op was recorded after every op of its graph
    for node in _topological_order(root):
        g = grads.pop(node, None)
        if g is None:
            continue
        if node._hooks is not None:
            g = node._hooks.run(node, g)
        op = node._op
        if node._stamp < _last_snapshot:  # .data of some tensor an op saved was read since this op was recorded
            _check_saved_values(op, node._stamp)
        parent_grads = op.backward(g)
        if op._check_backward:  # an op from outside minitensor.ops (whose ops the tests check)
            parent_grads = _check_contract(op, parent_grads)
        for parent, parent_grad in zip(op.inputs, parent_grads):
            if parent._watch <= last:  # the latest op that saved it is in this graph: done, stop watching
                parent._watch = 0
            if parent_grad is None or not parent.requires_grad:
                continue
            previous = grads.get(parent)
            if previous is None:
                grads[parent] = parent_grad
                if parent._op is None:
                    leaves.append(parent)
            else:
                # never add in place: an op may hand the same array to several inputs
                grads[parent] = previous + parent_grad
    for leaf in leaves:
        g = grads[leaf]
        if leaf._hooks is not None:
            g = leaf._hooks.run(leaf, g)
        current = leaf.grad
        if current is not None and g.shape == leaf._data.shape:
            current += g  # in place, so a .grad that is a view into a flat buffer stays one
        else:
            _accumulate_leaf(leaf, g)


def _check_contract(op, grads) -> tuple:
    """The gradients ``op.backward`` returned, as a tuple, if they keep its contract; else a clear error.

    The contract: one entry per input, each ``None`` or an array of that input's shape.
    """
    inputs = op.inputs
    what = f"The backward() of op {op.name} ({type(op).__module__}.{type(op).__qualname__})"
    if not isinstance(grads, (tuple, list)):
        kind = f"an array of shape {grads.shape}" if isinstance(grads, np.ndarray) else f"a {type(grads).__name__}"
        raise TypeError(
            f"{what} must return a tuple with one gradient (or None) per input: {len(inputs)} for this op. "
            f"Received: {kind}" + (" (for one input, return `(grad,)`)" if len(inputs) == 1 else "")
        )
    if len(grads) != len(inputs):
        raise TypeError(
            f"{what} must return one gradient (or None) per input: {len(inputs)} for this op. "
            f"Received: a {type(grads).__name__} of {len(grads)}"
        )
    for position, (t, g) in enumerate(zip(inputs, grads)):
        if g is None:
            continue
        if not isinstance(g, (np.ndarray, np.generic)):
            raise TypeError(
                f"{what} must return NumPy arrays (or None). Received: a {type(g).__name__} for input {position} "
                f"({_describe_tensor(t)})"
            )
        if g.shape != t._data.shape:
            raise ValueError(
                f"{what} returned a gradient of shape {g.shape} for input {position} ({_describe_tensor(t)}): "
                f"each gradient must have its input's shape (reduce a broadcast gradient with ops.unbroadcast). "
                f"Received: shape {g.shape}, expected {t._data.shape}"
            )
    return tuple(grads)


_clock = itertools.count(1)  # stamps ops when they are recorded, snapshots, and new arrays in .data
_last_snapshot = 0  # the stamp of the latest snapshot, in any thread


def _take_snapshot(t: Tensor) -> None:
    """Keep ``t``'s bytes: ``.data`` of a tensor an op saved is being handed out (see ``Tensor.data``)."""
    global _last_snapshot
    stamp = next(_clock)
    replaced = 0 if t._snap is None else t._snap[3]
    t._snap = (t._data, t._data.tobytes(), stamp, replaced)
    t._watch = 0
    _last_snapshot = stamp


def _check_saved_values(op, stamp: int) -> None:
    """Raise if an input ``op`` (recorded at ``stamp``) saved was changed in place since.

    Only a snapshot taken after the op was recorded, of the array the op saw (no new array
    was assigned to ``.data`` since the op), says what the op saw: its bytes are compared.
    """
    for position, t in enumerate(op.inputs):
        snap = t._snap
        if snap is None or snap[0] is None or snap[2] < stamp or snap[3] > stamp:
            continue
        if snap[0].tobytes() != snap[1]:
            raise RuntimeError(
                f"The op {op.name} saved its input {position} ({_describe_tensor(t)}) for its gradient, and its "
                "values were changed in place after the forward pass (found at backward()): the gradient would "
                "be computed from the new values. Change values after backward() (or before the forward pass), "
                "or change a copy (`t.data.copy()`). Received: values that differ from those of the forward pass"
            )


def _accumulate_leaf(leaf: Tensor, grad: np.ndarray) -> None:
    if grad.shape != leaf._data.shape:  # backward(grad) of a leaf, or a hook's result
        grad = np.broadcast_to(grad, leaf._data.shape)
    if leaf.grad is None:
        leaf.grad = np.array(grad, dtype=leaf._data.dtype, copy=True)
    else:
        leaf.grad += grad


class RemovableHandle:
    """What :meth:`Tensor.register_hook` returns: ``remove()`` unregisters the hook.

    Removing twice is harmless.

    Example:
        >>> x = Tensor([1.0], requires_grad=True)
        >>> handle = x.register_hook(lambda g: g * 10)
        >>> handle.remove()
        >>> (x * 2).sum().backward(); x.grad
        array([2.], dtype=float32)
    """

    __slots__ = ("_fns", "_key")

    def __init__(self, fns: dict, key: int):
        self._fns, self._key = fns, key

    def remove(self) -> None:
        """Unregister the hook (it is not called by later ``backward()`` passes)."""
        self._fns.pop(self._key, None)


class _Hooks:
    """A tensor's hooks (in registration order) and whether it retains its gradient."""

    __slots__ = ("fns", "retain")
    _keys = itertools.count()

    def __init__(self):
        self.fns = {}
        self.retain = False

    def add(self, fn) -> RemovableHandle:
        key = next(self._keys)
        self.fns[key] = fn
        return RemovableHandle(self.fns, key)

    def run(self, tensor: Tensor, grad: np.ndarray) -> np.ndarray:
        """Pass ``grad`` through the hooks, then keep it in ``.grad`` if asked to."""
        shape = tensor._data.shape
        if grad.shape != shape:
            grad = np.broadcast_to(grad, shape)
        for fn in list(self.fns.values()):
            view = grad.view()
            view.flags.writeable = False  # a hook must return a new gradient, not edit the shared one
            result = fn(view)
            if result is None:
                continue
            if isinstance(result, Tensor):
                result = result.data
            try:
                result = np.asarray(result, dtype=grad.dtype)
            except (TypeError, ValueError):
                result = None
            if result is None or result.shape != shape:
                received = "a value that is not an array" if result is None else f"shape {result.shape}"
                raise ValueError(
                    f"Expected the hook {_describe_fn(fn)} on {_describe_tensor(tensor)} to return None or a "
                    f"gradient of the tensor's shape {shape}. Received: {received}"
                )
            grad = result
        if self.retain and tensor._op is not None:
            if tensor.grad is None:
                tensor.grad = np.array(grad, dtype=tensor._data.dtype, copy=True)
            else:
                tensor.grad += grad
        return grad


def _describe_fn(fn) -> str:
    return repr(getattr(fn, "__qualname__", None) or type(fn).__name__)


def _describe_tensor(tensor: Tensor) -> str:
    """``tensor 'name' of shape (2, 3), made by mul`` (or ``a leaf``), for error messages."""
    name = f" {tensor.name!r}" if tensor.name is not None else ""
    made = "a leaf" if tensor._op is None else f"made by {tensor._op.name}"
    return f"tensor{name} of shape {tensor._data.shape}, {made}"
