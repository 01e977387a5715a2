"""Regularizers: penalty values, gradients through backward(), Keras 3 defaults and names."""

import numpy as np
import pytest

from minitensor import Tensor, gradcheck, ops, regularizers
from minitensor.regularizers import L1, L1L2, L2, Regularizer

F = np.float32


def weight(seed=0, shape=(6, 4), dtype=F):
    w = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    w[0, 0] = 0.0  # include an exact zero: |w| has gradient 0 there
    return Tensor(w, requires_grad=True)


def test_l2_value_and_gradient():
    w = weight()
    penalty = L2(0.3)(w)
    assert penalty.shape == () and penalty.dtype == np.float32
    assert penalty.item() == pytest.approx(0.3 * np.sum(w.data.astype(np.float64) ** 2), rel=1e-6)
    penalty.backward()
    np.testing.assert_array_equal(w.grad, 2 * (F(0.3) * w.data))  # no ½ factor: d/dw l2·w² = 2·l2·w


def test_l1_value_and_gradient():
    w = weight(1)
    penalty = L1(0.2)(w)
    assert penalty.item() == pytest.approx(float(F(0.2)) * np.abs(w.data.astype(np.float64)).sum(), rel=1e-6)
    penalty.backward()
    np.testing.assert_array_equal(w.grad, F(0.2) * np.sign(w.data))
    assert w.grad[0, 0] == 0.0


def test_l1l2_is_the_sum_of_both():
    w = weight(2)
    penalty = L1L2(l1=0.1, l2=0.05)(w)
    w64 = w.data.astype(np.float64)
    assert penalty.item() == pytest.approx(0.1 * np.abs(w64).sum() + 0.05 * (w64**2).sum(), rel=1e-6)
    penalty.backward()
    np.testing.assert_allclose(w.grad, 0.1 * np.sign(w.data) + 2 * 0.05 * w.data, rtol=1e-6)
    only_l2 = weight(2)
    L1L2(l2=0.05)(only_l2).backward()
    np.testing.assert_array_equal(only_l2.grad, 2 * (F(0.05) * only_l2.data))


def test_l1l2_defaults_to_no_penalty_as_keras_3():
    w = weight(3)
    penalty = L1L2()(w)
    assert penalty.item() == 0.0 and not penalty.requires_grad
    assert regularizers.l1_l2().get_config() == {"l1": 0.0, "l2": 0.0}
    loss = ops.sum(w * w) + penalty  # a constant penalty still adds to a loss
    loss.backward()
    np.testing.assert_array_equal(w.grad, 2 * w.data)


def test_gradients_pass_gradcheck_in_float64():
    w = Tensor(np.random.default_rng(4).uniform(0.2, 2.0, (3, 5)) * np.array([1, -1, 1, -1, 1]), requires_grad=True)
    for reg in [L1(0.3), L2(0.7), L1L2(0.2, 0.4)]:
        assert gradcheck(lambda t: reg(t), [w])


def test_computes_in_the_weight_dtype():
    w = weight(5, dtype=np.float64)
    assert L2(0.01)(w).dtype == np.float64
    # L1 keeps its factor as float32, as Keras does: the float64 penalty uses float32(0.01)
    assert L1(0.01)(w).item() == pytest.approx(float(F(0.01)) * np.abs(w.data).sum(), rel=1e-13)
    assert L2(0.01)(w).item() == pytest.approx(0.01 * (w.data**2).sum(), rel=1e-13)
    assert L2(0.5)(w.data).item() == pytest.approx(0.5 * (w.data**2).sum(), rel=1e-13)  # an ndarray works too
    with pytest.raises(TypeError, match="Expected a Tensor"):
        L2(0.5)([1.0, 2.0])


def test_keras_3_defaults_and_aliases():
    assert L2().l2 == 0.01
    assert L1().l1 == float(F(0.01))  # stored as float32, so the config shows 0.009999999776...
    assert L1().get_config() == {"l1": 0.009999999776482582}
    assert (L1L2().l1, L1L2().l2) == (0.0, 0.0)
    assert L2(None).l2 == 0.01 and L1L2(None, None).l1 == 0.0
    assert regularizers.l1 is L1 and regularizers.l2 is L2 and regularizers.l1_l2 is L1L2
    assert regularizers.l2(0.5).l2 == 0.5


@pytest.mark.parametrize(
    "name, cls, config",
    [
        ("l2", L2, {"l2": 0.01}),
        ("L2", L2, {"l2": 0.01}),
        ("l1", L1, {"l1": float(F(0.01))}),
        ("L1", L1, {"l1": float(F(0.01))}),
        ("l1l2", L1L2, {"l1": 0.0, "l2": 0.0}),
        ("L1L2", L1L2, {"l1": 0.0, "l2": 0.0}),
    ],
)
def test_get_by_name(name, cls, config):
    reg = regularizers.get(name)
    assert type(reg) is cls and reg.get_config() == config


def test_get_other_identifiers():
    reg = L2(0.1)
    assert regularizers.get(reg) is reg
    assert regularizers.get(None) is None
    assert type(regularizers.get(L1)) is L1
    config = {"l1": 0.1, "l2": 0.2}
    assert regularizers.get({"class_name": "L1L2", "config": config}).get_config() == config

    def custom(w):
        return 0.01 * ops.sum(ops.abs(w))

    assert regularizers.get(custom) is custom
    for bad in ["l1_l2", "L1_L2", "l3", "", 0.01, {"class_name": "L3", "config": {}}, int]:
        with pytest.raises(ValueError, match="Could not interpret regularizer identifier: "):
            regularizers.get(bad)
    with pytest.raises(ValueError, match="identifier: l1_l2$"):  # Keras 3 registers "l1l2", not "l1_l2"
        regularizers.get("l1_l2")


@pytest.mark.parametrize("reg", [L1(0.3), L2(0.25), L1L2(0.1, 0.2), L1L2()])
def test_config_round_trip(reg):
    clone = type(reg).from_config(reg.get_config())
    assert clone.get_config() == reg.get_config()
    w = weight(6)
    assert clone(w).item() == reg(w).item()


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: L2(-0.1), r"argument `l2`: expected a non-negative finite number. Received: l2=-0.1"),
        (lambda: L1(float("nan")), "l1=nan"),
        (lambda: L1L2(l1=float("inf")), "l1=inf"),
        (lambda: L1L2(l2="0.1"), "l2='0.1'"),
        (lambda: L2(True), "l2=True"),
    ],
)
def test_invalid_factors(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_base_class_and_custom_subclass():
    w = weight(7)
    assert Regularizer()(w).item() == 0.0
    with pytest.raises(NotImplementedError):
        Regularizer().get_config()
    assert repr(L1L2(0.5, 0.25)) == "L1L2(l1=0.5, l2=0.25)"


def test_every_public_object_has_a_docstring():
    for name in regularizers.__all__:
        obj = getattr(regularizers, name)
        assert obj.__doc__ and "Example" in obj.__doc__, name
