"""Optimizers: update rules against independent references, in-place updates, state, validation.

The references below are written from the formulas of docs/keras-formulas.md §5, plainly (no
in-place tricks, no slots), in float32 with the constants rounded as Keras rounds them;
a float64 "textbook" form checks the structure of each rule independently of that rounding.
tests/minitensor/test_optimizers_keras.py checks the same rules against Keras itself.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitensor import Tensor, optimizers
from minitensor.optimizers import SGD, Adagrad, Adam, RMSprop

F = np.float32
SHAPES = [(4, 3), (3,), (2, 2)]


def make_problem(seed, steps=4, shapes=SHAPES, scales=(1.0, 0.1, 2.0, 0.01, 0.5, 1.0)):
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(s).astype(F) for s in shapes]
    grads = [[(rng.standard_normal(s) * scales[k % len(scales)]).astype(F) for s in shapes] for k in range(steps)]
    return weights, grads


def run(optimizer, weights, grads):
    variables = [Tensor(w.copy()) for w in weights]
    for step in grads:
        optimizer.apply_gradients(zip(step, variables))
    return [v.data for v in variables]


# --------------------------------------------------------------------------- references (float32)
def ref_sgd(w, gs, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None):
    m = np.zeros_like(w)
    for g in gs:
        if weight_decay is not None:
            w = w - w * F(weight_decay) * F(learning_rate)
        if momentum == 0:
            w = w - g * F(learning_rate)
        else:
            m = m * F(momentum) - g * F(learning_rate)
            w = w + (m * F(momentum) - g * F(learning_rate)) if nesterov else w + m
    return w


def ref_rmsprop(w, gs, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
    v, a, mom = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for g in gs:
        v = F(rho) * v + F(1 - rho) * (g * g)
        if centered:
            a = F(rho) * a + F(1 - rho) * g
            denominator = v - a * a + F(epsilon)
        else:
            denominator = v + F(epsilon)
        increment = F(learning_rate) * g / np.sqrt(denominator)
        if momentum > 0:
            mom = F(momentum) * mom + increment
            w = w - mom
        else:
            w = w - increment
    return w


def ref_adam(w, gs, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False):
    m, v, vhat = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(gs, start=1):
        alpha = F(learning_rate) * np.sqrt(F(1) - F(beta_2) ** F(t)) / (F(1) - F(beta_1) ** F(t))
        m = m + (g - m) * F(1 - beta_1)
        v = v + (g * g - v) * F(1 - beta_2)
        if amsgrad:
            vhat = np.maximum(vhat, v)
        w = w - (m * alpha) / (np.sqrt(vhat if amsgrad else v) + F(epsilon))
    return w


def ref_adagrad(w, gs, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7):
    acc = np.full_like(w, F(initial_accumulator_value))
    for g in gs:
        acc = acc + g * g
        w = w - F(learning_rate) * g / np.sqrt(acc + F(epsilon))
    return w


CASES = [
    (SGD, ref_sgd, {}),
    (SGD, ref_sgd, {"learning_rate": 0.1, "momentum": 0.9}),
    (SGD, ref_sgd, {"learning_rate": 0.1, "momentum": 0.5, "nesterov": True}),
    (SGD, ref_sgd, {"learning_rate": 0.1, "nesterov": True}),  # nesterov without momentum is plain SGD
    (SGD, ref_sgd, {"learning_rate": 0.05, "momentum": 0.9, "weight_decay": 0.1}),
    (RMSprop, ref_rmsprop, {}),
    (RMSprop, ref_rmsprop, {"learning_rate": 0.01, "rho": 0.8, "momentum": 0.5}),
    (RMSprop, ref_rmsprop, {"learning_rate": 0.01, "momentum": 0.3, "centered": True, "epsilon": 1e-3}),
    (Adam, ref_adam, {}),
    (Adam, ref_adam, {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-2}),
    (Adam, ref_adam, {"learning_rate": 0.01, "amsgrad": True}),
    (Adagrad, ref_adagrad, {}),
    (Adagrad, ref_adagrad, {"learning_rate": 0.1, "initial_accumulator_value": 0.5, "epsilon": 1e-3}),
]


@pytest.mark.parametrize("cls, reference, kwargs", CASES, ids=[f"{c.__name__}-{k}" for c, _, k in CASES])
def test_bit_exact_against_float32_reference(cls, reference, kwargs):
    weights, grads = make_problem(seed=len(str(kwargs)), steps=6)
    ours = run(cls(**kwargs), weights, grads)
    for k, w in enumerate(weights):
        expected = reference(w, [step[k] for step in grads], **kwargs)
        assert expected.dtype == np.float32
        np.testing.assert_array_equal(ours[k], expected)


def test_amsgrad_case_exercises_the_maximum():
    # the amsgrad reference case only tests something if vhat and v part ways
    weights, grads = make_problem(seed=len(str({"learning_rate": 0.01, "amsgrad": True})), steps=6)
    opt = Adam(learning_rate=0.01, amsgrad=True)
    run(opt, weights, grads)
    _, m0, v0, m1, v1, m2, v2, vhat0, vhat1, vhat2 = opt.get_state()
    assert (vhat0 > v0).any() and (vhat0 >= v0).all()


# --------------------------------------------------------------------------- hand-computed values
def test_sgd_hand_values():
    w = Tensor(np.array([1.0, -1.0], dtype=F))
    opt = SGD(learning_rate=0.5, momentum=0.5)
    opt.apply_gradients([(np.array([1.0, 2.0], dtype=F), w)])  # m = -0.5*[1,2]; w = w + m
    np.testing.assert_array_equal(w.data, [0.5, -2.0])
    opt.apply_gradients([(np.array([1.0, 2.0], dtype=F), w)])  # m = 0.5*m - 0.5*g = [-0.75, -1.5]
    np.testing.assert_array_equal(w.data, [-0.25, -3.5])


def test_adagrad_and_rmsprop_hand_values():
    w = Tensor(np.array([1.0], dtype=F))
    Adagrad(learning_rate=0.1).apply_gradients([(np.array([1.0], dtype=F), w)])
    assert w.data[0] == pytest.approx(1 - 0.1 / np.sqrt(1.1 + 1e-7), rel=1e-6)
    w = Tensor(np.array([1.0], dtype=F))
    RMSprop(learning_rate=0.1).apply_gradients([(np.array([2.0], dtype=F), w)])  # v = 0.1*4
    assert w.data[0] == pytest.approx(1 - 0.1 * 2 / np.sqrt(0.4 + 1e-7), rel=1e-6)


def test_adam_first_step_moves_by_about_lr_and_epsilon_is_outside_the_root():
    w = Tensor(np.array([1.0, 1.0], dtype=F))
    Adam(learning_rate=0.1, epsilon=0.01).apply_gradients([(np.array([0.5, -3.0], dtype=F), w)])
    # m = 0.1 g, v = 0.001 g², alpha = 0.1*sqrt(0.001)/0.1; step = alpha*m/(sqrt(v) + eps)
    for g, value in zip([0.5, -3.0], w.data):
        step = 0.1 * np.sqrt(0.001) / 0.1 * (0.1 * g) / (np.sqrt(0.001) * abs(g) + 0.01)
        assert value == pytest.approx(1 - step, rel=1e-6)


def test_adam_matches_textbook_form_in_float64():
    # Keras's Adam is lr·m̂/(sqrt(v̂) + eps/sqrt(1-β2ᵗ)) in textbook terms;
    # float64 variables use float64 throughout
    rng = np.random.default_rng(5)
    w0 = rng.standard_normal(50)
    grads = [rng.standard_normal(50) for _ in range(8)]
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-3
    variable = Tensor(w0.copy())
    opt = Adam(learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps)
    for g in grads:
        opt.apply_gradients([(g, variable)])
    assert variable.data.dtype == np.float64
    w, m, v = w0.copy(), np.zeros(50), np.zeros(50)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        w = w - float(F(lr)) * m_hat / (np.sqrt(v_hat) + eps / np.sqrt(1 - b2**t))
    np.testing.assert_allclose(variable.data, w, rtol=1e-12, atol=1e-14)
    assert all(s.dtype == np.float64 for s in opt.get_state()[1:])


# --------------------------------------------------------------------------- weight decay and clipping
def test_weight_decay_is_decoupled_and_applied_before_the_step():
    w0 = np.array([2.0, -4.0], dtype=F)
    g = np.array([1.0, 1.0], dtype=F)
    w = Tensor(w0.copy())
    Adam(learning_rate=0.1, weight_decay=0.5).apply_gradients([(g, w)])
    decayed = w0 - w0 * F(0.5) * F(0.1)
    np.testing.assert_array_equal(w.data, ref_adam(decayed, [g], learning_rate=0.1))


CLIP_GRADS = [np.array([[3.0, 4.0]], dtype=F), np.array([12.0], dtype=F)]


@pytest.mark.parametrize(
    "option, expected",
    [
        ("clipnorm", [[[0.6, 0.8]], [1.0]]),
        ("global_clipnorm", [[[3 / 13, 4 / 13]], [12 / 13]]),
        ("clipvalue", [[[1.0, 1.0]], [1.0]]),
    ],
)
def test_clipping_examples(option, expected):
    variables = [Tensor(np.zeros((1, 2), dtype=F)), Tensor(np.zeros(1, dtype=F))]
    grads = [g.copy() for g in CLIP_GRADS]
    SGD(learning_rate=1.0, **{option: 1.0}).apply_gradients(zip(grads, variables))
    for variable, clipped in zip(variables, expected):
        np.testing.assert_allclose(-variable.data, clipped, rtol=1e-6)
    for g, original in zip(grads, CLIP_GRADS):  # the caller's gradients are left alone
        np.testing.assert_array_equal(g, original)


def test_clipnorm_leaves_small_gradients_unchanged_and_zero_gradients_finite():
    g = np.array([0.3, -0.4], dtype=F)
    for option in ["clipnorm", "global_clipnorm"]:
        w = Tensor(np.zeros(2, dtype=F))
        SGD(learning_rate=1.0, **{option: 1.0}).apply_gradients([(g, w)])
        np.testing.assert_array_equal(-w.data, g)
        w = Tensor(np.ones(2, dtype=F))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            SGD(learning_rate=1.0, **{option: 1.0}).apply_gradients([(np.zeros(2, dtype=F), w)])
        np.testing.assert_array_equal(w.data, [1.0, 1.0])


def test_global_clipnorm_with_an_infinite_gradient_gives_nan_as_keras():
    w = Tensor(np.zeros(2, dtype=F))
    SGD(learning_rate=1.0, global_clipnorm=1.0).apply_gradients([(np.array([np.inf, 1.0], dtype=F), w)])
    assert np.isnan(w.data).all()


@pytest.mark.parametrize("size", [1, 7, 31, 32, 33, 100, 1000, 8192, 8193, 20001])
def test_tf_order_sum_is_a_sum(size):
    x = np.random.default_rng(size).random(size).astype(F)
    assert optimizers._tf_reduce_sum(x) == pytest.approx(x.astype(np.float64).sum(), rel=1e-6)
    ints = np.arange(size, dtype=F) % 7  # small integers: every order is exact
    assert optimizers._tf_reduce_sum(ints) == ints.astype(np.int64).sum()


# --------------------------------------------------------------------------- in place, flat buffers
def test_updates_views_into_a_flat_buffer_in_place():
    flat = np.zeros(10, dtype=F)
    kernel, bias = Tensor(flat[:6].reshape(2, 3)), Tensor(flat[6:])
    assert np.shares_memory(kernel.data, flat) and np.shares_memory(bias.data, flat)
    arrays = (kernel.data, bias.data)
    grads = [np.ones((2, 3), dtype=F), np.full(4, 2.0, dtype=F)]
    opt = Adam(learning_rate=0.1)
    for _ in range(3):
        opt.apply_gradients(zip(grads, [kernel, bias]))
    assert kernel.data is arrays[0] and bias.data is arrays[1]  # never rebound
    np.testing.assert_array_equal(flat[:6], kernel.data.ravel())
    assert (flat < 0).all()


SPLIT_CASES = [
    (SGD, {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (RMSprop, {"momentum": 0.5, "centered": True, "clipvalue": 0.5}),
    (Adam, {"amsgrad": True, "weight_decay": 0.004}),
    (Adagrad, {"learning_rate": 0.1}),
]


@settings(max_examples=15)
@given(
    case=st.sampled_from(SPLIT_CASES),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_one_flat_variable_equals_per_variable_views(case, sizes, seed):
    cls, kwargs = case
    total = sum(sizes)
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(total).astype(F)
    grads = [(rng.standard_normal(total) * rng.uniform(0.01, 3)).astype(F) for _ in range(5)]
    bounds = np.cumsum([0] + sizes)

    flat = Tensor(w0.copy())
    flat_opt = cls(**kwargs)
    buffer = w0.copy()
    views = [Tensor(buffer[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    split_opt = cls(**kwargs)
    for g in grads:
        flat_opt.apply_gradients([(g, flat)])
        split_opt.apply_gradients([(g[a:b], v) for (a, b), v in zip(zip(bounds[:-1], bounds[1:]), views)])
    np.testing.assert_array_equal(flat.data, buffer)


# --------------------------------------------------------------------------- state
STATE_CASES = [
    (SGD, {"momentum": 0.9, "nesterov": True}),
    (RMSprop, {"momentum": 0.5, "centered": True}),
    (Adam, {"amsgrad": True}),
    (Adagrad, {}),
]


@pytest.mark.parametrize("cls, kwargs", STATE_CASES, ids=[c.__name__ for c, _ in STATE_CASES])
def test_get_state_set_state_resumes_identically(cls, kwargs):
    weights, grads = make_problem(seed=11, steps=6)
    first, second = grads[:3], grads[3:]
    opt = cls(**kwargs)
    variables = [Tensor(w.copy()) for w in weights]
    for step in first:
        opt.apply_gradients(zip(step, variables))
    saved_weights = [v.data.copy() for v in variables]
    state = opt.get_state()
    for step in second:
        opt.apply_gradients(zip(step, variables))

    resumed = cls(**kwargs)
    new_variables = [Tensor(w.copy()) for w in saved_weights]
    resumed.build(new_variables)
    resumed.set_state(state)
    assert resumed.iterations == 3
    for step in second:
        resumed.apply_gradients(zip(step, new_variables))
    for a, b in zip(variables, new_variables):
        np.testing.assert_array_equal(a.data, b.data)
    assert resumed.iterations == opt.iterations == 6


def test_state_layout_follows_keras_order_and_holds_copies():
    w0, w1 = Tensor(np.zeros(2, dtype=F)), Tensor(np.zeros(3, dtype=F))
    opt = Adam(amsgrad=True)
    opt.apply_gradients([(np.ones(2, dtype=F), w0), (np.full(3, 2.0, dtype=F), w1)])
    state = opt.get_state()
    assert [a.shape for a in state] == [(), (2,), (2,), (3,), (3,), (2,), (3,)]  # it, m0, v0, m1, v1, vhat0, vhat1
    assert state[0] == 1 and state[0].dtype == np.int64
    np.testing.assert_allclose(state[1], 0.1, rtol=1e-6)  # m0 = (1-β1)·1
    np.testing.assert_allclose(state[2], 0.001, rtol=1e-6)  # v0 = (1-β2)·1
    np.testing.assert_allclose(state[3], 0.2, rtol=1e-6)  # m1 = (1-β1)·2
    state[1][...] = 99.0
    assert not (opt.get_state()[1] == 99.0).any()
    sgd = SGD()
    sgd.build([w0])
    assert [a.shape for a in sgd.get_state()] == [()]  # plain SGD has no slots


def test_set_state_validates_before_changing_anything():
    w = Tensor(np.zeros(3, dtype=F))
    opt = SGD(momentum=0.9)
    with pytest.raises(ValueError, match="not been built"):
        opt.set_state([np.array(1), np.zeros(3, dtype=F)])
    opt.apply_gradients([(np.ones(3, dtype=F), w)])
    before = opt.get_state()
    bad_states = {
        "Expected a state of 2": [np.array(4)],
        "shape \\(3,\\)": [np.array(4), np.zeros(4, dtype=F)],
        "non-negative integer": [np.array(-1), np.zeros(3, dtype=F)],
    }
    for message, state in bad_states.items():
        with pytest.raises(ValueError, match=message):
            opt.set_state(state)
    with pytest.raises(ValueError, match="non-negative integer"):
        opt.set_state([np.array(1.5), np.zeros(3, dtype=F)])
    after = opt.get_state()
    assert int(after[0]) == int(before[0]) == 1
    np.testing.assert_array_equal(after[1], before[1])


def test_a_different_variable_list_is_refused_without_changes():
    w = Tensor(np.zeros(3, dtype=F))
    opt = Adam()
    opt.apply_gradients([(np.ones(3, dtype=F), w)])
    state = opt.get_state()
    other = Tensor(np.zeros(4, dtype=F))
    with pytest.raises(ValueError, match=r"built for 1 variable\(s\).*\(3,\).*Received 1 variable\(s\).*\(4,\)"):
        opt.apply_gradients([(np.ones(4, dtype=F), other)])
    with pytest.raises(ValueError, match="Create a new optimizer"):
        opt.apply_gradients([(np.ones(3, dtype=F), w), (np.ones(4, dtype=F), other)])
    with pytest.raises(ValueError, match="built for"):
        opt.build([other])
    assert opt.iterations == 1
    np.testing.assert_array_equal(opt.get_state()[1], state[1])
    # same shapes (a model that rebuilt its buffer) are fine
    opt.apply_gradients([(np.ones(3, dtype=F), Tensor(np.zeros(3, dtype=F)))])
    assert opt.iterations == 2


def test_bad_gradients_are_refused_before_any_change():
    w = Tensor(np.ones(3, dtype=F))
    opt = SGD(learning_rate=0.1)
    with pytest.raises(ValueError, match=r"shape \(3,\).*Received: shape \(2,\)"):
        opt.apply_gradients([(np.ones(2, dtype=F), w)])
    with pytest.raises(TypeError, match="minitensor Tensor"):
        opt.apply_gradients([(np.ones(3, dtype=F), np.ones(3, dtype=F))])
    with pytest.raises(ValueError, match="pairs"):
        opt.apply_gradients([np.ones(3, dtype=F)])
    with pytest.raises(ValueError, match="No gradients"):
        opt.apply_gradients([(None, w)])
    np.testing.assert_array_equal(w.data, [1.0, 1.0, 1.0])
    assert opt.iterations == 0 and not opt.built


# --------------------------------------------------------------------------- api details
def test_iterations_return_value_and_empty_step():
    w = Tensor(np.zeros(2, dtype=F))
    opt = SGD()
    assert opt.iterations == 0
    assert opt.apply_gradients([(np.ones(2, dtype=F), w)]) == 1
    assert opt.apply_gradients([]) == 1  # nothing to do, as Keras's apply([])
    assert opt.apply([np.ones(2, dtype=F)]) == 2  # grads only, on the built variables
    with pytest.raises(ValueError, match="must already be built"):
        SGD().apply([np.ones(2, dtype=F)])


def test_gradients_may_be_tensors_lists_or_other_dtypes():
    w = Tensor(np.zeros(2, dtype=F))
    opt = SGD(learning_rate=1.0)
    opt.apply_gradients([(Tensor(np.array([1.0, 2.0], dtype=F)), w)])
    opt.apply_gradients([(np.array([1.0, 2.0]), w)])  # float64 grad, cast to the variable's float32
    opt.apply_gradients([([1, 2], w)])
    np.testing.assert_array_equal(w.data, [-3.0, -6.0])
    assert w.data.dtype == np.float32


def test_none_gradient_skips_its_variable_with_a_warning():
    a, b = Tensor(np.ones(2, dtype=F)), Tensor(np.ones(2, dtype=F))
    with pytest.warns(UserWarning, match="positions \\[1\\]"):
        SGD(learning_rate=1.0, weight_decay=0.5).apply_gradients([(np.ones(2, dtype=F), a), (None, b)])
    np.testing.assert_array_equal(b.data, [1.0, 1.0])
    assert (a.data < 1).all()


def test_learning_rate_is_float32_and_settable():
    opt = SGD()
    assert opt.learning_rate == float(np.float32(0.01)) != 0.01
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5
    w = Tensor(np.zeros(1, dtype=F))
    opt.apply_gradients([(np.ones(1, dtype=F), w)])
    assert w.data[0] == -0.5
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = -1.0
    assert opt.learning_rate == 0.5


@pytest.mark.parametrize("value", [1, np.float32(0.1), np.float64(0.1), np.int64(2), 0, 0.0])
def test_learning_rate_also_accepts_ints_and_numpy_numbers(value):
    assert SGD(learning_rate=value).learning_rate == float(np.float32(value))


@pytest.mark.parametrize("value", [-0.1, -1, "0.1", True, None, float("nan"), float("inf"), 1e-60, 1e60])
def test_invalid_learning_rates(value):
    # 1e-60 would round to a float32 0 and 1e60 to inf: refused rather than silently changed
    with pytest.raises(ValueError, match=r"`learning_rate` should be a non-negative number.*Received: learning_rate="):
        Adam(learning_rate=value)


@pytest.mark.parametrize(
    "cls, argument, value, message",
    [
        (SGD, "momentum", 1.0, r"`momentum` must be a number in \[0, 1\). Received: momentum=1.0"),
        (SGD, "momentum", -0.1, "momentum=-0.1"),
        (SGD, "momentum", "0.9", "momentum='0.9'"),
        (SGD, "momentum", True, "momentum=True"),
        (SGD, "nesterov", "yes", "`nesterov` must be a boolean"),
        (RMSprop, "rho", 1.0, r"`rho` must be a number in \[0, 1\)"),
        (RMSprop, "momentum", 1.5, "momentum=1.5"),
        (RMSprop, "epsilon", -1e-7, "`epsilon` must be a non-negative finite number"),
        (RMSprop, "centered", 1, "`centered` must be a boolean"),
        (Adam, "beta_1", 1.0, "beta_1=1.0"),
        (Adam, "beta_2", -0.5, "beta_2=-0.5"),
        (Adam, "epsilon", float("nan"), "epsilon=nan"),
        (Adam, "amsgrad", None, "`amsgrad` must be a boolean"),
        (Adagrad, "initial_accumulator_value", -0.1, "`initial_accumulator_value` must be a non-negative"),
        (Adagrad, "weight_decay", -0.1, "`weight_decay` must be a non-negative finite number"),
        (Adam, "clipnorm", 0.0, "`clipnorm` must be None or a positive finite number. Received: clipnorm=0.0"),
        (Adam, "clipvalue", -1.0, "clipvalue=-1.0"),
        (Adam, "global_clipnorm", "1", "global_clipnorm='1'"),
        (Adam, "name", 3, "`name` must be None or a string"),
    ],
)
def test_invalid_arguments(cls, argument, value, message):
    with pytest.raises(ValueError, match=message):
        cls(**{argument: value})


def test_valid_edge_arguments():
    assert SGD(momentum=0).momentum == 0.0  # an int 0 is fine here (Keras refuses it)
    assert SGD(momentum=np.float32(0.5)).momentum == 0.5
    assert Adam(epsilon=0).epsilon == 0.0
    assert RMSprop(rho=0.0).rho == 0.0
    assert Adagrad(initial_accumulator_value=0).initial_accumulator_value == 0.0


def test_only_one_clip_option():
    with pytest.raises(ValueError, match="Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set"):
        SGD(clipnorm=1.0, clipvalue=0.5)
    with pytest.raises(ValueError, match="global_clipnorm=2.0"):
        Adam(clipnorm=1.0, global_clipnorm=2.0)


def test_unknown_keyword_arguments():
    with pytest.raises(ValueError, match=r"Argument\(s\) not recognized: \{'momentun': 0.9\}"):
        SGD(momentun=0.9)
    with pytest.raises(ValueError, match="`use_ema` is not implemented"):
        Adam(use_ema=True)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=4"):
        Adam(gradient_accumulation_steps=4)
    # Keras's inactive options (present in a Keras config) are accepted
    Adam(use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None)


def test_legacy_lr_is_accepted_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match=r"`lr` is deprecated.*learning_rate=0.02") as record:
        opt = SGD(lr=0.02)
    assert opt.learning_rate == float(np.float32(0.02))
    assert record[0].filename == __file__  # the warning points at the caller's line
    with pytest.warns(DeprecationWarning):
        assert Adam(lr=0.1, beta_1=0.5).learning_rate == float(np.float32(0.1))
    with pytest.raises(ValueError, match="Pass the learning rate once"):
        SGD(learning_rate=0.1, lr=0.2)
    with pytest.raises(ValueError, match="Pass the learning rate once"):
        SGD(learning_rate=0.01, lr=0.2)  # even when equal to the default
    with pytest.raises(ValueError, match="learning_rate"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        RMSprop(lr=-1.0)


def test_decay_is_ignored_with_a_user_warning():
    with pytest.warns(UserWarning, match="Argument `decay` is no longer supported and will be ignored."):
        opt = SGD(learning_rate=0.1, decay=1e-6)
    assert "decay" not in opt.get_config()
    weights, grads = make_problem(seed=1)
    np.testing.assert_array_equal(run(opt, weights, grads)[0], run(SGD(learning_rate=0.1), weights, grads)[0])


def test_names_follow_keras():
    a, b = Adam(), Adam()
    assert a.name.startswith("adam") and a.name != b.name
    assert RMSprop().name.startswith("rm_sprop")  # Keras's snake case of "RMSprop"
    assert SGD(name="mine").name == "mine"


@pytest.mark.parametrize(
    "optimizer",
    [
        SGD(learning_rate=0.1, momentum=0.9, nesterov=True, clipnorm=1.0, name="s"),
        RMSprop(rho=0.8, momentum=0.1, epsilon=1e-6, centered=True, weight_decay=0.01),
        Adam(learning_rate=0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-8, amsgrad=True, global_clipnorm=2.0),
        Adagrad(learning_rate=0.5, initial_accumulator_value=0.2, epsilon=1e-5, clipvalue=3.0),
    ],
)
def test_config_round_trip(optimizer):
    config = optimizer.get_config()
    assert config["learning_rate"] == optimizer.learning_rate
    clone = type(optimizer).from_config(config)
    assert clone.get_config() == config
    again = optimizers.get({"class_name": type(optimizer).__name__, "config": config})
    assert type(again) is type(optimizer) and again.get_config() == config


def test_config_contents():
    config = Adam(name="a").get_config()
    assert config == {
        "name": "a",
        "learning_rate": float(np.float32(0.001)),
        "weight_decay": None,
        "clipnorm": None,
        "global_clipnorm": None,
        "clipvalue": None,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-7,
        "amsgrad": False,
    }


def test_get():
    for name, cls in [("sgd", SGD), ("SGD", SGD), ("adam", Adam), ("Adam", Adam), ("rmsprop", RMSprop),
                      ("RMSprop", RMSprop), ("adagrad", Adagrad), ("ADAGRAD", Adagrad)]:
        opt = optimizers.get(name)
        assert type(opt) is cls
        assert opt.get_config() == {**cls().get_config(), "name": opt.name}  # default arguments
    instance = Adam()
    assert optimizers.get(instance) is instance
    assert optimizers.get(None) is None
    assert optimizers.get({"class_name": "sgd", "config": {"momentum": 0.5}}).momentum == 0.5
    for bad in ["nadam", "adamw_typo", {"class_name": "Foo", "config": {}}, 3, Adam]:
        with pytest.raises(ValueError, match="Could not interpret optimizer identifier: "):
            optimizers.get(bad)
    with pytest.raises(ValueError, match="nadam"):
        optimizers.get("nadam")


def test_every_public_object_has_a_docstring():
    for name in optimizers.__all__:
        obj = getattr(optimizers, name)
        assert obj.__doc__ and "Example" in obj.__doc__, name


@pytest.mark.parametrize(
    "cls, kwargs",
    [(SGD, {"momentum": 0.9}), (Adam, {"amsgrad": True}), (RMSprop, {}), (Adagrad, {}),
     (Adam, {"clipnorm": 0.5, "weight_decay": 0.01})],
)
def test_unchecked_step_is_the_checked_step(cls, kwargs):
    """``_step`` (what fit uses after a first checked step) updates exactly as ``apply_gradients``."""
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=7).astype(F) for _ in range(4)]
    checked_w, unchecked_w = (Tensor(np.linspace(-1, 1, 7).astype(F)) for _ in range(2))
    checked, unchecked = cls(**kwargs), cls(**kwargs)
    for i, g in enumerate(grads):
        checked.apply_gradients([(g, checked_w)])
        if i == 0:
            unchecked.apply_gradients([(g, unchecked_w)])
        else:
            unchecked._step([g], [unchecked_w.data])
    assert checked.iterations == unchecked.iterations == 4
    assert checked_w.data.tobytes() == unchecked_w.data.tobytes()
    assert all(a.tobytes() == b.tobytes() for a, b in zip(checked.get_state(), unchecked.get_state()))


@pytest.mark.parametrize("name, kwargs", [
    ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("RMSprop", {"momentum": 0.5, "centered": True}),
    ("Adam", {"amsgrad": True, "clipvalue": 0.5}),
    ("Adagrad", {}),
])
def test_a_long_vector_is_updated_block_by_block_with_the_same_numbers(name, kwargs, monkeypatch):
    rng = np.random.default_rng(3)
    size = 2 * optimizers.BLOCK_SIZE + 123  # three blocks, the last partial
    start = rng.normal(size=size).astype(np.float32)
    grads = [rng.normal(size=size).astype(np.float32) for _ in range(3)]

    def train():
        w = Tensor(start.copy())
        opt = getattr(optimizers, name)(**kwargs)
        for g in grads:
            opt.apply_gradients([(g, w)])
        return w.data, opt.get_state()

    blockwise = train()
    assert len(optimizers._blocks(start)) == 3
    monkeypatch.setattr(optimizers, "BLOCK_SIZE", 10 * size)
    assert optimizers._blocks(start) is None
    whole = train()
    np.testing.assert_array_equal(blockwise[0], whole[0])
    for a, b in zip(blockwise[1], whole[1]):
        np.testing.assert_array_equal(a, b)


def test_a_subclass_with_the_older_update_signature_gets_whole_variables():
    seen = []

    class Plain(optimizers.SGD):
        def _update_step(self, index, g, w, lr):
            seen.append(w.size)
            w -= g * lr

    w = Tensor(np.zeros(optimizers.BLOCK_SIZE + 5, dtype=np.float32))
    Plain(learning_rate=0.5).apply_gradients([(np.ones_like(w.data), w)])
    assert seen == [optimizers.BLOCK_SIZE + 5] and np.all(w.data == -0.5)


# ---------------------------------------------------------------------------- state interface
def test_slot_arrays_are_the_live_state_and_advance_iterations_counts_steps():
    w = Tensor(np.zeros(3, dtype=np.float32))
    opt = Adam(amsgrad=True)
    with pytest.raises(ValueError, match=r"not built\). Received: name='momentum'"):
        opt.slot_arrays("momentum")
    opt.build([w])
    assert opt.slot_names == ["momentum", "velocity", "velocity_hat"]
    with pytest.raises(ValueError, match=r"Received: name='accumulator'"):
        opt.slot_arrays("accumulator")
    opt.slot_arrays("velocity")[0][...] = 2.0  # in place: the optimizer's own state
    assert np.all(opt.get_state()[2] == 2.0)
    opt.advance_iterations(4)
    assert opt.iterations == 4 and int(opt.get_state()[0]) == 4
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match=r"Expected `steps` to be a non-negative integer"):
            opt.advance_iterations(bad)
    assert opt.iterations == 4
    assert Adagrad(initial_accumulator_value=0.25).slot_initial_value("accumulator") == 0.25
    assert SGD(momentum=0.5).slot_initial_value("momentum") == 0.0
