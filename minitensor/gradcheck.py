"""``gradcheck``: prove a gradient right by central differences.

For a function ``fn`` of some input Tensors, the analytic Jacobian (one
``backward()`` per output element) is compared with the numerical one,
``(fn(x + eps·e_i) - fn(x - eps·e_i)) / (2·eps)`` for every input element ``i``.
It passes when ``|analytic - numeric| <= atol + rtol·|numeric|`` everywhere.
On failure it names the input, the index, both values and the relative error
``|a - n| / max(|a|, |n|)`` (the CS231n convention).

Float64 only: with float32's 7 digits, a central difference at ``eps=1e-6``
is mostly round-off, so float32 inputs are refused.

Example:
    >>> import numpy as np
    >>> from minitensor import Tensor, ops, gradcheck
    >>> x = Tensor(np.array([0.3, -1.2]), requires_grad=True)
    >>> gradcheck(lambda t: ops.tanh(t) * t, [x])
    True
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .tensor import Tensor, no_grad

__all__ = ["gradcheck", "GradcheckError"]


class GradcheckError(RuntimeError):
    """Raised by :func:`gradcheck` when analytic and numerical gradients disagree."""


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    fast_mode: bool = False,
    raise_exception: bool = True,
    seed: int = 0,
) -> bool:
    """Check the gradients of ``fn(*inputs)`` against central differences.

    Args:
        fn: a function of the Tensors in ``inputs`` returning one Tensor (any shape).
        inputs: Tensors (float64). Those with ``requires_grad=True`` are checked;
            float64 NumPy arrays are wrapped as Tensors that require grad.
        eps: the finite-difference step.
        atol: absolute tolerance.
        rtol: relative tolerance (of the numerical value).
        fast_mode: compare one random projection ``uᵀ J v`` per input instead of
            the full Jacobian (much cheaper for large inputs).
        raise_exception: raise :class:`GradcheckError` on failure (else return False).
        seed: seed of the random vectors used in fast mode and the repeat check.

    Returns:
        True when every checked gradient agrees.

    Raises:
        TypeError: if an input is not float64 or ``fn`` does not return a Tensor.
        GradcheckError: on a mismatch, when ``raise_exception`` is true.

    Example:
        >>> w = Tensor(np.ones((2, 2)), requires_grad=True)
        >>> gradcheck(lambda w: (w @ w).sum(), [w], fast_mode=True)
        True
    """
    tensors = [_as_checked_input(x, i) for i, x in enumerate(inputs)]
    checked = [i for i, t in enumerate(tensors) if t.requires_grad]
    if not checked:
        raise ValueError("Expected at least one input with requires_grad=True for gradcheck. Received: none")
    rng = np.random.default_rng(seed)
    saved_grads = [t.grad for t in tensors]
    try:
        output = _call(fn, tensors)
        upstream = rng.standard_normal(output.shape)
        first = _analytic_vjp(output, tensors, checked, upstream)
        second = _analytic_vjp(output, tensors, checked, upstream)
        for i in checked:
            if not np.array_equal(first[i], second[i]):
                diff = np.max(np.abs(first[i] - second[i]))
                return _fail(
                    f"Backward is not repeatable for input {i}: two backward passes over the same graph "
                    f"gave gradients differing by up to {diff:.3e}",
                    raise_exception,
                )
        if fast_mode:
            return _check_projection(fn, tensors, checked, output, upstream, first, eps, atol, rtol, rng, raise_exception)
        return _check_full(fn, tensors, checked, output, eps, atol, rtol, raise_exception)
    finally:
        for t, g in zip(tensors, saved_grads):
            t.grad = g


def _as_checked_input(x, position: int) -> Tensor:
    if not isinstance(x, Tensor):
        array = np.asarray(x)
        if array.dtype != np.float64:
            raise TypeError(
                f"gradcheck needs float64 inputs (central differences are meaningless in float32). "
                f"Received: inputs[{position}] with dtype {array.dtype}"
            )
        return Tensor(array, requires_grad=True)
    if x.requires_grad and x.dtype != np.float64:
        raise TypeError(
            f"gradcheck needs float64 inputs (central differences are meaningless in float32). "
            f"Create them with dtype='float64'. Received: inputs[{position}] with dtype {x.dtype}"
        )
    return x


def _call(fn, tensors) -> Tensor:
    output = fn(*tensors)
    if not isinstance(output, Tensor):
        raise TypeError(f"Expected `fn` to return a Tensor. Received: {type(output).__name__}")
    return output


def _analytic_vjp(output: Tensor, tensors, checked, upstream) -> dict:
    """``upstreamᵀ J`` for each checked input, from one backward pass."""
    for i in checked:
        tensors[i].grad = None
    if output.requires_grad:
        output.backward(np.asarray(upstream, dtype=output.dtype))
    return {i: _grad_or_zeros(tensors[i]) for i in checked}


def _grad_or_zeros(t: Tensor) -> np.ndarray:
    return np.zeros_like(t.data) if t.grad is None else t.grad.copy()


def _numeric_output(fn, tensors) -> np.ndarray:
    with no_grad():
        return np.array(_call(fn, tensors).data, dtype=np.float64, copy=True)


def _check_full(fn, tensors, checked, output, eps, atol, rtol, raise_exception) -> bool:
    n_out = output.size
    for i in checked:
        x = tensors[i]
        # analytic Jacobian row by row: one backward per output element
        analytic = np.empty((n_out, x.size))
        for j in range(n_out):
            onehot = np.zeros(n_out)
            onehot[j] = 1.0
            analytic[j] = _analytic_vjp(output, tensors, [i], onehot.reshape(output.shape))[i].ravel()
        numeric = np.empty((n_out, x.size))
        for k in range(x.size):
            # index x.data itself: reshape(-1) of a non-contiguous array is a copy, not a view
            at = np.unravel_index(k, x.shape)
            original = x.data[at]
            x.data[at] = original + eps
            plus = _numeric_output(fn, tensors)
            x.data[at] = original - eps
            minus = _numeric_output(fn, tensors)
            x.data[at] = original
            numeric[:, k] = ((plus - minus) / (2 * eps)).ravel()
        bad = np.abs(analytic - numeric) > atol + rtol * np.abs(numeric)
        if bad.any():
            j, k = np.argwhere(bad)[0]
            index = np.unravel_index(k, x.shape)
            out_index = np.unravel_index(j, output.shape)
            return _fail(_mismatch_message(i, index, out_index, analytic[j, k], numeric[j, k], int(bad.sum())), raise_exception)
    return True


def _check_projection(fn, tensors, checked, output, upstream, vjps, eps, atol, rtol, rng, raise_exception) -> bool:
    for i in checked:
        x = tensors[i]
        direction = rng.standard_normal(x.shape)
        analytic = float(np.sum(vjps[i] * direction))
        original = x.data.copy()
        x.data[...] = original + eps * direction
        plus = _numeric_output(fn, tensors)
        x.data[...] = original - eps * direction
        minus = _numeric_output(fn, tensors)
        x.data[...] = original
        numeric = float(np.sum((plus - minus) / (2 * eps) * upstream))
        if abs(analytic - numeric) > atol + rtol * abs(numeric):
            return _fail(_mismatch_message(i, "a random direction", None, analytic, numeric, 1), raise_exception)
    return True


def _mismatch_message(position, index, out_index, analytic, numeric, n_bad) -> str:
    rel = abs(analytic - numeric) / max(abs(analytic), abs(numeric), 1e-300)
    where = f"index {tuple(int(v) for v in index)}" if not isinstance(index, str) else index
    of = f" of output element {tuple(int(v) for v in out_index)}" if out_index is not None else ""
    return (
        f"Gradient mismatch for input {position} at {where}{of}: analytic={analytic:.10g}, "
        f"numeric={numeric:.10g}, relative error={rel:.3e} ({n_bad} element(s) out of tolerance)"
    )


def _fail(message: str, raise_exception: bool) -> bool:
    if raise_exception:
        raise GradcheckError(message)
    return False
