"""Callbacks: EarlyStopping's algorithm (docs/keras-formulas.md §8.1), History (§8.2), CallbackList.

EarlyStopping is driven by a fake model and fake logs, as fit would drive it: the
weights are set to the epoch index before each ``on_epoch_end``, so a restore shows
which epoch's weights came back.
"""

import copy
import json
import pickle
import warnings

import numpy as np
import pytest

from minitensor.callbacks import (
    Callback,
    CallbackList,
    EarlyStopping,
    History,
    HistoryDict,
    ProgbarLogger,
)

SEQ = [1.0, 0.9, 0.95, 0.85, 0.86, 0.87, 0.88, 0.80]


class FakeMetric:
    def __init__(self, name, direction=None):
        self.name = name
        if direction is not None:
            self._direction = direction


class FakeModel:
    def __init__(self, metrics=()):
        self.metrics = list(metrics)
        self.stop_training = False
        self.weights = [np.zeros((2, 2), np.float32), np.zeros(2, np.float32)]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]


def fit(callback, values, monitor="val_loss", model=None):
    """Run the epochs of ``values`` as fit would; return the epochs run and the model."""
    model = model or FakeModel()
    callbacks = CallbackList([callback], add_history=True, model=model, verbose=0, epochs=len(values), steps=1)
    callbacks.on_train_begin()
    model.stop_training = False
    for epoch, value in enumerate(values):
        callbacks.on_epoch_begin(epoch)
        model.weights = [np.full_like(w, epoch) for w in model.weights]
        callbacks.on_epoch_end(epoch, {"loss": 0.5, monitor: value})
        if model.stop_training:
            break
    callbacks.on_train_end()
    return model.history.epoch, model


def weights_epoch(model):
    return int(model.weights[0][0, 0])


# -- EarlyStopping: the algorithm ------------------------------------------------------------


@pytest.mark.parametrize(
    "patience, epochs_run, stopped_epoch",
    [(0, 3, 2), (1, 3, 2), (2, 6, 5), (3, 7, 6), (4, 8, 0)],
)
def test_patience(patience, epochs_run, stopped_epoch):
    stop = EarlyStopping(patience=patience)
    epochs, model = fit(stop, SEQ)
    # patience=0 behaves as 1; the stopping epoch is recorded in History.
    assert epochs == list(range(epochs_run))
    assert stop.stopped_epoch == stopped_epoch
    assert model.stop_training == (stopped_epoch > 0)
    assert len(model.history.history["val_loss"]) == epochs_run


def test_best_and_wait_bookkeeping():
    stop = EarlyStopping(patience=2)
    fit(stop, SEQ)
    assert (stop.best, stop.best_epoch, stop.wait) == (0.85, 3, 2)


def test_min_delta():
    stop = EarlyStopping(min_delta=0.06, patience=2)
    epochs, _ = fit(stop, SEQ)
    assert epochs == [0, 1, 2, 3]
    assert stop.min_delta == -0.06  # signed for a quantity that is minimised
    assert (stop.best, stop.best_epoch) == (0.9, 1)


def test_min_delta_sign_is_ignored():
    a, b = EarlyStopping(min_delta=0.06, patience=2), EarlyStopping(min_delta=-0.06, patience=2)
    assert fit(a, SEQ)[0] == fit(b, SEQ)[0]


def test_equal_value_is_not_an_improvement():
    stop = EarlyStopping(patience=0)
    epochs, _ = fit(stop, [1.0, 1.0, 0.5])
    assert epochs == [0, 1] and stop.best_epoch == 0


def test_comparison_in_float32_as_keras():
    # Keras compares through ops.less, i.e. in float32: 0.5 - 1e-9 is not below 0.5.
    stop = EarlyStopping(patience=0)
    epochs, _ = fit(stop, [0.5, 0.5 - 1e-9, 0.1])
    assert epochs == [0, 1]


def test_baseline_not_beaten_keeps_waiting():
    # Improvements update `best` but only reset `wait` if they also beat the baseline;
    # an improving epoch never stops training.
    stop = EarlyStopping(baseline=0.88, patience=2)
    epochs, _ = fit(stop, SEQ)
    assert epochs == [0, 1, 2]
    assert (stop.best, stop.best_epoch, stop.stopped_epoch) == (0.9, 1, 2)


def test_baseline_beaten_behaves_as_without():
    stop = EarlyStopping(baseline=0.92, patience=2)
    assert fit(stop, SEQ)[0] == list(range(6))


def test_start_from_epoch_ignores_early_epochs():
    stop = EarlyStopping(patience=1, start_from_epoch=3)
    epochs, _ = fit(stop, SEQ)
    assert epochs == [0, 1, 2, 3, 4]
    assert (stop.best, stop.best_epoch, stop.stopped_epoch) == (0.85, 3, 4)


def test_start_from_epoch_leaves_state_untouched_before():
    stop = EarlyStopping(patience=1, start_from_epoch=3)
    fit(stop, SEQ[:3])
    assert (stop.best, stop.wait, stop.stopped_epoch) == (None, 0, 0)


def test_restore_best_weights_after_stopping(capsys):
    stop = EarlyStopping(patience=2, restore_best_weights=True, verbose=1)
    epochs, model = fit(stop, SEQ)
    assert epochs == list(range(6))
    assert weights_epoch(model) == 3
    assert capsys.readouterr().out == (
        "Epoch 6: early stopping\nRestoring model weights from the end of the best epoch: 4.\n"
    )
    # History is not rewritten: it keeps the last epoch's values.
    assert model.history.history["val_loss"][-1] == 0.87


def test_restore_best_weights_without_stopping(capsys):
    # Keras 3 restores at train end even when training ran to completion (Keras 2 did not).
    stop = EarlyStopping(patience=10, restore_best_weights=True, verbose=1)
    epochs, model = fit(stop, SEQ[:7])
    assert epochs == list(range(7)) and stop.stopped_epoch == 0
    assert weights_epoch(model) == 3
    assert capsys.readouterr().out == "Restoring model weights from the end of the best epoch: 4.\n"


def test_restore_with_baseline_never_beaten():
    stop = EarlyStopping(patience=3, baseline=0.1, restore_best_weights=True)
    epochs, model = fit(stop, SEQ)
    assert epochs == [0, 1, 2]  # wait counts from the first epoch
    assert weights_epoch(model) == 1


def test_without_restore_weights_stay_last(capsys):
    stop = EarlyStopping(patience=2, verbose=1)
    _, model = fit(stop, SEQ)
    assert weights_epoch(model) == 5
    assert capsys.readouterr().out == "Epoch 6: early stopping\n"


def test_silent_by_default(capsys):
    fit(EarlyStopping(patience=0, restore_best_weights=True), SEQ)
    assert capsys.readouterr().out == ""


def test_reused_across_fits():
    stop = EarlyStopping(patience=0)
    fit(stop, SEQ)
    epochs, _ = fit(stop, [3.0, 2.0, 1.0])  # a fresh fit starts from scratch
    assert epochs == [0, 1, 2] and stop.stopped_epoch == 0 and stop.best == 1.0


# -- EarlyStopping: mode ---------------------------------------------------------------------


def test_mode_max():
    stop = EarlyStopping(monitor="val_loss", mode="max", patience=1)
    epochs, _ = fit(stop, SEQ)
    assert epochs == [0, 1] and stop.best == 1.0
    assert stop.min_delta == 0


def test_mode_min_on_any_name():
    stop = EarlyStopping(monitor="val_acc", mode="min", patience=2)
    assert fit(stop, SEQ, monitor="val_acc")[0] == list(range(6))


def test_mode_max_with_min_delta_is_positive():
    stop = EarlyStopping(monitor="val_accuracy", mode="max", min_delta=0.05, patience=0)
    epochs, _ = fit(stop, [0.5, 0.56, 0.6], monitor="val_accuracy")
    assert stop.min_delta == 0.05 and epochs == [0, 1, 2]


@pytest.mark.parametrize("monitor", ["loss", "val_loss"])
def test_auto_mode_loss_is_minimised_without_metrics(monitor):
    class Bare:  # no `metrics` attribute at all
        stop_training = False

    stop = EarlyStopping(monitor=monitor, patience=0)
    epochs, _ = fit(stop, SEQ, monitor=monitor, model=FakeModel())
    assert epochs == [0, 1, 2]
    stop = EarlyStopping(monitor=monitor)
    stop.set_model(Bare())
    stop.on_train_begin()
    stop.on_epoch_end(0, {monitor: 1.0})
    assert stop.best == 1.0


def test_auto_mode_uses_metric_direction():
    model = FakeModel([FakeMetric("accuracy", "up"), FakeMetric("mae", "down")])
    stop = EarlyStopping(monitor="val_accuracy", patience=0)
    epochs, _ = fit(stop, [0.5, 0.6, 0.55, 0.9], monitor="val_accuracy", model=model)
    assert epochs == [0, 1, 2] and stop.best == 0.6

    stop = EarlyStopping(monitor="mae", patience=0)
    epochs, _ = fit(stop, [0.5, 0.6], monitor="mae", model=FakeModel([FakeMetric("mae", "down")]))
    assert epochs == [0, 1] and stop.best == 0.5


def test_auto_mode_looks_inside_metric_containers():
    class Container:  # like Keras's CompileMetrics: holds the compiled metrics
        name = "compile_metrics"

        def __init__(self, metrics):
            self.metrics = metrics

    model = FakeModel([FakeMetric("loss", "down"), Container([FakeMetric("accuracy", "up")])])
    stop = EarlyStopping(monitor="accuracy", patience=0)
    assert fit(stop, [0.5, 0.4], monitor="accuracy", model=model)[0] == [0, 1]
    assert stop.best == 0.5


def test_auto_mode_legacy_acc_name_raises_with_suggestion():
    model = FakeModel([FakeMetric("accuracy", "up")])
    stop = EarlyStopping(monitor="val_acc")  # constructing is fine, as in Keras
    with pytest.raises(ValueError) as info:
        fit(stop, SEQ, monitor="val_acc", model=model)
    message = str(info.value)
    assert "monitor=val_acc" in message
    assert "isn't able to automatically determine" in message
    assert "monitor='val_accuracy'" in message
    assert "mode='max'" in message and "mode='min'" in message


def test_auto_mode_unknown_metric_raises():
    stop = EarlyStopping(monitor="val_f1")
    with pytest.raises(ValueError, match="no metric named 'f1'"):
        fit(stop, SEQ, monitor="val_f1", model=FakeModel([FakeMetric("accuracy", "up")]))


def unknown_direction_metric(kind):
    metric = FakeMetric("custom")
    if kind == "none":
        metric._direction = None  # minitensor's spelling of "unknown"
    return metric  # kind == "absent": Keras's spelling, no attribute at all


@pytest.mark.parametrize("kind", ["absent", "none"])
def test_auto_mode_metric_without_direction_raises(kind):
    stop = EarlyStopping(monitor="val_custom")
    with pytest.raises(ValueError, match="does not say whether it should go up or down"):
        fit(stop, SEQ, monitor="val_custom", model=FakeModel([unknown_direction_metric(kind)]))


def test_auto_mode_loss_tracker_of_unknown_direction_still_minimised():
    stop = EarlyStopping(monitor="val_loss", patience=0)
    tracker = FakeMetric("loss")
    tracker._direction = None
    assert fit(stop, SEQ, model=FakeModel([tracker]))[0] == [0, 1, 2]


def test_missing_monitor_warns_and_never_stops():
    stop = EarlyStopping(monitor="val_acc", mode="max", patience=0)
    model = FakeModel()
    stop.set_model(model)
    stop.on_train_begin()
    with pytest.warns(UserWarning) as record:
        for epoch, value in enumerate(SEQ):
            stop.on_epoch_end(epoch, {"loss": value, "val_accuracy": value})
    message = str(record[0].message)
    assert "Early stopping conditioned on metric `val_acc` which is not available" in message
    assert "Available metrics are: loss,val_accuracy" in message
    assert "Did you mean monitor='val_accuracy'?" in message
    assert not model.stop_training and stop.best is None and stop.wait == 0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"patience": -1}, "patience"),
        ({"patience": 1.5}, "patience"),
        ({"patience": True}, "patience"),
        ({"patience": "3"}, "patience"),
        ({"mode": "maximize"}, "mode"),
        ({"min_delta": "0.1"}, "min_delta"),
        ({"min_delta": float("nan")}, "min_delta"),
        ({"baseline": "high"}, "baseline"),
        ({"start_from_epoch": -2}, "start_from_epoch"),
        ({"monitor": ""}, "monitor"),
        ({"monitor": None}, "monitor"),
        ({"verbose": -1}, "verbose"),
        ({"restore_best_weights": "yes"}, "restore_best_weights"),
    ],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"Received an invalid value for `{name}`.*Received: {name}="):
        EarlyStopping(**kwargs)


def test_defaults_and_accepted_numeric_types():
    stop = EarlyStopping()
    assert (stop.monitor, stop.min_delta, stop.patience, stop.verbose, stop.mode, stop.baseline,
            stop.restore_best_weights, stop.start_from_epoch) == ("val_loss", 0, 0, 0, "auto", None, False, 0)
    stop = EarlyStopping(patience=np.int64(2), min_delta=np.float32(0.5), baseline=1, start_from_epoch=np.int32(1))
    assert (stop.patience, stop.min_delta, stop.baseline, stop.start_from_epoch) == (2, 0.5, 1.0, 1)


# -- History -------------------------------------------------------------------------------


def test_history_keys_sorted_and_values_python_floats():
    history = History()
    history.on_train_begin()
    history.on_epoch_end(0, {"val_loss": np.float32(0.4), "loss": np.float32(0.5),
                             "val_accuracy": 0.25, "accuracy": np.float64(0.5)})
    assert list(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert history.history["val_loss"] == [0.4000000059604645]
    assert all(type(v) is float for values in history.history.values() for v in values)


def test_history_epoch_reset_but_history_kept_across_fits():
    model = FakeModel()
    history = History()
    for fit_epochs in ([0, 1], [1, 2]):
        callbacks = CallbackList([history], model=model)
        callbacks.on_train_begin()
        for epoch in fit_epochs:
            callbacks.on_epoch_end(epoch, {"loss": float(epoch)})
    assert history.epoch == [1, 2]                       # this fit's epochs only
    assert history.history == {"loss": [0.0, 1.0, 1.0, 2.0]}  # appended, as Keras 3
    assert model.history is history


def test_history_records_params():
    callbacks = CallbackList(add_history=True, verbose=1, epochs=3, steps=45)
    assert callbacks.callbacks[0].params == {"verbose": 1, "epochs": 3, "steps": 45}


def test_history_object_not_subscriptable():
    with pytest.raises(TypeError):
        History()["loss"]


def make_accuracy_history():
    history = History()
    history.on_train_begin()
    history.on_epoch_end(0, {"accuracy": 0.5, "loss": 1.0, "val_accuracy": 0.25, "val_loss": 1.5})
    history.on_epoch_end(1, {"accuracy": 0.75, "loss": 0.5, "val_accuracy": 0.5, "val_loss": 1.25})
    return history.history


@pytest.mark.parametrize("legacy, modern", [("acc", "accuracy"), ("val_acc", "val_accuracy")])
def test_legacy_acc_alias_warns(legacy, modern):
    h = make_accuracy_history()
    with pytest.warns(DeprecationWarning, match=f"use history\\['{modern}'\\]"):
        values = h[legacy]
    assert values is h[modern]


def test_legacy_alias_keeps_dict_semantics():
    h = make_accuracy_history()
    assert isinstance(h, dict) and isinstance(h, HistoryDict)
    assert "acc" not in h and "val_acc" not in h
    assert list(h.keys()) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert h.get("acc") is None
    plain = {"accuracy": [0.5, 0.75], "loss": [1.0, 0.5], "val_accuracy": [0.25, 0.5], "val_loss": [1.5, 1.25]}
    assert h == plain and plain == h
    assert json.loads(json.dumps(h)) == plain
    assert pickle.loads(pickle.dumps(h)) == plain
    assert copy.deepcopy(h) == plain
    with pytest.raises(KeyError):
        h["precision"]


def test_no_warning_when_key_exists():
    history = History()
    history.on_epoch_end(0, {"acc": 0.5, "loss": 1.0})  # compiled with metrics=['acc']
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert history.history["acc"] == [0.5]
    with pytest.raises(KeyError):
        history.history["val_acc"]  # no validation ran: nothing to alias


# -- CallbackList ----------------------------------------------------------------------------


class Recorder(Callback):
    def __init__(self, name, log):
        super().__init__()
        self.name, self.log = name, log

    def on_epoch_end(self, epoch, logs=None):
        self.log.append((self.name, epoch, logs))


def test_order_user_then_history_then_progbar():
    user = [EarlyStopping(), Recorder("r", [])]
    callbacks = CallbackList(user, add_history=True, add_progbar=True)
    kinds = [type(c) for c in callbacks.callbacks]
    assert kinds == [EarlyStopping, Recorder, History, ProgbarLogger]


def test_given_history_and_progbar_not_duplicated():
    history, bar = History(), ProgbarLogger()
    callbacks = CallbackList([bar, history], add_history=True, add_progbar=True)
    assert callbacks.callbacks == [bar, history]


def test_nested_lists_flattened_and_non_callbacks_rejected():
    a, b, c = Callback(), Callback(), Callback()
    assert CallbackList([a, [b, (c,)]]).callbacks == [a, b, c]
    assert CallbackList(a).callbacks == [a]
    with pytest.raises(TypeError, match="minitensor.callbacks"):
        CallbackList([a, "early_stopping"])
    with pytest.raises(TypeError):
        CallbackList(42)


def test_set_model_and_params_reach_every_callback():
    model = FakeModel()
    user = Callback()
    callbacks = CallbackList([user], add_history=True, add_progbar=True, model=model,
                             verbose="auto", epochs=2, steps=45)
    assert all(c.model is model for c in callbacks.callbacks)
    assert all(c.params == {"verbose": "auto", "epochs": 2, "steps": 45} for c in callbacks.callbacks)
    assert model.history is callbacks.callbacks[1]
    assert callbacks.callbacks[2].verbose == 1  # "auto" means 1


def test_dispatch_in_order_with_pythonified_sorted_logs():
    log = []
    callbacks = CallbackList([Recorder("a", log), Recorder("b", log)])
    callbacks.on_epoch_end(3, {"val_loss": np.float32(0.25), "loss": np.float64(0.5), "extra": {"lr": np.float32(0.01)}})
    assert [(name, epoch) for name, epoch, _ in log] == [("a", 3), ("b", 3)]
    logs = log[0][2]
    assert list(logs) == ["lr", "loss", "val_loss"]  # nested dicts are flattened, as Keras
    assert logs == {"lr": float(np.float32(0.01)), "loss": 0.5, "val_loss": 0.25}
    assert all(type(v) is float for v in logs.values())


def test_every_hook_dispatched():
    calls = []

    class Spy(Callback):
        pass

    hooks = ["on_train_begin", "on_train_end", "on_test_begin", "on_test_end", "on_predict_begin",
             "on_predict_end"]
    epoch_hooks = ["on_epoch_begin", "on_epoch_end"]
    batch_hooks = ["on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin", "on_test_batch_end",
                   "on_predict_batch_begin", "on_predict_batch_end", "on_batch_begin", "on_batch_end"]
    for name in hooks:
        setattr(Spy, name, lambda self, logs=None, _n=name: calls.append((_n, logs)))
    for name in epoch_hooks + batch_hooks:
        setattr(Spy, name, lambda self, i, logs=None, _n=name: calls.append((_n, i, logs)))
    callbacks = CallbackList([Spy()])
    for name in hooks:
        getattr(callbacks, name)({"loss": 1})
    for name in epoch_hooks + batch_hooks:
        getattr(callbacks, name)(7, {"loss": 1})
    assert [c[0] for c in calls] == hooks + epoch_hooks + batch_hooks
    assert all(c[-1] == {"loss": 1.0} for c in calls)


def test_legacy_on_batch_hooks_called_from_train_batch_hooks():
    seen = []

    class Legacy(Callback):
        def on_batch_begin(self, batch, logs=None):
            seen.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            seen.append(("end", batch, logs))

    callbacks = CallbackList([Legacy()])
    callbacks.on_train_batch_begin(0)
    callbacks.on_train_batch_end(0, {"loss": 2.0})
    assert seen == [("begin", 0), ("end", 0, {"loss": 2.0})]


# -- needs_*_batch_hooks ---------------------------------------------------------------------


class EpochOnly(Callback):
    def on_epoch_end(self, epoch, logs=None):
        pass


class TrainBatchEnd(Callback):
    def on_train_batch_end(self, batch, logs=None):
        pass


class LegacyBatchBegin(Callback):
    def on_batch_begin(self, batch, logs=None):
        pass


class EvalBatchBegin(Callback):
    def on_test_batch_begin(self, batch, logs=None):
        pass


class PredictBatchEnd(Callback):
    def on_predict_batch_end(self, batch, logs=None):
        pass


def needs(callbacks):
    assert callbacks.needs_batch_logs == callbacks.needs_train_batch_hooks
    return (callbacks.needs_train_batch_hooks, callbacks.needs_test_batch_hooks,
            callbacks.needs_predict_batch_hooks)


@pytest.mark.parametrize(
    "user, expected",
    [
        ([], (False, False, False)),
        ([EpochOnly(), EarlyStopping()], (False, False, False)),
        ([TrainBatchEnd()], (True, False, False)),
        ([LegacyBatchBegin()], (True, False, False)),
        ([EvalBatchBegin()], (False, True, False)),
        ([PredictBatchEnd(), EpochOnly()], (False, False, True)),
    ],
)
def test_needs_batch_hooks_from_overrides(user, expected):
    # History and a silent or one-line progress display listen to no batch hook.
    for verbose in (0, 2):
        callbacks = CallbackList(user, add_history=True, add_progbar=verbose != 0, verbose=verbose,
                                 epochs=2, steps=5)
        assert needs(callbacks) == expected


def test_hook_assigned_on_instance_counts():
    callback = Callback()
    callback.on_train_batch_end = lambda batch, logs=None: None
    assert needs(CallbackList([callback])) == (True, False, False)


def test_live_progress_bar_needs_batch_hooks():
    callbacks = CallbackList(add_history=True, add_progbar=True, verbose=1, epochs=2, steps=5)
    assert needs(callbacks) == (True, True, True)
    callbacks.on_train_begin()  # inside fit, validation is silent
    assert needs(callbacks) == (True, False, True)
    callbacks.on_train_end()
    assert needs(callbacks) == (True, True, True)


def test_nested_callback_list():
    inner = CallbackList([TrainBatchEnd()])
    assert needs(CallbackList([inner, EpochOnly()])) == (True, False, False)
    assert needs(CallbackList([CallbackList([EpochOnly()])])) == (False, False, False)


# -- one check against Keras itself -----------------------------------------------------------


@pytest.mark.keras
def test_early_stopping_matches_keras():
    import keras

    def run(cls, values, **kwargs):
        model = FakeModel()
        stop = cls(**kwargs)
        stop.set_model(model)
        stop.on_train_begin()
        for epoch, value in enumerate(values):
            model.weights = [np.full_like(w, epoch) for w in model.weights]
            stop.on_epoch_end(epoch, {"val_loss": value})
            if model.stop_training:
                break
        stop.on_train_end()
        return epoch, stop.stopped_epoch, stop.best, stop.best_epoch, stop.wait, weights_epoch(model)

    configs = [{"patience": p} for p in range(5)] + [
        {"min_delta": 0.06, "patience": 2},
        {"baseline": 0.88, "patience": 2},
        {"start_from_epoch": 3, "patience": 1},
        {"restore_best_weights": True, "patience": 2},
        {"restore_best_weights": True, "patience": 10},
        {"mode": "max", "patience": 1},
        {"min_delta": 1e-8},
    ]
    sequences = [SEQ, [0.5, 0.5 - 1e-9, 0.5 - 2e-9, 0.3], [float(np.float32(0.3)), float(np.float32(0.3)) - 1e-8, 0.2]]
    for values in sequences:
        for kwargs in configs:
            assert run(EarlyStopping, values, **kwargs) == run(keras.callbacks.EarlyStopping, values, **kwargs), (
                values, kwargs)
