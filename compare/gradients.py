"""Gradients side by side: one batch's per-layer gradients in minitensor and in tf.keras.

For each lesson model, :func:`compare_gradients` builds it in both engines with tf.keras's
initial weights copied into minitensor, takes the first batch of the parity batch order, and
computes one step's gradients in each:

* minitensor: :func:`minitensor.trace.trace_step` (``compute_loss`` and ``backward()``);
* tf.keras: ``tf.GradientTape`` over the layers' own ops (``matmul``, ``add``, the activation)
  and ``model.compute_loss``, the same sum of loss and penalties that ``fit`` minimizes.

Per ``Dense`` layer it compares the delta (``dLoss/dz``, ``z`` the pre-activation) and the
kernel and bias gradients, by their largest relative difference: ``max|g_minitensor - g_keras|``
over the largest entry of the same sum taken over absolute values (``max|δ|`` for the delta,
``|x|ᵀ|δ|`` for the kernel, ``Σ_rows |δ|`` for the bias), see :func:`relative_difference`. An
entry-by-entry ratio would blow up on entries that cancel to round-off away from 0. Models with dropout are compared with dropout off
(the engines cannot share masks), so every comparison is deterministic and must agree to
float32 round-off: :data:`GRADIENT_RTOL`.

:func:`gradient_flow` trains the lesson's deep model (30-20-12-12-12-8-4-1) with sigmoid and
with relu hidden layers in both engines, from the same weights and batch order, and records
the per-layer gradient norms on a fixed probe batch every few batches
(:class:`minitensor.gradient_flow.GradientFlow` and its tf.keras counterpart here): the
vanishing gradients of the lesson, measured. :func:`flow_figure` draws them.

``python -m compare --gradients`` adds both to its report (:func:`report_gradients`; ``make demo``
passes it);
``python -m compare.gradients [--only NAME ...] [--check]`` prints the table alone.

Example:
    >>> round(relative_difference(np.array([1.0, 2.0]), np.array([1.0, 2.000002])), 9)
    1e-06
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .engines import batch_order, build_model, engine_api, training_arrays
from .experiments import ALL, EXPERIMENTS, DenseSpec, Experiment

__all__ = [
    "GRADIENT_RTOL",
    "LayerGradients",
    "relative_difference",
    "keras_gradients",
    "minitensor_gradients",
    "compare_gradients",
    "compare_all",
    "gradient_table",
    "gradient_flow",
    "flow_figure",
    "report_gradients",
    "main",
]

#: The largest normwise relative difference between the engines' gradients that still counts as
#: float32 round-off (a few units in the last place of the largest entry, after the sums over
#: the batch and the products through the layers; measured: at most 5e-7 on the lesson's models, the
#: same bound as the parity comparison's strict rule).
GRADIENT_RTOL = 1e-5

#: How many rows of the probe batch :func:`gradient_flow` measures on, and how often.
FLOW_PROBE_ROWS = 256
FLOW_EVERY = 12


def relative_difference(a, b, scale=None) -> float:
    """``max|a - b| / max(scale)``; ``scale`` defaults to ``|b|`` (the largest entry of ``b``).

    For a gradient that is a sum over the batch, pass the same sum of absolute values as
    ``scale`` (``|x|ᵀ|δ|`` for a kernel, ``Σ|δ|`` for a bias): float32 sums taken in another
    order differ by round-off of the size of their terms, which a sum that cancels to nearly 0
    would otherwise inflate. Returns 0 when both are all zeros and ``inf`` when only the scale is.

    Example:
        >>> relative_difference(np.zeros(2), np.zeros(2))
        0.0
        >>> relative_difference(np.array([1e-7]), np.array([2e-7]), scale=np.array([1.0]))
        1e-07
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"Expected arrays of one shape. Received: {a.shape} and {b.shape}")
    scale = np.abs(b) if scale is None else np.abs(np.asarray(scale, dtype=np.float64))
    scale = float(np.max(scale)) if scale.size else 0.0
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


@dataclass
class LayerGradients:
    """One Dense layer's gradients in one engine: ``delta`` (``dLoss/dz``), ``kernel``, ``bias``."""

    name: str
    activation: str
    delta: np.ndarray
    kernel: np.ndarray
    bias: np.ndarray
    extra: dict = field(default_factory=dict)


def first_batch(experiment: Experiment, seed: int):
    """The first training batch in the parity batch order: ``(x, y)`` as float32 arrays."""
    x, y = training_arrays(experiment)
    rows = batch_order(len(x), seed)[: experiment.batch_size]
    return np.asarray(x[rows], np.float32), np.asarray(y[rows], np.float32)


def keras_gradients(model, x, y, training=True) -> tuple[float, list]:
    """One step's loss and per-Dense-layer gradients of a compiled tf.keras ``Sequential``, by ``tf.GradientTape``.

    The forward pass runs each Dense layer as its own ``call`` does (``matmul``, ``add``, the
    activation), keeping the pre-activation ``z`` so that the tape can differentiate with
    respect to it; other layers are called as they are.
    """
    import keras
    import tensorflow as tf

    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    with tf.GradientTape() as tape:
        a = tf.constant(x)
        pre = []
        for layer in model.layers:
            if isinstance(layer, keras.layers.Dense):
                z = keras.ops.add(keras.ops.matmul(a, layer.kernel), layer.bias)
                pre.append(z)
                a = layer.activation(z)
            else:
                a = layer(a, training=training)
        loss = model.compute_loss(x=x, y=y, y_pred=a, training=training)
    weights = [w for layer in dense for w in (layer.kernel, layer.bias)]
    grads = tape.gradient(loss, pre + weights)
    deltas, weight_grads = grads[: len(pre)], grads[len(pre) :]
    layers = [
        LayerGradients(
            name=layer.name,
            activation=layer.activation.__name__,
            delta=np.asarray(delta),
            kernel=np.asarray(weight_grads[2 * i]),
            bias=np.asarray(weight_grads[2 * i + 1]),
        )
        for i, (layer, delta) in enumerate(zip(dense, deltas))
    ]
    return float(loss), layers


def minitensor_gradients(model, x, y, training=True) -> tuple[float, list]:
    """One step's loss and per-Dense-layer gradients of a minitensor ``Sequential``, from its trace."""
    from minitensor.trace import trace_step

    trace = trace_step(model, x, y, training=training)
    layers = [
        LayerGradients(
            name=layer.name,
            activation=layer.activation_name,
            delta=layer.delta,
            kernel=layer.gradients["kernel"],
            bias=layer.gradients["bias"],
            extra={"input": layer.input},
        )
        for layer in trace
        if layer.kind == "Dense"
    ]
    return trace.loss, layers


def compare_gradients(experiment: Experiment, seed: int = 42) -> dict:
    """Build ``experiment`` in both engines on tf.keras's weights and compare one batch's gradients.

    Returns a JSON-ready dict: the experiment, the batch, both losses, and per layer its
    activation, shapes, the gradient norms in each engine and the relative differences of the
    delta, kernel and bias gradients (their maximum as ``max_rel``), and ``passed``.
    """
    keras_api = engine_api("keras")
    keras_api.set_random_seed(seed)
    keras_model = build_model(experiment, "keras")
    mt_model = build_model(experiment, "minitensor")
    mt_model.set_weights(keras_model.get_weights())
    x, y = first_batch(experiment, seed)
    training = not experiment.has_dropout
    keras_loss, keras_layers = keras_gradients(keras_model, x, y, training=training)
    mt_loss, mt_layers = minitensor_gradients(mt_model, x, y, training=training)
    layers = []
    for k, m in zip(keras_layers, mt_layers):
        x_in, delta = np.abs(m.extra["input"]).astype(np.float64), np.abs(k.delta).astype(np.float64)
        diffs = {
            "delta": relative_difference(m.delta, k.delta),
            "kernel": relative_difference(m.kernel, k.kernel, scale=x_in.T @ delta),
            "bias": relative_difference(m.bias, k.bias, scale=delta.sum(axis=0)),
        }
        layers.append({
            "layer": m.name,
            "activation": m.activation,
            "kernel_shape": list(m.kernel.shape),
            "grad_norm_keras": float(np.linalg.norm(k.kernel)),
            "grad_norm_minitensor": float(np.linalg.norm(m.kernel)),
            "delta_norm_keras": float(np.linalg.norm(k.delta)),
            "delta_norm_minitensor": float(np.linalg.norm(m.delta)),
            "rel_diff": diffs,
            "max_rel": max(diffs.values()),
        })
    worst = max(layer["max_rel"] for layer in layers)
    return {
        "experiment": experiment.name,
        "architecture": experiment.architecture,
        "batch_rows": int(len(x)),
        "seed": seed,
        "dropout_off": not training,
        "loss_keras": keras_loss,
        "loss_minitensor": mt_loss,
        "loss_rel_diff": abs(mt_loss - keras_loss) / abs(keras_loss) if keras_loss else abs(mt_loss),
        "layers": layers,
        "max_rel": worst,
        "tolerance": GRADIENT_RTOL,
        "passed": bool(worst <= GRADIENT_RTOL),
    }


def _distinct_models(experiments):
    """The experiments whose first-batch gradients differ (same layers, loss and batch size count once)."""
    seen, chosen = set(), []
    for e in experiments:
        key = (e.layers, e.loss, e.task, e.batch_size, e.train_on)
        if key not in seen:
            seen.add(key)
            chosen.append(e)
    return chosen


def compare_all(experiments=None, seed: int = 42) -> list:
    """:func:`compare_gradients` for each distinct model among ``experiments`` (all lesson models by default)."""
    return [compare_gradients(e, seed) for e in _distinct_models(ALL if experiments is None else experiments)]


def gradient_table(results) -> str:
    """A Markdown table: one row per layer of each model, norms in both engines and relative differences.

    Example:
        >>> row = {"layer": "dense", "activation": "relu", "kernel_shape": [64, 12], "grad_norm_keras": 0.5,
        ...        "grad_norm_minitensor": 0.5, "rel_diff": {"delta": 1e-7, "kernel": 2e-7, "bias": 0.0},
        ...        "max_rel": 2e-7}
        >>> result = {"experiment": "relu-adam", "architecture": "64-12r", "layers": [row], "passed": True,
        ...           "dropout_off": False}
        >>> print(gradient_table([result]).splitlines()[2])
        | relu-adam | dense (relu) | 64×12 | 0.5 | 0.5 | 1.0e-07 | 2.0e-07 | 0.0e+00 | ✅ |
    """
    header = ["model", "layer", "kernel", "‖dW‖ tf.keras", "‖dW‖ minitensor", "rel. diff delta",
              "rel. diff dW", "rel. diff db", "within round-off"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for result in results:
        name = result["experiment"] + (" (dropout off)" if result.get("dropout_off") else "")
        for i, row in enumerate(result["layers"]):
            ok = "✅" if row["max_rel"] <= result.get("tolerance", GRADIENT_RTOL) else "❌"
            lines.append("| " + " | ".join([
                name if i == 0 else "",
                f"{row['layer']} ({row['activation']})",
                "×".join(map(str, row["kernel_shape"])),
                f"{row['grad_norm_keras']:.4g}",
                f"{row['grad_norm_minitensor']:.4g}",
                f"{row['rel_diff']['delta']:.1e}",
                f"{row['rel_diff']['kernel']:.1e}",
                f"{row['rel_diff']['bias']:.1e}",
                ok,
            ]) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ gradient flow
def flow_models() -> dict:
    """The lesson's deep model with relu hidden layers, and the same with sigmoid ones (SGD, batch 32)."""
    deep = next(e for e in ALL if e.name == "deep")
    units = [layer.units for layer in deep.layers if isinstance(layer, DenseSpec)]
    models = {}
    for activation in ("sigmoid", "relu"):
        layers = tuple(DenseSpec(u, activation) for u in units[:-1]) + (DenseSpec(units[-1], "sigmoid"),)
        models[activation] = Experiment(
            f"deep-{activation}", deep.section, f"the deep model with {activation} hidden layers", "binary",
            layers, deep.loss, "sgd", epochs=5, batch_size=32,
        )
    return models


def _keras_flow_callback(x, y, every):
    """A tf.keras callback recording per-layer kernel-gradient norms on ``(x, y)`` every ``every`` batches."""
    api = engine_api("keras")

    class KerasGradientFlow(api.Callback):
        def __init__(self):
            super().__init__()
            self.steps, self.layers, self._done = [], {}, 0

        def record(self, step):
            _, layers = keras_gradients(self.model, x, y, training=True)
            self.steps.append(step)
            for layer in layers:
                self.layers.setdefault(layer.name, {"grad_norm": []})["grad_norm"].append(
                    float(np.linalg.norm(layer.kernel))
                )

        def on_train_begin(self, logs=None):
            self.record(0)

        def on_train_batch_end(self, batch, logs=None):
            self._done += 1
            if self._done % every == 0:
                self.record(self._done)

    return KerasGradientFlow()


def gradient_flow(seed: int = 42, epochs: int | None = None, every: int = FLOW_EVERY) -> dict:
    """Train the deep sigmoid and relu models in both engines and record their gradient flow.

    Both engines start from tf.keras's initial weights and see the same batches in the same
    order (parity mode); every ``every`` batches each measures the per-layer kernel-gradient
    norms on the same probe batch (the first :data:`FLOW_PROBE_ROWS` training rows).

    Returns:
        ``{activation: {"keras": record, "minitensor": record}}``, each record as
        :meth:`minitensor.gradient_flow.GradientFlow.as_dict` gives it (``steps``, ``layers``).
    """
    from minitensor.gradient_flow import GradientFlow

    keras_api = engine_api("keras")
    out = {}
    for activation, experiment in flow_models().items():
        x, y = training_arrays(experiment)
        order = batch_order(len(x), seed)
        x, y = np.asarray(x[order], np.float32), np.asarray(y[order], np.float32)
        probe = (x[:FLOW_PROBE_ROWS], y[:FLOW_PROBE_ROWS])
        n_epochs = epochs or experiment.epochs
        keras_api.set_random_seed(seed)
        keras_model = build_model(experiment, "keras")
        mt_model = build_model(experiment, "minitensor")
        mt_model.set_weights(keras_model.get_weights())
        keras_flow = _keras_flow_callback(*probe, every)
        keras_model.fit(x, y, batch_size=experiment.batch_size, epochs=n_epochs, shuffle=False, verbose=0,
                        callbacks=[keras_flow])
        mt_flow = GradientFlow(*probe, every=every)
        mt_model.fit(x, y, batch_size=experiment.batch_size, epochs=n_epochs, shuffle=False, verbose=0,
                     callbacks=[mt_flow])
        mt_record = mt_flow.as_dict()
        # the engines name their layers differently: number them from the input instead
        names = [f"layer {i}" for i in range(1, len(mt_record["layers"]) + 1)]
        mt_record["layers"] = dict(zip(names, mt_record["layers"].values()))
        mt_record["activations"] = dict(zip(names, mt_record["activations"].values()))
        out[activation] = {
            "keras": {"steps": keras_flow.steps, "layers": dict(zip(names, keras_flow.layers.values()))},
            "minitensor": mt_record,
            "architecture": experiment.architecture,
        }
    return out


def flow_figure(flow: dict, path) -> None:
    """Per-layer gradient norms over training, sigmoid and relu side by side, both engines on each axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minitensor.gradient_flow import plot_gradient_flow

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, (activation, records) in zip(axes, flow.items()):
        plot_gradient_flow(records["minitensor"], ax=ax)
        n = len(ax.get_lines())
        plot_gradient_flow(records["keras"], ax=ax, linestyle=(0, (1, 3)))
        for line in ax.get_lines()[n:]:
            line.set_linewidth(3)
        ax.legend(handles=ax.get_lines()[:n], fontsize="x-small", ncol=2, title="minitensor (line), tf.keras (dots)",
                  title_fontsize="x-small")
        ax.set_title(f"{activation} hidden layers ({records['architecture']})")
    fig.suptitle("Gradient norm of each layer's kernel on a fixed batch of 256 rows while training with SGD")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------ the report
def report_section(results, flow, figure_name="figures/gradient-flow.png") -> str:
    """The report's Markdown section: the per-layer gradient table and the gradient-flow figure."""
    failed = [r["experiment"] for r in results if not r["passed"]]
    lines = [
        "## Gradients, layer by layer",
        "",
        "One batch (the first of the parity order) of each lesson model (a model the lesson trains again, on the "
        "same batch, is listed once), on the same weights, in both engines: "
        "minitensor's `trace_step` against `tf.GradientTape` over tf.keras's layers and `compute_loss`. "
        "delta = dLoss/dz, z the layer's pre-activation. Relative difference = max|minitensor − tf.keras| over "
        "the largest entry of the same sum taken over absolute values (max|δ| for the delta, |x|ᵀ|δ| for dW, "
        f"Σ|δ| for db), so sums that cancel do not inflate it; float32 round-off allows {GRADIENT_RTOL:g}. "
        + (f"**Outside round-off: {', '.join(failed)}.**" if failed else "Every layer of every model is within it."),
        "",
        gradient_table(results),
        "",
    ]
    if flow:
        first = {a: r["minitensor"]["layers"] for a, r in flow.items()}
        ratios = {a: next(iter(layers.values()))["grad_norm"][0] / list(layers.values())[-1]["grad_norm"][0]
                  for a, layers in first.items()}
        lines += [
            "## Gradient flow: sigmoid against relu in the deep model",
            "",
            "The lesson's deep model with sigmoid hidden layers and with relu ones, trained with SGD from the same "
            "weights in both engines; every few batches each measures the gradient norm of every layer's kernel on "
            "the same 256 rows. At the start, the first layer's gradient is "
            + ", ".join(f"{ratio:.2g}× the last layer's with {a}" for a, ratio in ratios.items())
            + ": each sigmoid layer multiplies the backpropagated delta by at most 1/4.",
            "",
            f"![gradient flow]({figure_name})",
            "",
        ]
    return "\n".join(lines)


def add_to_report(out_dir, results, flow) -> None:
    """Append the gradient section to a written report (``report.md``, ``index.html``, ``results.json``)."""
    out_dir = Path(out_dir)
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    if flow:
        flow_figure(flow, figures / "gradient-flow.png")
    section = report_section(results, flow)
    md = out_dir / "report.md"
    if md.exists():
        md.write_text(md.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + section + "\n", encoding="utf-8")
    index = out_dir / "index.html"
    if index.exists():
        body = _markdown_to_html(section, figures)
        text = index.read_text(encoding="utf-8")
        index.write_text(text.replace("</body></html>", body + "\n</body></html>"), encoding="utf-8")
    results_path = out_dir / "results.json"
    if results_path.exists():
        document = json.loads(results_path.read_text(encoding="utf-8"))
        document["gradients"] = _json_ready({"tolerance": GRADIENT_RTOL, "models": results, "flow": flow})
        results_path.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def _json_ready(value):
    """``value`` with NumPy numbers as Python ones and NaN/inf as ``None`` (JSON has neither)."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _markdown_to_html(section, figures) -> str:
    """The few Markdown constructs of :func:`report_section` (headings, paragraphs, one table, an image)."""
    out, table = [], []
    for line in section.splitlines() + [""]:
        if line.startswith("|"):
            if not set(line) <= set("|-"):
                table.append([c.strip() for c in line.strip("|").split("|")])
            continue
        if table:
            head, *rows = table
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
                       + "</tbody></table>")
            table = []
        if line.startswith("## "):
            slug = re.sub(r"[^a-z0-9]+", "-", line[3:].lower()).strip("-")
            out.append(f'<h2 id="{slug}">{html.escape(line[3:])}</h2>')
        elif line.startswith("!["):
            name = re.search(r"\((.+)\)", line).group(1).split("/")[-1]
            data = base64.b64encode((figures / name).read_bytes()).decode("ascii")
            out.append(f'<img alt="gradient flow" src="data:image/png;base64,{data}">')
        elif line:
            text = html.escape(line)
            text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
            out.append("<p>" + re.sub(r"`(.+?)`", r"<code>\1</code>", text) + "</p>")
    return "\n".join(out)


def report_gradients(out_dir, experiments, seed: int = 42, epochs_scale: float = 1.0, stream=None) -> list:
    """What ``python -m compare --gradients`` adds to its report; returns the models outside round-off.

    Compares one batch's gradients of each distinct model among ``experiments``, records the deep
    model's gradient flow (its epochs scaled by ``epochs_scale``, at least 1) and appends both to
    the report in ``out_dir`` (:func:`add_to_report`).
    """
    stream = stream or sys.stdout
    models = _distinct_models(experiments)
    print(f"Gradients: one batch of {len(models)} model(s) in both engines, then the deep model's gradient flow",
          file=stream, flush=True)
    results = [compare_gradients(e, seed) for e in models]
    flow_epochs = max(1, round(flow_models()["relu"].epochs * epochs_scale))
    add_to_report(out_dir, results, gradient_flow(seed=seed, epochs=flow_epochs))
    failed = [r["experiment"] for r in results if not r["passed"]]
    print(f"Gradients: {len(results) - len(failed)} of {len(results)} within float32 round-off"
          + (f"; OUTSIDE: {', '.join(failed)}" if failed else ""), file=stream, flush=True)
    return failed


# ------------------------------------------------------------------------------ command line
def main(argv=None) -> int:
    """``python -m compare.gradients``: print the per-layer gradient table; ``--check`` fails outside round-off."""
    parser = argparse.ArgumentParser(prog="python -m compare.gradients", description=main.__doc__)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these experiments")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a model's gradients differ "
                        f"by more than float32 round-off ({GRADIENT_RTOL:g})")
    args = parser.parse_args(argv)
    if args.only:
        unknown = [n for n in args.only if n not in EXPERIMENTS]
        if unknown:
            parser.error(f"unknown experiment(s): {', '.join(unknown)} (valid names: {', '.join(EXPERIMENTS)})")
    experiments = [e for e in ALL if not args.only or e.name in args.only]
    results = compare_all(experiments, seed=args.seed)
    print(gradient_table(results))
    failed = [r["experiment"] for r in results if not r["passed"]]
    print(f"{len(results) - len(failed)} of {len(results)} models within float32 round-off"
          + (f"; outside: {', '.join(failed)}" if failed else "."))
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
