"""compare.experiments: every model of the lesson, as data."""

import json
import re

import pytest

from compare.experiments import ALL, EXPERIMENTS, DenseSpec, DropoutSpec, select


def test_names_are_unique_and_command_line_friendly():
    assert len({e.name for e in ALL}) == len(ALL)
    for e in ALL:
        assert re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", e.name), e.name


def test_every_lesson_model_is_there():
    # The lesson trains 21 models (one of them, the early-stopping baseline, twice the same spec).
    assert len(ALL) == 21
    sigmoid_sgd = {(e.batch_size, e.epochs, e.optimizer_settings.get("learning_rate"))
                   for e in ALL if e.layers[0].activation == "sigmoid"}
    assert sigmoid_sgd == {(100, 10, None), (32, 50, None), (1, 10, None), (1, 10, 0.02), (10, 30, 9.0)}
    patience = sorted(e.early_stopping.patience for e in ALL if e.early_stopping)
    assert patience == [0, 15]
    assert {e.optimizer for e in ALL} == {"sgd", "adam", "rmsprop"}
    assert [e.name for e in ALL if e.task == "multiclass"] == ["softmax"]


def test_regularised_and_dropout_models():
    l2_layers = lambda e: [i for i, layer in enumerate(e.layers) if isinstance(layer, DenseSpec) and layer.l2]
    assert l2_layers(EXPERIMENTS["l2-one"]) == [1]
    assert l2_layers(EXPERIMENTS["l2-all"]) == [1, 2, 3, 4, 5, 6]
    rates = [layer.rate for layer in EXPERIMENTS["dropout"].layers if isinstance(layer, DropoutSpec)]
    assert rates == [0.5, 0.5, 0.1]
    assert EXPERIMENTS["dropout"].has_dropout and not EXPERIMENTS["wide"].has_dropout


def test_softmax_model():
    e = EXPERIMENTS["softmax"]
    assert e.layers[-1] == DenseSpec(10, "softmax")
    assert e.loss == "categorical_crossentropy" and e.validation and e.batch_size == 10


def test_chaotic_runs_are_flagged():
    # the lesson's chaotic runs (lr=9, batch size 1) and the long runs measured to amplify round-off
    assert {e.name for e in ALL if e.chaotic} == {
        "sigmoid-sgd-b1", "lr-0.02", "lr-9", "relu-sgd-b1",
        "rmsprop-b10", "deep", "wide", "l2-one", "no-early-stop", "early-stop-15",
    }
    assert not any(e.chaotic for e in ALL if e.has_dropout)


def test_to_dict_is_json():
    for e in ALL:
        d = json.loads(json.dumps(e.to_dict()))
        assert d["name"] == e.name and len(d["layers"]) == len(e.layers)


def test_select_keeps_lesson_order_and_rejects_unknown_names():
    assert [e.name for e in select(["softmax", "lr-9"])] == ["lr-9", "softmax"]
    assert len(select(None)) == len(ALL)
    with pytest.raises(KeyError, match="valid names"):
        select(["nope"])


def test_invalid_experiment_is_rejected():
    import dataclasses

    with pytest.raises(ValueError, match="early stopping"):
        dataclasses.replace(EXPERIMENTS["early-stop-0"], validation=False)
