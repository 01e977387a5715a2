"""Every Python example in README.md runs as written, and prints what the README says it prints.

The rules, for whoever edits the README:

* Every ```python block runs on its own (a fresh namespace, in an empty temporary directory), in
  the order of the README, each as a separate test.
* A block that prints must be followed by a ```text block holding its output (blank lines may sit
  between the two). The output is compared as doctest compares: runs of whitespace are equal, and
  ``...`` stands for any text (use it for timings and other values that vary from run to run).
  A block that prints nothing needs no output block.
* A block that cannot run in the test suite (it needs a network, or takes many minutes) is
  skipped only by a marker on the line right before its opening fence, with the reason:
  ``<!-- readme-test: skip the reason -->``. Use it sparingly: a skipped block is one nobody checks.
"""

import doctest
import pathlib
import re

import matplotlib
import pytest

matplotlib.use("Agg")  # figures drawn by a block go nowhere

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SKIP_MARKER = re.compile(r"<!--\s*readme-test:\s*skip\b\s*(.*?)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")


def parse(text):
    """The README's code blocks: dicts with language, code, line, the marker before it, and output."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match or not match.group(1):
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        previous = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        blocks.append(dict(language=match.group(1), code="\n".join(lines[start + 1:j]) + "\n", line=start + 1,
                           marker=SKIP_MARKER.search(previous)))
        i = j + 1
    for block, following in zip(blocks, blocks[1:] + [None]):
        block["output"] = None
        if block["language"] == "python" and following is not None and following["language"] == "text":
            between = lines[block["line"] + block["code"].count("\n"):following["line"] - 1]
            if all(not line.strip() for line in between[1:]):
                block["output"] = following["code"]
    return blocks


BLOCKS = parse(README.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b["language"] == "python"]
RUN = [b for b in PYTHON if b["marker"] is None]


def test_the_readme_has_examples_and_skips_few():
    assert len(PYTHON) >= 2
    skipped = [b for b in PYTHON if b["marker"] is not None]
    assert all(b["marker"].group(1) for b in skipped), "a skip marker must give its reason"
    assert len(skipped) <= len(PYTHON) // 4, [b["line"] for b in skipped]


def test_the_output_checker_catches_a_wrong_value():
    """The comparison used below is not vacuous."""
    assert matches("loss 0.25\n", "loss 0.25\n") and matches("took ... s\n", "took 1.7 s\n")
    assert not matches("loss 0.25\n", "loss 0.26\n") and not matches("True\n", "")


def matches(expected, got):
    checker = doctest.OutputChecker()
    return checker.check_output(expected, got, doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)


@pytest.mark.parametrize("block", RUN, ids=[f"line-{b['line']}" for b in RUN])
def test_readme_block_runs_and_prints_what_the_readme_shows(block, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(block["code"], f"README.md line {block['line']}", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out
    if block["output"] is None:
        assert printed == "", (f"the block at README line {block['line']} prints, but the README shows no "
                               f"```text block with its output:\n{printed}")
    else:
        assert matches(block["output"], printed), (
            f"README line {block['line']} shows:\n{block['output']}\nbut the block printed:\n{printed}")
