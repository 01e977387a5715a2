"""Tests of minitensor.metrics: accuracy resolution (docs/keras-formulas.md §3.1) and aggregation (§3.2)."""

import numpy as np
import pytest

from minitensor import Tensor, losses, metrics

N = 6


# ------------------------------------------------------------- resolution
@pytest.mark.parametrize(
    "case, y_true, y_pred, expected",
    [
        ("(N,1) sigmoid, y (N,)", np.zeros(N), np.zeros((N, 1)), metrics.BinaryAccuracy),
        ("(N,1) sigmoid, y (N,1)", np.zeros((N, 1)), np.zeros((N, 1)), metrics.BinaryAccuracy),
        ("(N,3) softmax, one-hot y", np.zeros((N, 3)), np.zeros((N, 3)), metrics.CategoricalAccuracy),
        ("(N,3) softmax, int y (N,)", np.zeros(N, dtype=int), np.zeros((N, 3)), metrics.SparseCategoricalAccuracy),
        ("(N,3) softmax, int y (N,1)", np.zeros((N, 1), dtype=int), np.zeros((N, 3)),
         metrics.SparseCategoricalAccuracy),
        ("(N,3) sigmoid multi-label + BCE", np.zeros((N, 3)), np.zeros((N, 3)), metrics.CategoricalAccuracy),
        ("(N,2) softmax + BCE", np.zeros((N, 2)), np.zeros((N, 2)), metrics.CategoricalAccuracy),
        ("(N,1) linear + MSE", np.zeros(N), np.zeros((N, 1)), metrics.BinaryAccuracy),
    ],
)
def test_accuracy_resolution_table(case, y_true, y_pred, expected):
    metric = metrics.get("accuracy", y_true, y_pred)
    assert type(metric) is expected, case
    assert metric.name == "accuracy" and metric._direction == "up"
    # Tensors work as well as arrays (only the shapes are read)
    assert type(metrics.get("accuracy", Tensor(y_true), Tensor(y_pred))) is expected


@pytest.mark.parametrize("identifier", ["acc", "accuracy", "Accuracy", "ACC"])
def test_accuracy_is_named_after_the_string_given(identifier):
    metric = metrics.get(identifier, np.zeros((N, 3)), np.zeros((N, 3)))
    assert metric.name == identifier
    assert type(metric) is metrics.CategoricalAccuracy


@pytest.mark.parametrize(
    "identifier, cls, direction",
    [
        ("binary_accuracy", metrics.BinaryAccuracy, "up"),
        ("categorical_accuracy", metrics.CategoricalAccuracy, "up"),
        ("sparse_categorical_accuracy", metrics.SparseCategoricalAccuracy, "up"),
        ("SparseCategoricalAccuracy", metrics.SparseCategoricalAccuracy, "up"),
        ("mse", metrics.MeanSquaredError, "down"),
        ("mean_squared_error", metrics.MeanSquaredError, "down"),
        ("MSE", metrics.MeanSquaredError, "down"),
        ("mae", metrics.MeanAbsoluteError, "down"),
    ],
)
def test_get_other_names(identifier, cls, direction):
    metric = metrics.get(identifier)
    assert type(metric) is cls and metric.name == identifier and metric._direction == direction
    assert isinstance(metric, metrics.MeanMetricWrapper)


def test_get_instances_classes_and_callables():
    instance = metrics.BinaryAccuracy(threshold=0.3, name="b")
    assert metrics.get(instance) is instance
    assert type(metrics.get(metrics.CategoricalAccuracy)) is metrics.CategoricalAccuracy

    def hits(y_true, y_pred):
        return (np.asarray(y_true) == np.asarray(y_pred)).astype(np.float32)

    wrapped = metrics.get(hits)
    assert isinstance(wrapped, metrics.MeanMetricWrapper) and wrapped.name == "hits" and wrapped._direction is None
    wrapped.update_state([1, 2, 3], [1, 0, 3])
    assert wrapped.result() == np.float32(2 / 3)
    # a loss function wrapped as a metric is minimised, as in Keras
    assert metrics.MeanMetricWrapper(losses.mean_squared_error)._direction == "down"
    assert metrics.Mean()._direction is None


def test_get_errors():
    with pytest.raises(ValueError, match=r"Received: y_true=None"):
        metrics.get("accuracy")
    with pytest.raises(ValueError, match=r"Received: y_pred=None"):
        metrics.get("acc", np.zeros(3))
    with pytest.raises(ValueError, match=r"Could not interpret metric identifier: 'accuracy_x'"):
        metrics.get("accuracy_x")
    with pytest.raises(ValueError, match=r"Received: None"):
        metrics.get(None)
    with pytest.raises(ValueError, match=r"Could not interpret metric identifier: 7"):
        metrics.get(7)


# ---------------------------------------------------------- per-sample values
def test_binary_accuracy_threshold_is_strict():
    y_true = np.array([1, 1, 0, 0, 1])
    y_pred = np.array([0.5, 0.50001, 0.5, 0.49, 0.9], dtype=np.float32)
    np.testing.assert_array_equal(metrics.binary_accuracy(y_true, y_pred), [0, 1, 1, 1, 1])
    out = metrics.binary_accuracy(y_true, y_pred, threshold=0.9)
    np.testing.assert_array_equal(out, [0, 0, 1, 1, 0])  # 0.9 > float32(0.9) is false
    assert out.dtype == np.float32
    # y (N,) with y_pred (N, 1): matched, not broadcast to (N, N)
    assert metrics.binary_accuracy(y_true, y_pred[:, None]).shape == (5, 1)
    # labels must be exactly 0/1: a soft label never matches
    np.testing.assert_array_equal(metrics.binary_accuracy([0.9, 0.1], [0.95, 0.05]), [0, 0])
    # logits are thresholded at 0.5 too, not at 0
    np.testing.assert_array_equal(metrics.binary_accuracy([1, 0], [0.3, -2.0]), [0, 1])


def test_argmax_ties_go_to_the_first_maximum():
    y_pred = np.array([[0.4, 0.4, 0.2], [0.1, 0.45, 0.45], [0.3, 0.3, 0.3]], dtype=np.float32)
    np.testing.assert_array_equal(metrics.categorical_accuracy(np.eye(3)[[0, 1, 0]], y_pred), [1, 1, 1])
    np.testing.assert_array_equal(metrics.categorical_accuracy(np.eye(3)[[1, 2, 2]], y_pred), [0, 0, 0])
    np.testing.assert_array_equal(metrics.sparse_categorical_accuracy([0, 1, 0], y_pred), [1, 1, 1])
    np.testing.assert_array_equal(metrics.sparse_categorical_accuracy([[1], [2], [2]], y_pred), [0, 0, 0])


def test_sparse_and_categorical_shapes():
    y_pred = np.array([[0.1, 0.6, 0.3], [0.05, 0.95, 0.0]])
    for labels in ([2, 1], np.array([[2], [1]]), np.array([2.0, 1.0]), Tensor([2.0, 1.0])):
        out = metrics.sparse_categorical_accuracy(labels, y_pred)
        assert out.shape == (2,) and out.dtype == np.float32
        np.testing.assert_array_equal(out, [0, 1])
    out = metrics.categorical_accuracy(Tensor(np.eye(3)[[1, 1]]), Tensor(y_pred))
    np.testing.assert_array_equal(out, [1, 1])


# --------------------------------------------------------------- aggregation
def test_epoch_accuracy_is_correct_over_seen():
    rng = np.random.default_rng(0)
    metric = metrics.get("acc", np.zeros(32), np.zeros((32, 1)))
    correct = seen = 0
    for size in (32, 32, 29):  # a last partial batch weighs by its size
        y = rng.integers(0, 2, size)
        p = rng.random((size, 1)).astype(np.float32)
        metric.update_state(y, p)
        correct += int(((p[:, 0] > 0.5) == y).sum())
        seen += size
    assert metric.count == np.float32(seen) and metric.count.dtype == np.float32
    assert metric.total == np.float32(correct)
    assert metric.result() == float(np.float32(correct) / np.float32(seen))
    assert isinstance(metric.result(), float)


def test_sample_weights():
    metric = metrics.BinaryAccuracy()
    metric.update_state([1, 1, 0, 0], [0.9, 0.2, 0.1, 0.7], sample_weight=[0.5, 2.0, 1.0, 0.0])
    # correct: samples 0 and 2 -> (0.5 + 1.0) / (0.5 + 2.0 + 1.0 + 0.0)
    assert metric.total == np.float32(1.5) and metric.count == np.float32(3.5)
    assert metric.result() == float(np.float32(1.5) / np.float32(3.5))
    metric.update_state([1], [0.9], sample_weight=[[4.0]])  # (N, 1) weights are matched to (N,) values
    assert metric.count == np.float32(7.5)
    cat = metrics.CategoricalAccuracy()
    cat.update_state(np.eye(3)[[0, 1]], [[0.8, 0.1, 0.1], [0.8, 0.1, 0.1]], sample_weight=np.array([3.0, 1.0]))
    assert cat.result() == 0.75


def test_multi_label_binary_accuracy_averages_within_each_sample():
    metric = metrics.BinaryAccuracy()
    metric.update_state(np.ones((4, 3)), np.tile([0.7, 0.0, 0.7], (4, 1)))
    assert metric.count == 4 and metric.result() == float(np.float32(8 / 3) / np.float32(4))
    assert metric.result() == pytest.approx(2 / 3, rel=1e-6)


def test_mean_metric():
    m = metrics.Mean()
    assert m.result() == 0.0  # no samples: 0, not NaN
    m.update_state([1.0, 3.0, 5.0, 7.0])
    assert m.result() == 4.0
    m.update_state(np.float32(2.0), sample_weight=4)  # the loss tracker's use: a batch mean weighted by its size
    assert m.total == np.float32(24.0) and m.count == np.float32(8.0) and m.result() == 3.0
    m.reset_state()
    m.update_state([1.0, 3.0, 5.0, 7.0], sample_weight=[1, 1, 0, 0])
    assert m.result() == 2.0
    m.reset_state()
    m.update_state(Tensor([[1.0, 3.0], [5.0, 7.0]]))  # rank-2 values: one mean per sample
    assert m.count == 2 and m.result() == 4.0


def test_total_and_count_are_float32():
    m = metrics.Mean()
    for _ in range(3):
        m.update_state(np.full(1, 0.1, dtype=np.float32))
    expected = np.float32(np.float32(np.float32(0.1) + np.float32(0.1)) + np.float32(0.1))
    assert m.total == expected and m.total.dtype == np.float32
    assert m.result() == float(expected / np.float32(3))


def test_reset_state():
    metric = metrics.SparseCategoricalAccuracy()
    metric.update_state([0, 1], [[0.9, 0.1], [0.8, 0.2]])
    assert metric.result() == 0.5
    metric.reset_state()
    assert metric.total == 0 and metric.count == 0 and metric.result() == 0.0
    metric.update_state([1], [[0.1, 0.9]])
    assert metric.result() == 1.0


def test_call_updates_and_returns_result():
    metric = metrics.CategoricalAccuracy()
    assert metric([[0, 1]], [[0.2, 0.8]]) == 1.0
    assert metric([[0, 1]], [[0.9, 0.1]]) == 0.5


def test_mean_squared_error_metric():
    metric = metrics.get("mse")
    metric.update_state(np.array([1.0, 0.0, 2.0]), np.array([[0.5], [0.5], [4.0]], dtype=np.float32))
    assert metric.result() == pytest.approx((0.25 + 0.25 + 4.0) / 3, rel=1e-6)
    metric.update_state(Tensor([[0.0, 1.0]]), Tensor([[1.0, 1.0]]))
    assert metric.count == 4 and metric.result() == pytest.approx((4.5 + 0.5) / 4, rel=1e-6)
    mae = metrics.get("mae")
    mae.update_state([[0.0, 1.0]], [[1.0, 1.0]])
    assert mae.result() == 0.5


def test_invalid_sample_weight_leaves_the_state_unchanged():
    metric = metrics.BinaryAccuracy()
    metric.update_state([1, 0], [0.9, 0.1])
    with pytest.raises(ValueError, match=r"Expected `sample_weight` broadcastable to the values of shape \(3,\)"):
        metric.update_state([1, 0, 1], [0.9, 0.1, 0.2], sample_weight=[1.0, 2.0])
    assert metric.total == 2 and metric.count == 2


def test_constructor_validation():
    with pytest.raises(TypeError, match=r"Expected `threshold` to be a number. Received: threshold='0.5'"):
        metrics.BinaryAccuracy(threshold="0.5")
    with pytest.raises(ValueError, match=r"Expected `dtype` to be a floating dtype.*Received: dtype=int32"):
        metrics.Mean(dtype="int32")
    with pytest.raises(TypeError, match=r"Expected `fn` to be a callable"):
        metrics.MeanMetricWrapper("binary_accuracy")
    with pytest.raises(ValueError, match=r"Expected `direction` to be 'up', 'down' or None. Received: direction='max'"):
        metrics.MeanMetricWrapper(metrics.binary_accuracy, direction="max")


def test_configs():
    config = metrics.BinaryAccuracy(threshold=0.7, name="acc").get_config()
    assert config == {"name": "acc", "dtype": "float32", "threshold": 0.7}
    assert metrics.CategoricalAccuracy().get_config() == {"name": "categorical_accuracy", "dtype": "float32"}
    assert metrics.Mean().get_config() == {"name": "mean", "dtype": "float32"}
    rebuilt = metrics.BinaryAccuracy.from_config(metrics.BinaryAccuracy(threshold=0.7, name="acc").get_config())
    assert rebuilt.threshold == 0.7 and rebuilt.name == "acc"
    assert repr(rebuilt) == "<BinaryAccuracy name=acc>"


def test_mean_metric_wrapper_config_round_trip():
    metric = metrics.MeanMetricWrapper(metrics.binary_accuracy, name="b", threshold=0.7)
    config = metric.get_config()
    assert config == {"name": "b", "dtype": "float32", "fn": "binary_accuracy", "threshold": 0.7}
    rebuilt = metrics.MeanMetricWrapper.from_config(config)
    rebuilt.update_state([1, 1], [0.6, 0.8])
    assert rebuilt.result() == 0.5 and rebuilt.name == "b"
    assert metrics.MeanSquaredError.from_config({"name": "m", "dtype": "float32"}).name == "m"


def test_mean_accepts_tensors_for_values_and_weights():
    m = metrics.Mean()
    m.update_state(Tensor(2.5), sample_weight=Tensor(4.0))
    m.update_state(Tensor([1.0, 2.0]), sample_weight=Tensor([1.0, 3.0]))
    assert m.total == np.float32(17.0) and m.count == np.float32(8.0)


# ------------------------------------------------------------- counting fast paths: the general path's state
def _state(metric):
    return (type(metric.total), metric.total.tobytes(), type(metric.count), metric.count.tobytes())


@pytest.mark.parametrize(
    "y_true, y_pred",
    [
        (
            np.array([1, 0, 1, 1, 0, 0], dtype=np.float32),
            np.array([[0.9], [0.5], [0.2], [0.51], [0.0], [0.7]], dtype=np.float32),
        ),
        (np.array([[1], [0], [1]], dtype=np.float32), np.array([[0.6], [0.4], [0.5]], np.float32)),
        (np.array([1, 0, 1], dtype=np.float32), np.array([0.6, 0.4, np.nan], np.float32)),
        (np.array([1, 0, 1]), np.array([[0.6], [0.4], [0.4]])),  # integer labels, float64 scores
        (np.array([1.0, 0.7, 0.0], dtype=np.float32), np.array([[0.9], [0.9], [0.1]], np.float32)),  # soft label
    ],
)
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_binary_accuracy_count_matches_the_general_path(y_true, y_pred, threshold):
    fast, general = metrics.BinaryAccuracy(threshold=threshold), metrics.MeanMetricWrapper(
        metrics.binary_accuracy, threshold=threshold
    )
    for _ in range(3):
        fast.update_state(y_true, y_pred)
        general.update_state(y_true, y_pred)
        assert _state(fast) == _state(general)


def test_binary_accuracy_follows_a_changed_threshold():
    metric = metrics.BinaryAccuracy()
    y_true, y_pred = np.array([1.0, 1.0]), np.array([[0.6], [0.8]])
    metric.update_state(y_true, y_pred)
    metric._fn_kwargs["threshold"] = 0.7
    metric.update_state(y_true, y_pred)
    assert metric.total == 3 and metric.count == 4


def test_categorical_accuracy_count_matches_the_general_path():
    rng = np.random.default_rng(0)
    y_true = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 16)]
    y_pred = rng.random((16, 4)).astype(np.float32)
    y_pred[3] = y_pred[3, 0]  # a tie: the first maximum wins
    fast, general = metrics.CategoricalAccuracy(), metrics.MeanMetricWrapper(metrics.categorical_accuracy)
    for _ in range(3):
        fast.update_state(y_true, y_pred)
        general.update_state(y_true, y_pred)
        assert _state(fast) == _state(general)


def test_loss_tracker_shortcut_adds_what_update_state_adds():
    fast, general = metrics.Mean(), metrics.Mean()
    for value, size in [(np.float32(0.693), 32), (np.float32(1e-8), 7), (np.float64(0.1), 3)]:
        fast._add_weighted(np.asarray(value), size)
        general.update_state(np.asarray(value), sample_weight=size)
        assert _state(fast) == _state(general)


def test_mean_state_round_trips_in_the_state_dtype():
    m = metrics.Mean(dtype="float64")
    m.update_state([1.0, 2.0])
    other = metrics.Mean(dtype="float64")
    other.set_state(m.get_state())
    assert other.result() == m.result() == 1.5
    other.set_state([np.float32(1), 3])
    assert type(other.total) is np.float64 and type(other.count) is np.float64 and other.result() == 1 / 3


def test_binary_accuracy_threshold_is_the_one_it_uses():
    m = metrics.BinaryAccuracy(threshold=0.7)
    m.update_state(np.array([1.0, 1.0]), np.array([0.6, 0.8]))
    assert m.threshold == m.get_config()["threshold"] == 0.7 and m.result() == 0.5
