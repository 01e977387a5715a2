"""GradientFlow: what it records matches the trace and hand counts, when it records, and that it changes nothing."""

import math
import sys

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from minitensor.gradient_flow import METRICS, GradientFlow, layer_statistics, plot_gradient_flow  # noqa: E402
from minitensor.layers import Dense, Dropout, Input  # noqa: E402
from minitensor.models import Sequential  # noqa: E402
from minitensor.optimizers import SGD  # noqa: E402
from minitensor.trace import trace_step  # noqa: E402


def data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return x, (x[:, :1] > 0).astype(np.float32)


def model_of(activation, depth=3, seed=0):
    rng = np.random.default_rng(seed)
    layers = [Input(shape=(6,))] + [Dense(5, activation=activation) for _ in range(depth)] + [Dropout(0.2, seed=1),
                                                                                           Dense(1, activation="sigmoid")]
    model = Sequential(layers)
    model.compile(optimizer=SGD(learning_rate=0.5), loss="binary_crossentropy")
    model.set_weights([rng.normal(scale=1.5, size=w.shape) for w in model.get_weights()])
    return model


def test_records_before_training_and_every_n_batches_across_epochs():
    x, y = data()
    flow = GradientFlow(x[:16], y[:16], every=4)
    model_of("relu").fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[flow])  # 6 batches per epoch
    assert flow.steps == [0, 4, 8, 12]
    assert flow.epochs == [0, 0, 1, 1]
    assert list(flow.history) == [layer.name for layer in flow.model.layers if isinstance(layer, Dense)]
    for record in flow.history.values():
        assert set(record) == set(METRICS) and all(len(v) == 4 for v in record.values())


def test_with_jit_compile_training_falls_back_to_the_reference_path_and_records_every_n():
    x, y = data()
    model = Sequential([Input(shape=(6,)), Dense(4, activation="relu"), Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", jit_compile=True)
    flow = GradientFlow(x[:16], y[:16], every=4)
    with pytest.warns(UserWarning, match="GradientFlow.*reference path"):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[flow])
    assert flow.steps == [0, 4, 8, 12, 16]


def test_a_record_is_the_trace_of_the_probe_batch():
    x, y = data()
    model = model_of("tanh")
    flow = GradientFlow(x[:16], y[:16], every=1)
    flow.set_model(model)
    flow.record(0)
    trace = trace_step(model, x[:16], y[:16])
    assert flow.loss == [trace.loss]
    for layer in trace:
        if layer.kind != "Dense":
            continue
        record = flow.history[layer.name]
        assert record["grad_norm"] == [float(np.linalg.norm(layer.gradients["kernel"]))]
        assert record["update_ratio"] == [layer.update_ratio()]
        assert math.isnan(record["dead_fraction"][0])


def test_dead_and_saturated_shares_counted_by_hand():
    a = np.array([[0.0, 0.3, 0.0], [0.0, 0.0, 2.0]])
    assert layer_statistics("relu", a) == {"dead_fraction": 1 / 3, "saturated_fraction": pytest.approx(math.nan, nan_ok=True)}
    s = np.array([[0.005, 0.5], [0.995, 0.98]])
    assert layer_statistics("sigmoid", s)["saturated_fraction"] == 0.5
    assert layer_statistics("sigmoid", s, saturation=0.03)["saturated_fraction"] == 0.75
    t = np.array([[-0.999, 0.2, 0.9999, 0.5]])
    assert layer_statistics("tanh", t)["saturated_fraction"] == 0.5
    both = layer_statistics("softmax", s)
    assert math.isnan(both["dead_fraction"]) and math.isnan(both["saturated_fraction"])


def test_deep_sigmoid_gradients_vanish_towards_the_input_and_relu_ones_less():
    x, y = data(n=64)
    norms = {}
    for activation in ("sigmoid", "relu"):
        model = Sequential([Input(shape=(6,))] + [Dense(8, activation=activation) for _ in range(6)]
                           + [Dense(1, activation="sigmoid")])
        model.compile(optimizer="sgd", loss="binary_crossentropy")
        flow = GradientFlow(x, y)
        flow.set_model(model)
        flow.record(0)
        norms[activation] = [record["grad_norm"][0] for record in flow.history.values()]
    sigmoid, relu = norms["sigmoid"], norms["relu"]
    assert sigmoid[0] < sigmoid[-1] / 20  # each sigmoid layer scales the delta by at most 1/4
    assert sigmoid[0] / sigmoid[-1] < relu[0] / relu[-1]


def test_recording_changes_nothing_training_goes_on_bit_for_bit():
    x, y = data()
    watched, twin = model_of("relu"), model_of("relu")
    np.random.seed(3)
    watched.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[GradientFlow(x[:16], y[:16], every=1)])
    np.random.seed(3)
    twin.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for a, b in zip(watched.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(watched.optimizer.get_state()[0], twin.optimizer.get_state()[0])


def test_plot_draws_one_line_per_layer_and_accepts_plain_records():
    x, y = data()
    flow = GradientFlow(x[:16], y[:16], every=3)
    model_of("relu").fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[flow])
    ax = plot_gradient_flow(flow)
    assert len(ax.get_lines()) == 4 and ax.get_yscale() == "log"
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), flow.steps)
    ax = plot_gradient_flow(flow.as_dict(), metric="dead_fraction", label="minitensor", linestyle="--")
    assert len(ax.get_lines()) == 3  # the sigmoid output layer has no dead share
    assert ax.get_yscale() == "linear" and ax.get_lines()[0].get_label().startswith("minitensor ")
    with pytest.raises(ValueError, match="metric"):
        plot_gradient_flow(flow, metric="norm")


@pytest.mark.parametrize("kwargs, match", [
    ({"every": 0}, "every"), ({"every": 2.5}, "every"), ({"saturation": 0.7}, "saturation"),
    ({"training": "yes"}, "training"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradientFlow(np.zeros((2, 6)), np.zeros((2, 1)), **kwargs)
    with pytest.raises(ValueError, match="probe batch"):
        GradientFlow(None, None)


def test_plot_without_matplotlib_names_the_install_command(monkeypatch):
    record = {"steps": [0, 10], "layers": {"dense": {"grad_norm": [1.0, 0.5]}}}
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "minitensor\[viz\]"'):
        plot_gradient_flow(record)
