"""Hypothesis profiles for the whole suite (the rule against silent skips is in the root conftest.py).

Choose one with ``HYPOTHESIS_PROFILE=thorough`` or ``--hypothesis-profile thorough``:

* ``ci`` (the default, what CI and ``make test`` run): derandomized, so every run draws the same
  examples and a failure reproduces exactly; each test runs the number of examples it asks for
  (Hypothesis's 100 unless its ``@settings`` says otherwise).
* ``thorough`` (``make test-thorough``): random examples, ten times as many for every property test,
  to search further than CI does. Failures are saved in ``.hypothesis/`` and replayed first next time.

Neither has a wall-clock deadline: machines are shared and a slow example is not a wrong one.
Health checks are on; a test that must silence one says so, and why, in its own ``@settings``.
"""

import os

from hypothesis import settings

THOROUGH_FACTOR = 10

settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.register_profile("thorough", deadline=None, derandomize=False, print_blob=True,
                          max_examples=THOROUGH_FACTOR * settings().max_examples)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    """Under ``thorough``, a test's own ``@settings(max_examples=N)`` becomes ``10 * N`` random examples."""
    if settings.get_current_profile_name() != "thorough":
        return
    inherited = settings.get_profile("thorough").max_examples
    for item in items:
        test = getattr(item, "obj", None)
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if own is None or not getattr(test, "is_hypothesis_test", False) or getattr(test, "_thorough_scaled", False):
            continue
        examples = own.max_examples if own.max_examples == inherited else THOROUGH_FACTOR * own.max_examples
        test._hypothesis_internal_use_settings = settings(own, max_examples=examples, derandomize=False)
        test._thorough_scaled = True  # a parametrized test is one function: scale it once
