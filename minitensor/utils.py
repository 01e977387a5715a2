"""Small helpers with Keras's names: ``set_random_seed``, ``to_categorical``, ``plot_model``.

Example:
    >>> to_categorical([0, 2], num_classes=3).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
"""

from __future__ import annotations

import os

import numpy as np

from .random import set_random_seed

__all__ = ["set_random_seed", "to_categorical", "model_to_dot", "plot_model"]


def to_categorical(x, num_classes=None) -> np.ndarray:
    """One-hot encode integer class labels (float64, as Keras).

    Args:
        x: integer labels, shape ``(n,)`` or ``(n, 1)``.
        num_classes: number of classes (``max(x) + 1`` when omitted).

    Returns:
        An array of shape ``(n, num_classes)``.

    Example:
        >>> to_categorical([1, 0]).shape
        (2, 2)
    """
    labels = np.asarray(x)
    if labels.dtype.kind == "f":
        if not np.array_equal(labels, np.round(labels)):
            raise ValueError(f"Expected integer class labels in `x`. Received: non-integer values such as {labels.ravel()[0]}")
        labels = labels.astype(np.int64)
    if labels.dtype.kind not in "iub":
        raise TypeError(f"Expected integer class labels in `x`. Received: dtype {labels.dtype}")
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.size and labels.min() < 0:
        raise ValueError(f"Expected non-negative class labels. Received: a minimum of {labels.min()}")
    inferred = int(labels.max()) + 1 if labels.size else 0
    if num_classes is None:
        num_classes = inferred
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < inferred:
        raise ValueError(
            f"Expected `num_classes` to be an integer above every label (at least {inferred}). "
            f"Received: num_classes={num_classes!r}"
        )
    out = np.zeros(labels.shape + (int(num_classes),), dtype=np.float64)
    np.put_along_axis(out, labels[..., None].astype(np.intp), 1.0, axis=-1)
    return out


def _html(text) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _shape_text(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


def model_to_dot(model, show_shapes=False, show_dtype=False, show_layer_names=True, rankdir="TB", dpi=200,
                 show_layer_activations=False, show_trainable=False) -> str:
    """A ``Sequential`` model as Graphviz DOT text, one box per layer (as ``keras.utils.model_to_dot``).

    Needs nothing installed; :func:`plot_model` renders it. The arguments are Keras's.

    Args:
        model: a built ``Sequential``.
        show_shapes: show each layer's input and output shapes.
        show_dtype: show each layer's dtype.
        show_layer_names: show the layer names (else the class names only). Defaults to True.
        rankdir: ``"TB"`` (top to bottom) or ``"LR"`` (left to right); also ``"BT"``, ``"RL"``.
        dpi: image resolution in dots per inch.
        show_layer_activations: show the activation of layers that have one.
        show_trainable: show whether each layer is trainable.

    Example:
        >>> from minitensor.layers import Dense, Input
        >>> from minitensor.models import Sequential
        >>> model = Sequential([Input(shape=(64,)), Dense(12, activation="relu", name="hidden")])
        >>> text = model_to_dot(model, show_shapes=True)
        >>> "hidden" in text, "(None, 12)" in text
        (True, True)
    """
    from .models import Sequential

    if not isinstance(model, Sequential):
        raise TypeError(f"Expected a minitensor Sequential model for `model`. Received: {type(model).__name__}")
    if not model.built:
        raise ValueError(
            "This model has not yet been built. Build the model first by calling `build()` or by calling "
            "the model on a batch of data."
        )
    if rankdir not in ("TB", "BT", "LR", "RL"):
        raise ValueError(f"Expected `rankdir` to be 'TB', 'BT', 'LR' or 'RL'. Received: rankdir={rankdir!r}")
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float, np.integer, np.floating)) or dpi <= 0:
        raise ValueError(f"Expected `dpi` to be a positive number. Received: dpi={dpi!r}")
    from . import activations

    rows = [("input_layer", "InputLayer", None, model.input_shape, None, str(model.layers[0].dtype) if model.layers else "float32", None)]
    shape = model.input_shape
    for layer in model.layers:
        out = layer.compute_output_shape(shape)
        activation = getattr(layer, "activation", None)
        name = activations.serialize(activation) if activation is not None else None
        rows.append((layer.name, type(layer).__name__, shape, out, name, str(layer.dtype), layer.trainable))
        shape = out
    lines = [
        "digraph model {",
        f"  rankdir={rankdir};",
        f"  dpi={dpi:g};",
        '  node [shape=plaintext, fontname="Helvetica"];',
        '  edge [color="#444444", arrowsize=0.8];',
    ]
    for i, (name, kind, in_shape, out_shape, activation, dtype, trainable) in enumerate(rows):
        title = f"<b>{_html(name)}</b> ({kind})" if show_layer_names else f"<b>{kind}</b>"
        cells = [f'<tr><td bgcolor="black" colspan="2"><font color="white">{title}</font></td></tr>']
        if show_layer_activations and activation is not None:
            cells.append(f'<tr><td colspan="2">Activation: <b>{_html(activation)}</b></td></tr>')
        details = []
        if show_shapes:
            if in_shape is not None:
                details.append(f"Input shape: <b>{_shape_text(in_shape)}</b>")
            details.append(f"Output shape: <b>{_shape_text(out_shape)}</b>")
        if show_dtype:
            details.append(f"Output dtype: <b>{_html(dtype)}</b>")
        if show_trainable and trainable is not None:
            details.append(f"Trainable: <b>{'Y' if trainable else 'N'}</b>")
        for detail in details:
            cells.append(f'<tr><td colspan="2">{detail}</td></tr>')
        label = '<table border="0" cellborder="1" cellspacing="0" cellpadding="6">' + "".join(cells) + "</table>"
        lines.append(f"  layer{i} [label=<{label}>];")
    for i in range(1, len(rows)):
        lines.append(f"  layer{i - 1} -> layer{i};")
    lines.append("}")
    return "\n".join(lines)


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False, show_layer_names=False, rankdir="TB",
               expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False, **kwargs):
    """Draw a ``Sequential`` model to an image file through Graphviz, as ``keras.utils.plot_model``.

    Args:
        model: a built ``Sequential``.
        to_file: the file to write; ``.png`` (default), ``.svg`` or ``.pdf`` (no extension: PNG).
        show_shapes, show_dtype, show_layer_names, rankdir, dpi, show_layer_activations,
            show_trainable: as :func:`model_to_dot` (Keras's defaults: names off, ``dpi=200``).
        expand_nested: accepted for Keras compatibility; a ``Sequential`` has nothing nested.
        **kwargs: anything else is rejected (as Keras).

    Returns:
        An ``IPython.display.Image`` of the file when IPython is installed (so a notebook shows
        it) and the file is not a PDF, else ``None``.

    Raises:
        ImportError / RuntimeError: without the optional Graphviz support, naming what to install
            (``pip install "minitensor[viz]"`` and the Graphviz program).

    Example:
        >>> import os, tempfile
        >>> from minitensor.layers import Dense, Input
        >>> from minitensor.models import Sequential
        >>> model = Sequential([Input(shape=(64,)), Dense(12, activation="relu"), Dense(1, activation="sigmoid")])
        >>> path = os.path.join(tempfile.mkdtemp(), "model.svg")
        >>> _ = plot_model(model, to_file=path, show_shapes=True)
        >>> os.path.getsize(path) > 0
        True
    """
    if kwargs.pop("layer_range", None) is not None:
        raise ValueError("Argument `layer_range` is no longer supported.")
    if kwargs:
        raise ValueError(f"Unrecognized keyword arguments: {kwargs}")
    from .viz import render

    to_file = os.fspath(to_file)
    if not os.path.splitext(to_file)[1]:
        to_file += ".png"
    text = model_to_dot(model, show_shapes=show_shapes, show_dtype=show_dtype, show_layer_names=show_layer_names,
                        rankdir=rankdir, dpi=dpi, show_layer_activations=show_layer_activations,
                        show_trainable=show_trainable)
    render(text, to_file)
    if to_file.lower().endswith(".pdf"):
        return None
    try:
        from IPython import display
    except ImportError:
        return None
    return display.Image(filename=to_file) if to_file.lower().endswith(".png") else display.SVG(filename=to_file)
