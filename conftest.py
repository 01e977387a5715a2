"""The suite's rule that no test is skipped in silence (for tests/ and every module's doctests).

The ``keras`` marker means "compares against tf.keras, and still runs in CI". A ``keras``-marked
test that gets skipped (TensorFlow missing, say) fails the run; to run the suite without
TensorFlow, deselect those tests on purpose with ``-m "not keras"``: modules marked ``keras`` as a
whole (``pytestmark = pytest.mark.keras``) are then not even imported. When the environment
variable ``CI`` is set (``.ci/run`` runs with ``CI=true``, where every extra is installed), *any*
skipped test or module fails the run.
"""

import os
import re

import pytest

pytest_plugins = ["pytester"]  # tests/test_skip_rules.py runs small suites under these rules

_KERAS_MODULE = re.compile(r"^pytestmark\s*=.*\bmark\.keras\b", re.M)


def ci_run():
    """True when the environment variable ``CI`` is set to anything but empty, ``0``, ``false`` or ``no``."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def keras_deselected(config):
    """True when the ``-m`` expression deselects every test marked ``keras``, whatever its other markers."""
    markexpr = config.getoption("markexpr", "") or ""
    if "keras" not in markexpr:
        return False
    from _pytest.mark.expression import Expression

    expression = Expression.compile(markexpr)
    return not any(expression.evaluate(lambda name, other=other, **_: name == "keras" or other)
                   for other in (False, True))


def pytest_ignore_collect(collection_path, config):
    """With ``-m "not keras"``, a module marked ``keras`` as a whole is not imported (nor TensorFlow)."""
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    if not keras_deselected(config):
        return None
    try:
        text = collection_path.read_text(encoding="utf-8")
    except OSError:
        return None
    return True if _KERAS_MODULE.search(text) else None


def _reason(report):
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


CI_MESSAGE = "skipped under CI ({reason}). CI installs every extra, so nothing may be skipped there."
KERAS_MESSAGE = ("a `keras`-marked test was skipped ({reason}). These tests must run: install TensorFlow "
                 "(pip install -e \".[compare]\"), or deselect them on purpose with -m \"not keras\".")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    if item.get_closest_marker("keras") is not None:
        message = KERAS_MESSAGE
    elif ci_run():
        message = CI_MESSAGE
    else:
        return
    report.outcome = "failed"
    report.longrepr = f"{item.nodeid}: " + message.format(reason=_reason(report))


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    report = (yield).get_result()
    if report.skipped and ci_run():
        report.outcome = "failed"
        report.longrepr = f"{collector.nodeid}: " + CI_MESSAGE.format(reason=_reason(report))
