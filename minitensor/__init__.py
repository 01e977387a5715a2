"""minitensor: a from-scratch deep-learning engine that reproduces tf.keras.

The core is :class:`Tensor` (reverse-mode autograd over NumPy arrays), the ops in
:mod:`minitensor.ops` (forward and gradient side by side) and :func:`gradcheck`.

Example:
    >>> import minitensor as mt
    >>> x = mt.Tensor([[0.5, -1.0]], requires_grad=True, dtype="float64")
    >>> mt.ops.sigmoid(x).sum().backward()
    >>> x.grad.shape
    (1, 2)
"""

from . import ops, random
from .gradcheck import GradcheckError, GradcheckWarning, gradcheck
from .random import set_random_seed
from .tensor import Tensor, as_tensor, is_grad_enabled, no_grad

from . import (  # noqa: E402  (the Keras-compatible API, built on the core above)
    activations,
    callbacks,
    initializers,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    regularizers,
    utils,
)

__version__ = "0.1.0"

__all__ = [
    "Tensor",
    "as_tensor",
    "no_grad",
    "is_grad_enabled",
    "ops",
    "random",
    "gradcheck",
    "GradcheckError",
    "GradcheckWarning",
    "set_random_seed",
    "activations",
    "callbacks",
    "initializers",
    "layers",
    "losses",
    "metrics",
    "models",
    "optimizers",
    "regularizers",
    "utils",
]
