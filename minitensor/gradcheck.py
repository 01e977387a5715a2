"""``gradcheck``: prove a gradient right by central differences.

For a function ``fn`` of some input Tensors, the analytic Jacobian (one
``backward()`` per output element) is compared with the numerical one,
``(fn(x + eps·e_i) - fn(x - eps·e_i)) / (2·eps)`` for every input element ``i``.
It passes when ``|analytic - numeric| <= atol + rtol·|numeric|`` everywhere.
On failure it names the input, the index, both values and the relative error
``|a - n| / max(|a|, |n|)`` (the CS231n convention), and says when the index is
within ``eps`` of a point where ``fn`` is not differentiable (its one-sided
differences disagree there).

Float64 only: with float32's 7 digits, a central difference at ``eps=1e-6``
is mostly round-off, so float32 inputs are refused, and an output that is not
float64 (float32 arithmetic inside ``fn``) gives a warning.

Before comparing, it checks that ``fn`` gives the same output twice and that
``backward()`` gives the same gradient twice (within ``nondet_tol``): a
non-deterministic ``fn`` cannot be checked by differences.

``fn`` only computes: gradcheck calls ``backward()`` on its output, and evaluates
it under ``no_grad()`` for the differences. An ``fn`` that calls ``backward()``
itself is refused with an explanation.

Example:
    >>> import numpy as np
    >>> from minitensor import Tensor, ops, gradcheck
    >>> x = Tensor(np.array([0.3, -1.2]), requires_grad=True)
    >>> gradcheck(lambda t: ops.tanh(t) * t, x)
    True
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np

from .tensor import Tensor, no_grad

__all__ = ["gradcheck", "GradcheckError", "GradcheckWarning"]

_NO_GRAPH = "Expected a tensor that requires grad for backward()"  # the start of backward()'s own error


class GradcheckError(RuntimeError):
    """Raised by :func:`gradcheck` when analytic and numerical gradients disagree."""


class GradcheckWarning(UserWarning):
    """Warned by :func:`gradcheck` when a check may fail for a reason other than a wrong gradient."""


def gradcheck(
    fn: Callable[..., Tensor],
    inputs,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    fast_mode: bool = False,
    raise_exception: bool = True,
    seed: int = 0,
    nondet_tol: float = 0.0,
) -> bool:
    """Check the gradients of ``fn(*inputs)`` against central differences.

    Args:
        fn: a function of the Tensors in ``inputs`` returning one Tensor (any shape).
            It must not call ``backward()`` itself.
        inputs: a Tensor, or a sequence of Tensors (float64). Those with
            ``requires_grad=True`` are checked; float64 NumPy arrays are wrapped as
            Tensors that require grad (a single array is one input).
        eps: the finite-difference step.
        atol: absolute tolerance.
        rtol: relative tolerance (of the numerical value).
        fast_mode: compare one random projection ``uᵀ J v`` per input instead of
            the full Jacobian (much cheaper for large inputs). On a mismatch the full
            check is run on that input, to name the index.
        raise_exception: raise :class:`GradcheckError` on failure (else return False).
        seed: seed of the random vectors used in fast mode and the repeat check.
        nondet_tol: how far two evaluations of ``fn`` (and two backward passes) may
            differ and still count as the same (0: bit for bit).

    Returns:
        True when every checked gradient agrees.

    Raises:
        TypeError: if an input is not float64 or ``fn`` does not return a Tensor.
        ValueError: if no input requires grad, or ``fn`` calls ``backward()`` itself.
        GradcheckError: on a mismatch or a non-deterministic ``fn``, when ``raise_exception`` is true.

    Warns:
        GradcheckWarning: when ``fn``'s output is not float64.

    Example:
        >>> w = Tensor(np.ones((2, 2)), requires_grad=True)
        >>> gradcheck(lambda w: (w @ w).sum(), [w], fast_mode=True)
        True
    """
    if isinstance(inputs, (Tensor, np.ndarray)):
        inputs = [inputs]
    tensors = [_as_checked_input(x, i) for i, x in enumerate(inputs)]
    checked = [i for i, t in enumerate(tensors) if t.requires_grad]
    if not checked:
        raise ValueError("Expected at least one input with requires_grad=True for gradcheck. Received: none")
    rng = np.random.default_rng(seed)
    saved_grads = [t.grad for t in tensors]
    try:
        for i in checked:
            tensors[i].grad = None
        output = _call(fn, tensors)
        _refuse_backward_inside(fn, tensors, checked)
        if output.dtype != np.float64:
            warnings.warn(
                f"gradcheck: `fn` returned a {output.dtype} tensor from float64 inputs, so its numerical gradient "
                "carries that precision's round-off and will likely not match. Make every constant and parameter "
                "used inside `fn` float64 (e.g. Tensor(..., dtype='float64')).",
                GradcheckWarning,
                stacklevel=2,
            )
        once, again = _numeric_output(fn, tensors), _numeric_output(fn, tensors)
        if not _close(once, again, nondet_tol):
            return _fail(
                f"`fn` is not deterministic: two evaluations at the same inputs differ by up to "
                f"{_max_diff(once, again):.3e} (nondet_tol={nondet_tol}). Central differences need the same output "
                "for the same input: fix random draws inside `fn` (a dropout mask, a sampled noise), or raise "
                "nondet_tol if the differences are round-off",
                raise_exception,
            )
        upstream = rng.standard_normal(output.shape)
        first = _analytic_vjp(output, tensors, checked, upstream)
        second = _analytic_vjp(output, tensors, checked, upstream)
        for i in checked:
            if not _close(first[i], second[i], nondet_tol):
                return _fail(
                    f"Backward is not repeatable for input {i}: two backward passes over the same graph "
                    f"gave gradients differing by up to {_max_diff(first[i], second[i]):.3e} (nondet_tol={nondet_tol})",
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


def _refuse_backward_inside(fn, tensors, checked) -> None:
    """Every checked ``.grad`` was cleared before calling ``fn``: one set now means ``fn`` ran ``backward()``."""
    touched = [i for i in checked if tensors[i].grad is not None]
    if touched:
        raise ValueError(
            "Expected `fn` to only compute its output: gradcheck calls backward() on it, and evaluates `fn` under "
            "no_grad() for the numerical differences. Return the tensor to differentiate instead of calling "
            f"backward() inside `fn`. Received: `fn` set .grad of input(s) {touched} (it called backward())"
        )


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
    try:
        with no_grad():
            return np.array(_call(fn, tensors).data, dtype=np.float64, copy=True)
    except ValueError as error:
        if str(error).startswith(_NO_GRAPH):
            raise ValueError(
                "Expected `fn` to only compute its output: gradcheck evaluates `fn` under no_grad() for the "
                "numerical differences, where backward() has no graph. Return the tensor to differentiate instead "
                f"of calling backward() inside `fn`. Received: backward() called inside `fn` ({error})"
            ) from error
        raise


def _close(a, b, tol) -> bool:
    return a.shape == b.shape and (np.array_equal(a, b, equal_nan=True) or _max_diff(a, b) <= tol)


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(a - b), initial=0.0))


def _shifted_outputs(fn, tensors, x, at, eps):
    """``fn``'s outputs with ``x[at]`` moved by ``+eps`` and by ``-eps``, flattened; restores ``x``."""
    original = x.data[at]
    x.data[at] = original + eps
    plus = _numeric_output(fn, tensors)
    x.data[at] = original - eps
    minus = _numeric_output(fn, tensors)
    x.data[at] = original
    return plus.ravel(), minus.ravel()


def _numeric_column(fn, tensors, x, at, eps):
    """Central difference of every output element with respect to ``x[at]``; restores ``x``."""
    plus, minus = _shifted_outputs(fn, tensors, x, at, eps)
    return (plus - minus) / (2 * eps)


def _check_full(fn, tensors, checked, output, eps, atol, rtol, raise_exception) -> bool:
    message = _full_mismatch(fn, tensors, checked, output, eps, atol, rtol)
    return True if message is None else _fail(message, raise_exception)


def _full_mismatch(fn, tensors, checked, output, eps, atol, rtol):
    """The message naming the first mismatch of the full Jacobians, or None when they agree."""
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
            numeric[:, k] = _numeric_column(fn, tensors, x, np.unravel_index(k, x.shape), eps)
        bad = np.abs(analytic - numeric) > atol + rtol * np.abs(numeric)
        if bad.any():
            j, k = np.argwhere(bad)[0]
            index = np.unravel_index(k, x.shape)
            out_index = np.unravel_index(j, output.shape)
            message = _mismatch_message(i, index, out_index, analytic[j, k], numeric[j, k], int(bad.sum()))
            return message + _kink_note(fn, tensors, x, index, j, eps, atol, rtol)
    return None


def _kink_note(fn, tensors, x, at, out_flat, eps, atol, rtol) -> str:
    """A note when ``fn``'s one-sided differences at ``x[at]`` disagree: a non-differentiable point within eps."""
    center = _numeric_output(fn, tensors).ravel()[out_flat]
    plus, minus = (outputs[out_flat] for outputs in _shifted_outputs(fn, tensors, x, at, eps))
    right, left = (plus - center) / eps, (center - minus) / eps
    if abs(right - left) <= atol + rtol * max(abs(right), abs(left)):
        return ""
    return (
        f". The one-sided differences disagree there (left={left:.6g}, right={right:.6g}): the input is within "
        f"eps={eps:g} of a point where `fn` is not differentiable (a kink such as relu or abs at 0, a tie of max). "
        "Move the input away from it, or lower eps"
    )


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
            projection = _mismatch_message(i, "a random direction", None, analytic, numeric, 1)
            # locate it: the full Jacobian of this input names the index
            located = _full_mismatch(fn, tensors, [i], output, eps, atol, rtol)
            if located is None:  # the full check passes: round-off summed over the projection
                return _fail(f"{projection}; the full check of input {i} passes (round-off in the projection?)", raise_exception)
            return _fail(f"fast_mode: {projection}; the full check located it. {located}", raise_exception)
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
