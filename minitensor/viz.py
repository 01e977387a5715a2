"""Draw the graph behind a tensor: Graphviz DOT text (no dependency) and rendered images.

:func:`to_dot` walks the graph that produced a tensor (``Tensor.op`` and ``Tensor.inputs``)
and writes it in Graphviz's DOT language, as micrograd's and torchviz's drawings do: one box
per op (its name, the name and shape of the tensor it made) and one ellipse per leaf (a
weight, in blue when it requires grad; data, in grey), with arrows in the direction the
values flow. Optionally each node also shows summaries of its values and of its gradient.

:func:`draw` renders that text to SVG, PNG or PDF through the ``graphviz`` Python package and
the Graphviz program ``dot``, an optional extra::

    pip install "minitensor[viz]"      # plus Graphviz itself: apt install graphviz, brew install graphviz

Example:
    >>> from minitensor import Tensor, ops
    >>> w = Tensor([[1.0, -2.0]], requires_grad=True); w.name = "w"
    >>> loss = ops.relu(w).sum()
    >>> text = to_dot(loss)
    >>> text.splitlines()[0], text.count("->")
    ('digraph minitensor {', 2)
"""

from __future__ import annotations

import os

import numpy as np

from .tensor import Tensor

__all__ = ["to_dot", "draw", "render", "summary"]

_INSTALL = (
    'pip install "minitensor[viz]" for the graphviz Python package, and the Graphviz program itself '
    "(Debian/Ubuntu: apt install graphviz; macOS: brew install graphviz; conda: conda install graphviz)"
)
_FORMATS = ("svg", "png", "pdf")


def summary(array) -> str:
    """A one-line summary of an array: its values when there are at most 4, else its norm and range.

    Example:
        >>> summary(np.array([1.0, 2.0]))
        '[1, 2]'
        >>> summary(np.arange(10.0))
        '‖·‖=16.88  min=0  max=9'
    """
    a = np.asarray(array, dtype=np.float64)
    if a.size <= 4:
        return "[" + ", ".join(f"{v:.4g}" for v in a.ravel()) + "]"
    return f"‖·‖={np.linalg.norm(a):.4g}  min={a.min():.4g}  max={a.max():.4g}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(d) for d in t.shape) + ")" if t.ndim != 1 else f"({t.shape[0]},)"


def to_dot(tensor, show_data=False, show_grad=False, rankdir="TB", max_nodes=500) -> str:
    """The graph that produced ``tensor``, in Graphviz's DOT language.

    Args:
        tensor: the Tensor whose graph to draw (e.g. a loss).
        show_data: add a summary of each node's values (see :func:`summary`).
        show_grad: add a summary of each node's ``.grad`` where it has one (leaves after
            ``backward()``, and tensors that called ``retain_grad()``).
        rankdir: ``"TB"`` (top to bottom, default), ``"BT"``, ``"LR"`` or ``"RL"``.
        max_nodes: refuse to write graphs larger than this (a ``ValueError``): a drawing of
            thousands of nodes helps no one. Defaults to 500.

    Returns:
        The DOT text. It needs nothing installed; paste it into any Graphviz viewer or
        render it with :func:`draw`.

    Example:
        >>> from minitensor import Tensor
        >>> a = Tensor([2.0], requires_grad=True); a.name = "a"
        >>> print(to_dot(a * a))  # doctest: +ELLIPSIS
        digraph minitensor {
        ...
        }
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"Expected a minitensor Tensor for `tensor`. Received: {type(tensor).__name__}")
    if rankdir not in ("TB", "BT", "LR", "RL"):
        raise ValueError(f"Expected `rankdir` to be 'TB', 'BT', 'LR' or 'RL'. Received: rankdir={rankdir!r}")
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, (int, np.integer)) or max_nodes < 1:
        raise ValueError(f"Expected `max_nodes` to be a positive integer. Received: max_nodes={max_nodes!r}")
    order = _nodes(tensor, max_nodes)
    ids = {id(t): f"n{i}" for i, t in enumerate(order)}
    lines = [
        "digraph minitensor {",
        f"  rankdir={rankdir};",
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [color="#555555", arrowsize=0.7];',
    ]
    for t in order:
        lines.append(f"  {ids[id(t)]} [{_node_attributes(t, t is tensor, show_data, show_grad)}];")
    for t in order:
        for parent in t.inputs:
            lines.append(f"  {ids[id(parent)]} -> {ids[id(t)]};")
    lines.append("}")
    return "\n".join(lines)


def _nodes(root: Tensor, max_nodes: int) -> list:
    """The graph's tensors, inputs before the tensors made from them."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        if len(seen) > max_nodes:
            raise ValueError(
                f"The graph has more than max_nodes={max_nodes} nodes; pass a larger `max_nodes` to draw it anyway."
            )
        stack.append((node, True))
        for parent in reversed(node.inputs):
            if id(parent) not in seen:
                stack.append((parent, False))
    return order


def _node_attributes(t: Tensor, is_root: bool, show_data: bool, show_grad: bool) -> str:
    lines = []
    if t.is_leaf:
        lines.append(f"{t.name or ('parameter' if t.requires_grad else 'data')}  {_shape(t)}")
        style = 'shape=ellipse, style=filled, fillcolor="#cfe2f3"' if t.requires_grad else (
            'shape=ellipse, style=filled, fillcolor="#eeeeee"'
        )
    else:
        lines.append(t.op.name)
        lines.append(f"{t.name}  {_shape(t)}" if t.name else _shape(t))
        fill = "#fde9c9" if is_root else "#ffffff"
        style = f'shape=box, style="rounded,filled", fillcolor="{fill}"'
    if show_data:
        lines.append("data " + summary(t.data))
    if show_grad and t.grad is not None:
        lines.append("grad " + summary(t.grad))
    return f"label={_quote(chr(10).join(lines))}, {style}"


def _graphviz():
    try:
        import graphviz
    except ImportError:
        graphviz = None
    if graphviz is None:
        raise ImportError(f"Drawing needs the optional Graphviz support: {_INSTALL}.")
    return graphviz


def render(dot_text: str, path, dpi=None) -> str:
    """Render DOT text to ``path``; the format comes from its extension (``.svg``, ``.png``, ``.pdf``).

    Args:
        dot_text: Graphviz DOT text (from :func:`to_dot` or :func:`minitensor.utils.model_to_dot`).
        path: the file to write.
        dpi: resolution of a PNG, or ``None`` for Graphviz's default (96).

    Returns:
        ``path`` as a string.

    Raises:
        ImportError: without the ``graphviz`` package. RuntimeError: without the ``dot`` program.
    """
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in _FORMATS:
        raise ValueError(f"Expected `path` to end in .svg, .png or .pdf. Received: path={path!r}")
    graphviz = _graphviz()
    if dpi is not None:
        if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or dpi <= 0:
            raise ValueError(f"Expected `dpi` to be a positive number. Received: dpi={dpi!r}")
        dot_text = dot_text.replace("{\n", f"{{\n  dpi={dpi};\n", 1)
    try:
        image = graphviz.Source(dot_text).pipe(format=extension)
    except graphviz.ExecutableNotFound:
        raise RuntimeError(f"Drawing needs the Graphviz program `dot`, which was not found on PATH: {_INSTALL}.") from None
    with open(path, "wb") as file:
        file.write(image)
    return path


def draw(tensor, path, show_data=False, show_grad=False, rankdir="TB", dpi=None, max_nodes=500) -> str:
    """Draw the graph that produced ``tensor`` to an SVG, PNG or PDF file (through Graphviz).

    Args:
        tensor: the Tensor whose graph to draw.
        path: the file to write; its extension picks the format (``.svg``, ``.png``, ``.pdf``).
        show_data, show_grad, rankdir, max_nodes: as :func:`to_dot`.
        dpi: resolution of a PNG (Graphviz's default, 96, when ``None``).

    Returns:
        ``path`` as a string.

    Raises:
        ImportError: when the ``graphviz`` package is missing, RuntimeError when the ``dot``
            program is: both say what to install (``pip install "minitensor[viz]"`` and Graphviz).

    Example:
        >>> import tempfile, os
        >>> from minitensor import Tensor
        >>> x = Tensor([1.0, 2.0], requires_grad=True)
        >>> path = draw((x * x).sum(), os.path.join(tempfile.mkdtemp(), "graph.svg"))
        >>> open(path).read().count("<svg")
        1
    """
    return render(to_dot(tensor, show_data=show_data, show_grad=show_grad, rankdir=rankdir, max_nodes=max_nodes), path, dpi=dpi)
