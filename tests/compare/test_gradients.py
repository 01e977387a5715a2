"""compare.gradients without TensorFlow: the relative difference, the table, the report section and figure."""

import json

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from compare import gradients  # noqa: E402
from compare.experiments import ALL, EXPERIMENTS  # noqa: E402


def fake_result(name="relu-adam", worst=2e-7):
    layers = [
        {"layer": "dense", "activation": "relu", "kernel_shape": [64, 12], "grad_norm_keras": 0.18,
         "grad_norm_minitensor": 0.18, "delta_norm_keras": 0.1, "delta_norm_minitensor": 0.1,
         "rel_diff": {"delta": 1e-7, "kernel": worst, "bias": 0.0}, "max_rel": worst},
        {"layer": "dense_1", "activation": "sigmoid", "kernel_shape": [12, 1], "grad_norm_keras": 0.05,
         "grad_norm_minitensor": 0.05, "delta_norm_keras": 0.2, "delta_norm_minitensor": 0.2,
         "rel_diff": {"delta": 3e-8, "kernel": 5e-8, "bias": 1e-8}, "max_rel": 5e-8},
    ]
    return {"experiment": name, "architecture": "64-12r-1s", "layers": layers, "max_rel": max(worst, 5e-8),
            "tolerance": gradients.GRADIENT_RTOL, "passed": worst <= gradients.GRADIENT_RTOL, "dropout_off": False}


def fake_flow():
    steps = [0, 12, 24]
    record = lambda scale: {"steps": steps, "layers": {  # noqa: E731
        f"layer {i}": {"grad_norm": [scale * 10.0 ** i] * 3, "dead_fraction": [float("nan")] * 3} for i in (1, 2, 3)}}
    return {a: {"keras": record(s), "minitensor": record(s), "architecture": "64-8-8-1"}
            for a, s in (("sigmoid", 1e-4), ("relu", 1e-2))}


def test_relative_difference_is_relative_to_the_scale_of_the_terms():
    b = np.array([1.0, -4.0, 0.5])
    assert gradients.relative_difference(b + np.array([0, 4e-6, 0]), b) == pytest.approx(1e-6)
    # a sum that cancels to nearly 0: measured against the size of its terms, not of the result
    assert gradients.relative_difference(np.array([3e-7]), np.array([1e-7]), scale=np.array([2.0])) == pytest.approx(1e-7)
    assert gradients.relative_difference(np.array([3e-7]), np.array([1e-7])) == pytest.approx(2.0)
    assert gradients.relative_difference(np.zeros(3), np.zeros(3)) == 0.0
    assert gradients.relative_difference(np.ones(1), np.zeros(1)) == float("inf")
    with pytest.raises(ValueError, match="one shape"):
        gradients.relative_difference(np.ones(2), np.ones(3))


def test_the_table_has_a_row_per_layer_and_marks_what_is_outside_round_off():
    text = gradients.gradient_table([fake_result(), fake_result("softmax", worst=3e-4)])
    lines = text.splitlines()
    assert len(lines) == 2 + 4
    assert lines[2].startswith("| relu-adam | dense (relu) | 64×12 |") and lines[2].endswith("✅ |")
    assert lines[3].startswith("|  | dense_1 (sigmoid) | 12×1 |")
    assert "3.0e-04" in lines[4] and lines[4].endswith("❌ |")


def test_distinct_models_count_once():
    chosen = gradients._distinct_models(ALL)
    names = [e.name for e in chosen]
    assert "no-early-stop" not in names and "deep" in names  # the same layers, loss and batch as deep
    assert len(names) == len(set((e.layers, e.loss, e.batch_size, e.train_on) for e in ALL))


def test_first_batch_is_the_first_batch_of_the_parity_order():
    from compare.engines import batch_order, training_arrays

    experiment = EXPERIMENTS["relu-adam"]
    x, y = gradients.first_batch(experiment, seed=3)
    full_x, full_y = training_arrays(experiment)
    rows = batch_order(len(full_x), 3)[:32]
    assert x.dtype == np.float32 and x.shape == (32, 64)
    np.testing.assert_array_equal(x, full_x[rows].astype(np.float32))
    np.testing.assert_array_equal(y, full_y[rows].astype(np.float32))


def test_flow_models_are_the_deep_model_with_sigmoid_or_relu_hidden_layers():
    models = gradients.flow_models()
    deep = EXPERIMENTS["deep"]
    for activation, experiment in models.items():
        assert [l.units for l in experiment.layers] == [l.units for l in deep.layers]
        assert [l.activation for l in experiment.layers[:-1]] == [activation] * 7
        assert experiment.layers[-1].activation == "sigmoid"


def test_report_section_is_added_to_a_written_report(tmp_path):
    (tmp_path / "report.md").write_text("# report\n")
    (tmp_path / "index.html").write_text("<html><body><h1>report</h1>\n</body></html>\n")
    (tmp_path / "results.json").write_text(json.dumps({"summary": {}}))
    gradients.add_to_report(tmp_path, [fake_result(), fake_result("softmax", worst=3e-4)], fake_flow())
    md = (tmp_path / "report.md").read_text()
    assert "## Gradients, layer by layer" in md and "| relu-adam | dense (relu) |" in md
    assert "**Outside round-off: softmax.**" in md
    assert "![gradient flow](figures/gradient-flow.png)" in md
    assert "0.01× the last layer's with sigmoid" in md  # layer 1 / layer 3 of the fake flow
    page = (tmp_path / "index.html").read_text()
    assert page.count("<table>") == 1 and "<strong>Outside round-off: softmax.</strong>" in page
    assert "data:image/png;base64," in page and page.rstrip().endswith("</body></html>")
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["gradients"]["tolerance"] == gradients.GRADIENT_RTOL
    assert [m["experiment"] for m in document["gradients"]["models"]] == ["relu-adam", "softmax"]
    assert document["gradients"]["flow"]["relu"]["keras"]["steps"] == [0, 12, 24]
    assert document["gradients"]["flow"]["relu"]["keras"]["layers"]["layer 1"]["dead_fraction"] == [None] * 3
    assert (tmp_path / "figures" / "gradient-flow.png").read_bytes()[:4] == b"\x89PNG"


def test_the_command_line_rejects_unknown_experiments(capsys):
    with pytest.raises(SystemExit):
        gradients.main(["--only", "nope"])
    assert "unknown experiment(s): nope" in capsys.readouterr().err


def test_compare_gradients_flag_adds_the_section_and_check_fails_on_it(tmp_path, monkeypatch, outcome_factory):
    from compare import __main__ as cli
    from compare import engines

    monkeypatch.setattr(engines, "run_experiment",
                        lambda experiment, *, mode, seeds, progress=None, **kwargs: outcome_factory(
                            experiment.name, epochs=experiment.epochs, mode=mode))
    seen = []

    def fake_report(out_dir, experiments, seed, epochs_scale):
        seen.append(([e.name for e in experiments], seed, epochs_scale))
        return ["relu-adam"]

    monkeypatch.setattr(gradients, "report_gradients", fake_report)
    argv = ["--only", "relu-adam", "--epochs-scale", "0.04", "--out", str(tmp_path)]
    if "--jobs" in cli.build_parser().format_help():
        argv += ["--jobs", "1"]  # in this process, where the fakes above apply
    assert cli.main(argv + ["--check"]) == 0 and seen == []  # off unless asked for
    assert cli.main(argv + ["--gradients"]) == 0
    assert cli.main(argv + ["--gradients", "--check"]) == 1
    assert seen == [(["relu-adam"], 42, 0.04)] * 2
