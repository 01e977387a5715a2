"""The README's Python examples run as written."""

import pathlib
import re
import warnings

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_the_tensor_and_keras_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys):
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the lesson's input_dim= spelling warns, as Keras does
        exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), namespace)
    if index == 1:
        assert len(namespace["results"].history["val_accuracy"]) >= 1
