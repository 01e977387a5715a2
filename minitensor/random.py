"""Seeding: the one source of randomness for initialisers, dropout and shuffling.

Everything random in minitensor draws from :func:`generator`. Without an explicit
seed that is NumPy's global generator, so the classic ``np.random.seed(42)`` at the
top of a notebook pins every weight, dropout mask and batch order that follows.
A layer or initializer given ``seed=`` gets a private generator instead, so its
draws do not depend on anything else that happened before.

Example:
    >>> import minitensor as mt
    >>> mt.random.set_random_seed(0)
    >>> a = mt.random.generator().uniform(-1, 1, size=3)
    >>> mt.random.set_random_seed(0)
    >>> bool((a == mt.random.generator().uniform(-1, 1, size=3)).all())
    True
"""

from __future__ import annotations

import random as _py_random

import numpy as np

__all__ = ["set_random_seed", "generator", "make_generator"]


def set_random_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and so minitensor's.

    Mirrors ``keras.utils.set_random_seed``.

    Args:
        seed: an integer in ``[0, 2**32 - 1]``, NumPy's seed range (a Python or NumPy
            integer; ``True``/``False`` are refused). Keras's ``set_random_seed`` refuses
            the same values, through NumPy's own error.

    Raises:
        ValueError: for anything else (nothing is seeded then).

    Example:
        >>> set_random_seed(42)
    """
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(
            "Expected `seed` to be a non-negative integer below 2**32 (NumPy's seed range). "
            f"Received: seed={seed!r} (of type {type(seed).__name__})"
        )
    seed = int(seed)
    _py_random.seed(seed)
    np.random.seed(seed)


def generator():
    """Return minitensor's module-level generator (NumPy's global one).

    It offers ``uniform``, ``normal``, ``permutation`` and ``random`` with NumPy's
    signatures, like :func:`make_generator`'s result.

    Example:
        >>> generator().permutation(4).shape
        (4,)
    """
    return np.random.mtrand._rand


def make_generator(seed: int | None):
    """Return a private ``np.random.Generator`` for ``seed``, or the global one for ``None``.

    Args:
        seed: an integer seed, or ``None`` to share :func:`generator`.

    Example:
        >>> g = make_generator(7)
        >>> float(g.uniform()) == float(make_generator(7).uniform())
        True
    """
    if seed is None:
        return generator()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(
            "Expected `seed` to be None or a non-negative integer. "
            f"Received: seed={seed!r}"
        )
    return np.random.default_rng(int(seed))
