"""The compiled training path (``compile(jit_compile=True)``) against the reference path.

Hypothesis draws small models (depth, widths, activations, bias or not, dropout with a
fixed seed or the global generator, L1/L2 penalties, each optimizer with its options, each
loss, label smoothing, sample weights, batch sizes including 1 and a final partial batch,
shuffling on or off) and trains the same model from the same seed on both paths: the History,
the final weights, the optimizer's state and the random generator's state afterwards must agree
to float32 round-off. Fixed cases cover the fallback, resuming across paths, saving, a
non-finite loss, NumPy's summation order and the on-disk kernel cache; test_compiled_keras.py checks
the compiled path against tf.keras directly.

The kernels are compiled once per process (seconds) or loaded from Numba's on-disk cache.
"""

import os
import subprocess
import sys
import textwrap
import warnings

import numba  # noqa: F401  (a hard dependency: a broken install must fail here, not skip)
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.datasets import load_digits

import minitensor as mt
from minitensor import optimizers, regularizers
from minitensor.layers import Activation, Dense, Dropout, Input
from minitensor.models import Sequential, load_model

# Tolerances, from what float32 round-off can explain. The two paths compute the same formulas in
# a different order (BLAS or loops, fused kernels), so each result differs by a few units of
# float32 round-off, u = 2**-24 = 6e-8, of the *terms* it sums: relative to the largest entries of
# a tensor, not to an entry that is itself a cancellation. The drawn trainings take at most 120
# steps (40 rows, batch 1, 3 epochs), and every step adds its own few u to every weight.
# History losses: means over the epoch whose summands agree to a few u each, at weights that agree
# as below; 1e-5 = 170 u (the largest seen over 3,000 random examples: 1.1e-6).
LOSS_RTOL = 1e-5
# Weights: 120 steps of ~8 u each, relative to the tensor's largest entry: 120 * 8 u = 5.7e-5,
# rounded up to 1e-4 (largest seen: 1.4e-4 of the scale, in a tensor all of whose entries sit near the
# absolute tolerance below).
WEIGHT_RTOL = 1e-4
# An L1 penalty's gradient flips sign with its weight, and a relu's with its input: a weight held
# near such a kink moves by whole steps where round-off decides the side. Not a multiple of u; the
# largest seen over 3,000 random examples was 3.1e-6. Trainings that round-off sends elsewhere
# altogether (chaotic ones) are told apart below (CHAOS_FACTOR).
WEIGHT_ATOL = 1e-5
# Optimizer slots are (averages of) gradients: computed at weights that agree to WEIGHT_RTOL of their
# scale, they agree to about as much of the slot's own scale (largest seen: 1.3e-5 of the scale).
# Entries far below the scale may differ by far more relative to themselves (a softmax output
# within an ulp of 1 gives a gradient p - 1 whose relative error is 1e-4 or more); 1e-30: where the
# compiled path flushes what would be a float32 subnormal.
SLOT_RTOL = 1e-4
FALLBACK = "Training on the reference path"


# ============================================================================ helpers
def make_data(seed, n, d_in, k, loss, sample_weights):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d_in)).astype(np.float32)
    if loss == "bce":
        y = rng.integers(0, 2, (n, k)).astype(np.float32)
        if k == 1 and seed % 2:
            y = y[:, 0]
    elif loss == "cce":
        y = np.eye(k, dtype=np.float32)[rng.integers(0, k, n)]
    elif loss == "scce":
        y = rng.integers(0, k, n)
    else:
        y = rng.normal(size=(n, k)).astype(np.float32)
        if k == 1 and seed % 2:
            y = y[:, 0]
    w = rng.uniform(0, 2, n).astype(np.float32) if sample_weights else None
    return x, y, w


def regularizer(spec):
    if spec is None:
        return None
    if spec == "l1":
        return regularizers.L1(0.01)
    if spec == "l2":
        return regularizers.L2(0.01)
    return regularizers.L1L2(l1=0.01, l2=0.02)


def build_model(cfg):
    """The configuration's model; its initial weights come from minitensor's global generator."""
    layers = [Input(shape=(cfg["d_in"],))]
    dropouts = iter(cfg["dropouts"])
    drop = next(dropouts)
    if drop:
        layers.append(Dropout(drop[0], seed=drop[1]))
    for (units, activation, use_bias, kreg, breg), drop in zip(cfg["hidden"], dropouts):
        layers.append(Dense(units, activation=activation, use_bias=use_bias,
                            kernel_regularizer=regularizer(kreg), bias_regularizer=regularizer(breg)))
        if drop:
            layers.append(Dropout(drop[0], seed=drop[1]))
    units, activation, use_bias, kreg, breg = cfg["output"]
    if cfg["activation_layer"] and activation != "linear":
        layers.append(Dense(units, use_bias=use_bias, kernel_regularizer=regularizer(kreg),
                            bias_regularizer=regularizer(breg)))
        layers.append(Activation(activation))
    else:
        layers.append(Dense(units, activation=activation, use_bias=use_bias,
                            kernel_regularizer=regularizer(kreg), bias_regularizer=regularizer(breg)))
    return Sequential(layers)


def make_loss(cfg):
    name, options = cfg["loss"]
    cls = {
        "bce": mt.losses.BinaryCrossentropy,
        "cce": mt.losses.CategoricalCrossentropy,
        "scce": mt.losses.SparseCategoricalCrossentropy,
        "mse": mt.losses.MeanSquaredError,
    }[name]
    return cls(**options)


def make_optimizer(cfg):
    name, options = cfg["optimizer"]
    return getattr(optimizers, name)(**options)


def train(cfg, jit, epochs=None, nudge=False):
    """Train the configuration's model on one path; return everything that must agree.

    ``nudge``: start from weights one float32 ulp away (every nonzero entry times 1 + 2**-23).
    """
    mt.set_random_seed(cfg["seed"])
    model = build_model(cfg)
    if nudge:
        model.set_weights([w * np.float32(1 + 2.0**-23) for w in model.get_weights()])
    model.compile(optimizer=make_optimizer(cfg), loss=make_loss(cfg), metrics=list(cfg["metrics"]), jit_compile=jit)
    x, y, w = make_data(cfg["seed"], cfg["n"], cfg["d_in"], cfg["output"][0], cfg["loss"][0], cfg["sample_weights"])
    fit = dict(batch_size=cfg["batch_size"], epochs=epochs or cfg["epochs"], shuffle=cfg["shuffle"], verbose=0,
               sample_weight=w)
    if cfg["validation"]:
        fit["validation_data"] = (x[: max(1, len(x) // 3)], y[: max(1, len(x) // 3)])
    return fit_and_record(model, x, y, **fit)


def fit_and_record(model, x, y, **fit):
    """``model.fit(x, y, **fit)``; return everything :func:`assert_same_training` compares."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, **fit)
    w, validation = fit.get("sample_weight"), fit.get("validation_data")
    return dict(
        history=history.history,
        epochs=history.epoch,
        weights=model.get_weights(),
        state=model.optimizer.get_state() if model.optimizer.built else [],
        iterations=model.optimizer.iterations,
        next_random=float(np.random.random()),  # the global generator consumed the same draws
        fallbacks=[str(c.message) for c in caught if FALLBACK in str(c.message)],
        n_seen=len(x),
        n_val=len(validation[0]) if validation is not None else 0,
        weight_share=1.0 / len(x) if w is None else float(w.max() / max(w.sum(), 1e-30)),
    )


# A training can be chaotic (a large step size, a weight held at an L1 or relu kink): there the
# reference path parts from *itself* when its starting weights move by one ulp. Where the paths
# differ by more than the tolerances above, the property accepts the difference only if it is at
# most CHAOS_FACTOR times the reference path's own difference from that nudged run: the paths
# differ by a few ulps at every step, not by one ulp once.
CHAOS_FACTOR = 10


def assert_same_training(ref, jit, loss_rtol=LOSS_RTOL, weight_rtol=WEIGHT_RTOL, weight_atol=WEIGHT_ATOL,
                         nudged=None):
    """The two trainings agree to round-off; ``nudged()``, if given, trains the reference path from
    weights one ulp away, to tell a chaotic training's own sensitivity from a disagreement."""
    assert jit["fallbacks"] == [], jit["fallbacks"]
    assert ref["epochs"] == jit["epochs"]
    assert sorted(ref["history"]) == sorted(jit["history"])
    assert ref["iterations"] == jit["iterations"]
    assert len(ref["state"]) == len(jit["state"])
    assert ref["next_random"] == jit["next_random"]
    failures = disagreements(ref, jit, loss_rtol, weight_rtol, weight_atol)
    if failures and nudged is not None:
        own, gaps = gaps_between(ref, nudged()), gaps_between(ref, jit)
        failures = {name: message + f"\n(the reference path nudged by one ulp moves it by {own[name]:.3g})"
                    for name, message in failures.items() if gaps[name] > CHAOS_FACTOR * own[name]}
    assert not failures, "\n\n".join(failures.values())


def disagreements(ref, jit, loss_rtol, weight_rtol, weight_atol):
    """{quantity: message} for each History key, weight and optimizer slot beyond the tolerances."""
    checks = []
    for key, values in ref["history"].items():
        if "acc" in key:
            # a prediction within round-off of the decision boundary may flip: one sample per epoch,
            # whose share of the accuracy is its weight over the total (1/len(val) for validation)
            share = jit["weight_share"] if not key.startswith("val_") else 1.0 / jit["n_val"]
            checks.append((key, lambda a=jit["history"][key], d=values, s=share: np.testing.assert_allclose(
                a, d, rtol=0, atol=1.01 * s)))
        else:
            checks.append((key, lambda a=jit["history"][key], d=values: np.testing.assert_allclose(
                a, d, rtol=loss_rtol, atol=1e-7)))
    for i, (r, j) in enumerate(zip(ref["weights"], jit["weights"])):
        checks.append((f"weight {i}", lambda a=j, d=r: assert_scaled_close(a, d, weight_rtol, weight_atol)))
    for i, (r, j) in enumerate(zip(ref["state"][1:], jit["state"][1:])):
        checks.append((f"slot {i}", lambda a=j, d=r: assert_slots_close(a, d)))
    failures = {}
    for name, check in checks:
        try:
            check()
        except AssertionError as error:
            failures[name] = f"{name}: {error}"
    return failures


def gaps_between(a, b):
    """{quantity: largest absolute difference} between two trainings (inf where their shapes differ)."""
    pairs = [(k, a["history"][k], b["history"].get(k, [])) for k in a["history"]]
    pairs += [(f"weight {i}", x, y) for i, (x, y) in enumerate(zip(a["weights"], b["weights"]))]
    pairs += [(f"slot {i}", x, y) for i, (x, y) in enumerate(zip(a["state"][1:], b["state"][1:]))]
    gaps = {}
    for name, x, y in pairs:
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        gaps[name] = float(np.max(np.abs(x - y), initial=0.0)) if x.shape == y.shape else np.inf
    return gaps


def assert_scaled_close(actual, desired, rtol, atol):
    """``|actual - desired| <= rtol * max|desired| + atol`` entrywise: round-off relative to the tensor's scale."""
    scale = float(np.max(np.abs(desired))) if np.size(desired) else 0.0
    np.testing.assert_allclose(actual, desired, rtol=0, atol=rtol * scale + atol)


def assert_slots_close(actual, desired):
    """Optimizer slots agree to SLOT_RTOL of their scale (see the tolerances at the top)."""
    assert_scaled_close(actual, desired, SLOT_RTOL, 1e-30)


# ============================================================================ strategies
ACTIVATIONS = ["relu", "sigmoid", "tanh", "linear", "softmax"]
REGULARIZERS = [None, None, "l1", "l2", "l1l2"]


@st.composite
def optimizer_configs(draw):
    kind = draw(st.sampled_from(["SGD", "Adam", "RMSprop", "Adagrad"]))
    if kind == "SGD":
        options = dict(learning_rate=draw(st.sampled_from([0.01, 0.1])), momentum=draw(st.sampled_from([0.0, 0.9])),
                       nesterov=draw(st.booleans()))
    elif kind == "Adam":
        options = dict(learning_rate=draw(st.sampled_from([0.001, 0.01])), amsgrad=draw(st.booleans()))
    elif kind == "RMSprop":
        options = dict(learning_rate=draw(st.sampled_from([0.001, 0.01])), momentum=draw(st.sampled_from([0.0, 0.5])),
                       centered=draw(st.booleans()))
    else:
        options = dict(learning_rate=0.01)
    extra = draw(st.sampled_from([None, "weight_decay", "clipvalue"]))
    if extra == "weight_decay":
        options["weight_decay"] = 0.01
    elif extra == "clipvalue":
        options["clipvalue"] = 0.5
    return kind, options


@st.composite
def model_configs(draw):
    seed = draw(st.integers(0, 2**16))
    optimizer = draw(optimizer_configs())
    # A rate of 1 makes what follows the Dropout constant, so some gradients are exact zeros plus
    # round-off; Adam, RMSprop and Adagrad divide a gradient by its own size, which turns that
    # round-off into whole steps whose direction round-off picks. Those optimizers get rates below 1.
    rates = [0.25, 0.5, 1.0] if optimizer[0] == "SGD" else [0.25, 0.5]
    depth = draw(st.integers(0, 3))
    hidden = [
        (draw(st.integers(1, 7)), draw(st.sampled_from(ACTIVATIONS)), draw(st.booleans()),
         draw(st.sampled_from(REGULARIZERS)), draw(st.sampled_from(REGULARIZERS)))
        for _ in range(depth)
    ]
    dropouts = [
        draw(st.one_of(st.none(), st.tuples(st.sampled_from(rates), st.sampled_from([None, 3, 11]))))
        if draw(st.integers(0, 3)) == 0 else None
        for _ in range(depth + 1)
    ]
    loss = draw(st.sampled_from(["bce", "bce_logits", "cce", "cce_logits", "scce", "scce_logits", "mse"]))
    base = loss.split("_")[0]
    k = draw(st.integers(1, 3)) if base in ("bce", "mse") else draw(st.integers(2, 4))
    options = {}
    if loss == "bce":
        activation = "sigmoid"
    elif loss in ("cce", "scce"):
        activation = "softmax"
    elif loss.endswith("logits"):
        options["from_logits"] = True
        activation = draw(st.sampled_from(["linear", "tanh"]))
    else:
        activation = draw(st.sampled_from(["linear", "sigmoid", "tanh", "relu"] + (["softmax"] if k > 1 else [])))
    if base in ("bce", "cce"):
        options["label_smoothing"] = draw(st.sampled_from([0.0, 0.0, 0.1]))
    output = (k, activation, draw(st.booleans()), draw(st.sampled_from(REGULARIZERS)), draw(st.sampled_from(REGULARIZERS)))
    n = draw(st.integers(1, 40))
    return dict(
        seed=seed, d_in=draw(st.integers(1, 6)), hidden=hidden, dropouts=dropouts, output=output,
        activation_layer=draw(st.booleans()), loss=(base, options), metrics=draw(st.sampled_from([(), ("accuracy",)])),
        optimizer=optimizer, n=n, batch_size=draw(st.sampled_from([1, 2, 3, 5, 8, 16, 32])),
        epochs=draw(st.integers(1, 3)), shuffle=draw(st.booleans()), sample_weights=draw(st.booleans()),
        validation=draw(st.booleans()) and n >= 3,
    )


# ============================================================================ the property
@settings(max_examples=25)  # the `ci` profile draws the same 25 every run; `thorough` 250 new ones
@given(cfg=model_configs())
def test_compiled_path_matches_reference_path(cfg):
    ref = train(cfg, jit=False)
    jit = train(cfg, jit=True)
    assert_same_training(ref, jit, nudged=lambda: train(cfg, jit=False, nudge=True))


# ============================================================================ fixed cases
def lesson_config(**changes):
    cfg = dict(
        seed=1, d_in=8, hidden=[(12, "relu", True, None, None), (8, "relu", True, None, None)],
        dropouts=[None, None, None], output=(1, "sigmoid", True, None, None), activation_layer=False,
        loss=("bce", {}), metrics=("accuracy",), optimizer=("Adam", {}), n=100, batch_size=32, epochs=3,
        shuffle=True, sample_weights=False, validation=False,
    )
    cfg.update(changes)
    return cfg


@pytest.mark.parametrize(
    "changes",
    [
        {},
        dict(batch_size=1, optimizer=("SGD", {})),
        dict(output=(4, "softmax", True, None, None), loss=("cce", {})),
        dict(output=(4, "softmax", True, None, None), loss=("scce", {}), optimizer=("RMSprop", {"centered": True})),
        dict(dropouts=[None, (0.5, None), (0.25, None)], optimizer=("SGD", {"momentum": 0.9, "nesterov": True})),
        dict(hidden=[(12, "tanh", False, "l2", "l1"), (8, "sigmoid", True, "l1l2", None)], optimizer=("Adagrad", {})),
        dict(sample_weights=True, validation=True, output=(1, "linear", True, "l2", None), loss=("mse", {})),
    ],
)
def test_lesson_like_models_match(changes):
    cfg = lesson_config(**changes)
    assert_same_training(train(cfg, jit=False), train(cfg, jit=True))


@pytest.mark.parametrize("input_dropout", [True, False], ids=["input-dropout", "no-input-dropout"])
@pytest.mark.parametrize("blas_min_macs", [0, 10**12], ids=["blas", "loops"])
@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_blas_and_loop_products_both_match(blas_min_macs, batch_size, input_dropout, monkeypatch):
    """Every layer through BLAS (where the batch allows), or every layer through the loops; a
    BLAS first layer reads its batch sample-major unless an input Dropout comes first."""
    from minitensor import compiled

    monkeypatch.setattr(compiled, "BLAS_MIN_MACS", blas_min_macs)
    cfg = lesson_config(d_in=20, hidden=[(24, "relu", True, "l2", None), (16, "tanh", True, None, None)],
                        output=(5, "softmax", True, None, None), loss=("cce", {}), n=150, batch_size=batch_size,
                        dropouts=[(0.1, None) if input_dropout else None, (0.2, 5), None], epochs=2)
    assert_same_training(train(cfg, jit=False), train(cfg, jit=True))
    mt.set_random_seed(0)
    model = build_model(cfg)
    model.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=True)
    model.fit(*make_data(0, 150, 20, 5, "cce", False)[:2], batch_size=batch_size, epochs=1, verbose=0)
    plan, _ = compiled.build_plan(model)
    plan._layout(batch_size)
    expected = plan._k.HAVE_BLAS and blas_min_macs == 0 and batch_size >= 2
    assert plan._layout(batch_size)["blas"] == [expected] * 3


def test_consecutive_dropouts_and_activation_layers_match():
    """Input dropout, two Dropout layers in a row (one seeded, one on the global generator), Activation layers."""

    def run(jit):
        mt.set_random_seed(8)
        model = Sequential([
            Input(shape=(6,)), Dropout(0.2), Dense(10), Activation("relu"), Dropout(0.3, seed=2), Dropout(0.5),
            Dense(7, activation="tanh"), Dropout(0.1, seed=9), Dense(3), Activation("softmax"),
        ])
        model.compile(optimizer=optimizers.RMSprop(momentum=0.3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], jit_compile=jit)
        rng = np.random.default_rng(1)
        x = rng.normal(size=(45, 6)).astype(np.float32)
        y = rng.integers(0, 3, (45, 1))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = model.fit(x, y, batch_size=8, epochs=3, verbose=0)
        assert not [c for c in caught if FALLBACK in str(c.message)]
        return history.history, model.get_weights(), float(np.random.random())

    h_ref, w_ref, r_ref = run(False)
    h_jit, w_jit, r_jit = run(True)
    np.testing.assert_allclose(h_jit["loss"], h_ref["loss"], rtol=LOSS_RTOL)
    np.testing.assert_allclose(h_jit["accuracy"], h_ref["accuracy"], atol=1.01 / 45)
    for a, b in zip(w_ref, w_jit):
        np.testing.assert_allclose(b, a, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL)
    assert r_ref == r_jit


# ---------------------------------------------------------------------------- fallback
UNSUPPORTED = {
    "custom activation": lambda: (Sequential([Input(shape=(3,)), Dense(4, activation=lambda t: t * 2), Dense(1)]), {}),
    "activity regularizer": lambda: (
        Sequential([Input(shape=(3,)), Dense(4, activity_regularizer=regularizers.L2(0.1)), Dense(1)]), {}),
    "noise_shape": lambda: (Sequential([Input(shape=(3,)), Dense(4), Dropout(0.5, noise_shape=(None, 1)), Dense(1)]), {}),
    "dropout on the output": lambda: (Sequential([Input(shape=(3,)), Dense(1), Dropout(0.5)]), {}),
    "global_clipnorm": lambda: (Sequential([Input(shape=(3,)), Dense(1)]), {"optimizer": optimizers.SGD(global_clipnorm=1.0)}),
    "clipnorm": lambda: (Sequential([Input(shape=(3,)), Dense(1)]), {"optimizer": optimizers.Adam(clipnorm=1.0)}),
    "probability cross-entropy": lambda: (Sequential([Input(shape=(3,)), Dense(1, activation="relu")]),
                                          {"loss": "binary_crossentropy"}),
    "mae loss": lambda: (Sequential([Input(shape=(3,)), Dense(1)]), {"loss": "mae"}),
    "mse metric": lambda: (Sequential([Input(shape=(3,)), Dense(1)]), {"metrics": ["mse"]}),
}


@pytest.mark.parametrize("what", sorted(UNSUPPORTED))
def test_unsupported_model_falls_back_once_and_still_trains(what):
    model, options = UNSUPPORTED[what]()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    options = {"optimizer": "sgd", "loss": "mse", **options}
    model.compile(jit_compile=True, **options)
    before = model.get_weights()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=2, batch_size=8, verbose=0)
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    notes = [c for c in caught if FALLBACK in str(c.message)]
    assert len(notes) == 1, [str(c.message) for c in caught]
    assert notes[0].category is UserWarning and "jit_compile=True" in str(notes[0].message)
    assert any(not np.array_equal(b, a) for b, a in zip(before, model.get_weights()))


def test_supported_model_does_not_warn():
    cfg = lesson_config(epochs=1)
    assert train(cfg, jit=True)["fallbacks"] == []


def test_from_logits_on_a_sigmoid_output_warns_as_the_reference_path():
    """Keras's warning (the logits of the sigmoid are used anyway), once per fit on the compiled path."""
    def run(jit):
        mt.set_random_seed(2)
        model = Sequential([Input(shape=(3,)), Dense(2, activation="sigmoid")])
        model.compile(optimizer="sgd", loss=mt.losses.BinaryCrossentropy(from_logits=True), jit_compile=jit)
        x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            history = model.fit(x, (x[:, :2] > 0).astype(np.float32), batch_size=4, epochs=2, verbose=0)
        return history.history["loss"], {str(c.message) for c in caught if c.category is UserWarning}

    loss_ref, messages_ref = run(False)
    loss_jit, messages_jit = run(True)
    np.testing.assert_allclose(loss_jit, loss_ref, rtol=LOSS_RTOL)
    assert messages_ref == messages_jit and len(messages_jit) == 1
    assert "received `from_logits=True`" in messages_jit.pop()


# ---------------------------------------------------------------------------- resuming
@pytest.mark.parametrize("optimizer", [
    ("Adam", {"amsgrad": True}),
    ("SGD", {"momentum": 0.9}),
    ("RMSprop", {"momentum": 0.5, "centered": True}),
    ("Adagrad", {}),
])
@pytest.mark.parametrize("first", [True, False], ids=["compiled-then-reference", "reference-then-compiled"])
def test_optimizer_state_continues_across_paths(optimizer, first):
    cfg = lesson_config(optimizer=optimizer, epochs=2)
    full = train(cfg, jit=False, epochs=4)

    mt.set_random_seed(cfg["seed"])
    model = build_model(cfg)
    model.compile(optimizer=make_optimizer(cfg), loss=make_loss(cfg), metrics=["accuracy"], jit_compile=first)
    x, y, _ = make_data(cfg["seed"], cfg["n"], cfg["d_in"], 1, "bce", False)
    h1 = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    model.jit_compile = not first
    h2 = model.fit(x, y, batch_size=32, epochs=4, initial_epoch=2, verbose=0)
    np.testing.assert_allclose(h1.history["loss"] + h2.history["loss"], full["history"]["loss"], rtol=LOSS_RTOL)
    for r, j in zip(full["weights"], model.get_weights()):
        np.testing.assert_allclose(j, r, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL)
    state = model.optimizer.get_state()
    assert int(state[0]) == int(full["state"][0]) == 16
    for r, j in zip(full["state"][1:], state[1:]):
        assert_slots_close(j, r)


def test_save_and_load_resume_exactly(tmp_path):
    cfg = lesson_config(optimizer=("Adam", {}), epochs=2, shuffle=False)
    x, y, _ = make_data(cfg["seed"], cfg["n"], cfg["d_in"], 1, "bce", False)
    mt.set_random_seed(cfg["seed"])
    model = build_model(cfg)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"], jit_compile=True)
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    restored = load_model(path)
    restored.jit_compile = False
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    restored.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_allclose(a, b, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL)
    for a, b in zip(model.optimizer.get_state(), restored.optimizer.get_state()):
        assert_slots_close(b, a)


# ---------------------------------------------------------------------------- non-finite loss
@pytest.mark.parametrize("dropout", [False, True])
def test_non_finite_loss_stops_before_the_update_as_the_reference_path(dropout):
    def run(jit):
        mt.set_random_seed(4)
        layers = [Input(shape=(2,)), Dense(3, activation="relu")]
        if dropout:
            layers.append(Dropout(0.5))  # the global generator: its state after the stop is compared
        layers.append(Dense(1))
        model = Sequential(layers)
        model.compile(optimizer=optimizers.SGD(learning_rate=0.5), loss="mse", metrics=["accuracy"], jit_compile=jit)
        x = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32) * 30
        y = (x[:, 0] * 1e3).astype(np.float32)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = model.fit(x, y, epochs=20, batch_size=4, verbose=0)
        stops = [c for c in caught if c.category is RuntimeWarning and "training loss became" in str(c.message)]
        return history, model, stops, float(np.random.random())

    h_ref, m_ref, s_ref, r_ref = run(False)
    h_jit, m_jit, s_jit, r_jit = run(True)
    assert len(s_ref) == len(s_jit) == 1
    assert str(s_ref[0].message) == str(s_jit[0].message)
    assert s_jit[0].filename == s_ref[0].filename  # both point at the caller of fit
    assert h_ref.epoch == h_jit.epoch
    assert m_jit.stop_training and m_ref.stop_training
    assert m_ref.optimizer.iterations == m_jit.optimizer.iterations
    for a, b in zip(m_ref.get_weights(), m_jit.get_weights()):
        np.testing.assert_allclose(b, a, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL)
    assert r_ref == r_jit


def test_non_finite_loss_at_the_first_step_leaves_the_optimizer_unbuilt():
    model = Sequential([Input(shape=(1,)), Dense(1)])
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    x = np.ones((4, 1), dtype=np.float32)
    y = np.full(4, 3e38, dtype=np.float32)
    with pytest.warns(RuntimeWarning, match="training loss became inf"):
        history = model.fit(x, y, epochs=3, verbose=0)
    assert history.epoch == [] and not model.optimizer.built and model.optimizer.iterations == 0


# ---------------------------------------------------------------------------- numerics
@pytest.mark.parametrize("n", [1, 5, 7, 8, 9, 16, 17, 127, 128, 129, 255, 256, 1000, 4097, 100_003])
def test_pairwise_sum_is_numpys_bit_for_bit(n):
    from minitensor import kernels

    rng = np.random.default_rng(n)
    a = (rng.normal(size=n) * 10.0 ** rng.uniform(-4, 4, n)).astype(np.float32)
    assert kernels.pairwise_sum(a, 0, n) == a.sum()
    assert kernels.pairwise_sum_mode(a, 0, n, 1) == (a * a).sum()
    assert kernels.pairwise_sum_mode(a, 0, n, 2) == np.abs(a).sum()
    if n > 3:
        assert kernels.pairwise_sum(a, 3, n - 3) == a[3:].sum()


def test_adam_flushes_subnormal_moments_to_zero():
    """A subnormal moment (the trap of issue 5) is flushed; a normal one follows the reference formula."""
    from minitensor import kernels

    rng = np.random.default_rng(0)
    params = rng.normal(size=6).astype(np.float32)
    grads = np.array([0, 0, 0, 0.5, -0.25, 1e-3], dtype=np.float32)
    m = np.array([1e-39, -1e-40, 5e-38, 0.1, 0.2, 0.0], dtype=np.float32)
    v = np.array([1e-40, 0, 1e-36, 0.01, 0.02, 0.0], dtype=np.float32)
    ref_w, ref_m, ref_v = params.copy(), m.copy(), v.copy()
    hyper = np.zeros(kernels.H_N, dtype=np.float32)
    hyper[[kernels.H_LR, kernels.H_BETA_1, kernels.H_BETA_2, kernels.H_ONE_MINUS_BETA_1, kernels.H_ONE_MINUS_BETA_2,
           kernels.H_EPS]] = [
        np.float32(1e-3), np.float32(0.9), np.float32(0.999), np.float32(1 - 0.9), np.float32(1 - 0.999), np.float32(1e-7)]
    flags = np.zeros(kernels.F_N, dtype=np.int64)
    new_params, new_m, new_v = np.empty_like(params), np.empty_like(m), np.empty_like(v)
    dummy = np.zeros(1, np.float32)
    assert kernels._update(kernels.OPT_ADAM, hyper, flags, params, grads, m, v, dummy, new_params, new_m, new_v, dummy,
                           0, params.size, 9)
    params, m, v = new_params, new_m, new_v
    # the reference formula (NumPy float32) on the normal entries
    opt = optimizers.Adam()
    w = mt.Tensor(ref_w)
    opt.build([w])
    opt.set_state([np.array(9), ref_m, ref_v])
    with np.errstate(under="ignore"):
        opt.apply_gradients([(grads, w)])
    state = opt.get_state()
    np.testing.assert_array_equal(params[3:], w.data[3:])
    np.testing.assert_array_equal(m[3:], state[1][3:])
    np.testing.assert_array_equal(v[3:], state[2][3:])
    tiny = np.finfo(np.float32).tiny
    assert m[0] == 0 and m[1] == 0 and v[0] == 0  # subnormal inputs do not survive
    assert m[2] == np.float32(5e-38)  # (0 - m)*(1 - beta_1) = 5e-39 is subnormal: flushed, m stays (as Keras)
    assert np.all((np.abs(m) >= tiny) | (m == 0)) and np.all((np.abs(v) >= tiny) | (v == 0))


# ---------------------------------------------------------------------------- import and cache
def run_python(code):
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_does_not_load_numba():
    out = run_python("""
        import sys
        import minitensor
        print("numba" in sys.modules, "minitensor.kernels" in sys.modules)
    """)
    assert out.split() == ["False", "False"]


def test_a_second_process_loads_the_kernels_from_the_disk_cache():
    train(lesson_config(epochs=1), jit=True)  # this process compiled the kernel or loaded it: it is on disk now
    out = run_python("""
        import numpy as np
        from minitensor import kernels
        from minitensor.layers import Dense, Input
        from minitensor.models import Sequential
        model = Sequential([Input(shape=(8,)), Dense(12, activation="relu"), Dense(8, activation="relu"),
                            Dense(1, activation="sigmoid")])
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"], jit_compile=True)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(100, 8)).astype(np.float32)
        y = rng.integers(0, 2, (100, 1)).astype(np.float32)
        model.fit(x, y, epochs=1, verbose=0)
        stats = kernels.train_epoch.stats
        print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
    """)
    hits, misses = map(int, out.split())
    assert hits >= 1 and misses == 0


def test_an_update_refused_after_an_odd_number_of_steps_keeps_those_steps():
    """The kernel writes each step into its second set of weights and slots; after one applied step the
    current set is that second one, and a refused second step must still leave the first step's state."""
    def make():
        mt.set_random_seed(5)
        model = Sequential([Input(shape=(64,))] + [Dense(u, activation="relu") for u in (300, 200, 80, 4)]
                           + [Dense(1, activation="sigmoid")])
        model.compile(optimizer=optimizers.Adam(1e4), loss="binary_crossentropy", jit_compile=True)
        return model

    digits = load_digits()
    x, y = digits.data[:256].astype(np.float32), (digits.target[:256] % 2).astype(np.float32)
    model = make()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    assert any("would have made" in str(w.message) for w in caught)
    assert model.optimizer.iterations == 1
    replay = make()  # the one applied step, and nothing else
    replay.fit(x[:32], y[:32], epochs=1, batch_size=32, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights() + model.optimizer.get_state(), replay.get_weights() + replay.optimizer.get_state()):
        np.testing.assert_array_equal(a, b)
