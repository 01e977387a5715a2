"""Initializers: distributions, fans, seeding and lookup, as Keras 3 defines them.

Statistics are checked on large draws against the formulas of docs/keras-formulas.md §1.4
(variance-scaling: scale / max(1, n), with the truncated-normal correction), with
tolerances of several standard errors, so a failure means a wrong formula, not bad luck.
"""

import math

import numpy as np
import pytest

from minitensor import initializers, random
from minitensor.initializers import (
    Constant,
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
    Initializer,
    LecunNormal,
    LecunUniform,
    Ones,
    RandomNormal,
    RandomUniform,
    TruncatedNormal,
    VarianceScaling,
    Zeros,
    compute_fans,
)

SHAPE = (300, 200)  # 60,000 draws: standard error of a variance estimate ~0.6%
FAN_IN, FAN_OUT = SHAPE


def truncated_std(bound=2.0):
    """Std of a standard normal truncated to [-bound, bound], from the normal pdf and cdf."""
    pdf = math.exp(-bound * bound / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(bound / math.sqrt(2))
    return math.sqrt(1 - 2 * bound * pdf / mass)


def test_truncated_normal_constant_is_the_std_of_a_truncated_standard_normal():
    assert truncated_std() == pytest.approx(initializers._TRUNCATED_NORMAL_STDDEV, rel=1e-12)


# --------------------------------------------------------------------------- fans
@pytest.mark.parametrize(
    "shape, expected",
    [((), (1, 1)), ((7,), (7, 7)), ((64, 12), (64, 12)), ((5, 3, 4), (15, 20)), ((3, 3, 16, 32), (144, 288))],
)
def test_compute_fans(shape, expected):
    assert compute_fans(shape) == expected


def test_compute_fans_with_axes():
    assert compute_fans((2, 3, 4, 5), input_axes=[0, 1], output_axes=[2, 3]) == (6, 20)


# --------------------------------------------------------------------------- distributions
UNIFORM_CASES = [
    (GlorotUniform, math.sqrt(6 / (FAN_IN + FAN_OUT))),
    (HeUniform, math.sqrt(6 / FAN_IN)),
    (LecunUniform, math.sqrt(3 / FAN_IN)),
    (lambda seed: VarianceScaling(0.5, "fan_out", "uniform", seed=seed), math.sqrt(1.5 / FAN_OUT)),
]


@pytest.mark.parametrize("factory, limit", UNIFORM_CASES)
def test_uniform_variance_scaling(factory, limit):
    w = factory(seed=1)(SHAPE)
    assert w.shape == SHAPE and w.dtype == np.float32
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.999 * limit  # the draws reach the limits
    assert abs(w.mean()) < 4 * limit / math.sqrt(3 * w.size)
    assert w.var() == pytest.approx(limit**2 / 3, rel=0.03)


NORMAL_CASES = [
    (GlorotNormal, 2 / (FAN_IN + FAN_OUT)),
    (HeNormal, 2 / FAN_IN),
    (LecunNormal, 1 / FAN_IN),
    (lambda seed: VarianceScaling(3.0, "fan_avg", "normal", seed=seed), 3.0 / ((FAN_IN + FAN_OUT) / 2)),
]


@pytest.mark.parametrize("factory, variance", NORMAL_CASES)
def test_truncated_normal_variance_scaling(factory, variance):
    # stddev = sqrt(variance)/0.8796, truncated at 2 stddev: the draws have the target variance
    w = factory(seed=2)(SHAPE)
    stddev = math.sqrt(variance) / truncated_std()
    assert np.abs(w).max() <= 2 * stddev * (1 + 1e-6)
    assert np.abs(w).max() > 1.95 * stddev
    assert abs(w.mean()) < 4 * math.sqrt(variance / w.size)
    assert w.var() == pytest.approx(variance, rel=0.03)


def test_untruncated_normal_variance_scaling():
    w = VarianceScaling(2.0, "fan_in", "untruncated_normal", seed=3)(SHAPE)
    assert w.var() == pytest.approx(2.0 / FAN_IN, rel=0.03)
    assert np.abs(w).max() > 3 * math.sqrt(2.0 / FAN_IN)  # not truncated


def test_scale_uses_at_least_one_unit():
    # scale / max(1, n): a (0, 0) or scalar shape does not divide by zero
    assert VarianceScaling(1.0, "fan_avg", "uniform", seed=0)(()).shape == ()
    assert VarianceScaling(1.0, "fan_in", "uniform", seed=0)((0, 5)).shape == (0, 5)


def test_random_normal_uniform_and_truncated_normal():
    w = RandomNormal(mean=1.0, stddev=0.5, seed=4)(SHAPE)
    assert w.mean() == pytest.approx(1.0, abs=4 * 0.5 / math.sqrt(w.size))
    assert w.std() == pytest.approx(0.5, rel=0.02)
    w = RandomUniform(minval=-0.2, maxval=0.6, seed=5)(SHAPE)
    assert w.min() >= -0.2 and w.max() <= 0.6
    assert w.mean() == pytest.approx(0.2, abs=0.005)
    w = TruncatedNormal(mean=-1.0, stddev=0.1, seed=6)(SHAPE)
    assert np.abs(w + 1.0).max() <= 0.2 * (1 + 1e-6)
    assert w.std() == pytest.approx(0.1 * truncated_std(), rel=0.02)
    assert w.mean() == pytest.approx(-1.0, abs=0.002)


def test_defaults_follow_keras():
    assert (RandomNormal().mean, RandomNormal().stddev) == (0.0, 0.05)
    assert (RandomUniform().minval, RandomUniform().maxval) == (-0.05, 0.05)
    assert (TruncatedNormal().mean, TruncatedNormal().stddev) == (0.0, 0.05)
    assert Constant().value == 0.0
    v = VarianceScaling()
    assert (v.scale, v.mode, v.distribution) == (1.0, "fan_in", "truncated_normal")
    assert np.abs(RandomUniform(seed=0)(SHAPE)).max() <= 0.05


def test_constants():
    np.testing.assert_array_equal(Zeros()((2, 3)), np.zeros((2, 3), dtype=np.float32))
    np.testing.assert_array_equal(Ones()((4,)), np.ones(4, dtype=np.float32))
    np.testing.assert_array_equal(Constant(2.5)((2,)), [2.5, 2.5])
    assert Zeros()((2,), dtype="int32").dtype == np.int32
    assert Constant(np.float32(3.0)).value == 3.0


def test_dtypes_and_shapes():
    assert GlorotUniform(seed=0)((3, 2), dtype="float64").dtype == np.float64
    assert GlorotUniform(seed=0)((3, 2), dtype=None).dtype == np.float32
    assert HeNormal(seed=0)(5).shape == (5,)
    assert RandomNormal(seed=0)([2, 3]).shape == (2, 3)
    with pytest.raises(ValueError, match="floating dtype"):
        GlorotUniform()((2, 2), dtype="int32")
    with pytest.raises(ValueError, match="shape"):
        GlorotUniform()((2, -1))
    with pytest.raises(ValueError, match="shape"):
        Zeros()("2x2")


# --------------------------------------------------------------------------- seeding
ALL_RANDOM = [GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal, RandomNormal,
              RandomUniform, TruncatedNormal, VarianceScaling]


@pytest.mark.parametrize("cls", ALL_RANDOM)
def test_seeded_initializers_repeat_and_leave_the_global_generator_alone(cls):
    np.random.seed(0)
    global_before = np.random.get_state()[1].copy()
    init = cls(seed=42)
    first, second = init((20, 10)), init((20, 10))
    np.testing.assert_array_equal(first, second)  # a fresh generator per call, as Keras
    np.testing.assert_array_equal(first, cls(seed=42)((20, 10)))
    assert not np.array_equal(first, cls(seed=43)((20, 10)))
    np.testing.assert_array_equal(np.random.get_state()[1], global_before)


@pytest.mark.parametrize("cls", ALL_RANDOM)
def test_np_random_seed_pins_unseeded_draws(cls):
    np.random.seed(7)
    first = cls()((20, 10))
    again = cls()((20, 10))
    assert not np.array_equal(first, again)  # drawn at call time from the shared generator
    np.random.seed(7)
    np.testing.assert_array_equal(cls()((20, 10)), first)
    random.set_random_seed(7)
    np.testing.assert_array_equal(cls()((20, 10)), first)


# --------------------------------------------------------------------------- config and lookup
@pytest.mark.parametrize(
    "init",
    [
        Zeros(), Ones(), Constant(1.5), RandomNormal(0.1, 2.0, seed=3), RandomUniform(-1, 2, seed=None),
        TruncatedNormal(stddev=0.3, seed=9), VarianceScaling(2.0, "fan_out", "uniform", seed=1),
        VarianceScaling(1.0, "fan_in", "normal", input_axes=[0], output_axes=[1]),
        GlorotUniform(seed=5), GlorotNormal(), HeUniform(), HeNormal(seed=1), LecunUniform(), LecunNormal(),
    ],
)
def test_config_round_trip(init):
    config = init.get_config()
    clone = type(init).from_config(config)
    assert clone.get_config() == config
    assert initializers.get({"class_name": type(init).__name__, "config": config}).get_config() == config
    if config.get("seed") is not None:
        np.testing.assert_array_equal(clone((4, 3)), init((4, 3)))


def test_configs_match_keras_keys():
    assert GlorotUniform(seed=3).get_config() == {"seed": 3, "input_axes": None, "output_axes": None}
    assert RandomNormal().get_config() == {"seed": None, "mean": 0.0, "stddev": 0.05}
    assert VarianceScaling(distribution="normal").get_config()["distribution"] == "truncated_normal"
    assert Constant(2).get_config() == {"value": 2}
    assert Zeros().get_config() == {}


@pytest.mark.parametrize(
    "name, cls",
    [
        ("glorot_uniform", GlorotUniform), ("GlorotUniform", GlorotUniform), ("glorot_normal", GlorotNormal),
        ("he_uniform", HeUniform), ("he_normal", HeNormal), ("lecun_uniform", LecunUniform),
        ("lecun_normal", LecunNormal), ("random_normal", RandomNormal), ("random_uniform", RandomUniform),
        ("truncated_normal", TruncatedNormal), ("variance_scaling", VarianceScaling), ("zeros", Zeros),
        ("ones", Ones), ("constant", Constant), ("normal", RandomNormal), ("uniform", RandomUniform),
        ("zero", Zeros), ("one", Ones), ("Zeros", Zeros),
    ],
)
def test_get_by_name(name, cls):
    assert type(initializers.get(name)) is cls


def test_get_other_identifiers():
    init = HeNormal(seed=1)
    assert initializers.get(init) is init
    assert initializers.get(None) is None
    assert type(initializers.get(GlorotNormal)) is GlorotNormal

    def fn(shape, dtype="float32"):
        return np.full(shape, 3.0, dtype=dtype)

    assert initializers.get(fn) is fn
    for bad in ["Glorot_Uniform", "glorotuniform", "orthogonal_typo", 3, {"class_name": "Nope", "config": {}}, int]:
        with pytest.raises(ValueError, match="Could not interpret initializer identifier: "):
            initializers.get(bad)


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: VarianceScaling(scale=0.0), "`scale` must be positive float. Received: scale=0.0"),
        (lambda: VarianceScaling(scale=-1), "scale=-1"),
        (lambda: VarianceScaling(mode="fan_sum"), "Invalid `mode` argument: 'fan_sum'"),
        (lambda: VarianceScaling(distribution="cauchy"), "Invalid `distribution` argument: 'cauchy'"),
        (lambda: VarianceScaling(input_axes=[0]), "both `input_axes` and `output_axes`"),
        (lambda: RandomNormal(stddev=-0.1), "`stddev` must be non-negative"),
        (lambda: RandomNormal(mean="0"), "`mean` must be a finite number"),
        (lambda: RandomUniform(minval=1.0, maxval=0.0), "minval <= maxval"),
        (lambda: TruncatedNormal(stddev=float("nan")), "stddev=nan"),
        (lambda: GlorotUniform(seed=-1), "`seed` must be None or a non-negative integer. Received: seed=-1"),
        (lambda: HeNormal(seed=1.5), "seed=1.5"),
        (lambda: HeNormal(seed=True), "seed=True"),
        (lambda: Constant([1.0, 2.0]), "only scalars"),
    ],
)
def test_invalid_arguments(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_distribution_names_are_case_insensitive():
    assert VarianceScaling(distribution="Uniform").distribution == "uniform"


def test_base_class():
    with pytest.raises(NotImplementedError):
        Initializer()((2,))
    assert Initializer().get_config() == {}
    assert repr(RandomNormal(seed=1)) == "RandomNormal(seed=1, mean=0.0, stddev=0.05)"
    clone = GlorotUniform(seed=4).clone()
    assert type(clone) is GlorotUniform and clone.seed == 4


def test_every_public_object_has_a_docstring():
    for name in initializers.__all__:
        obj = getattr(initializers, name)
        assert obj.__doc__ and "Example" in obj.__doc__, name
