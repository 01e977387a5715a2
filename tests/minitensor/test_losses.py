"""Tests of minitensor.losses against float64 NumPy references written here from the formulas.

References follow docs/keras-formulas.md §2.2-§2.4: the logits formula for outputs of
sigmoid/softmax, clipping to [eps, 1 - eps] (float32 bounds) on plain probabilities,
sum-then-divide reductions.
"""

import warnings

import numpy as np
import pytest

from minitensor import Tensor, gradcheck, losses, ops

LOW = float(np.float32(1e-7))  # eps in float32
HIGH = 1.0 - 2.0**-23  # float32(1 - 1e-7) rounds to 1 - 2**-23
NO_FP_TROUBLE = dict(over="raise", invalid="raise", divide="raise")


# ------------------------------------------------------------ float64 references
def ref_bce_logits(y, z, axis=-1):
    y, z = np.asarray(y, np.float64), np.asarray(z, np.float64)
    e = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return e.mean(axis=axis)


def ref_bce_prob(y, p, axis=-1):
    y, p = np.asarray(y, np.float64), np.clip(np.asarray(p, np.float64), LOW, HIGH)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=axis)


def ref_cce_logits(y, z):
    y, z = np.asarray(y, np.float64), np.asarray(z, np.float64)
    m = z.max(axis=-1, keepdims=True)
    lse = m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True))
    return (y * (lse - z)).sum(axis=-1)


def ref_cce_prob(y, p):
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    p = np.clip(p / p.sum(axis=-1, keepdims=True), LOW, HIGH)
    return -(y * np.log(p)).sum(axis=-1)


def ref_sparse_prob(labels, p):
    z = np.log(np.clip(np.asarray(p, np.float64), LOW, HIGH))
    return ref_cce_logits(np.eye(z.shape[-1])[np.asarray(labels)], z)


def sigmoid64(z):
    return 1 / (1 + np.exp(-np.asarray(z, np.float64)))


def softmax64(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def t64(array, requires_grad=True):
    return Tensor(np.asarray(array, dtype=np.float64), requires_grad=requires_grad)


# ---------------------------------------------------------- hand-computed values
def test_bce_probability_path_hand_values():
    out = losses.binary_crossentropy([[0.0, 1.0], [0.0, 0.0]], Tensor([[0.6, 0.4], [0.4, 0.6]]))
    expected = [-(np.log(0.4) + np.log(0.4)) / 2, -(np.log(0.6) + np.log(0.4)) / 2]  # [0.91629, 0.71356]
    assert out.shape == (2,) and out.dtype == np.float32
    np.testing.assert_allclose(out.data, expected, rtol=1e-6)


def test_bce_float32_clip_bounds():
    # y=0, p=1: -log(1 - (1 - 2**-23)) = 23·ln 2 = 15.942385 (not -log(1e-7) = 16.118)
    # y=1, p=0: -log(float32(1e-7)) = 16.118095
    out = losses.binary_crossentropy([[0.0], [1.0]], Tensor([[1.0], [0.0]]))
    np.testing.assert_allclose(out.data, [23 * np.log(2), -np.log(LOW)], rtol=1e-6)
    np.testing.assert_allclose(out.data[0], 15.942385, rtol=1e-7)
    # Keras' own golden value: BCE over four maximally wrong elements of which one
    # saturates at the upper bound = 15.942385 / 4 = 3.98559
    loss = losses.BinaryCrossentropy()(np.array([[0.0, 1.0, 1.0, 0.0]]), Tensor([[1.0, 1.0, 1.0, 0.0]]))
    np.testing.assert_allclose(loss.item(), (15.942385 + 3 * -np.log(HIGH)) / 4, rtol=1e-6)
    np.testing.assert_allclose(loss.item(), 3.98559, rtol=1e-5)


def test_saturated_example_logits_vs_clip():
    # docs/keras-formulas.md §2.2: targets opposite to z = [3, -2, 20, -25]
    z = np.array([[3.0, -2.0, 20.0, -25.0]], dtype=np.float32)
    y = np.array([[0.0, 1.0, 0.0, 1.0]], dtype=np.float32)
    from_sigmoid = losses.binary_crossentropy(y, ops.sigmoid(Tensor(z)))
    np.testing.assert_allclose(from_sigmoid.data, [12.543879], rtol=1e-6)
    np.testing.assert_allclose(from_sigmoid.data, ref_bce_logits(y, z), rtol=1e-6)
    plain_probabilities = (1 / (1 + np.exp(-z))).astype(np.float32)  # computed outside minitensor, no logits
    clipped = losses.binary_crossentropy(y, Tensor(plain_probabilities))
    np.testing.assert_allclose(clipped.data, [9.308999], rtol=1e-6)
    np.testing.assert_allclose(clipped.data, ref_bce_prob(y, plain_probabilities), rtol=1e-6)
    # and a plain ndarray y_pred takes the clip path as well
    np.testing.assert_allclose(losses.binary_crossentropy(y, plain_probabilities).data, [9.308999], rtol=1e-6)


def test_bce_from_logits_true():
    z = np.array([[-18.6, 0.51], [2.94, -12.8]], dtype=np.float32)
    y = np.array([[0.0, 1.0], [0.0, 0.0]])
    out = losses.binary_crossentropy(y, Tensor(z), from_logits=True)
    np.testing.assert_allclose(out.data, ref_bce_logits(y, z), rtol=1e-6)
    loss = losses.BinaryCrossentropy(from_logits=True)(y, Tensor(z))
    np.testing.assert_allclose(loss.item(), ref_bce_logits(y, z).mean(), rtol=1e-6)
    np.testing.assert_allclose(loss.item(), 0.865458, rtol=1e-6)  # Keras docstring example (0.8654...)


def test_bce_axis_argument():
    y = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    p = np.array([[0.2, 0.7, 0.9], [0.6, 0.1, 0.5]])
    out = losses.binary_crossentropy(y, Tensor(p, dtype="float64"), axis=0)
    assert out.shape == (3,)
    np.testing.assert_allclose(out.data, ref_bce_prob(y, p, axis=0), rtol=1e-12)


def test_cce_probability_path_renormalises_then_clips():
    # unnormalised rows: p / Σp first
    out = losses.categorical_crossentropy([[0, 1, 0]], Tensor([[1.0, 2.0, 1.0]]))
    np.testing.assert_allclose(out.data, [np.log(2.0)], rtol=1e-6)
    out = losses.categorical_crossentropy([[0, 1, 0], [0, 0, 1]], Tensor([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]))
    np.testing.assert_allclose(out.data, [-np.log(0.95), -np.log(0.1)], rtol=1e-6)
    # a zero probability for the true class is clipped to float32(1e-7)
    out = losses.categorical_crossentropy([[0, 1, 0]], Tensor([[1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(out.data, [-np.log(LOW)], rtol=1e-6)


def test_cce_softmax_output_uses_logits():
    z = np.array([[0.0, 30.0, -30.0], [1.0, 2.0, 3.0]], dtype=np.float32)
    y = np.array([[0, 0, 1], [0, 1, 0]], dtype=np.float32)
    out = losses.categorical_crossentropy(y, ops.softmax(Tensor(z)))
    np.testing.assert_allclose(out.data, ref_cce_logits(y, z), rtol=1e-6)
    np.testing.assert_allclose(out.data[0], 60.0, rtol=1e-7)  # far beyond the clip bound of 16.118
    plain = softmax64(z).astype(np.float32)
    out = losses.categorical_crossentropy(y, Tensor(plain))
    np.testing.assert_allclose(out.data, ref_cce_prob(y, plain), rtol=1e-6)


def test_sparse_cce_paths_and_label_shapes():
    p = np.array([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]], dtype=np.float32)
    # the clipped 0 -> 1e-7 enters the log-softmax's normaliser: -log(p1 / (p0 + p1 + 1e-7))
    q = p.astype(np.float64)
    expected = [-np.log(q[0, 1] / (q[0, 0] + q[0, 1] + LOW)), -np.log(q[1, 2] / q[1].sum())]
    np.testing.assert_allclose(ref_sparse_prob([1, 2], p), expected, rtol=1e-12)
    for labels in ([1, 2], np.array([[1], [2]]), np.array([1.0, 2.0]), Tensor([1.0, 2.0]), np.array([1.7, 2.2])):
        # float ids are truncated, as Keras' cast to int64
        out = losses.sparse_categorical_crossentropy(labels, Tensor(p))
        assert out.shape == (2,)
        np.testing.assert_allclose(out.data, expected, rtol=1e-6)
    # probability path clips (here the true class has p = 0): z = log(clip(p))
    out = losses.sparse_categorical_crossentropy([2], Tensor([[0.5, 0.5, 0.0]]))
    np.testing.assert_allclose(out.data, ref_sparse_prob([2], [[0.5, 0.5, 0.0]]), rtol=1e-6)
    z = np.array([[0.0, 30.0, -30.0]], dtype=np.float32)
    np.testing.assert_allclose(
        losses.sparse_categorical_crossentropy([2], ops.softmax(Tensor(z))).data, [60.0], rtol=1e-7
    )
    np.testing.assert_allclose(
        losses.sparse_categorical_crossentropy([2], Tensor(z), from_logits=True).data, [60.0], rtol=1e-7
    )


def test_sparse_ignore_class():
    p = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1], [0.3, 0.3, 0.4]], dtype=np.float32)
    labels = np.array([0, 2, 1, 2])
    per_sample = losses.sparse_categorical_crossentropy(labels, Tensor(p), ignore_class=2)
    np.testing.assert_allclose(per_sample.data, [-np.log(0.2), 0.0, -np.log(0.3), 0.0], rtol=1e-6)
    # the mean runs over the two valid samples only
    loss = losses.SparseCategoricalCrossentropy(ignore_class=2)(labels, Tensor(p))
    np.testing.assert_allclose(loss.item(), (-np.log(0.2) - np.log(0.3)) / 2, rtol=1e-6)
    loss = losses.SparseCategoricalCrossentropy(ignore_class=2, reduction="sum")(labels, Tensor(p))
    np.testing.assert_allclose(loss.item(), -np.log(0.2) - np.log(0.3), rtol=1e-6)
    w = np.array([2.0, 5.0, 0.5, 1.0])
    loss = losses.SparseCategoricalCrossentropy(ignore_class=2)(labels, Tensor(p), sample_weight=w)
    np.testing.assert_allclose(loss.item(), (-2 * np.log(0.2) - 0.5 * np.log(0.3)) / 2, rtol=1e-6)
    loss = losses.SparseCategoricalCrossentropy(ignore_class=2, reduction="mean_with_sample_weight")(
        labels, Tensor(p), sample_weight=w
    )
    np.testing.assert_allclose(loss.item(), (-2 * np.log(0.2) - 0.5 * np.log(0.3)) / 2.5, rtol=1e-6)
    # every sample ignored: 0 (divide_no_nan), not NaN
    assert losses.SparseCategoricalCrossentropy(ignore_class=1)([1, 1], Tensor(p[:2])).item() == 0.0


def test_mse_and_mae_match_ranks_instead_of_broadcasting():
    y = np.array([1.0, 0.0, 2.0])
    p = np.array([[0.5], [0.5], [4.0]], dtype=np.float32)
    out = losses.mean_squared_error(y, Tensor(p))
    assert out.shape == (3,)  # not (3, 3)
    np.testing.assert_allclose(out.data, [0.25, 0.25, 4.0])
    np.testing.assert_allclose(losses.MeanSquaredError()(y, Tensor(p)).item(), 4.5 / 3, rtol=1e-6)
    np.testing.assert_allclose(losses.mean_absolute_error(y, Tensor(p)).data, [0.5, 0.5, 2.0])
    np.testing.assert_allclose(losses.MeanAbsoluteError()(y, Tensor(p)).item(), 1.0, rtol=1e-6)
    # (N, 1) targets against (N,) predictions are matched too
    np.testing.assert_allclose(losses.mean_squared_error(y[:, None], Tensor(p[:, 0])).data, [0.25, 0.25, 4.0])
    # several outputs: mean over the last axis
    out = losses.mean_squared_error([[1.0, 2.0]], Tensor([[0.0, 0.0]]))
    np.testing.assert_allclose(out.data, [2.5])


# ------------------------------------------------------------- label smoothing
def test_label_smoothing_bce():
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    p = np.array([[0.8, 0.3], [0.4, 0.9]], dtype=np.float32)
    s = 0.2
    smoothed = y * (1 - s) + 0.5 * s  # [[0.9, 0.1], [0.1, 0.9]]
    out = losses.binary_crossentropy(y, Tensor(p), label_smoothing=s)
    np.testing.assert_allclose(out.data, ref_bce_prob(smoothed, p), rtol=1e-6)
    z = np.array([[1.5, -0.5], [-2.0, 3.0]], dtype=np.float32)
    loss = losses.BinaryCrossentropy(label_smoothing=s)(y, ops.sigmoid(Tensor(z)))
    np.testing.assert_allclose(loss.item(), ref_bce_logits(smoothed, z).mean(), rtol=1e-6)


def test_label_smoothing_cce():
    y = np.eye(3)[[0, 2]]
    z = np.array([[2.0, 1.0, -1.0], [0.5, 0.0, 1.5]], dtype=np.float32)
    s = 0.3
    smoothed = y * (1 - s) + s / 3  # 0.8 for the true class, 0.1 elsewhere
    loss = losses.CategoricalCrossentropy(label_smoothing=s)(y, ops.softmax(Tensor(z)))
    np.testing.assert_allclose(loss.item(), ref_cce_logits(smoothed, z).mean(), rtol=1e-6)
    p = softmax64(z).astype(np.float32)
    out = losses.categorical_crossentropy(y, Tensor(p), label_smoothing=s)
    np.testing.assert_allclose(out.data, ref_cce_prob(smoothed, p), rtol=1e-6)


# ------------------------------------------------------ reductions and weights
def squares():
    """Per-sample MSE values [1, 4, 9, 16] (targets 0)."""
    return np.zeros(4), Tensor([[1.0], [2.0], [3.0], [4.0]])


@pytest.mark.parametrize(
    "reduction, sample_weight, expected",
    [
        ("sum_over_batch_size", None, 30 / 4),
        ("mean", None, 30 / 4),
        ("sum", None, 30.0),
        ("mean_with_sample_weight", None, 30 / 4),
        ("sum_over_batch_size", [1.0, 0.0, 2.0, 0.5], 27 / 4),  # divides by N, not Σw
        ("sum_over_batch_size", [[1.0], [0.0], [2.0], [0.5]], 27 / 4),
        ("sum", [1.0, 0.0, 2.0, 0.5], 27.0),
        ("mean_with_sample_weight", [1.0, 0.0, 2.0, 0.5], 27 / 3.5),
        ("sum_over_batch_size", 2.0, 15.0),
        ("mean_with_sample_weight", 2.0, 30.0),  # Σw of a scalar weight is the scalar
    ],
)
def test_reductions(reduction, sample_weight, expected):
    y, p = squares()
    loss = losses.MeanSquaredError(reduction=reduction)(y, p, sample_weight=sample_weight)
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-6)


@pytest.mark.parametrize("reduction", [None, "none"])
def test_no_reduction_returns_weighted_values(reduction):
    y, p = squares()
    loss = losses.MeanSquaredError(reduction=reduction)(y, p, sample_weight=[1.0, 0.0, 2.0, 0.5])
    np.testing.assert_allclose(loss.data, [1.0, 0.0, 18.0, 8.0])


def test_divisor_counts_every_per_sample_value():
    # y_pred (2, 3, 4): per-sample values (2, 3), divided by 6
    rng = np.random.default_rng(0)
    y = (rng.random((2, 3, 4)) > 0.5).astype(np.float64)
    p = rng.uniform(0.05, 0.95, (2, 3, 4))
    loss = losses.BinaryCrossentropy()(y, Tensor(p, dtype="float64"))
    np.testing.assert_allclose(loss.item(), ref_bce_prob(y, p).sum() / 6, rtol=1e-12)


def test_zero_weights_with_mean_with_sample_weight_gives_zero_without_gradient():
    z = t64([[0.3], [-1.0]])
    bce = losses.BinaryCrossentropy(reduction="mean_with_sample_weight")
    loss = bce([1.0, 0.0], ops.sigmoid(z), sample_weight=[0.0, 0.0])
    assert loss.item() == 0.0
    loss.backward()
    np.testing.assert_array_equal(z.grad, 0.0)


def test_empty_batch_is_returned_unreduced():
    loss = losses.MeanSquaredError()(np.zeros((0,)), Tensor(np.zeros((0, 1))))
    assert loss.shape == (0,)


# ------------------------------------------------------- the fused mean: the general path's numbers
FUSED_CASES = {
    # name: (loss, activation of the logits, label shape, logits shape, label kind)
    "sigmoid, y (n,)": (losses.BinaryCrossentropy(), ops.sigmoid, (8,), (8, 1), "binary"),
    "sigmoid, y (n, 1)": (losses.BinaryCrossentropy(), ops.sigmoid, (8, 1), (8, 1), "binary"),
    "sigmoid, multi-label": (losses.BinaryCrossentropy(), ops.sigmoid, (8, 3), (8, 3), "binary"),
    "from_logits": (losses.BinaryCrossentropy(from_logits=True), None, (8,), (8, 1), "binary"),
    "softmax": (losses.CategoricalCrossentropy(), ops.softmax, (8, 4), (8, 4), "one-hot"),
    "softmax from_logits": (losses.CategoricalCrossentropy(from_logits=True), None, (8, 4), (8, 4), "one-hot"),
}


def _labels(rng, shape, kind, dtype):
    if kind == "binary":
        return (rng.random(shape) > 0.5).astype(dtype)
    return np.eye(shape[-1], dtype=dtype)[rng.integers(0, shape[-1], shape[0])]


def _loss_and_logit_grad(build, z):
    logits = Tensor(z, requires_grad=True)
    loss = build(logits)
    loss.backward()
    return loss, logits.grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(FUSED_CASES))
def test_fused_mean_gives_the_general_path_numbers(case, dtype, rng):
    """An unweighted mean cross-entropy is one fused op: the same value and gradient, bit for bit."""
    loss_object, activation, y_shape, z_shape, kind = FUSED_CASES[case]
    y = _labels(rng, y_shape, kind, dtype)
    z = rng.normal(0, 4, z_shape).astype(dtype)
    output = activation or (lambda t: t)

    def general(logits):  # the per-sample function and the mean, as the general path composes them
        y_true, y_pred = losses.squeeze_or_expand_to_same_rank(y, output(logits))
        return ops.mean(loss_object.fn(y_true, y_pred, **loss_object._fn_kwargs))

    fused, fused_grad = _loss_and_logit_grad(lambda t: loss_object(y, output(t)), z)
    expected, expected_grad = _loss_and_logit_grad(general, z)
    assert type(fused._op) in (ops.SigmoidCrossEntropyMean, ops.SoftmaxCrossEntropyMean)
    assert fused.data.tobytes() == expected.data.tobytes() and fused.dtype == expected.dtype
    assert fused_grad.tobytes() == expected_grad.tobytes()


def test_fused_mean_is_left_to_the_general_path_where_it_would_differ(rng):
    """Weights, smoothing, other reductions, warnings and unusual inputs keep the general path."""
    z = Tensor(rng.normal(0, 2, (6, 1)).astype(np.float32), requires_grad=True)
    y = (rng.random(6) > 0.5).astype(np.float32)
    p = ops.sigmoid(z)
    general = [
        losses.BinaryCrossentropy()(y, p, sample_weight=np.ones(6)),
        losses.BinaryCrossentropy(label_smoothing=0.1)(y, p),
        losses.BinaryCrossentropy(reduction="sum")(y, p),
        losses.BinaryCrossentropy()(y.astype(np.float64), p),  # labels of another dtype
        losses.BinaryCrossentropy()(list(y), p),
        losses.BinaryCrossentropy()(y, z * 1.0),  # probabilities: clipped, not logits
    ]
    with pytest.warns(SyntaxWarning, match="num_classes > 1"):
        general.append(losses.CategoricalCrossentropy()(y[:, None], ops.softmax(z)))  # one class
    with pytest.warns(UserWarning, match="from_logits=True"):
        general.append(losses.BinaryCrossentropy(from_logits=True)(y, p))
    class Doubled(losses.BinaryCrossentropy):  # a subclass computing its own values
        def call(self, y_true, y_pred):
            return super().call(y_true, y_pred) * 2.0

    general.append(Doubled()(y, p))
    np.testing.assert_allclose(general[-1].item(), 2 * losses.BinaryCrossentropy()(y, p).item(), rtol=1e-6)
    for loss in general:
        assert type(loss._op) not in (ops.SigmoidCrossEntropyMean, ops.SoftmaxCrossEntropyMean)


# ----------------------------------------------------------------- gradients
def test_bce_gradient_wrt_logits_is_exactly_p_minus_y_over_nk(rng):
    n, k = 5, 3
    z = t64(rng.normal(0, 4, (n, k)))
    y = (rng.random((n, k)) > 0.5).astype(np.float64)
    loss = losses.BinaryCrossentropy()(y, ops.sigmoid(z))
    loss.backward()
    np.testing.assert_allclose(z.grad, (sigmoid64(z.data) - y) / (n * k), rtol=1e-13, atol=1e-18)
    # float32 as well (the model's case), and with a single output (N, 1) against y (N,)
    z32 = Tensor(rng.normal(0, 4, (8, 1)).astype(np.float32), requires_grad=True)
    y1 = (rng.random(8) > 0.5).astype(np.float32)
    losses.get("binary_crossentropy")(y1, ops.sigmoid(z32)).backward()
    np.testing.assert_allclose(z32.grad[:, 0], (sigmoid64(z32.data[:, 0]) - y1) / 8, rtol=1e-5, atol=1e-9)


def test_cce_and_sparse_gradient_wrt_logits_is_softmax_minus_y_over_n(rng):
    n, k = 6, 4
    labels = rng.integers(0, k, n)
    y = np.eye(k)[labels]
    z = t64(rng.normal(0, 3, (n, k)))
    losses.CategoricalCrossentropy()(y, ops.softmax(z)).backward()
    np.testing.assert_allclose(z.grad, (softmax64(z.data) - y) / n, rtol=1e-12, atol=1e-17)
    z2 = t64(z.data)
    losses.SparseCategoricalCrossentropy()(labels, ops.softmax(z2)).backward()
    np.testing.assert_allclose(z2.grad, (softmax64(z2.data) - y) / n, rtol=1e-12, atol=1e-17)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.15])
@pytest.mark.parametrize("through", ["sigmoid", "logits", "probabilities"])
def test_bce_gradcheck(rng, through, label_smoothing):
    y = (rng.random((4, 3)) > 0.5).astype(np.float64)
    w = rng.uniform(0.1, 2.0, 4)
    bce = losses.BinaryCrossentropy(from_logits=through == "logits", label_smoothing=label_smoothing)
    if through == "probabilities":
        x = t64(rng.uniform(0.05, 0.95, (4, 3)))
    else:
        x = t64(rng.normal(0, 2, (4, 3)))
    prepare = ops.sigmoid if through == "sigmoid" else (lambda t: t)
    assert gradcheck(lambda t: bce(y, prepare(t), sample_weight=w), [x])


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("through", ["softmax", "logits", "probabilities"])
def test_cce_gradcheck(rng, through, label_smoothing):
    y = np.eye(4)[rng.integers(0, 4, 5)]
    cce = losses.CategoricalCrossentropy(from_logits=through == "logits", label_smoothing=label_smoothing)
    if through == "probabilities":
        x = t64(rng.uniform(0.05, 0.9, (5, 4)))  # rows do not sum to 1: renormalisation is differentiated too
    else:
        x = t64(rng.normal(0, 2, (5, 4)))
    prepare = ops.softmax if through == "softmax" else (lambda t: t)
    assert gradcheck(lambda t: cce(y, prepare(t)), [x])


@pytest.mark.parametrize("through", ["softmax", "logits", "probabilities", "ignore_class"])
def test_sparse_cce_gradcheck(rng, through):
    labels = rng.integers(0, 4, 5)
    if through == "probabilities":
        x = t64(rng.uniform(0.05, 0.9, (5, 4)))
        weights = np.arange(1.0, 6.0)
        fn = lambda p: losses.SparseCategoricalCrossentropy()(labels, p, sample_weight=weights)  # noqa: E731
    elif through == "softmax":
        x = t64(rng.normal(0, 2, (5, 4)))
        fn = lambda z: losses.SparseCategoricalCrossentropy()(labels[:, None], ops.softmax(z))  # noqa: E731
    elif through == "logits":
        x = t64(rng.normal(0, 2, (5, 4)))
        fn = lambda z: losses.SparseCategoricalCrossentropy(from_logits=True)(labels, z)  # noqa: E731
    else:
        x = t64(rng.normal(0, 2, (5, 4)))
        scce = losses.SparseCategoricalCrossentropy(ignore_class=int(labels[0]))
        fn = lambda z: scce(labels, ops.softmax(z))  # noqa: E731
    assert gradcheck(fn, [x])


@pytest.mark.parametrize("name", ["mse", "mae"])
def test_regression_gradcheck(rng, name):
    y = rng.normal(size=6)
    x = t64(y[:, None] + rng.choice([-1, 1], (6, 1)) * rng.uniform(0.1, 1.0, (6, 1)))  # away from the |.| kink
    w = rng.uniform(0.5, 1.5, 6)
    assert gradcheck(lambda p: losses.get(name)(y, p, sample_weight=w), [x])
    x2 = t64(rng.normal(size=(3, 2)))
    targets = [[0.5, -0.5], [1.0, 2.0], [0.0, 0.0]]
    assert gradcheck(lambda p: losses.get(name)(targets, p, sample_weight=[1.0, 2.0, 0.5]), [x2])


def test_probability_path_gradient_is_zero_where_clipped():
    p = Tensor([[1.0, 0.0, 0.5]], requires_grad=True)
    losses.binary_crossentropy([[0.0, 1.0, 1.0]], p).sum().backward()
    assert p.grad[0, 0] == 0.0 and p.grad[0, 1] == 0.0  # clip passes no gradient outside [eps, 1-eps]
    np.testing.assert_allclose(p.grad[0, 2], -1 / 0.5 / 3, rtol=1e-6)


# ------------------------------------------------------------------ stability
def test_stability_at_extreme_logits():
    z = Tensor([[1e4], [-1e4], [1e4], [-1e4]], requires_grad=True)
    y = np.array([1.0, 0.0, 0.0, 1.0])
    with np.errstate(**NO_FP_TROUBLE):
        loss = losses.BinaryCrossentropy()(y, ops.sigmoid(z))
        loss.backward()
    np.testing.assert_allclose(loss.item(), (0 + 0 + 1e4 + 1e4) / 4, rtol=1e-7)
    np.testing.assert_allclose(z.grad[:, 0], [0.0, 0.0, 0.25, -0.25])

    z = Tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], requires_grad=True)
    y = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    with np.errstate(**NO_FP_TROUBLE):
        per_sample = losses.categorical_crossentropy(y, ops.softmax(z))
        sparse = losses.sparse_categorical_crossentropy([1, 2], ops.softmax(z))
        losses.CategoricalCrossentropy()(y, ops.softmax(z)).backward()
    np.testing.assert_allclose(per_sample.data, [2e4, 0.0])
    np.testing.assert_allclose(sparse.data, [2e4, 0.0])
    np.testing.assert_allclose(z.grad, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]])


# ------------------------------------------------------------ logits recovery
def test_from_logits_true_on_sigmoid_output_warns_and_uses_logits():
    z = np.array([[2.0], [-1.0]], dtype=np.float32)
    y = np.array([1.0, 1.0])
    message = r"received `from_logits=True`, but the `output` argument was produced by a Sigmoid"
    with pytest.warns(UserWarning, match=message):
        loss = losses.BinaryCrossentropy(from_logits=True)(y, ops.sigmoid(Tensor(z)))
    np.testing.assert_allclose(loss.item(), ref_bce_logits(y[:, None], z).mean(), rtol=1e-6)  # no double sigmoid
    with pytest.warns(UserWarning, match="produced by a Softmax"):
        losses.categorical_crossentropy([[0.0, 1.0]], ops.softmax(Tensor([[1.0, 2.0]])), from_logits=True)


def test_any_remembered_logits_are_used_as_in_keras():
    # Keras checks only for `_keras_logits`, not which activation set it
    z = np.array([[0.5, -1.0, 2.0]], dtype=np.float32)
    y = np.array([[0.0, 0.0, 1.0]], dtype=np.float32)
    bce_of_softmax = losses.binary_crossentropy(y, ops.softmax(Tensor(z)))
    np.testing.assert_allclose(bce_of_softmax.data, ref_bce_logits(y, z), rtol=1e-6)
    cce_of_sigmoid = losses.categorical_crossentropy(y, ops.sigmoid(Tensor(z)))
    np.testing.assert_allclose(cce_of_sigmoid.data, ref_cce_logits(y, z), rtol=1e-6)


def test_reshaping_y_pred_drops_the_logits_as_in_keras():
    # y_true (N, T) against y_pred (N, T, 1): y_pred is squeezed, and the squeeze output is plain probabilities
    z = np.array([[[30.0], [-30.0]]], dtype=np.float32)
    y = np.array([[0.0, 1.0]])
    loss = losses.BinaryCrossentropy()(y, ops.sigmoid(Tensor(z)))
    np.testing.assert_allclose(loss.item(), (23 * np.log(2) + -np.log(LOW)) / 2, rtol=1e-6)


# ------------------------------------------------------------- inputs / dtypes
def test_input_forms_and_dtypes():
    p32 = np.array([[0.3], [0.8]], dtype=np.float32)
    expected = ref_bce_prob([[0.0], [1.0]], p32).mean()
    for y in ([0, 1], np.array([0, 1]), np.array([[0.0], [1.0]]), Tensor([0.0, 1.0]), [[False], [True]]):
        np.testing.assert_allclose(losses.BinaryCrossentropy()(y, Tensor(p32)).item(), expected, rtol=1e-6)
    loss = losses.BinaryCrossentropy()([0, 1], p32.astype(np.float64))  # arrays become float32 constants
    assert loss.dtype == np.float32
    loss = losses.BinaryCrossentropy()([0, 1], Tensor(p32.astype(np.float64)))  # a float64 Tensor stays float64
    assert loss.dtype == np.float64


def test_cce_single_class_warns():
    with pytest.warns(SyntaxWarning, match="Consider using 'binary_crossentropy'"):
        losses.categorical_crossentropy([[1.0]], Tensor([[0.7]]))


def test_custom_loss_subclass_is_reduced_by_the_base_class():
    class AbsSum(losses.Loss):
        def call(self, y_true, y_pred):
            return ops.abs(y_pred - y_true).sum(axis=-1)

    loss = AbsSum()
    assert loss.name == "abs_sum"
    out = loss(np.zeros((2, 2)), Tensor([[1.0, -2.0], [3.0, 0.0]]), sample_weight=[1.0, 0.5])
    np.testing.assert_allclose(out.item(), (3.0 + 1.5) / 2)
    with pytest.raises(NotImplementedError, match="must implement call"):
        losses.Loss()(np.zeros(2), Tensor([1.0, 2.0]))


# -------------------------------------------------------------------- errors
def test_errors_name_what_was_received():
    with pytest.raises(ValueError, match=r"same shape.*Received: y_true.shape=\(2, 3\), y_pred.shape=\(2, 4\)"):
        losses.categorical_crossentropy(np.zeros((2, 3)), Tensor(np.full((2, 4), 0.25)))
    with pytest.raises(ValueError, match=r"Received: y_true.shape=\(2,\), y_pred.shape=\(2, 1\)"):
        losses.binary_crossentropy(np.zeros(2), Tensor([[0.5], [0.5]]))  # the function form does not reshape
    with pytest.raises(ValueError, match=r"Invalid value for argument `reduction`.* Received: reduction='avg'"):
        losses.BinaryCrossentropy(reduction="avg")
    with pytest.raises(ValueError, match=r"number in \[0, 1\]. Received: label_smoothing=1.5"):
        losses.CategoricalCrossentropy(label_smoothing=1.5)
    with pytest.raises(TypeError, match=r"Expected `from_logits` to be a boolean. Received: from_logits='yes'"):
        losses.BinaryCrossentropy(from_logits="yes")
    with pytest.raises(ValueError, match=r"Expected `axis` to be an integer. Received: axis=True"):
        losses.categorical_crossentropy(np.eye(2), Tensor(np.eye(2)), axis=True)
    with pytest.raises(ValueError, match=r"Expected `axis` in \[-2, 2\)"):
        losses.binary_crossentropy(np.eye(2), Tensor(np.eye(2)), axis=2)
    with pytest.raises(ValueError, match=r"Only axis=-1 is currently supported. Received: axis=0"):
        losses.sparse_categorical_crossentropy([0, 1], Tensor(np.eye(2)), axis=0)
    with pytest.raises(ValueError, match=r"label value of 3 which is outside the valid range of \[0, 3\)"):
        losses.sparse_categorical_crossentropy([0, 3], Tensor(np.full((2, 3), 1 / 3)))
    with pytest.raises(ValueError, match=r"label value of -1 which is outside the valid range of \[0, 3\)"):
        losses.SparseCategoricalCrossentropy()([-1, 0], Tensor(np.full((2, 3), 1 / 3)))
    with pytest.raises(ValueError, match=r"Received: y_true.shape=\(3,\), y_pred.shape=\(2, 3\)"):
        losses.sparse_categorical_crossentropy([0, 1, 2], Tensor(np.full((2, 3), 1 / 3)))
    with pytest.raises(ValueError, match=r"`ignore_class` to be an integer or None. Received: ignore_class=1.5"):
        losses.SparseCategoricalCrossentropy(ignore_class=1.5)
    with pytest.raises(TypeError, match=r"Expected `y_true` to be numeric.*Received: y_true of type list"):
        losses.BinaryCrossentropy()([["a"], ["b"]], Tensor([[0.5], [0.5]]))
    with pytest.raises(ValueError, match=r"Expected `sample_weight` broadcastable.*sample_weight.shape=\(3,\)"):
        losses.MeanSquaredError()(np.zeros(4), Tensor(np.zeros((4, 1))), sample_weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"shapes in mean_squared_error. Received: y_true.shape=\(3, 2\)"):
        losses.mean_squared_error(np.zeros((3, 2)), Tensor(np.zeros((3, 4))))


# ------------------------------------------------------------------ get/config
@pytest.mark.parametrize(
    "identifier, cls, name",
    [
        ("binary_crossentropy", losses.BinaryCrossentropy, "binary_crossentropy"),
        ("bce", losses.BinaryCrossentropy, "bce"),
        ("BCE", losses.BinaryCrossentropy, "BCE"),
        ("BinaryCrossentropy", losses.BinaryCrossentropy, "binary_crossentropy"),
        ("categorical_crossentropy", losses.CategoricalCrossentropy, "categorical_crossentropy"),
        ("CategoricalCrossentropy", losses.CategoricalCrossentropy, "categorical_crossentropy"),
        ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy, "sparse_categorical_crossentropy"),
        ("SparseCategoricalCrossentropy", losses.SparseCategoricalCrossentropy, "sparse_categorical_crossentropy"),
        ("mean_squared_error", losses.MeanSquaredError, "mean_squared_error"),
        ("mse", losses.MeanSquaredError, "mse"),
        ("MSE", losses.MeanSquaredError, "MSE"),
        ("MeanSquaredError", losses.MeanSquaredError, "mean_squared_error"),
        ("mae", losses.MeanAbsoluteError, "mae"),
        ("mean_absolute_error", losses.MeanAbsoluteError, "mean_absolute_error"),
    ],
)
def test_get_by_name(identifier, cls, name):
    loss = losses.get(identifier)
    assert type(loss) is cls and loss.name == name and loss.reduction == "sum_over_batch_size"
    if hasattr(loss, "from_logits"):
        assert loss.from_logits is False


def test_get_other_identifiers():
    assert losses.get(None) is None
    instance = losses.BinaryCrossentropy(from_logits=True)
    assert losses.get(instance) is instance
    assert type(losses.get(losses.MeanSquaredError)) is losses.MeanSquaredError
    wrapped = losses.get(losses.mean_absolute_error)
    assert isinstance(wrapped, losses.LossFunctionWrapper) and wrapped.name == "mean_absolute_error"
    np.testing.assert_allclose(wrapped([1.0, 2.0], Tensor([[0.0], [0.0]])).item(), 1.5)
    from_dict = losses.get({"class_name": "CategoricalCrossentropy", "config": {"from_logits": True}})
    assert type(from_dict) is losses.CategoricalCrossentropy and from_dict.from_logits is True
    for bad in ["crossentropy_x", "Mse", 3]:
        with pytest.raises(ValueError, match=rf"Could not interpret loss identifier: {bad!r}"):
            losses.get(bad)


@pytest.mark.parametrize(
    "loss, config",
    [
        (losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1, axis=-1, reduction="sum", name="b"),
         {"name": "b", "reduction": "sum", "from_logits": True, "label_smoothing": 0.1, "axis": -1}),
        (losses.CategoricalCrossentropy(label_smoothing=0.2),
         {"name": "categorical_crossentropy", "reduction": "sum_over_batch_size", "from_logits": False,
          "label_smoothing": 0.2, "axis": -1}),
        (losses.SparseCategoricalCrossentropy(ignore_class=3, reduction=None),
         {"name": "sparse_categorical_crossentropy", "reduction": None, "from_logits": False, "ignore_class": 3}),
        (losses.MeanSquaredError(reduction="mean_with_sample_weight"),
         {"name": "mean_squared_error", "reduction": "mean_with_sample_weight"}),
        (losses.LossFunctionWrapper(losses.binary_crossentropy, name="w", from_logits=True),
         {"name": "w", "reduction": "sum_over_batch_size", "fn": "binary_crossentropy", "from_logits": True}),
    ],
)
def test_config_round_trip(loss, config):
    assert loss.get_config() == config
    rebuilt = type(loss).from_config(loss.get_config())
    assert rebuilt.get_config() == config


def test_squeeze_or_expand_to_same_rank():
    f = losses.squeeze_or_expand_to_same_rank
    assert [a.shape for a in f(np.zeros(4), np.zeros((4, 1)))] == [(4, 1), (4, 1)]
    assert [a.shape for a in f(np.zeros((4, 1)), np.zeros(4))] == [(4, 1), (4, 1)]
    assert [a.shape for a in f(np.zeros((4, 3)), np.zeros((4, 3, 1)))] == [(4, 3), (4, 3)]
    assert [a.shape for a in f(np.zeros(4), np.zeros((4, 3)))] == [(4,), (4, 3)]  # not a trailing 1: unchanged


def test_no_warnings_on_the_ordinary_path():
    z = Tensor(np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        losses.get("categorical_crossentropy")(np.eye(3)[[0, 1, 2, 0, 1, 2, 0, 1]], ops.softmax(z)).backward()
        losses.get("sparse_categorical_crossentropy")([0, 1, 2, 0, 1, 2, 0, 1], ops.softmax(z)).backward()
