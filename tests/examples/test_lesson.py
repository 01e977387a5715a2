"""examples/lesson.py runs end to end (a tenth of its epochs), old Keras-2 spellings included, and its
models learn: each run's printed last epoch is read back and held to an accuracy far above chance."""

import importlib.util
import pathlib
import re
import warnings

import numpy as np

LESSON = pathlib.Path(__file__).resolve().parents[2] / "examples" / "lesson.py"

# title printed by the lesson -> (metric, lowest acceptable value at a tenth of the epochs). Chance is
# 0.5 for the odd/even models and 0.1 for the ten digits; these runs reach 0.76-0.99 (seeded, so
# the same numbers every run), and a broken gradient, optimizer or metric leaves them near chance.
THRESHOLDS = {
    "Part 3: relu + rmsprop, batch 10": ("acc", 0.85),
    "relu + adam, batch 32": ("acc", 0.80),
    "relu 12-8-4 + adam": ("acc", 0.90),
    "with validation": ("val_acc", 0.88),
    "deeper: 30-20-12-12-12-8-4-1": ("val_acc", 0.90),
    "wider: 300-200-80-4-1": ("val_acc", 0.95),
    "L2 on one layer": ("val_acc", 0.90),
    "L2 on all hidden layers": ("val_acc", 0.88),
    "dropout": ("val_acc", 0.93),
    "softmax over 10 classes": ("val_acc", 0.70),
}


def last_epochs(out):
    """{title: (first epoch's values, last epoch's values)} from the lesson's printout."""
    runs = {}
    for block in re.split(r"^== ", out, flags=re.M)[1:]:
        title = re.match(r"(.*) \(\d+ epochs?\)", block).group(1)
        lines = re.findall(r"^\s+epoch\s+\d+\s+(.*)$", block, flags=re.M)
        values = [dict((k, float(v)) for k, v in re.findall(r"(\w+)=([-\d.e]+)", line)) for line in lines]
        runs[title] = (values[0], values[-1])
    return runs


def test_lesson_runs_end_to_end_and_its_models_learn(capsys):
    spec = importlib.util.spec_from_file_location("lesson", LESSON)
    lesson = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lesson)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        matrix = lesson.main(scale=0.1)
    out = capsys.readouterr().out
    assert matrix.shape == (10, 10)
    assert matrix.sum() == 360  # the lesson's test split: 20% of 1797 digits
    assert np.trace(matrix) / matrix.sum() >= 0.70  # ten classes: chance is 0.1; this run reaches 0.81

    runs = last_epochs(out)
    assert "early stopping, patience=15" in runs
    for title, (metric, lowest) in THRESHOLDS.items():
        first, last = runs[title]
        assert last[metric] >= lowest, (title, metric, last[metric])
        assert last["loss"] < first["loss"], title

    deprecated = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any("`lr`" in m for m in deprecated), deprecated  # SGD(lr=...)
    assert any("predict_classes" in m for m in deprecated), deprecated
    assert any("'acc'" in m or "`acc`" in m for m in deprecated), deprecated  # history['acc']
