"""examples/lesson.py runs end to end (with reduced epochs), old Keras-2 spellings included."""

import importlib.util
import pathlib
import warnings

import numpy as np

LESSON = pathlib.Path(__file__).resolve().parents[2] / "examples" / "lesson.py"


def test_lesson_runs_end_to_end(capsys):
    spec = importlib.util.spec_from_file_location("lesson", LESSON)
    lesson = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lesson)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        matrix = lesson.main(scale=0.05)
    out = capsys.readouterr().out
    assert matrix.shape == (10, 10)
    assert matrix.sum() == 360  # the lesson's test split: 20% of 1797 digits
    assert "softmax over 10 classes" in out and "early stopping, patience=15" in out
    legacy = {str(w.message).split("`")[1] for w in caught if issubclass(w.category, DeprecationWarning) and "`" in str(w.message)}
    assert any("lr" in m for m in legacy) or any("predict_classes" in str(w.message) for w in caught)
    assert np.trace(matrix) > 36  # better than chance after a few epochs of Adam
