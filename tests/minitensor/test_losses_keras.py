"""minitensor losses and accuracy metrics against keras.losses / keras.metrics, to float32 round-off.

Random float32 data; both cross-entropy paths (logits recovered from a sigmoid/softmax
output, and clipping of plain probabilities), label smoothing, every reduction, sample
weights, gradients, and the resolution of 'accuracy'.
"""

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from minitensor import Tensor, losses, metrics, ops  # noqa: E402

pytestmark = pytest.mark.keras

# TensorFlow is imported when the first test runs, so `-m "not keras"` does not pay for it
keras = tf = keras_get_metric = None


@pytest.fixture(scope="module", autouse=True)
def _import_keras():
    global keras, tf, keras_get_metric
    import keras
    import tensorflow as tf
    from keras.src.trainers.compile_utils import get_metric

    keras_get_metric = get_metric

RTOL, ATOL = 2e-6, 1e-7  # float32 round-off (a few ulps over a batch sum)
N, K = 16, 4
REDUCTIONS = ["sum_over_batch_size", "sum", "mean_with_sample_weight", None]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(42)
    z = rng.normal(0, 4, (N, K)).astype(np.float32)
    z[0, :2] = [40.0, -40.0]  # saturates float32 sigmoid/softmax: the two paths differ here
    labels = rng.integers(0, K, N)
    return {
        "z": z,
        "z1": rng.normal(0, 4, (N, 1)).astype(np.float32),
        "y_bin": (rng.random((N, K)) > 0.5).astype(np.float32),
        "y1": rng.integers(0, 2, N).astype(np.float32),  # (N,) against (N, 1) outputs
        "labels": labels,
        "onehot": np.eye(K, dtype=np.float32)[labels],
        "weights": rng.uniform(0, 2, N).astype(np.float32),
    }


def outputs(kind, z, activation):
    """Return (keras y_pred, minitensor y_pred, from_logits) for one cross-entropy path."""
    if kind == "logits":
        return z, Tensor(z), True
    keras_act = getattr(keras.activations, activation)
    if kind == "activation":  # logits recovered from the activation's output
        return keras_act(z), getattr(ops, activation)(Tensor(z)), False
    plain = np.asarray(keras_act(z))  # plain probabilities: the clip path
    return plain, Tensor(plain), False


def check(mine, theirs):
    mine = mine.data if isinstance(mine, Tensor) else mine
    np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["logits", "activation", "probabilities"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_binary_crossentropy(data, kind, label_smoothing, reduction):
    for y, z in ((data["y_bin"], data["z"]), (data["y1"], data["z1"])):
        k_pred, m_pred, from_logits = outputs(kind, z, "sigmoid")
        for weights in (None, data["weights"]):
            args = dict(from_logits=from_logits, label_smoothing=label_smoothing, reduction=reduction)
            check(losses.BinaryCrossentropy(**args)(y, m_pred, sample_weight=weights),
                  keras.losses.BinaryCrossentropy(**args)(y, k_pred, sample_weight=weights))
    k_pred, m_pred, from_logits = outputs(kind, data["z"], "sigmoid")
    fn_args = dict(from_logits=from_logits, label_smoothing=label_smoothing)
    check(losses.binary_crossentropy(data["y_bin"], m_pred, **fn_args),
          keras.losses.binary_crossentropy(data["y_bin"], k_pred, **fn_args))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["logits", "activation", "probabilities"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_categorical_crossentropy(data, kind, label_smoothing, reduction):
    k_pred, m_pred, from_logits = outputs(kind, data["z"], "softmax")
    y = data["onehot"]
    for weights in (None, data["weights"]):
        args = dict(from_logits=from_logits, label_smoothing=label_smoothing, reduction=reduction)
        check(losses.CategoricalCrossentropy(**args)(y, m_pred, sample_weight=weights),
              keras.losses.CategoricalCrossentropy(**args)(y, k_pred, sample_weight=weights))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["logits", "activation", "probabilities"])
@pytest.mark.parametrize("ignore_class", [None, 2])
def test_sparse_categorical_crossentropy(data, kind, ignore_class, reduction):
    k_pred, m_pred, from_logits = outputs(kind, data["z"], "softmax")
    for labels in (data["labels"], data["labels"][:, None]):
        for weights in (None, data["weights"]):
            args = dict(from_logits=from_logits, ignore_class=ignore_class, reduction=reduction)
            check(losses.SparseCategoricalCrossentropy(**args)(labels, m_pred, sample_weight=weights),
                  keras.losses.SparseCategoricalCrossentropy(**args)(labels, k_pred, sample_weight=weights))


@pytest.mark.parametrize("name", ["MeanSquaredError", "MeanAbsoluteError"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_losses(data, name, reduction):
    for y, pred in ((data["y1"], data["z1"]), (data["y1"][:, None], data["z1"]), (data["y_bin"], data["z"])):
        for weights in (None, data["weights"]):
            check(getattr(losses, name)(reduction=reduction)(y, Tensor(pred), sample_weight=weights),
                  getattr(keras.losses, name)(reduction=reduction)(y, pred, sample_weight=weights))


def test_gradients_match_tensorflow(data):
    z = data["z"]
    smooth = 0.1
    cases = [
        (lambda t: losses.BinaryCrossentropy()(data["y_bin"], ops.sigmoid(t)),
         lambda v: keras.losses.BinaryCrossentropy()(data["y_bin"], keras.activations.sigmoid(v))),
        (lambda t: losses.CategoricalCrossentropy(label_smoothing=smooth)(data["onehot"], ops.softmax(t)),
         lambda v: keras.losses.CategoricalCrossentropy(label_smoothing=smooth)(
             data["onehot"], keras.activations.softmax(v))),
        (lambda t: losses.SparseCategoricalCrossentropy()(
            data["labels"], ops.softmax(t), sample_weight=data["weights"]),
         lambda v: keras.losses.SparseCategoricalCrossentropy()(
             data["labels"], keras.activations.softmax(v), sample_weight=data["weights"])),
        # the probability paths, differentiated through the clip
        (lambda t: losses.BinaryCrossentropy()(data["y_bin"], t),
         lambda v: keras.losses.BinaryCrossentropy()(data["y_bin"], v)),
        (lambda t: losses.CategoricalCrossentropy()(data["onehot"], t),
         lambda v: keras.losses.CategoricalCrossentropy()(data["onehot"], v)),
    ]
    probabilities = np.asarray(keras.activations.sigmoid(z))
    for i, (mine, theirs) in enumerate(cases):
        start = z if i < 3 else probabilities
        t = Tensor(start, requires_grad=True)
        mine(t).backward()
        v = tf.Variable(start)
        with tf.GradientTape() as tape:
            loss = theirs(v)
        # atol: p - y cancels, leaving round-off of the size of p's ulp
        np.testing.assert_allclose(t.grad, tape.gradient(loss, v).numpy(), rtol=1e-5, atol=1e-7, err_msg=f"case {i}")


def test_keras_quirks_are_reproduced(data):
    z, y = data["z"], data["onehot"]
    # BCE on a softmax output uses that softmax's logits (Keras only checks `_keras_logits`)
    check(losses.binary_crossentropy(y, ops.softmax(Tensor(z))),
          keras.losses.binary_crossentropy(y, keras.activations.softmax(z)))
    # squeezing y_pred (N, T, 1) to y_true's rank drops the remembered logits: clip path
    z3 = data["z"][:, :, None]
    check(losses.BinaryCrossentropy()(data["y_bin"], ops.sigmoid(Tensor(z3))),
          keras.losses.BinaryCrossentropy()(data["y_bin"], keras.activations.sigmoid(z3)))
    # a scalar sample weight: "mean_with_sample_weight" divides by that scalar
    reduction = "mean_with_sample_weight"
    check(losses.MeanSquaredError(reduction=reduction)(data["y1"], Tensor(data["z1"]), sample_weight=2.0),
          keras.losses.MeanSquaredError(reduction=reduction)(data["y1"], data["z1"], sample_weight=2.0))


def test_accuracy_metrics_over_several_batches():
    rng = np.random.default_rng(7)
    pairs = [
        (metrics.BinaryAccuracy(), keras.metrics.BinaryAccuracy()),
        (metrics.BinaryAccuracy(threshold=0.7), keras.metrics.BinaryAccuracy(threshold=0.7)),
        (metrics.CategoricalAccuracy(), keras.metrics.CategoricalAccuracy()),
        (metrics.SparseCategoricalAccuracy(), keras.metrics.SparseCategoricalAccuracy()),
        (metrics.MeanSquaredError(), keras.metrics.MeanSquaredError()),
    ]
    for weighted in (False, True):
        for mine, theirs in pairs:
            mine.reset_state()
            theirs.reset_state()
        for size in (32, 32, 29):
            p1 = rng.random((size, 1)).astype(np.float32)
            p1[:3, 0] = [0.5, 0.7, 0.0]  # exact thresholds
            y1 = rng.integers(0, 2, size)
            pk = rng.random((size, K)).astype(np.float32)
            pk[0] = [0.3, 0.3, 0.2, 0.2]  # a tie
            labels = rng.integers(0, K, (size, 1))
            onehot = np.eye(K, dtype=np.float32)[labels[:, 0]]
            weights = rng.uniform(0, 2, size).astype(np.float32) if weighted else None
            batches = [(y1, p1), (y1, p1), (onehot, pk), (labels, pk), (y1.astype(np.float32), p1)]
            for (mine, theirs), (y, p) in zip(pairs, batches):
                mine.update_state(y, p, sample_weight=weights)
                theirs.update_state(y, p, sample_weight=weights)
        for mine, theirs in pairs:
            expected = float(theirs.result())
            if weighted or isinstance(mine, metrics.MeanSquaredError):
                assert mine.result() == pytest.approx(expected, rel=RTOL), mine.name
            else:  # unweighted accuracy: integer counts, bit-exact
                assert mine.result() == expected, mine.name
                assert mine.count == np.float32(float(theirs.count))


@pytest.mark.parametrize("identifier", ["accuracy", "acc"])
@pytest.mark.parametrize(
    "y_shape, p_shape",
    [((N,), (N, 1)), ((N, 1), (N, 1)), ((N, 3), (N, 3)), ((N,), (N, 3)), ((N, 1), (N, 3)), ((N, 2), (N, 2))],
)
def test_accuracy_resolution_matches_keras(identifier, y_shape, p_shape):
    theirs = keras_get_metric(identifier, np.zeros(y_shape), np.zeros(p_shape))
    mine = metrics.get(identifier, np.zeros(y_shape), np.zeros(p_shape))
    assert type(mine).__name__ == type(theirs).__name__
    assert mine.name == theirs.name == identifier
    assert mine._direction == theirs._direction
