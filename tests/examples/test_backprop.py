"""examples/backprop.py runs end to end: its hand-computed chain rule agrees with backward(), gradcheck, the
trace and tf.keras (the script asserts each), and it writes the graph, the model plot and the gradient-flow figure."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.keras

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "examples" / "backprop.py"


def test_backprop_walkthrough_runs_and_every_check_holds(tmp_path):
    env = {**os.environ, "BACKPROP_OUTPUT": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "gradcheck: True" in out
    differences = [float(v) for v in re.findall(r"largest relative difference(?: to tf.keras)? ([\d.e+-]+)", out)]
    assert len(differences) == 12 and max(differences) < 1e-5
    losses = re.search(r"loss: tf.keras ([\d.]+), minitensor ([\d.]+)", out)
    assert losses.group(1) == losses.group(2)
    ratios = dict(re.findall(r"(sigmoid|relu): first layer's gradient / last layer's at the start = ([\d.e+-]+)", out))
    assert float(ratios["sigmoid"]) < 1e-2 < float(ratios["relu"])
    assert b"<svg" in (tmp_path / "graph.svg").read_bytes()
    assert "hidden_2/pre_activation" in (tmp_path / "graph.svg").read_text()
    for name in ("model.png", "gradient_flow.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_backprop_walkthrough_is_in_the_percent_format():
    text = SCRIPT.read_text()
    assert "format_name: percent" in text
    assert text.count("# %% [markdown]") >= 8 and text.count("\n# %%\n") >= 8
