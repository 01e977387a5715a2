"""Activation functions, as ``keras.activations``: each maps a Tensor to a Tensor.

Every activation is built from :mod:`minitensor.ops`, so its gradient comes from the
graph. ``sigmoid`` and ``softmax`` go through ``ops.sigmoid`` / ``ops.softmax``, whose
output carries ``_keras_logits`` (its input): a cross-entropy loss then uses the exact
logits formula instead of clipping probabilities (docs/keras-formulas.md §2.2).

``get(identifier)`` resolves ``None``, a name or a callable; ``serialize(fn)`` gives
the name back.

Example:
    >>> from minitensor import Tensor, activations
    >>> activations.get("relu")(Tensor([-1.0, 2.0])).data
    array([0., 2.], dtype=float32)
    >>> activations.serialize(activations.get(None))
    'linear'
"""

from __future__ import annotations

import numpy as np

from . import ops
from .tensor import Tensor

__all__ = ["relu", "sigmoid", "softmax", "tanh", "linear", "get", "serialize"]


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0) -> Tensor:
    """Rectified linear unit: ``max(x, 0)`` with Keras' optional variants.

    Formula (defaults): ``relu(x) = max(x, 0)``; its gradient at exactly 0 is 0.
    With options, as ``keras.activations.relu``: values ``<= threshold`` become 0
    (or ``negative_slope * (x - threshold)``), and the result is clipped to
    ``max_value``.

    Args:
        x: input Tensor.
        negative_slope: slope below the threshold. Defaults to ``0.0``.
        max_value: saturation value, or ``None`` (no cap). Defaults to ``None``.
        threshold: values at or below it are damped. Defaults to ``0.0``.

    Returns:
        A Tensor of ``x``'s shape and dtype.

    Example:
        >>> relu(Tensor([-10.0, -5.0, 0.0, 5.0, 10.0])).data
        array([ 0.,  0.,  0.,  5., 10.], dtype=float32)
        >>> relu(Tensor([-10.0, 5.0, 10.0]), max_value=5.0).data
        array([0., 5., 5.], dtype=float32)
    """
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return ops.relu(x)  # the hot path: one op
    for name, value in (("negative_slope", negative_slope), ("threshold", threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"Expected `{name}` to be a number. Received: {name}={value!r}")
    if max_value is not None and (
        isinstance(max_value, bool) or not isinstance(max_value, (int, float, np.integer, np.floating))
    ):
        raise TypeError(f"Expected `max_value` to be a number or None. Received: max_value={max_value!r}")
    x = ops._as_tensors((x,))[0]
    dtype = x.data.dtype.type
    if negative_slope != 0.0:
        if max_value is None and threshold == 0.0:
            # leaky relu; the gradient is `negative_slope` at x <= 0, as tf.nn.leaky_relu
            return ops.where(x.data > 0, x, x * dtype(negative_slope))
        negative_part = ops.relu(dtype(threshold) - x) if threshold != 0.0 else ops.relu(-x)
    out = x
    clip_max = max_value is not None
    if threshold != 0.0:
        out = ops.where(x.data > dtype(threshold), x, dtype(0))
    elif max_value == 6:
        # tf.nn.relu6: its gradient is 0 at exactly 0 and at exactly 6
        out = ops.where(x.data < dtype(6), ops.relu(x), dtype(6))
        clip_max = False
    else:
        out = ops.relu(x)
    if clip_max:
        out = ops.clip(out, dtype(0), dtype(max_value))
    if negative_slope != 0.0:
        out = out - negative_part * dtype(negative_slope)
    return out


def sigmoid(x) -> Tensor:
    """Logistic sigmoid ``1 / (1 + exp(-x))``, stable for any ``x``.

    The output carries ``_keras_logits = x``, so ``binary_crossentropy`` on it uses
    the logits formula (no clipping; gradient ``sigmoid(x) - y``).

    Args:
        x: input Tensor.

    Returns:
        A Tensor of ``x``'s shape with values in ``[0, 1]``.

    Example:
        >>> out = sigmoid(Tensor([0.0]))
        >>> out.data, out._keras_logits.data
        (array([0.5], dtype=float32), array([0.], dtype=float32))
    """
    return ops.sigmoid(x)


def softmax(x, axis=-1) -> Tensor:
    """Softmax ``exp(x) / Σ_axis exp(x)``, computed after subtracting the max.

    The output carries ``_keras_logits = x`` (see :func:`sigmoid`).

    Args:
        x: input Tensor.
        axis: the axis normalised to sum to 1, or ``None`` for all elements.
            Defaults to ``-1``.

    Returns:
        A Tensor of ``x``'s shape.

    Example:
        >>> softmax(Tensor([[0.0, 0.0]])).data
        array([[0.5, 0.5]], dtype=float32)
    """
    return ops.softmax(x, axis=axis)


def tanh(x) -> Tensor:
    """Hyperbolic tangent ``(exp(x) - exp(-x)) / (exp(x) + exp(-x))``.

    Args:
        x: input Tensor.

    Returns:
        A Tensor of ``x``'s shape with values in ``[-1, 1]``.

    Example:
        >>> tanh(Tensor([0.0])).data
        array([0.], dtype=float32)
    """
    return ops.tanh(x)


def linear(x):
    """Identity ``linear(x) = x`` (what ``activation=None`` means). Returns ``x`` itself.

    Args:
        x: input Tensor.

    Returns:
        ``x``, unchanged (the same object).

    Example:
        >>> t = Tensor([1.0]); linear(t) is t
        True
    """
    return x


_ACTIVATIONS = {fn.__name__: fn for fn in (relu, sigmoid, softmax, tanh, linear)}


def get(identifier):
    """Return the activation function for ``identifier``.

    Args:
        identifier: ``None`` (-> :func:`linear`), a name (``"relu"``, ``"sigmoid"``,
            ``"softmax"``, ``"tanh"``, ``"linear"``) or a callable (returned as is).

    Returns:
        A function ``Tensor -> Tensor``.

    Raises:
        ValueError: for an unknown name or a non-callable identifier.

    Example:
        >>> get("tanh") is tanh, get(None) is linear
        (True, True)
    """
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        fn = _ACTIVATIONS.get(identifier)
        if fn is not None:
            return fn
    elif callable(identifier):
        return identifier
    raise ValueError(
        f"Could not interpret activation function identifier: {identifier!r}. "
        f"Expected None, a callable or one of {sorted(_ACTIVATIONS)}. Received: identifier={identifier!r}"
    )


def serialize(activation) -> str:
    """Return the name of a built-in activation (as ``keras.activations.serialize``).

    Args:
        activation: one of this module's functions (or ``None``, meaning linear).

    Returns:
        Its name, e.g. ``"relu"``; a name that :func:`get` turns back into the function.

    Raises:
        ValueError: for a callable that is not one of the built-in activations.

    Example:
        >>> serialize(relu)
        'relu'
    """
    if activation is None:
        return "linear"
    name = getattr(activation, "__name__", None)
    if name in _ACTIVATIONS and _ACTIVATIONS[name] is activation:
        return name
    raise ValueError(
        f"Unknown activation function {activation!r} cannot be serialized. "
        f"Expected one of the built-in activations {sorted(_ACTIVATIONS)}. Received: {activation!r}"
    )
