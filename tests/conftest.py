"""Shared test configuration: the Hypothesis profile used by every test module.

No wall-clock deadline: CI machines are shared and a slow example is not a wrong
one. Modules choose their own ``max_examples`` with ``@settings``.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "minitensor",
    deadline=None,
    print_blob=True,
    # `too_slow` times data generation on the clock; on a busy shared runner it would flake
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("minitensor")
