"""One training step of a ``Sequential`` model, layer by layer: what backprop computes, as numbers.

:func:`trace_step` runs one batch through the model as ``fit`` would (loss, penalties and
sample weights included, through :meth:`~minitensor.models.Sequential.compute_loss`), runs
``backward()``, and asks a copy of the optimizer what update it would apply. For each layer
it returns

* ``input``: what the layer received, ``(batch, in)``;
* ``pre_activation``: ``z = input @ kernel + bias`` (for an ``Activation`` layer, its input);
* ``activation``: the layer's output ``a = f(z)``;
* ``delta``: ``dLoss/dz``, the textbooks' delta (``(batch, units)``);
* ``output_grad``: ``dLoss/da`` (``None`` for the output layer of a cross-entropy model: the
  loss reads its logits ``z``, not ``a``);
* ``gradients``, ``updates``, ``weights``: per weight (``"kernel"``, ``"bias"``) its gradient,
  the change the optimizer would make, and its value before the step.

``print(trace)`` shows a table of shapes and norms; every array is there to look at.

Taking a trace changes nothing: not the weights, not their ``.grad`` buffers, not the
optimizer's state and not any random stream (a dropout layer's masks in the trace are the
ones the next ``fit`` step would draw from the same state). The relu and tanh layers run
inside :func:`~minitensor.layers.keep_pre_activations`, which splits their fused op into the
pre-activation and the activation with the same numbers, so ``delta`` is the gradient that
the fused op computes internally.

Example:
    >>> import numpy as np
    >>> from minitensor.layers import Dense, Input
    >>> from minitensor.models import Sequential
    >>> model = Sequential([Input(shape=(4,)), Dense(3, activation="relu", name="hidden"),
    ...                     Dense(1, activation="sigmoid", name="out")])
    >>> model.compile(optimizer="sgd", loss="binary_crossentropy")
    >>> x = np.ones((5, 4), dtype="float32"); y = np.ones((5, 1), dtype="float32")
    >>> step = trace_step(model, x, y)
    >>> step["hidden"].delta.shape, step["out"].gradients["kernel"].shape
    ((5, 3), (3, 1))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import data_adapter
from .layers import keep_pre_activations
from .random import generator
from .tensor import Tensor

__all__ = ["LayerTrace", "StepTrace", "trace_step", "named_tensors"]


def named_tensors(root: Tensor) -> dict:
    """Every named tensor of the graph that produced ``root``, by name (``root`` included).

    Layers name their tensors ``<layer>/output`` and ``<layer>/pre_activation`` and their
    weights ``<layer>/kernel``, ``<layer>/bias``; this finds them by walking ``inputs``.

    Args:
        root: a Tensor, e.g. a loss.

    Returns:
        A dict from name to Tensor. Unnamed tensors are left out; when two tensors share a
        name, the one nearer ``root`` is kept.

    Example:
        >>> from minitensor.layers import Dense
        >>> out = Dense(2, activation="sigmoid", name="d")(np.ones((1, 3), dtype="float32"))
        >>> sorted(named_tensors(out))
        ['d/bias', 'd/kernel', 'd/output', 'd/pre_activation']
    """
    if not isinstance(root, Tensor):
        raise TypeError(f"Expected a minitensor Tensor for `root`. Received: {type(root).__name__}")
    found, seen, stack = {}, set(), [root]
    while stack:  # breadth does not matter; iterative so a long chain does not recurse
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.name is not None and node.name not in found:
            found[node.name] = node
        stack.extend(reversed(node.inputs))
    return found


@dataclass
class LayerTrace:
    """What one layer computed in a traced step (arrays are copies; see the module docstring).

    Attributes:
        name: the layer's name.
        kind: its class name (``"Dense"``, ``"Dropout"``, ...).
        activation_name: the activation's name (``"relu"``...), or ``None``.
        input, pre_activation, activation: forward values (``pre_activation`` is ``None`` for
            layers without one, such as ``Dropout``).
        delta: ``dLoss/dpre_activation``, or ``None``.
        output_grad: ``dLoss/dactivation``, or ``None`` where the loss does not go through it.
        weights, gradients, updates, weights_after: dicts ``{"kernel": array, "bias": array}``
            (empty for layers without weights): the values before the step, the gradients, the
            change the optimizer would make (new minus old) and the values it would leave.
    """

    name: str
    kind: str
    activation_name: str | None
    input: np.ndarray
    pre_activation: np.ndarray | None
    activation: np.ndarray
    delta: np.ndarray | None
    output_grad: np.ndarray | None
    weights: dict = field(default_factory=dict)
    gradients: dict = field(default_factory=dict)
    updates: dict = field(default_factory=dict)
    weights_after: dict = field(default_factory=dict)

    def update_ratio(self, weight: str = "kernel") -> float:
        """``||update|| / ||weight||`` of one weight (``nan`` when the weight is all zeros or absent).

        Example:
            >>> t = LayerTrace("d", "Dense", None, np.ones((1, 1)), None, np.ones((1, 1)), None, None,
            ...                {"kernel": np.full(4, 2.0)}, {}, {"kernel": np.full(4, 0.02)})
            >>> round(t.update_ratio(), 6)
            0.01
        """
        if weight not in self.weights:
            return float("nan")
        norm = float(np.linalg.norm(self.weights[weight]))
        return float(np.linalg.norm(self.updates[weight])) / norm if norm else float("nan")


@dataclass
class StepTrace:
    """The trace of one training step: the loss and one :class:`LayerTrace` per layer.

    Index it by layer name or position (``trace["dense_1"]``, ``trace[0]``); ``str(trace)``
    is :meth:`table`; :meth:`arrays` gives every array under a ``"layer/field"`` key.
    """

    loss: float
    layers: list
    optimizer: str
    training: bool

    def __getitem__(self, key) -> LayerTrace:
        if isinstance(key, (int, np.integer)):
            return self.layers[key]
        for layer in self.layers:
            if layer.name == key:
                return layer
        raise KeyError(f"No layer named {key!r} in this trace. Layers: {[layer.name for layer in self.layers]}")

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def arrays(self) -> dict:
        """Every array of the trace, keyed ``"<layer>/<field>"`` (e.g. ``"dense/delta"``, ``"dense/kernel_grad"``).

        Example:
            >>> from minitensor.layers import Dense, Input
            >>> from minitensor.models import Sequential
            >>> m = Sequential([Input(shape=(2,)), Dense(1, name="lin")]); m.compile(optimizer="sgd", loss="mse")
            >>> sorted(trace_step(m, np.ones((3, 2)), np.zeros((3, 1))).arrays())[:3]
            ['lin/activation', 'lin/bias', 'lin/bias_grad']
        """
        out = {}
        for layer in self.layers:
            for key in ("input", "pre_activation", "activation", "delta", "output_grad"):
                value = getattr(layer, key)
                if value is not None:
                    out[f"{layer.name}/{key}"] = value
            for weight in layer.weights:
                out[f"{layer.name}/{weight}"] = layer.weights[weight]
                out[f"{layer.name}/{weight}_grad"] = layer.gradients[weight]
                out[f"{layer.name}/{weight}_update"] = layer.updates[weight]
        return out

    def table(self) -> str:
        """A text table: per layer the shapes, and the L2 norms of the values, deltas, gradients and updates.

        Example:
            >>> from minitensor.layers import Dense, Input
            >>> from minitensor.models import Sequential
            >>> m = Sequential([Input(shape=(2,)), Dense(1, name="lin")]); m.compile(optimizer="sgd", loss="mse")
            >>> print(trace_step(m, np.ones((3, 2)), np.zeros((3, 1))).table().splitlines()[0])  # doctest: +NORMALIZE_WHITESPACE
            layer  activation  input  |input|  |z|  |delta|  |a|  |dW|  |db|  |ΔW|/|W|
        """
        header = ["layer", "activation", "input", "|input|", "|z|", "|delta|", "|a|", "|dW|", "|db|", "|ΔW|/|W|"]
        rows = []
        for layer in self.layers:
            rows.append([
                layer.name,
                layer.activation_name or layer.kind,
                "x".join(str(d) for d in layer.input.shape),
                _norm(layer.input),
                _norm(layer.pre_activation),
                _norm(layer.delta),
                _norm(layer.activation),
                _norm(layer.gradients.get("kernel")),
                _norm(layer.gradients.get("bias")),
                "-" if "kernel" not in layer.weights else f"{layer.update_ratio():.3g}",
            ])
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
        lines.append(f"loss {self.loss:.6g} ({'training' if self.training else 'inference'} mode), "
                     f"update by {self.optimizer}; norms are L2 over all entries")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _norm(array) -> str:
    return "-" if array is None else f"{float(np.linalg.norm(np.asarray(array, dtype=np.float64))):.4g}"


def trace_step(model, x, y, sample_weight=None, training=True) -> StepTrace:
    """Trace one training step of ``model`` on the batch ``(x, y)`` (see the module docstring).

    Args:
        model: a compiled, built ``Sequential``.
        x: the batch's inputs, ``(batch, features)``.
        y: its targets, as ``fit`` takes them.
        sample_weight: optional per-sample weights, as ``fit`` takes them.
        training: run the layers in training mode (dropout on), as ``fit`` does. Defaults to True.

    Returns:
        A :class:`StepTrace`. The model, its ``.grad`` buffers, its optimizer and every random
        stream are left exactly as they were.

    Raises:
        RuntimeError: if the model is not compiled. ValueError: if it is not built.
            ValueError/TypeError: for bad ``x``, ``y``, ``sample_weight`` (as ``fit``), before anything runs.
    """
    from .models import Sequential

    if not isinstance(model, Sequential):
        raise TypeError(f"Expected a minitensor Sequential model for `model`. Received: {type(model).__name__}")
    if not model.compiled:
        raise RuntimeError("You must call compile() before trace_step(). Received: an uncompiled model")
    if not model.built:
        raise ValueError(
            "The model must be built before trace_step(): declare its input with Input(shape=...) as the first "
            "layer, or call build() or fit() first (building draws the initial weights, which a trace must not do)."
        )
    if training not in (True, False):
        raise ValueError(f"Expected `training` to be True or False. Received: training={training!r}")
    x = data_adapter.check_x(x, model.input_shape)  # bad input fails here, before anything runs
    weights = model.weights
    saved_grads = [None if w.grad is None else w.grad.copy() for w in weights]
    saved_random = _random_states(model)
    try:
        for w in weights:  # fit starts every step from zero gradients
            if w.grad is not None:
                w.grad[...] = 0
        with keep_pre_activations():
            loss = model.compute_loss(x, y, sample_weight=sample_weight, training=training)
        tensors = named_tensors(loss)
        for t in tensors.values():
            if not t.is_leaf:
                t.retain_grad()
        loss.backward()
        grads = [np.zeros_like(w.data) if w.grad is None else w.grad.copy() for w in weights]
        layers = _layer_traces(model, tensors, x, grads)
    finally:
        for w, g in zip(weights, saved_grads):
            if g is None:
                w.grad = None
            elif w.grad is not None and w.grad.shape == g.shape:
                w.grad[...] = g  # in place: the .grad views into the model's gradient buffer stay
            else:
                w.grad = g
        _restore_random_states(saved_random)
    _fill_updates(model, layers, grads)
    return StepTrace(loss=float(loss.data), layers=layers, optimizer=type(model.optimizer).__name__, training=training)


def _grad(tensor):
    return None if tensor is None or tensor.grad is None else np.array(tensor.grad, copy=True)


def _data(tensor):
    return None if tensor is None else np.array(tensor.data, copy=True)


def _layer_traces(model, tensors, x, grads) -> list:
    traces = []
    previous_data = x.copy()
    previous = None  # the tensor the next layer reads (None: the batch itself)
    weight_index = {id(w): i for i, w in enumerate(model.weights)}
    for layer in model.layers:
        output = tensors.get(f"{layer.name}/output")
        pre = tensors.get(f"{layer.name}/pre_activation")
        kind = type(layer).__name__
        if kind == "Activation" and output is not None:
            pre = output.inputs[0]
        activation = getattr(layer, "activation", None)
        output_data = None
        if output is None and pre is not None and activation is not None:
            # a cross-entropy loss reads the output layer's logits, so its activation is not on the
            # loss's graph: apply the activation again (the same op, the same numbers)
            output_data = activation(Tensor(pre.data)).data
            if output_data is pre.data:  # linear: the output is the pre-activation
                output, output_data = pre, None
        elif output is None:
            output = previous  # an identity, such as dropout at inference
        trace = LayerTrace(
            name=layer.name,
            kind=kind,
            activation_name=None if activation is None else getattr(activation, "__name__", str(activation)),
            input=previous_data,
            pre_activation=_data(pre),
            activation=output_data if output_data is not None else previous_data if output is None else _data(output),
            delta=_grad(pre),
            output_grad=_grad(output),
        )
        for w in layer.weights:
            short = w.name.split("/")[-1]
            trace.weights[short] = w.data.copy()
            trace.gradients[short] = grads[weight_index[id(w)]]
        traces.append(trace)
        previous, previous_data = output, trace.activation
    return traces


def _optimizer_layout(model) -> bool:
    """True when the model's optimizer steps per weight, False when on one flat vector of them all.

    A built optimizer tells by the shapes of its state; otherwise it is the layout ``fit``
    would choose.
    """
    optimizer, weights = model.optimizer, model.weights
    slots = [s.shape for s in optimizer.get_state()[1:]] if optimizer.built else []
    if slots:
        flat = (sum(w.size for w in weights),)
        return not all(shape == flat for shape in slots)
    return model._optimizer_steps_per_weight()


def _fill_updates(model, layers, grads) -> None:
    """Ask a copy of the optimizer, in the state of the model's, what it would do with ``grads``."""
    optimizer = model.optimizer
    weights = model.weights
    clone = type(optimizer).from_config(optimizer.get_config())
    per_tensor = _optimizer_layout(model)
    if per_tensor:
        chosen = [i for i, w in enumerate(weights) if w.requires_grad]
        variables = [Tensor(weights[i].data.copy()) for i in chosen]
        clone_grads = [grads[i] for i in chosen]
    else:
        variables = [Tensor(np.concatenate([w.data.ravel() for w in weights]))]
        clone_grads = [np.concatenate([g.ravel() for g in grads])]
    if optimizer.built:
        clone.build(variables)
        clone.set_state(optimizer.get_state())
    clone.apply_gradients(list(zip(clone_grads, variables)))
    if per_tensor:
        new_values = {i: v.data for i, v in zip(chosen, variables)}
    else:
        new_values, offset = {}, 0
        for i, w in enumerate(weights):
            new_values[i] = variables[0].data[offset : offset + w.size].reshape(w.shape)
            offset += w.size
    index = 0
    for layer, trace in zip(model.layers, layers):
        for w in layer.weights:
            short = w.name.split("/")[-1]
            new = new_values.get(index, w.data).copy()
            trace.weights_after[short] = new
            trace.updates[short] = new - trace.weights[short]
            index += 1


def _random_states(model) -> list:
    """The state of every random stream the model's layers draw from, and NumPy's global one."""
    states = [(generator(), generator().get_state())]
    for layer in model.layers:
        for value in vars(layer).values():
            if isinstance(value, np.random.Generator):
                states.append((value.bit_generator, value.bit_generator.state))
            elif isinstance(value, np.random.RandomState) and value is not generator():
                states.append((value, value.get_state()))
    return states


def _restore_random_states(states) -> None:
    for owner, state in states:
        if isinstance(owner, np.random.RandomState):
            owner.set_state(state)
        else:
            owner.state = state
