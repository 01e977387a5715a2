"""Sequential: training semantics, bad input, determinism, save/load, summary, whole-model gradients."""

import json
import warnings

import numpy as np
import pandas
import pytest
from hypothesis import assume, given, settings, strategies as st

import minitensor
from minitensor import Tensor, gradcheck, regularizers
from minitensor.callbacks import Callback, EarlyStopping
from minitensor.layers import Dense, Dropout, Input
from minitensor.models import Sequential, load_model
from minitensor.optimizers import SGD, Adam


def binary_data(n=64, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    return x, y


def small_model(d=5, out=1, activation="sigmoid", hidden=4, **dense):
    return Sequential([Input(shape=(d,)), Dense(hidden, activation="relu", **dense), Dense(out, activation=activation)])


def compiled(loss="binary_crossentropy", optimizer="sgd", metrics=("accuracy",), **kw):
    model = small_model(**kw)
    model.compile(optimizer=optimizer, loss=loss, metrics=list(metrics))
    return model


# ---------------------------------------------------------------- semantics
def test_epoch_loss_is_batch_size_weighted_mean_including_l2_penalty():
    """Recompute one epoch by hand with NumPy (logits formula, SGD) and compare with History."""
    x, y = binary_data(n=10)
    model = Sequential([Input(shape=(5,)), Dense(1, activation="sigmoid", kernel_regularizer=regularizers.l2(0.1))])
    model.compile(optimizer=SGD(learning_rate=0.5), loss="binary_crossentropy")
    kernel, bias = [w.astype(np.float64) for w in model.get_weights()]
    total = 0.0
    for start in (0, 4, 8):  # batch_size 4: batches of 4, 4 and 2
        xb, yb = x[start : start + 4].astype(np.float64), y[start : start + 4, None].astype(np.float64)
        z = xb @ kernel + bias
        bce = np.maximum(z, 0) - z * yb + np.log1p(np.exp(-np.abs(z)))
        loss = bce.mean() + 0.1 * np.sum(kernel**2)
        total += loss * len(xb)
        dz = (1 / (1 + np.exp(-z)) - yb) / len(xb)
        kernel = kernel - 0.5 * (xb.T @ dz + 2 * 0.1 * kernel)
        bias = bias - 0.5 * dz.sum(0)
    history = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], total / 10, rtol=1e-5)
    np.testing.assert_allclose(model.get_weights()[0], kernel, rtol=1e-5, atol=1e-6)


def test_training_accuracy_uses_pre_update_predictions():
    x, y = binary_data(n=16)
    model = compiled(optimizer=SGD(learning_rate=5.0))
    before = model.predict(x, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    expected = np.mean((before[:, 0] > 0.5) == (y == 1))
    assert history.history["accuracy"][0] == pytest.approx(expected)


def test_history_keys_sorted_and_validation_keys_present():
    x, y = binary_data()
    model = compiled()
    history = model.fit(x, y, epochs=2, validation_data=(x[:10], y[:10]), verbose=0)
    assert list(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert history.epoch == [0, 1]
    assert model.history is history
    assert all(isinstance(v, float) for vs in history.history.values() for v in vs)


def test_validation_loss_equals_evaluate_at_end_of_epoch_weights():
    x, y = binary_data()
    model = compiled(kernel_regularizer=regularizers.l2(0.01))
    history = model.fit(x, y, epochs=1, validation_data=(x[:20], y[:20]), verbose=0)
    loss, acc = model.evaluate(x[:20], y[:20], verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(loss, rel=1e-6)
    assert history.history["val_accuracy"][0] == pytest.approx(acc)


def test_validation_split_takes_the_last_fraction_before_shuffling():
    x, y = binary_data(n=50)
    model = compiled()
    history = model.fit(x, y, epochs=1, validation_split=0.2, verbose=0)
    assert history.params["steps"] == 2  # 40 training rows at batch 32
    loss, acc = model.evaluate(x[40:], y[40:], verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(loss, rel=1e-6)


def test_legacy_acc_key_and_predict_classes_warn_and_work():
    x, y = binary_data()
    model = compiled()
    history = model.fit(x, y, epochs=2, validation_data=(x, y), verbose=0)
    with pytest.warns(DeprecationWarning, match="accuracy"):
        assert history.history["acc"] == history.history["accuracy"]
    with pytest.warns(DeprecationWarning, match="val_accuracy"):
        assert history.history["val_acc"] == history.history["val_accuracy"]
    with pytest.warns(DeprecationWarning, match="np.argmax"):
        classes = model.predict_classes(x)
    assert classes.shape == (len(x), 1) and set(np.unique(classes)) <= {0, 1}
    np.testing.assert_array_equal(classes[:, 0], (model.predict(x, verbose=0)[:, 0] > 0.5).astype(int))


def test_legacy_lr_argument_in_a_model():
    with pytest.warns(DeprecationWarning, match="learning_rate"):
        optimizer = SGD(lr=0.02)
    assert optimizer.learning_rate == pytest.approx(0.02)


def test_predict_classes_softmax_is_argmax():
    x = np.random.default_rng(1).normal(size=(20, 5)).astype(np.float32)
    model = small_model(out=3, activation="softmax")
    with pytest.warns(DeprecationWarning):
        classes = model.predict_classes(x)
    np.testing.assert_array_equal(classes, model.predict(x, verbose=0).argmax(-1))


def test_evaluate_return_forms():
    x, y = binary_data()
    model = compiled()
    result = model.evaluate(x, y, verbose=0)
    assert isinstance(result, list) and len(result) == 2
    as_dict = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(as_dict) == ["accuracy", "loss"] and as_dict["loss"] == pytest.approx(result[0])
    model_no_metrics = compiled(metrics=())
    assert isinstance(model_no_metrics.evaluate(x, y, verbose=0), float)


def test_sparse_and_categorical_targets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    labels = rng.integers(0, 3, size=30)
    sparse = compiled(loss="sparse_categorical_crossentropy", out=3, activation="softmax")
    sparse.fit(x, labels, epochs=1, verbose=0)
    onehot = compiled(loss="categorical_crossentropy", out=3, activation="softmax")
    onehot.fit(x, minitensor.utils.to_categorical(labels, 3), epochs=1, verbose=0)
    assert sparse.metrics[1].name == "accuracy"


def test_early_stopping_stops_and_history_keeps_the_stopping_epoch():
    x, y = binary_data()
    model = compiled(optimizer=SGD(learning_rate=0.0))  # val_loss never improves after epoch 0
    stop = EarlyStopping(monitor="val_loss", patience=0)
    history = model.fit(x, y, epochs=10, validation_data=(x, y), callbacks=[stop], verbose=0)
    assert len(history.epoch) == 2 and stop.stopped_epoch == 1


def test_callbacks_see_running_average_batch_logs():
    seen = []

    class Recorder(Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(dict(logs))

    x, y = binary_data(n=64)
    model = compiled()
    history = model.fit(x, y, epochs=1, batch_size=32, callbacks=[Recorder()], verbose=0)
    assert len(seen) == 2
    assert seen[-1]["loss"] == pytest.approx(history.history["loss"][0])


def test_a_callback_can_stop_training_mid_epoch_as_keras():
    class StopAfterTwoBatches(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    x, y = binary_data(n=64)
    model = compiled()
    history = model.fit(x, y, epochs=3, batch_size=8, callbacks=[StopAfterTwoBatches()], verbose=0)
    assert history.epoch == [0]  # the partial epoch is recorded, then training ends
    assert model.optimizer.iterations == 2


def test_a_callback_may_swap_the_optimizer_mid_epoch():
    """Steps after the first skip the optimizer's checks; a new optimizer still gets its checked first step."""
    replacement = SGD(learning_rate=0.1)

    class SwapAfterTwoBatches(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.optimizer = replacement

    x, y = binary_data(n=64)
    model = compiled(optimizer="adam")
    first = model.optimizer
    model.fit(x, y, epochs=2, batch_size=8, callbacks=[SwapAfterTwoBatches()], verbose=0)
    assert first.iterations == 2 and replacement.iterations == 14
    assert replacement._variables[0] is model._flat_variable


def test_an_optimizer_overriding_apply_gradients_is_called_every_step():
    class Counting(SGD):
        calls = 0

        def apply_gradients(self, grads_and_vars):
            Counting.calls += 1
            return super().apply_gradients(grads_and_vars)

    x, y = binary_data(n=64)
    model = compiled(optimizer=Counting())
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert Counting.calls == 16 and model.optimizer.iterations == 16


@pytest.mark.parametrize("batch_size", [1, 5, 16])
@pytest.mark.parametrize("weighted", [False, True])
def test_shuffled_batches_are_the_ordered_rows_gathered_a_chunk_at_a_time(monkeypatch, batch_size, weighted):
    from minitensor import models

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(23, 3)).astype(np.float32), rng.normal(size=23).astype(np.float32)
    weights = rng.random(23).astype(np.float32) if weighted else None
    order = rng.permutation(23)
    monkeypatch.setattr(models, "_CHUNK_BYTES", 40)  # a few rows per chunk: chunks end mid-data
    batches = list(models._batches(x, y, weights, order, batch_size))
    assert len(batches) == -(-23 // batch_size)
    for i, (xb, yb, wb) in enumerate(batches):
        rows = order[i * batch_size : (i + 1) * batch_size]
        np.testing.assert_array_equal(xb, x[rows])
        np.testing.assert_array_equal(yb, y[rows])
        assert wb is None if weights is None else np.array_equal(wb, weights[rows])
    for i, (xb, yb, wb) in enumerate(models._batches(x, y, weights, None, batch_size)):  # in row order: slices
        assert np.shares_memory(xb, x) and np.array_equal(yb, y[i * batch_size : (i + 1) * batch_size])


def test_gathering_chunk_size_does_not_change_training(monkeypatch):
    from minitensor import models

    def run():
        np.random.seed(3)
        model = compiled(optimizer="adam")
        history = model.fit(*binary_data(n=50), epochs=3, batch_size=4, verbose=0)
        return history.history, model.get_weights()

    h1, w1 = run()
    monkeypatch.setattr(models, "_CHUNK_BYTES", 1)  # one batch per chunk
    h2, w2 = run()
    assert h1 == h2 and all(np.array_equal(a, b) for a, b in zip(w1, w2))


def test_verbose_2_prints_keras_epoch_lines(capsys):
    x, y = binary_data()
    compiled().fit(x, y, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "2/2 - " in out and "accuracy: " in out and "loss: " in out


# ---------------------------------------------------------------- bad input
def _weights_unchanged(model, before):
    return all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))


@pytest.mark.parametrize(
    "make_args, error, pattern",
    [
        (lambda x, y: (x, y[:-1]), ValueError, "same number of samples"),
        (lambda x, y: (x[:, :3], y), ValueError, r"features.*shape \(64, 3\)"),
        (lambda x, y: (np.where(np.eye(64, 5) > 0, np.nan, x), y), ValueError, "finite.*`x`"),
        (lambda x, y: (x, np.where(np.arange(64) == 3, np.inf, y)), ValueError, "finite.*`y`"),
        (lambda x, y: (x, y * 3), ValueError, r"\[0, 1\].*binary_crossentropy"),
        (lambda x, y: (x[:0], y[:0]), ValueError, "at least one sample"),
        (lambda x, y: (np.array([["a"] * 5] * 64), y), TypeError, "numbers"),
        (lambda x, y: (x[:, 0], y), ValueError, r"\(samples, features\)"),
    ],
)
def test_fit_rejects_bad_data_before_touching_weights(make_args, error, pattern):
    x, y = binary_data()
    model = compiled()
    before = model.get_weights()
    with pytest.raises(error, match=pattern):
        model.fit(*make_args(x, y), epochs=1, verbose=0)
    assert _weights_unchanged(model, before)


def test_sparse_labels_out_of_range_and_one_hot_mismatch():
    x = np.zeros((6, 5), np.float32)
    sparse = compiled(loss="sparse_categorical_crossentropy", out=3, activation="softmax")
    with pytest.raises(ValueError, match=r"\[0, 3\).*from 0 to 3"):
        sparse.fit(x, np.array([0, 1, 2, 3, 0, 1]), verbose=0)
    cce = compiled(loss="categorical_crossentropy", out=3, activation="softmax")
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        cce.fit(x, np.array([0, 1, 2, 1, 0, 1]), verbose=0)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": -1}, "epochs"),
        ({"validation_split": 1.0}, "validation_split"),
        ({"validation_split": 1e-17}, "validation_split"),
        ({"verbose": 3}, "verbose"),
        ({"validation_data": (np.zeros((2, 5)),)}, "validation_data"),
        ({"sample_weight": -np.ones(64)}, "sample_weight"),
    ],
)
def test_fit_rejects_bad_arguments(kwargs, pattern):
    x, y = binary_data()
    model = compiled()
    before = model.get_weights()
    with pytest.raises(ValueError, match=pattern):
        model.fit(x, y, **{"epochs": 1, "verbose": 0, **kwargs})
    assert _weights_unchanged(model, before)


def test_evaluate_and_predict_check_their_data_too():
    x, y = binary_data()
    model = compiled()
    with pytest.raises(ValueError, match=r"features.*shape \(64, 2\)"):
        model.predict(x[:, :2], verbose=0)
    with pytest.raises(ValueError, match="finite.*`x`"):
        model.predict(np.full((3, 5), np.inf, np.float32), verbose=0)
    with pytest.raises(ValueError, match="same number of samples"):
        model.evaluate(x, y[:10], verbose=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.evaluate(x, y - 1, verbose=0)


def test_fit_before_compile_and_unknown_fit_kwarg():
    model = small_model()
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(*binary_data())
    with pytest.raises(TypeError, match="nb_epoch"):
        compiled().fit(*binary_data(), nb_epoch=3)


def test_lists_and_pandas_give_the_same_training_as_arrays():
    x, y = binary_data(n=40)
    x_val, y_val = binary_data(n=10, seed=1)

    def run(convert_x, convert_y):
        minitensor.set_random_seed(5)
        model = compiled(optimizer="adam")
        history = model.fit(convert_x(x), convert_y(y), epochs=3, batch_size=8, verbose=0,
                            validation_data=(convert_x(x_val), convert_y(y_val)))
        return history.history, model.get_weights(), model.predict(convert_x(x_val), verbose=0)

    arrays = run(np.asarray, np.asarray)
    assert len(arrays[0]["loss"]) == 3 and arrays[0]["loss"][-1] < arrays[0]["loss"][0]
    for convert_x, convert_y in [(lambda a: a.tolist(), lambda a: a.tolist()),
                                 (pandas.DataFrame, pandas.Series),
                                 (lambda a: pandas.DataFrame(a.astype(np.float64)), lambda a: pandas.Series(a.astype(int)))]:
        history, weights, predictions = run(convert_x, convert_y)
        assert history == arrays[0]  # bit-identical: the inputs become the same float32 arrays
        assert all(np.array_equal(a, b) for a, b in zip(weights, arrays[1]))
        np.testing.assert_array_equal(predictions, arrays[2])


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_non_finite_loss_stops_training_and_keeps_history():
    x, y = binary_data(n=64)
    model = Sequential([Input(shape=(5,)), Dense(1)])
    model.compile(optimizer=SGD(learning_rate=1e20), loss="mse")
    with pytest.warns(RuntimeWarning, match="training loss became"):
        history = model.fit(x, y * 1e10, epochs=5, batch_size=8, verbose=0)
    assert len(history.epoch) < 5
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert all(np.isfinite(v) for v in history.history.get("loss", []))


# ---------------------------------------------------------------- determinism
def _train(seed, dropout=True):
    minitensor.set_random_seed(seed)
    layers = [Input(shape=(5,)), Dense(8, activation="relu")]
    if dropout:
        layers.append(Dropout(0.3))
    model = Sequential(layers + [Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(*binary_data(n=50), epochs=3, batch_size=8, verbose=0)
    return model.get_weights(), history.history


def test_same_seed_gives_bit_identical_weights_and_history():
    w1, h1 = _train(7)
    w2, h2 = _train(7)
    assert h1 == h2
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    w3, _ = _train(8)
    assert not all(np.array_equal(a, b) for a, b in zip(w1, w3))


def test_numpy_global_seed_pins_a_run():
    def run():
        np.random.seed(42)
        model = small_model()
        model.compile(optimizer="adam", loss="binary_crossentropy")
        model.fit(*binary_data(), epochs=2, verbose=0)
        return model.get_weights()

    assert all(np.array_equal(a, b) for a, b in zip(run(), run()))


# ---------------------------------------------------------------- save / load
def test_save_load_round_trip_resumes_training_identically(tmp_path):
    x, y = binary_data()
    model = compiled(optimizer="adam", kernel_regularizer=regularizers.l2(0.01))
    model.fit(x, y, epochs=1, verbose=0, shuffle=False)
    path = tmp_path / "model.minitensor"
    model.save(path)
    clone = load_model(path)
    assert clone.get_config() == model.get_config()
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))
    h1 = model.fit(x, y, epochs=2, verbose=0, shuffle=False).history
    h2 = clone.fit(x, y, epochs=2, verbose=0, shuffle=False).history
    assert h1 == h2
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), clone.get_weights()))


def test_load_rejects_truncated_foreign_and_newer_files(tmp_path):
    model = compiled()
    path = tmp_path / "m.minitensor"
    model.save(path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.minitensor"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_model(truncated)
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("hello")
    with pytest.raises(ValueError, match="minitensor model"):
        load_model(foreign)
    newer = tmp_path / "newer.minitensor"
    arrays = dict(np.load(path))
    arrays["format"] = np.frombuffer(json.dumps({"format": "minitensor.model", "version": 99}).encode(), np.uint8)
    with open(newer, "wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(ValueError, match="newer"):
        load_model(newer)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing")


def test_save_leaves_no_temporary_files(tmp_path):
    compiled().save(tmp_path / "m.minitensor")
    assert [p.name for p in tmp_path.iterdir()] == ["m.minitensor"]


# ---------------------------------------------------------------- summary
def test_summary_matches_keras_layout(capsys):
    model = Sequential([Input(shape=(64,)), Dense(12, name="dense"), Dense(10, name="dense_1")], name="sequential")
    model.summary()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == 'Model: "sequential"'
    assert "Layer (type)" in out[2] and "Output Shape" in out[2] and "Param #" in out[2]
    assert any("dense (Dense)" in line and "(None, 12)" in line and line.rstrip("│ ").endswith("780") for line in out)
    assert " Total params: 910 (3.55 KB)" in out
    assert " Trainable params: 910 (3.55 KB)" in out
    assert " Non-trainable params: 0 (0.00 B)" in out
    assert max(len(line) for line in out[1:-3]) == 76


# ---------------------------------------------------------------- gradients
LOSSES = {
    "binary_crossentropy": ("sigmoid", lambda rng, n, k: rng.integers(0, 2, (n, k)).astype(float)),
    "categorical_crossentropy": ("softmax", lambda rng, n, k: np.eye(k)[rng.integers(0, k, n)]),
    "sparse_categorical_crossentropy": ("softmax", lambda rng, n, k: rng.integers(0, k, n)),
    "mean_squared_error": ("linear", lambda rng, n, k: rng.normal(size=(n, k))),
}


@settings(max_examples=30, deadline=None)
@given(
    depth=st.integers(1, 3),
    widths=st.lists(st.integers(1, 5), min_size=3, max_size=3),
    activation=st.sampled_from(["relu", "tanh", "sigmoid", "linear"]),
    loss=st.sampled_from(sorted(LOSSES)),
    outputs=st.integers(1, 3),
    penalty=st.sampled_from([None, "l1", "l2"]),
    dropout=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_whole_model_gradients(depth, widths, activation, loss, outputs, penalty, dropout, seed):
    """gradcheck (float64) of loss + penalties w.r.t. every weight of a random model."""
    out_activation, make_targets = LOSSES[loss]
    if loss == "categorical_crossentropy" or loss == "sparse_categorical_crossentropy":
        outputs = max(outputs, 2)
    rng = np.random.default_rng(seed)
    regularizer = {"l1": regularizers.L1(0.05), "l2": regularizers.L2(0.05), None: None}[penalty]
    layers = [Input(shape=(3,), dtype="float64")]
    for width in widths[:depth]:
        layers.append(Dense(width, activation=activation, kernel_regularizer=regularizer, dtype="float64",
                            bias_initializer="random_normal"))
        if dropout:
            layers.append(Dropout(0.4, seed=seed, dtype="float64"))
    layers.append(Dense(outputs, activation=out_activation, dtype="float64"))
    model = Sequential(layers)
    model.compile(optimizer="sgd", loss=loss)
    n = 4
    x = Tensor(rng.normal(size=(n, 3)))
    y = make_targets(rng, n, outputs)
    dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]

    def loss_of_weights(*weights):
        for layer in dropouts:  # the same masks on every evaluation
            layer._rng = np.random.default_rng(seed)
        y_pred, activity = model._forward(x, True)
        return model._total_loss(y, y_pred, None, activity)

    if activation == "relu" or penalty == "l1":
        # stay away from kinks: relu pre-activations and L1 weights near 0
        for layer in model.layers:
            if isinstance(layer, Dense):
                assume(np.abs(layer.kernel.data).min() > 1e-3)
        pre = x.data
        for layer in model.layers:
            if isinstance(layer, Dense):
                z = pre @ layer.kernel.data + layer.bias.data
                assume(np.abs(z).min() > 1e-3)
                pre = layer.activation(Tensor(z)).data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gradcheck(loss_of_weights, model.weights, atol=1e-6, rtol=1e-4)


@pytest.mark.skipif(not __import__("minitensor.fpenv").fpenv.AVAILABLE, reason="no flush-to-zero control here")
@pytest.mark.parametrize("jit", [False, True], ids=["reference", "compiled"])
def test_training_steps_flush_subnormals_but_callbacks_do_not(jit):
    from minitensor import losses
    from minitensor.callbacks import Callback

    subnormal = np.float32(1e-39)
    seen = {"loss": [], "callback": []}

    def loss_fn(y_true, y_pred):  # runs inside the training step (only on the reference path)
        seen["loss"].append(bool(subnormal * np.float32(1) == 0))
        return losses.mean_squared_error(y_true, y_pred)

    def probe(self, index, logs=None):
        seen["callback"].append(bool(subnormal * np.float32(1) == 0))

    # a callback with batch hooks would send the compiled path to the reference path
    Probe = type("Probe", (Callback,), {"on_epoch_end" if jit else "on_train_batch_end": probe})

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
    model = Sequential([Input(shape=(3,)), Dense(1)])
    model.compile(optimizer="sgd", loss="mse" if jit else loss_fn, jit_compile=jit)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[Probe()])
    assert seen["loss"] == ([] if jit else [True, True])
    assert seen["callback"] and not any(seen["callback"])
    assert subnormal * np.float32(1) == subnormal  # and the mode is off after fit


# ---------------------------------------------------------------- losses and compute_loss
def _penalised_model(optimizer):
    model = Sequential([
        Input(shape=(5,)),
        Dense(4, activation="relu", kernel_regularizer=regularizers.l2(0.05), activity_regularizer=regularizers.l1(0.01)),
        Dense(1, activation="sigmoid", kernel_regularizer=regularizers.l1_l2(0.02, 0.03), bias_regularizer=regularizers.l2(0.1)),
    ])
    model.compile(optimizer=optimizer, loss="binary_crossentropy")
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def test_compute_loss_is_the_loss_fit_reports_for_a_one_batch_epoch():
    x, y = binary_data(n=16)
    weights = np.linspace(0.2, 2.0, 16).astype(np.float32)
    model = _penalised_model(SGD(learning_rate=0.1))
    expected = model.compute_loss(x, y, sample_weight=weights).item()
    history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, sample_weight=weights, verbose=0)
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-7)
    # the compiled loss alone leaves the penalties out: the test above is not trivially true
    assert abs(model.loss(y[:, None], model(x), sample_weight=weights).item() - expected) > 1e-3


def test_compute_loss_gradient_is_the_update_fit_applies_with_plain_sgd():
    x, y = binary_data(n=16)
    weights = np.linspace(0.2, 2.0, 16).astype(np.float32)
    model = _penalised_model(SGD(learning_rate=0.1))
    before = model.get_weights()
    for w in model.weights:
        w.grad[...] = 0
    model.compute_loss(x, y, sample_weight=weights).backward()
    variables = [Tensor(w.copy()) for w in before]
    SGD(learning_rate=0.1).apply_gradients([(w.grad.copy(), v) for w, v in zip(model.weights, variables)])
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, sample_weight=weights, verbose=0)
    for fitted, by_hand in zip(model.get_weights(), variables):
        np.testing.assert_array_equal(fitted, by_hand.data)


def test_losses_are_the_penalties_and_compute_loss_adds_them_to_the_loss():
    x, y = binary_data(n=8)
    model = _penalised_model("sgd")
    y_pred = model(x, training=True)
    penalties = model.losses
    assert len(penalties) == 1 + 1 + 2  # activity, then kernel of layer 1, kernel and bias of layer 2
    kernel = model.get_weights()[0]
    assert penalties[1].item() == pytest.approx(0.05 * float((kernel.astype(np.float64) ** 2).sum()), rel=1e-6)
    hidden = np.maximum(x @ kernel + model.get_weights()[1], 0)  # only the first layer has an activity penalty
    assert penalties[0].item() == pytest.approx(0.01 * np.abs(hidden).sum() / len(x), rel=1e-5)
    total = model.loss(y[:, None], y_pred).item() + sum(p.item() for p in penalties)
    assert model.compute_loss(x, y, y_pred=y_pred).item() == pytest.approx(total, rel=1e-6)


def test_compute_loss_rejects_bad_arguments_before_anything_runs():
    x, y = binary_data(n=8)
    model = small_model()
    with pytest.raises(RuntimeError, match="compile"):
        model.compute_loss(x, y)
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    with pytest.raises(ValueError, match="training"):
        model.compute_loss(x, y, training="yes")
    with pytest.raises(TypeError, match="y_pred"):
        model.compute_loss(x, y, y_pred=np.zeros((8, 1), np.float32))
    with pytest.raises(ValueError, match="same number of samples"):
        model.compute_loss(x, y[:5])


@pytest.mark.parametrize("suffix", [".minitensor", ".keras"])
def test_load_model_passes_compile_on(tmp_path, suffix):
    """models.load_model(..., compile=False) gives the saved weights without the compile settings."""
    from minitensor.models import load_model

    model = Sequential([Input(shape=(4,)), Dense(3, activation="relu"), Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    path = tmp_path / f"model{suffix}"
    model.save(path)
    bare = load_model(path, compile=False)
    full = load_model(path)
    assert not bare.compiled and full.compiled
    for saved, loaded in zip(model.get_weights(), bare.get_weights()):
        np.testing.assert_array_equal(saved, loaded)


def test_flat_buffers_hold_every_weight_and_gradient():
    model = Sequential([Input(shape=(3,)), Dense(2), Dense(1, use_bias=False)])
    flat, grads = model.flat_parameters, model.flat_gradients
    assert flat.size == grads.size == model.count_params()
    flat[:] = np.arange(flat.size)
    assert np.array_equal(np.concatenate([w.ravel() for w in model.get_weights()]), np.arange(flat.size))
    assert all(np.shares_memory(w.grad, grads) for w in model.weights)
    assert model.optimizer_variables is None  # fit has not prepared an optimizer yet
    with pytest.raises(ValueError, match="must be built"):
        Sequential([Dense(2)]).flat_parameters


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize(
    "loss, metric, units",
    [("binary_crossentropy", "accuracy", 1), ("categorical_crossentropy", "categorical_accuracy", 3),
     ("sparse_categorical_crossentropy", "sparse_categorical_accuracy", 3), ("mse", "mae", 1)],
)
def test_metric_states_stay_in_the_state_dtype_after_fit(loss, metric, units, jit_compile):
    # a NumPy integer added to a float32 state would silently promote it to float64
    rng = np.random.default_rng(3)
    x = rng.random((20, 4), dtype=np.float32)
    labels = rng.integers(0, units if units > 1 else 2, size=20)
    if loss == "categorical_crossentropy":
        y = np.eye(units, dtype=np.float32)[labels]
    elif loss == "mse":
        y = x.sum(1)
    else:
        y = labels.astype("float32") if loss == "binary_crossentropy" else labels
    activation = "sigmoid" if loss == "binary_crossentropy" else ("softmax" if units > 1 else None)
    model = Sequential([Input(shape=(4,)), Dense(units, activation=activation)])
    model.compile(optimizer="adam", loss=loss, metrics=[metric], jit_compile=jit_compile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # with jit_compile, "mae" falls back to the reference path
        for sample_weight in (None, np.linspace(0.5, 1.5, 20)):
            model.fit(x, y, batch_size=6, epochs=2, verbose=0, sample_weight=sample_weight)
            for m in model.metrics:
                assert [type(v) for v in m.get_state()] == [np.float32, np.float32], (m.name, sample_weight)
