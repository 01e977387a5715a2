"""Weight regularizers: penalties added to the loss, as Keras 3 defines them.

A regularizer is called on a weight Tensor and returns a scalar Tensor built from
:mod:`minitensor.ops`, so ``backward()`` differentiates it with the rest of the loss:

* ``L1(l1)``:       ``l1 · Σ|w|``          gradient ``l1 · sign(w)``
* ``L2(l2)``:       ``l2 · Σ w²``          gradient ``2 · l2 · w``  (no ½ factor, as Keras)
* ``L1L2(l1, l2)``: the sum of both.

The factor is cast to the weight's dtype and multiplies the sum, as Keras's
``cast(l2, w.dtype) * sum(square(w))``. Keras 3 defaults: ``L1()`` and ``L2()`` use 0.01, but
``L1L2()`` / ``l1_l2()`` use **0 and 0** (a zero penalty; Keras 2's ``l1_l2()`` used 0.01 each).
Strings follow Keras exactly: ``"l1"``, ``"l2"``, ``"l1l2"`` (and the class names), while
``"l1_l2"`` is refused.

Keras stores ``L1``'s factor as a float32 tensor, so ``L1(0.01).get_config()`` shows
``0.009999999776482582``; we reproduce that (and the float32 factor it implies), while
``L2`` and ``L1L2`` keep the Python float.

Example:
    >>> import numpy as np
    >>> from minitensor import Tensor
    >>> w = Tensor(np.array([1.0, -2.0], dtype=np.float32), requires_grad=True)
    >>> penalty = L2(0.1)(w); penalty.item()
    0.5
    >>> penalty.backward(); w.grad
    array([ 0.2, -0.4], dtype=float32)
"""

from __future__ import annotations

import math

import numpy as np

from . import ops
from .identifiers import resolve
from .tensor import Tensor

__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get"]


def _validate_factor(value, name: str) -> float:
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
        valid = False
    else:
        valid = math.isfinite(value) and value >= 0
    if not valid:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a non-negative finite number. Received: {name}={value!r}"
        )
    return float(value)


def _as_weight(x) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return Tensor(x)
    raise TypeError(f"Expected a Tensor (the weight to regularize). Received: an object of type {type(x).__name__}")


class Regularizer:
    """Base class: ``reg(weight) -> scalar Tensor``, plus ``get_config``/``from_config``.

    Subclass it and implement ``__call__`` (with ops, so it is differentiated) and ``get_config``.
    Any function ``Tensor -> scalar Tensor`` also works wherever a regularizer is expected.

    Example:
        >>> class Squares(Regularizer):
        ...     def __init__(self, factor=1.0):
        ...         self.factor = factor
        ...     def __call__(self, x):
        ...         return ops.sum(x * x) * self.factor
        ...     def get_config(self):
        ...         return {"factor": self.factor}
        >>> Squares(2.0)(Tensor(np.ones(3, dtype=np.float32))).item()
        6.0
    """

    def __call__(self, x) -> Tensor:
        """Return the penalty for weight ``x`` (the base class gives 0, as Keras)."""
        x = _as_weight(x)
        return Tensor(np.zeros((), dtype=x.dtype))

    def get_config(self) -> dict:
        """Return the constructor arguments as a dict."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_config()")

    @classmethod
    def from_config(cls, config: dict) -> "Regularizer":
        """Create a regularizer from :meth:`get_config`'s dict.

        Example:
            >>> L2.from_config({"l2": 0.5}).l2
            0.5
        """
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _factor(value: float, x: Tensor) -> Tensor:
    """The factor as a constant 0-d Tensor of the weight's dtype (Keras: ``cast(factor, x.dtype)``)."""
    return Tensor(np.asarray(value, dtype=x.dtype))


def _l1_term(factor: float, x: Tensor) -> Tensor:
    return _factor(factor, x) * ops.sum(ops.abs(x))


def _l2_term(factor: float, x: Tensor) -> Tensor:
    return _factor(factor, x) * ops.sum(x * x)


class L1(Regularizer):
    """L1 penalty: ``l1 · Σ|w|`` (gradient ``l1 · sign(w)``, 0 at 0).

    Args:
        l1: non-negative number, default 0.01 (``None`` also means 0.01, as Keras). Stored as
            float32, as Keras does.

    Example:
        >>> L1(0.5)(Tensor(np.array([1.0, -3.0], dtype=np.float32))).item()
        2.0
    """

    def __init__(self, l1=0.01):
        l1 = _validate_factor(0.01 if l1 is None else l1, "l1")
        self.l1 = float(np.float32(l1))

    def __call__(self, x) -> Tensor:
        x = _as_weight(x)
        return _l1_term(self.l1, x)

    def get_config(self) -> dict:
        """Return ``{"l1": l1}`` (the float32 value, as Keras)."""
        return {"l1": self.l1}


class L2(Regularizer):
    """L2 penalty: ``l2 · Σw²`` (gradient ``2 · l2 · w``; no ½ factor).

    Args:
        l2: non-negative number, default 0.01 (``None`` also means 0.01, as Keras).

    Example:
        >>> L2(0.5)(Tensor(np.array([1.0, -3.0], dtype=np.float32))).item()
        5.0
    """

    def __init__(self, l2=0.01):
        self.l2 = _validate_factor(0.01 if l2 is None else l2, "l2")

    def __call__(self, x) -> Tensor:
        x = _as_weight(x)
        return _l2_term(self.l2, x)

    def get_config(self) -> dict:
        """Return ``{"l2": l2}``."""
        return {"l2": self.l2}


class L1L2(Regularizer):
    """L1 and L2 together: ``l1 · Σ|w| + l2 · Σw²``.

    A factor of 0 leaves its term out (as Keras); with both 0 the penalty is a constant 0.

    Args:
        l1: non-negative number, default **0.0** (``None`` also means 0).
        l2: non-negative number, default **0.0** (``None`` also means 0).

    Example:
        >>> L1L2(l1=0.5, l2=0.5)(Tensor(np.array([1.0, -3.0], dtype=np.float32))).item()
        7.0
        >>> L1L2()(Tensor(np.ones(2, dtype=np.float32))).item()   # Keras 3 defaults: no penalty
        0.0
    """

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _validate_factor(0.0 if l1 is None else l1, "l1")
        self.l2 = _validate_factor(0.0 if l2 is None else l2, "l2")

    def __call__(self, x) -> Tensor:
        x = _as_weight(x)
        penalty = None
        if self.l1 != 0.0:
            penalty = _l1_term(self.l1, x)
        if self.l2 != 0.0:
            term = _l2_term(self.l2, x)
            penalty = term if penalty is None else penalty + term
        return Tensor(np.zeros((), dtype=x.dtype)) if penalty is None else penalty

    def get_config(self) -> dict:
        """Return ``{"l1": l1, "l2": l2}``."""
        return {"l1": self.l1, "l2": self.l2}


# Keras's lower-case aliases are the classes themselves: l2(0.01) is L2(0.01)
l1 = L1
l2 = L2
l1_l2 = L1L2

# Keras's string names: class names and their snake_case ("l1l2", not "l1_l2"), case-sensitive
_BY_NAME = {"L1": L1, "L2": L2, "L1L2": L1L2, "l1": L1, "l2": L2, "l1l2": L1L2}


def get(identifier):
    """Return a regularizer for ``identifier``, as ``keras.regularizers.get``.

    Args:
        identifier: ``None`` (returns ``None``); a :class:`Regularizer` or any callable (returned
            as is); a Regularizer class (instantiated with defaults); ``"l1"``, ``"l2"``, ``"l1l2"``,
            ``"L1"``, ``"L2"``, ``"L1L2"`` (default factors: 0.01, 0.01, 0/0); or a dict
            ``{"class_name": ..., "config": {...}}``.

    Raises:
        ValueError: ``Could not interpret regularizer identifier: ...`` otherwise, including for
            ``"l1_l2"``, which Keras 3 does not register either.

    Example:
        >>> get("l2").l2
        0.01
        >>> get({"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.5}}).l2
        0.5
    """
    return resolve(identifier, _BY_NAME, Regularizer, "regularizer")
