"""The BLAS thread policy of fit, and the thread limit reaching the libraries."""

import numpy as np
import pytest
import scipy  # noqa: F401  (its BLAS is one the thread limit must reach)
import threadpoolctl

from minitensor import threads
from minitensor.layers import Dense, Input
from minitensor.models import Sequential


def blas_threads_in_use():
    return {info["filepath"]: info["num_threads"] for info in threadpoolctl.threadpool_info()
            if info["user_api"] == "blas"}


@pytest.mark.parametrize("macs, expected", [
    ([], False),
    ([32 * 64 * 12, 32 * 12 * 8], False),  # too small for OpenBLAS to start threads anyway
    ([threads.OPENBLAS_THREADING_MACS], True),
    ([32 * 64 * 300, 32 * 300 * 200], True),  # model B
    ([threads.ONE_THREAD_MAX_MACS - 1, 5], True),
    ([128 * 784 * 512, 128 * 512 * 512], False),  # model L: two threads pay off
])
def test_one_thread_suffices_for_mid_sized_products_only(macs, expected):
    assert threads.one_thread_suffices(macs) is expected


def test_the_limit_reaches_numpys_and_scipys_blas_and_is_undone():
    before = blas_threads_in_use()
    with threads.blas_threads(1):
        inside = blas_threads_in_use()
    assert any("numpy" in path for path in inside) and any("scipy" in path for path in inside)
    assert set(inside.values()) == {1}
    assert blas_threads_in_use() == before


class RecordsBlasThreads:
    """A callback: the BLAS thread counts seen at the end of each epoch (a batch hook would send
    the compiled path to the reference path)."""

    def __init__(self):
        from minitensor.callbacks import Callback

        outer = self

        class Recorder(Callback):
            def on_epoch_end(self, epoch, logs=None):
                outer.seen.append(set(blas_threads_in_use().values()))

        self.seen = []
        self.callback = Recorder()


@pytest.mark.parametrize("jit", [False, True], ids=["reference", "compiled"])
@pytest.mark.parametrize("units, one_thread", [((64, 300, 200, 1), True), ((8, 4, 1), False)])
def test_fit_holds_blas_to_one_thread_for_mid_sized_models(units, one_thread, jit):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, units[0])).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    model = Sequential([Input(shape=(units[0],))] + [Dense(u, activation="relu") for u in units[1:-1]]
                       + [Dense(units[-1], activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=jit)
    before = blas_threads_in_use()
    recorder = RecordsBlasThreads()
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[recorder.callback])
    assert recorder.seen
    if one_thread:
        assert all(seen == {1} for seen in recorder.seen)
    else:
        assert all(seen == set(before.values()) for seen in recorder.seen)
    after = blas_threads_in_use()  # (the compiled path may have loaded SciPy's BLAS meanwhile)
    assert {path: after[path] for path in before} == before
