"""The suite's own rules, run on small throwaway suites: no silent skips, and the Hypothesis profiles.

Each case copies the project's conftest files into a fresh directory and runs pytest there in a
subprocess; "TensorFlow missing" is a ``tensorflow`` package on ``PYTHONPATH`` whose import fails.
"""

import pathlib
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

KERAS_MODULE = """
    import pytest
    import tensorflow  # noqa: F401

    pytestmark = pytest.mark.keras

    def test_against_keras():
        pass
"""
KERAS_SKIPPING = """
    import pytest

    @pytest.mark.keras
    def test_keras_or_skip():
        pytest.importorskip("tensorflow")
"""
PLAIN = """
    import pytest

    def test_runs():
        pass

    def test_skips():
        pytest.skip("no reason to run")

    @pytest.mark.xfail(reason="a known bug", strict=True)
    def test_known_bug():
        assert False
"""
MODULE_SKIP = """
    import pytest

    pytest.skip("not here", allow_module_level=True)
"""


@pytest.fixture
def suite(pytester, monkeypatch):
    """A directory with the project's conftest files, a `keras` marker and no TensorFlow."""
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    pytester.mkdir("tests").joinpath("conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    keras: compares against tf.keras\n")
    shim = pytester.mkdir("no_tensorflow").joinpath("tensorflow")
    shim.mkdir()
    shim.joinpath("__init__.py").write_text(
        'raise ModuleNotFoundError("TensorFlow is not installed here", name="tensorflow")\n')
    monkeypatch.setenv("PYTHONPATH", str(shim.parent))
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)
    return pytester


def write(pytester, **modules):
    for name, source in modules.items():
        pytester.path.joinpath("tests", f"{name}.py").write_text(textwrap.dedent(source))


def run(pytester, *args):
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_without_tensorflow_the_run_fails_unless_keras_tests_are_deselected(suite):
    write(suite, test_k=KERAS_MODULE, test_skipping=KERAS_SKIPPING, test_plain="def test_ok():\n    pass\n")
    result = run(suite)
    assert result.ret != 0
    result.assert_outcomes(errors=1)  # the module that imports TensorFlow: the run stops at collection
    result.stdout.fnmatch_lines(["*ModuleNotFoundError*TensorFlow is not installed here*"])

    result = run(suite, "-m", "not keras")
    assert result.ret == 0
    result.assert_outcomes(passed=1, deselected=1)  # test_k.py is not even imported

    suite.path.joinpath("tests", "test_k.py").unlink()
    result = run(suite)
    assert result.ret != 0
    result.assert_outcomes(passed=1, failed=1)  # a skipped keras test is a failure
    result.stdout.fnmatch_lines(["*a `keras`-marked test was skipped*-m \"not keras\"*"])


def test_a_combined_marker_expression_still_imports_what_it_may_select(suite):
    write(suite, test_k=KERAS_MODULE)
    result = run(suite, "-m", "not keras or slow")  # a keras test marked slow would be selected
    result.assert_outcomes(errors=1)


def test_skips_are_reported_normally_but_fail_under_ci(suite, monkeypatch):
    write(suite, test_plain=PLAIN)
    result = run(suite)
    assert result.ret == 0
    result.assert_outcomes(passed=1, skipped=1, xfailed=1)

    monkeypatch.setenv("CI", "true")
    result = run(suite)
    assert result.ret != 0
    result.assert_outcomes(passed=1, failed=1, xfailed=1)  # an expected failure is no skip
    result.stdout.fnmatch_lines(["*skipped under CI (no reason to run)*"])

    monkeypatch.setenv("CI", "false")
    assert run(suite).ret == 0


def test_a_module_skipped_as_a_whole_fails_under_ci(suite, monkeypatch):
    write(suite, test_module_skip=MODULE_SKIP)
    run(suite).assert_outcomes(skipped=1)
    monkeypatch.setenv("CI", "1")
    result = run(suite)
    assert result.ret != 0
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*skipped under CI (not here)*"])


COUNTING = """
    import pathlib
    from hypothesis import given, settings, strategies as st

    @settings(max_examples=7)
    @given(st.integers())
    def test_counted(x):
        with open("seen.txt", "a") as f:
            f.write(f"{x}\\n")
"""


def seen(pytester):
    path = pytester.path / "seen.txt"
    values = path.read_text().split()
    path.unlink()
    return values


def test_ci_profile_is_deterministic_and_thorough_runs_ten_times_the_examples(suite, monkeypatch):
    write(suite, test_counted=COUNTING)
    run(suite).assert_outcomes(passed=1)
    first = seen(suite)
    run(suite).assert_outcomes(passed=1)
    assert seen(suite) == first and len(first) >= 7  # derandomized: the same examples every run

    run(suite, "--hypothesis-profile", "thorough").assert_outcomes(passed=1)
    assert len(seen(suite)) >= 70
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "thorough")
    run(suite).assert_outcomes(passed=1)
    assert len(seen(suite)) >= 70
