"""compare.report on synthetic outcomes: files, results.json schema, figures, self-contained HTML."""

import dataclasses
import json
import re

import numpy as np

from compare.report import SCHEMA_VERSION, write_report

RUN_KEYS = {
    "seed", "history", "epochs_run", "steps_per_epoch", "epoch_seconds", "first_epoch_seconds",
    "steady_epoch_seconds", "step_seconds", "fit_seconds", "per_step_logging", "from_cache", "test_loss",
    "test_accuracy", "confusion",
}
EXPERIMENT_KEYS = {
    "name", "spec", "mode", "seeds", "weights_from", "reused_from", "order", "tolerance", "verdict", "comparison",
    "sensitivity", "runs", "figures",
}
TOP_KEYS = {
    "schema_version", "generated", "command", "mode", "seed", "seeds", "epochs_scale", "interrupted",
    "total_seconds", "machine", "blas_threads", "execution", "cache", "versions", "order", "tolerance_rules",
    "summary", "experiments",
}


def _outcomes(factory):
    lr9 = factory("lr-9", epochs=3)
    # a chaotic run that parts: per-step losses recorded for both engines and a sensitivity run
    k, m = lr9.runs["keras"][0], lr9.runs["minitensor"][0]
    steps = k.steps_per_epoch
    k.step_losses = [[0.7] * steps for _ in range(3)]
    m.step_losses = [[0.7] * steps, [0.7] * 50 + [0.8] * (steps - 50), [0.9] * steps]
    m.history["loss"][1:] = [0.8, 0.9]
    nudged = [[0.7] * steps, [0.7] * 20 + [0.75] * (steps - 20), [0.8] * steps]
    lr9.sensitivity = dataclasses.replace(k, step_losses=nudged)
    return [
        factory("sigmoid-sgd-b100", epochs=3),
        factory("deep", epochs=5, mt_scale=1 + 3e-5),  # a mismatch
        lr9,
        factory("dropout", epochs=4, seeds=(1, 2, 3)),
        factory("softmax", epochs=3, confusion=True),
    ]


def test_report_files_schema_and_figures(tmp_path, outcome_factory):
    outcomes = _outcomes(outcome_factory)
    meta = {"mode": "parity", "seed": 42, "seeds": 3, "epochs_scale": 1.0, "total_seconds": 12.5,
            "command": "python -m compare", "machine": {"platform": "test", "cpu_count": 2, "python": "3"}}
    document = write_report(outcomes, tmp_path / "out", meta=meta)
    out = tmp_path / "out"
    for name in ("index.html", "report.md", "results.json"):
        assert (out / name).is_file()

    text = (out / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    results = json.loads(text)
    assert results["summary"] == document["summary"]
    assert set(results) == TOP_KEYS
    assert results["schema_version"] == SCHEMA_VERSION
    assert results["summary"]["experiments"] == 5
    assert results["summary"]["failed"] == ["deep"]
    assert [e["name"] for e in results["experiments"]] == [o.experiment.name for o in outcomes]
    for entry in results["experiments"]:
        assert set(entry) == EXPERIMENT_KEYS
        assert entry["tolerance"]["rule"] in ("strict", "chaotic", "distribution")
        assert entry["verdict"]["passed"] in (True, False, None)
        for engine in ("keras", "minitensor"):
            assert entry["runs"][engine] and all(set(r) == RUN_KEYS for r in entry["runs"][engine])
        # every figure the JSON names exists
        for path in entry["figures"].values():
            if path is not None:
                assert (out / path).is_file(), path
    by_name = {e["name"]: e for e in results["experiments"]}
    assert by_name["softmax"]["figures"]["confusion"] == "figures/softmax-confusion.png"
    assert by_name["softmax"]["runs"]["keras"][0]["confusion"] == np.diag(np.full(10, 36)).tolist()
    assert by_name["deep"]["figures"]["confusion"] is None
    lr9 = by_name["lr-9"]
    assert lr9["comparison"]["steps"]["first_step_over"] == lr9["runs"]["keras"][0]["steps_per_epoch"] + 51
    assert by_name["lr-9"]["sensitivity"]["first_step_over"] is not None

    figures = sorted(p.name for p in (out / "figures").iterdir())
    expected = {f"{o.experiment.name}.png" for o in outcomes} | {"softmax-confusion.png", "parity.png", "timing.png"}
    assert set(figures) == expected
    for name in figures:
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_index_html_is_self_contained(tmp_path, outcome_factory):
    outcomes = _outcomes(outcome_factory)
    write_report(outcomes, tmp_path, meta={"mode": "parity", "seed": 42})
    page = (tmp_path / "index.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    # the two overview figures, one curve figure per experiment, one confusion figure
    assert len(sources) == 2 + len(outcomes) + 1
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"<link|<script|url\(", page)
    for outcome in outcomes:
        assert f'id="{outcome.experiment.name}"' in page
    md = (tmp_path / "report.md").read_text()
    assert md.count("| sigmoid-sgd-b100 |") == 1
    for outcome in outcomes:
        assert f"figures/{outcome.experiment.name}.png" in md


def test_empty_report_after_an_early_interrupt(tmp_path):
    document = write_report([], tmp_path, meta={"mode": "parity", "seed": 42, "interrupted": True})
    assert document["summary"] == {"experiments": 0, "passed": 0, "failed": [], "no_verdict": []}
    assert json.loads((tmp_path / "results.json").read_text())["interrupted"] is True
    assert (tmp_path / "index.html").is_file()


def test_non_finite_losses_are_written_as_null(tmp_path, outcome_factory):
    outcome = outcome_factory("lr-9", epochs=3)
    outcome.runs["minitensor"][0].history["loss"][2] = float("nan")
    document = write_report([outcome], tmp_path, meta={"mode": "parity", "seed": 42})
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["experiments"][0]["runs"]["minitensor"][0]["history"]["loss"][2] is None
    assert document["experiments"][0]["verdict"]["passed"] is False
