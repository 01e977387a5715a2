"""minitensor optimizers against keras.optimizers: same gradients, same float32 numbers.

Each case builds the same optimizer in both engines on the same four float32 variables,
feeds both the same random gradients for a few steps, and compares the variables after
every step, and the optimizer state (iterations and slots, in Keras's order) at the end.
The only Keras-backed optimizer test module; kept small so it stays quick.
"""

import os
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from minitensor import Tensor, fpenv, optimizers  # noqa: E402

pytestmark = pytest.mark.keras

# the last is over 1024 AVX packets, so a clipnorm sums it as Eigen's tree of halves
SHAPES = [(5, 4), (4,), (3,), (100, 90)]
STEPS = 5
# gradient scales per step: growing and shrinking, so amsgrad's max and the clips both act
SCALES = [1.0, 0.05, 3.0, 0.01, 0.5]

CASES = [
    ("SGD", {}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("SGD", {"learning_rate": 0.1, "clipvalue": 0.5}),
    ("RMSprop", {}),
    ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "centered": True}),
    ("RMSprop", {"rho": 0.8, "epsilon": 1e-3, "clipnorm": 0.7}),
    ("Adam", {}),
    ("Adam", {"learning_rate": 0.01, "amsgrad": True}),
    ("Adam", {"beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-2, "global_clipnorm": 1.5}),
    ("Adam", {"learning_rate": 0.02, "weight_decay": 0.004, "clipnorm": 1.0}),
    ("Adagrad", {}),
    ("Adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 0.5, "epsilon": 1e-3, "weight_decay": 0.1}),
]


def _ulp_distance(a: np.ndarray, b: np.ndarray) -> int:
    """Largest distance in units in the last place between two float32 arrays."""
    ia = a.astype(np.float32).view(np.int32).astype(np.int64)
    ib = b.astype(np.float32).view(np.int32).astype(np.int64)
    ia = np.where(ia < 0, np.int64(-(2**31)) - ia, ia)  # map the float order onto the integers
    ib = np.where(ib < 0, np.int64(-(2**31)) - ib, ib)
    return int(np.max(np.abs(ia - ib))) if a.size else 0


@pytest.mark.parametrize("class_name, kwargs", CASES, ids=[f"{c}-{k}" for c, k in CASES])
def test_matches_keras_step_by_step(class_name, kwargs):
    rng = np.random.default_rng(zlib.crc32(f"{class_name}{sorted(kwargs.items())}".encode()))
    initial = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    gradients = [[(rng.standard_normal(s) * scale).astype(np.float32) for s in SHAPES] for scale in SCALES]

    ours = getattr(optimizers, class_name)(**kwargs)
    theirs = getattr(keras.optimizers, class_name)(**kwargs)
    our_vars = [Tensor(w.copy()) for w in initial]
    their_vars = [keras.Variable(w.copy()) for w in initial]

    for step, grads in enumerate(gradients, start=1):
        ours.apply_gradients(zip([g.copy() for g in grads], our_vars))
        theirs.apply_gradients(zip([tf.constant(g) for g in grads], their_vars))
        for k, (mine, keras_var) in enumerate(zip(our_vars, their_vars)):
            distance = _ulp_distance(mine.data, keras_var.numpy())
            assert distance == 0, f"step {step}, variable {k}: {distance} ulp from Keras"

    assert ours.iterations == int(theirs.iterations.numpy()) == STEPS
    assert ours.learning_rate == float(theirs.learning_rate.numpy())
    state = ours.get_state()
    keras_state = [v.numpy() for v in theirs.variables]  # [iteration, learning_rate, *slots]
    assert int(state[0]) == int(keras_state[0])
    assert len(state) - 1 == len(keras_state) - 2
    for k, (mine, keras_slot) in enumerate(zip(state[1:], keras_state[2:])):
        assert mine.shape == keras_slot.shape, f"slot {k}"
        assert _ulp_distance(mine, keras_slot) == 0, f"slot {k}"


def test_learning_rate_and_config_match_keras():
    for class_name in ["SGD", "RMSprop", "Adam", "Adagrad"]:
        ours = getattr(optimizers, class_name)()
        theirs = getattr(keras.optimizers, class_name)()
        ours_config, keras_config = ours.get_config(), theirs.get_config()
        for key, value in ours_config.items():
            if key != "name":
                assert keras_config[key] == value, (class_name, key)
        # a Keras config (with its extra inactive keys) loads here
        rebuilt = optimizers.get({"class_name": class_name, "config": keras_config})
        assert rebuilt.get_config() == {**ours_config, "name": keras_config["name"]}


@pytest.mark.skipif(not fpenv.AVAILABLE, reason="no flush-to-zero control on this platform")
@pytest.mark.parametrize("class_name", ["Adam", "RMSprop", "SGD"])
def test_slots_decaying_into_subnormals_follow_keras(class_name):
    """After one real gradient, many zero gradients: the slots decay to where Keras's flushing
    stops them (Adam's m sticks near 1e-37); both engines flush subnormals to zero."""
    kwargs = {"momentum": 0.9} if class_name == "SGD" else {}
    ours = getattr(optimizers, class_name)(**kwargs)
    theirs = getattr(keras.optimizers, class_name)(**kwargs)
    our_var = Tensor(np.full(3, 0.5, dtype=np.float32))
    their_var = keras.Variable(np.full(3, 0.5, dtype=np.float32))
    step_fn = tf.function(lambda g: theirs.apply_gradients([(g, their_var)]))  # 1000 eager steps are slow
    for step in range(1000):
        g = np.array([1.0, -2.0, 0.25], dtype=np.float32) if step == 0 else np.zeros(3, dtype=np.float32)
        ours.apply_gradients([(g, our_var)])
        step_fn(tf.constant(g))
    assert _ulp_distance(our_var.data, their_var.numpy()) == 0
    for mine, keras_slot in zip(ours.get_state()[1:], [v.numpy() for v in theirs.variables][2:]):
        assert _ulp_distance(mine, keras_slot) == 0
        assert np.all((mine == 0) | (np.abs(mine) >= np.finfo(np.float32).tiny))  # no subnormal survives
