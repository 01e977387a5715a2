"""viz: DOT text of a graph (structure, labels, summaries) and rendering through Graphviz, or a clear error."""

import re
import sys

import graphviz
import numpy as np
import pytest

from minitensor import Tensor, ops
from minitensor.layers import Dense, Input, keep_pre_activations
from minitensor.models import Sequential
from minitensor.viz import draw, render, summary, to_dot


def edges(text):
    names = {node: label.split("  ")[0] for node, label in re.findall(r'(n\d+) \[label="([^"\\]*)', text)}
    return {(names[a], names[b]) for a, b in re.findall(r"(n\d+) -> (n\d+);", text)}


def small_graph():
    x = Tensor(np.array([[1.0, -2.0]], np.float32)); x.name = "x"
    w = Tensor(np.array([[0.5], [0.25]], np.float32), requires_grad=True); w.name = "w"
    b = Tensor(np.array([0.1], np.float32), requires_grad=True); b.name = "b"
    z = x @ w + b
    z.name = "z"
    loss = ops.relu(z).sum()
    return loss, (x, w, b, z)


def test_one_node_per_op_and_leaf_with_edges_along_the_data_flow():
    loss, (x, w, b, z) = small_graph()
    text = to_dot(loss)
    assert text.startswith("digraph minitensor {") and text.rstrip().endswith("}")
    assert text.count("[label=") == 3 + 4  # leaves x, w, b; ops matmul, add, relu, sum
    assert edges(text) == {("x", "matmul"), ("w", "matmul"), ("matmul", "add"), ("b", "add"), ("add", "relu"),
                           ("relu", "sum")}
    assert "z  (1, 1)" in text  # an op node names the tensor it made, and its shape
    assert "(2, 1)" in text and "(1,)" in text


def test_shared_inputs_are_drawn_once():
    a = Tensor([2.0], requires_grad=True); a.name = "a"
    text = to_dot(a * a + a)
    assert text.count('label="a  (1,)') == 1
    assert len(re.findall(r"-> ", text)) == 4  # a->mul twice, mul->add, a->add


def test_data_and_gradient_summaries_are_optional():
    loss, (x, w, b, z) = small_graph()
    z.retain_grad()
    loss.backward()
    plain = to_dot(loss)
    assert "grad" not in plain and "data [" not in plain
    rich = to_dot(loss, show_data=True, show_grad=True)
    assert "data [0.5, 0.25]" in rich  # w's values
    assert "grad [1, -2]" in rich  # dloss/dw = x^T, as relu(z) > 0
    assert rich.count("grad ") == 2 + 1  # w, b (leaves) and z (retained); x needs none
    assert summary(np.arange(10.0)).startswith("‖·‖=16.88")


def test_a_model_graph_shows_layer_names_and_the_pre_activation_in_study_mode():
    model = Sequential([Input(shape=(4,)), Dense(3, activation="relu", name="h"), Dense(1, activation="sigmoid", name="o")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    x, y = np.ones((2, 4), np.float32), np.ones((2, 1), np.float32)
    fused = to_dot(model.compute_loss(x, y))
    assert "h/output" in fused and "h/pre_activation" not in fused
    with keep_pre_activations():
        split = to_dot(model.compute_loss(x, y))
    assert "h/pre_activation" in split and ("linear", "relu") in edges(split)


def test_bad_arguments():
    loss, _ = small_graph()
    with pytest.raises(TypeError, match="Tensor"):
        to_dot(np.ones(3))
    with pytest.raises(ValueError, match="rankdir"):
        to_dot(loss, rankdir="up")
    with pytest.raises(ValueError, match="max_nodes"):
        to_dot(loss, max_nodes=3)
    with pytest.raises(ValueError, match=r"\.svg, \.png or \.pdf"):
        draw(loss, "graph.jpg")


@pytest.mark.parametrize("extension, magic", [("svg", b"<svg"), ("png", b"\x89PNG"), ("pdf", b"%PDF")])
def test_draw_renders_each_format(tmp_path, extension, magic):
    loss, _ = small_graph()
    path = draw(loss, tmp_path / f"g.{extension}", rankdir="LR")
    content = open(path, "rb").read()
    assert magic in content[:400]


def test_dpi_sets_the_png_resolution(tmp_path):
    loss, _ = small_graph()
    small = open(draw(loss, tmp_path / "a.png", dpi=40), "rb").read()
    large = open(draw(loss, tmp_path / "b.png", dpi=160), "rb").read()
    width = lambda png: int.from_bytes(png[16:20], "big")  # noqa: E731  (the IHDR chunk)
    assert width(large) > 3 * width(small)


def test_without_the_graphviz_package_the_error_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "graphviz", None)
    loss, _ = small_graph()
    with pytest.raises(ImportError, match=r'pip install "minitensor\[viz\]".*apt install graphviz'):
        draw(loss, tmp_path / "g.svg")
    assert to_dot(loss)  # the DOT text needs nothing


def test_without_the_dot_program_the_error_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` there
    loss, _ = small_graph()
    with pytest.raises(RuntimeError, match=r"program `dot`.*minitensor\[viz\].*brew install graphviz"):
        render(to_dot(loss), tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()
    assert graphviz.__version__  # the package itself is there
