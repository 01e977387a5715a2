"""The compiled training path behind ``compile(jit_compile=True)``.

``build_plan(model)`` returns ``(plan, None)`` for a model the Numba kernels
support, or ``(None, reason)`` so that ``fit`` falls back to the reference path.
Until the kernels exist, every model falls back.
"""


def build_plan(model):
    """Return ``(plan, reason)``: a training plan for ``model``, or ``None`` and why not."""
    return None, "the compiled training path is not available yet"
