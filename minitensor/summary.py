"""``model.summary()``: the Keras table of layers, output shapes and parameter counts.

Keras renders it with ``rich``; this is the same layout in plain box-drawing text
(76 columns, column fractions 0.45/0.80/1.0), so it needs no extra dependency.

Example:
    >>> from minitensor.models import Sequential
    >>> from minitensor.layers import Dense, Input
    >>> text = format_summary(Sequential([Input(shape=(64,)), Dense(12)], name="demo"))
    >>> text.splitlines()[0]
    'Model: "demo"'
    >>> " Total params: 780 (3.05 KB)" in text
    True
"""

from __future__ import annotations

import numpy as np

__all__ = ["format_summary", "format_size"]

WIDTH = 76


def format_size(n_bytes: float) -> str:
    """``bytes / 1024**k`` with two decimals and units B, KB, MB, ... (as Keras).

    Example:
        >>> format_size(3640)
        '3.55 KB'
    """
    units = ["B", "KB", "MB", "GB", "TB"]
    k = 0
    while n_bytes >= 1024 and k < len(units) - 1:
        n_bytes /= 1024
        k += 1
    return f"{n_bytes:.2f} {units[k]}"


def _row(cells, widths, left="│", mid="│", right="│"):
    text = []
    for i, (cell, width) in enumerate(zip(cells, widths)):
        inner = width - 2
        text.append(" " + (cell.rjust(inner) if i == 2 else cell.ljust(inner))[:inner] + " ")
    return left + mid.join(text) + right


def format_summary(model) -> str:
    """Return the summary table of a Sequential ``model`` as a string."""
    edges = [int(round(WIDTH * f)) for f in (0.45, 0.80, 1.0)]
    widths = [edges[0] - 1, edges[1] - edges[0] - 1, edges[2] - edges[1] - 2]
    top = "┏" + "┳".join("━" * w for w in widths) + "┓"
    head_sep = "┡" + "╇".join("━" * w for w in widths) + "┩"
    row_sep = "├" + "┼".join("─" * w for w in widths) + "┤"
    bottom = "└" + "┴".join("─" * w for w in widths) + "┘"
    lines = [f'Model: "{model.name}"', top, _row(["Layer (type)", "Output Shape", "Param #"], widths, "┃", "┃", "┃"), head_sep]
    shape = model.input_shape
    for i, layer in enumerate(model.layers):
        if shape is not None:
            shape = layer.compute_output_shape(shape)
            shape_text = "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
            params = f"{layer.count_params():,}"
        else:
            shape_text, params = "?", "0 (unbuilt)"
        lines.append(_row([f"{layer.name} ({type(layer).__name__})", shape_text, params], widths))
        if i < len(model.layers) - 1:
            lines.append(row_sep)
    lines.append(bottom)
    weights = model.weights
    total = sum(w.size for w in weights)
    trainable = sum(w.size for w in weights if w.requires_grad)
    bytes_total = sum(w.data.nbytes for w in weights)
    bytes_trainable = sum(w.data.nbytes for w in weights if w.requires_grad)
    optimizer_params, optimizer_bytes = _optimizer_size(model)
    lines.append(f" Total params: {total + optimizer_params:,} ({format_size(bytes_total + optimizer_bytes)})")
    lines.append(f" Trainable params: {trainable:,} ({format_size(bytes_trainable)})")
    lines.append(f" Non-trainable params: {total - trainable:,} ({format_size(bytes_total - bytes_trainable)})")
    if optimizer_params:
        lines.append(f" Optimizer params: {optimizer_params:,} ({format_size(optimizer_bytes)})")
    return "\n".join(lines)


def _optimizer_size(model):
    """Count the optimizer's state once it has been built, as Keras does after fit."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not getattr(optimizer, "built", False):
        return 0, 0
    state = optimizer.get_state()
    count = sum(int(np.size(a)) for a in state)
    size = sum(int(np.asarray(a).nbytes) for a in state)
    return count, size
