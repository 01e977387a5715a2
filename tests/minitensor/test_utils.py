"""utils: model_to_dot / plot_model with Keras's arguments, through Graphviz, or a clear error."""

import sys

import graphviz  # noqa: F401  (the viz extra: CI installs it)
import numpy as np
import pytest

from minitensor.layers import Dense, Dropout, Input
from minitensor.models import Sequential
from minitensor.utils import model_to_dot, plot_model, to_categorical


def lesson_model():
    return Sequential([Input(shape=(64,)), Dense(12, activation="relu", name="hidden_1"),
                       Dense(8, activation="relu", name="hidden_2"), Dropout(0.5, name="drop"),
                       Dense(1, activation="sigmoid", name="out")])


def test_model_to_dot_has_one_box_per_layer_in_order():
    text = model_to_dot(lesson_model())
    assert text.count("[label=<") == 5  # the input, then four layers
    for i in range(4):
        assert f"layer{i} -> layer{i + 1};" in text
    order = [text.index(name) for name in ("input_layer", "hidden_1", "hidden_2", "drop", "out")]
    assert order == sorted(order)


def test_keras_options_show_shapes_dtype_activations_trainable_or_class_names():
    model = lesson_model()
    bare = model_to_dot(model, show_layer_names=False)
    assert "hidden_1" not in bare and "<b>Dense</b>" in bare and "Output shape" not in bare
    full = model_to_dot(model, show_shapes=True, show_dtype=True, show_layer_activations=True, show_trainable=True)
    assert "Input shape: <b>(None, 64)</b>" in full and "Output shape: <b>(None, 12)</b>" in full
    assert "Output shape: <b>(None, 1)</b>" in full
    assert "Activation: <b>relu</b>" in full and "Activation: <b>sigmoid</b>" in full
    assert "Output dtype: <b>float32</b>" in full and "Trainable: <b>Y</b>" in full
    assert "rankdir=LR;" in model_to_dot(model, rankdir="LR") and "dpi=96;" in model_to_dot(model, dpi=96)


def test_bad_arguments_are_rejected():
    with pytest.raises(TypeError, match="Sequential"):
        model_to_dot("model")
    with pytest.raises(ValueError, match="not yet been built"):
        model_to_dot(Sequential([Dense(2)]))
    with pytest.raises(ValueError, match="rankdir"):
        model_to_dot(lesson_model(), rankdir="down")
    with pytest.raises(ValueError, match="dpi"):
        model_to_dot(lesson_model(), dpi=0)
    with pytest.raises(ValueError, match="Unrecognized keyword arguments"):
        plot_model(lesson_model(), to_file="m.png", show_colors=True)


def test_plot_model_writes_the_file_keras_would(tmp_path):
    model = lesson_model()
    plot_model(model, to_file=tmp_path / "m", show_shapes=True)  # no extension: PNG, as Keras
    assert open(tmp_path / "m.png", "rb").read(4) == b"\x89PNG"
    plot_model(model, to_file=str(tmp_path / "m.svg"), rankdir="LR", dpi=72)
    assert b"<svg" in open(tmp_path / "m.svg", "rb").read()
    low = (tmp_path / "low.png"); high = (tmp_path / "high.png")
    plot_model(model, to_file=low, dpi=50)
    plot_model(model, to_file=high, dpi=200)
    assert int.from_bytes(high.read_bytes()[16:20], "big") > 3 * int.from_bytes(low.read_bytes()[16:20], "big")


def test_plot_model_without_graphviz_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "graphviz", None)
    with pytest.raises(ImportError, match=r'pip install "minitensor\[viz\]"'):
        plot_model(lesson_model(), to_file=tmp_path / "m.png")
    assert not (tmp_path / "m.png").exists()


def test_to_categorical_is_still_there():
    np.testing.assert_array_equal(to_categorical([1, 0], 2), [[0.0, 1.0], [1.0, 0.0]])
