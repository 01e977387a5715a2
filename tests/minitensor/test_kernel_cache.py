"""The one-line notice while the compiled path's kernels compile (minitensor.kernel_cache)."""

import io
import os
import subprocess
import sys
import textwrap

from numba import njit

from minitensor.kernel_cache import compiling_notice

FIT_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from minitensor.layers import Dense, Input
    from minitensor.models import Sequential

    model = Sequential([Input(shape=(6,)), Dense(4, activation="relu"), Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"], jit_compile=True)
    x = np.random.default_rng(0).random((40, 6), dtype=np.float32)
    y = (x.sum(1) > 3).astype("float32")
    model.fit(x, y, epochs=2, batch_size=8, verbose={verbose})
    print("trained")
    """
)


def _fit_in_fresh_process(cache_dir, verbose):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    done = subprocess.run(
        [sys.executable, "-c", FIT_SCRIPT.format(verbose=verbose)],
        env=env, capture_output=True, text=True, check=True,
    )
    assert done.stdout.rstrip().endswith("trained")
    return done.stdout


def test_cold_cache_says_compiling_once_then_a_warm_cache_is_silent(tmp_path):
    cold = _fit_in_fresh_process(tmp_path, verbose=1)
    lines = [line for line in cold.splitlines() if line.startswith("Compiling the training kernels")]
    assert len(lines) == 1, cold
    assert str(tmp_path) in lines[0] and " done in " in lines[0] and lines[0].endswith(" s")
    assert cold.index("Epoch 1/2") < cold.index("Compiling") < cold.index("Epoch 2/2")
    warm = _fit_in_fresh_process(tmp_path, verbose=1)
    assert "Epoch 2/2" in warm and "Compiling" not in warm


def test_verbose_zero_and_compiled_functions_print_nothing():
    @njit
    def add_one(x):
        return x + 1

    out = io.StringIO()
    with compiling_notice(add_one, verbose=0, stream=out):
        add_one(1)
    assert out.getvalue() == ""
    with compiling_notice(add_one, verbose=2, stream=out):  # compiled already
        add_one(2.5)  # a new signature compiles, but the kernel was in use in this process: no notice
    assert out.getvalue() == ""


def test_only_the_wrapped_kernel_is_announced():
    @njit
    def inner(x):
        return x * 3

    @njit
    def other(x):
        return inner(x) - 1

    @njit
    def kernel(x):
        return x + 2

    out = io.StringIO()
    with compiling_notice(kernel, verbose=1, stream=out):
        other(1)  # another function compiles inside the block: not the kernel's compilation
    assert out.getvalue() == ""
    with compiling_notice(kernel, verbose=1, stream=out):
        kernel(1)
    assert out.getvalue().count("Compiling the training kernels") == 1
    assert out.getvalue().endswith(" s\n")
