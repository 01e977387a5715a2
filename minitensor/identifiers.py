"""Resolving Keras-style identifiers: a name, a ``{"class_name", "config"}`` dict, a class or an object.

Shared by ``initializers.get`` and ``regularizers.get`` (and by layers deserialising their configs).

Example:
    >>> from minitensor import initializers
    >>> type(resolve("zeros", {"zeros": initializers.Zeros}, initializers.Initializer, "initializer")).__name__
    'Zeros'
"""

from __future__ import annotations

__all__ = ["resolve", "serialize"]


def resolve(identifier, by_name: dict, base: type, kind: str):
    """Return the object ``identifier`` names, as ``keras.<kind>s.get`` does.

    Args:
        identifier: ``None`` (returned as is), a registered name, a config dict
            ``{"class_name": ..., "config": {...}}``, a subclass of ``base`` (instantiated
            with its defaults), or any callable (returned as is).
        by_name: registered names (class names and aliases) to classes.
        base: the base class of valid classes.
        kind: what is being resolved, for the error message (``"initializer"``...).

    Raises:
        ValueError: when the identifier cannot be interpreted.
    """
    if identifier is None:
        return None
    if isinstance(identifier, str):
        cls = by_name.get(identifier)
        if cls is not None:
            return cls()
    elif isinstance(identifier, dict) and isinstance(identifier.get("class_name"), str):
        cls = by_name.get(identifier["class_name"])
        if cls is not None:
            return cls.from_config(dict(identifier.get("config") or {}))
    elif isinstance(identifier, type):
        if issubclass(identifier, base):
            return identifier()
    elif callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret {kind} identifier: {identifier}")


def serialize(obj):
    """``{"class_name", "config"}`` for an object with ``get_config`` (``None`` stays ``None``)."""
    if obj is None:
        return None
    return {"class_name": type(obj).__name__, "config": obj.get_config()}
