"""The compiled path's declared contract (``minitensor.compiled.SUPPORT``), checked key by key.

Every configuration key of every class the compiled path supports, enumerated from the class's
own ``get_config()`` (not from the table, so a key added to a class later is walked too), is
changed to a non-default valid value; a small model is trained a few steps on both paths.
The compiled path must either agree with the reference path to float32 round-off (the
tolerances of test_compiled.py) or fall back, with the one-time warning naming the class and
the key: a setting is never silently ignored. Further tests: a configuration key added by a
subclass, a subclass overriding a step method, a plain subclass, an optimizer changed by a
callback during fit, and a check (by parsing compiled.py) that the compiled path reads no
private attribute of another module.
"""

import ast
import importlib.util
import inspect
import warnings
from pathlib import Path

import numba  # noqa: F401  (a hard dependency: a broken install must fail here, not skip)
import numpy as np
import pytest

import minitensor as mt
from minitensor import callbacks, compiled, losses, metrics, optimizers, regularizers
from minitensor.layers import Activation, Dense, Dropout, Input
from minitensor.models import Sequential

# the tolerances and comparison of test_compiled.py (loaded by path: tests are not a package)
_spec = importlib.util.spec_from_file_location("_compiled_test_helpers", Path(__file__).with_name("test_compiled.py"))
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
assert_same_training = _helpers.assert_same_training
fit_and_record = _helpers.fit_and_record

N, D_IN, BATCH, EPOCHS = 40, 4, 8, 2


# ============================================================================ the models
# Each supported class is tried in a context where it is in use and every other part is supported:
# a Dense-Dropout-Dense-Activation stack, a loss, metrics and an optimizer. `Context` names what
# replaces the default part.
def default_parts():
    return dict(
        hidden=lambda: Dense(6, activation="tanh", kernel_regularizer=regularizers.L2(0.01),
                             bias_regularizer=regularizers.L1(0.01)),
        dropout=lambda: Dropout(0.25, seed=3),
        output=lambda: Dense(3),
        activation=lambda: Activation("softmax"),
        loss=lambda: losses.CategoricalCrossentropy(),
        metrics=lambda: [metrics.CategoricalAccuracy()],
        tracker=None,
        optimizer=lambda: optimizers.Adam(learning_rate=0.01),
        targets="onehot",
    )


BINARY = dict(output=lambda: Dense(2, activation="sigmoid"), activation=None, loss=lambda: losses.BinaryCrossentropy(),
              metrics=lambda: [metrics.BinaryAccuracy()], targets="binary")
SPARSE = dict(loss=lambda: losses.SparseCategoricalCrossentropy(), metrics=lambda: [metrics.SparseCategoricalAccuracy()],
              targets="labels")
REGRESSION = dict(activation=lambda: Activation("tanh"), loss=lambda: losses.MeanSquaredError(), metrics=lambda: [],
                  targets="regression")

# per supported class: (the part it takes, the context, the constructor arguments of its usual instance)
PLACES = {
    Dense: ("hidden", {}, dict(units=6, activation="tanh")),
    Dropout: ("dropout", {}, dict(rate=0.25)),
    Activation: ("activation", REGRESSION, dict(activation="tanh")),
    regularizers.L1: ("kernel_regularizer", {}, dict(l1=0.01)),
    regularizers.L2: ("kernel_regularizer", {}, dict(l2=0.01)),
    regularizers.L1L2: ("kernel_regularizer", {}, dict(l1=0.01, l2=0.01)),
    losses.BinaryCrossentropy: ("loss", BINARY, {}),
    losses.CategoricalCrossentropy: ("loss", {}, {}),
    losses.SparseCategoricalCrossentropy: ("loss", SPARSE, {}),
    losses.MeanSquaredError: ("loss", REGRESSION, {}),
    metrics.Mean: ("tracker", {}, dict(name="loss")),
    metrics.BinaryAccuracy: ("metrics", BINARY, {}),
    metrics.CategoricalAccuracy: ("metrics", {}, {}),
    metrics.SparseCategoricalAccuracy: ("metrics", SPARSE, {}),
    optimizers.SGD: ("optimizer", {}, dict(learning_rate=0.05)),
    optimizers.RMSprop: ("optimizer", {}, dict(learning_rate=0.01)),
    optimizers.Adam: ("optimizer", {}, dict(learning_rate=0.01)),
    optimizers.Adagrad: ("optimizer", {}, dict(learning_rate=0.05)),
}

# A non-default valid value for each configuration key: by (class, key), else by key. A key that
# has none here fails the walk (add one), so a new key cannot go untested.
CHANGES = {
    "name": "renamed",
    "trainable": False,
    "dtype": "float64",
    "learning_rate": 0.02,
    "weight_decay": 0.05,
    "clipnorm": 1.0,
    "global_clipnorm": 1.0,
    "clipvalue": 0.002,  # small enough to clip
    "epsilon": 1e-3,
    "momentum": 0.5,
    "from_logits": True,
    "label_smoothing": 0.2,
    "axis": 1,
    "reduction": "sum",
    "l1": 0.03,
    "l2": 0.04,
    (Dense, "units"): 7,
    (Dense, "activation"): "sigmoid",
    (Dense, "use_bias"): False,
    (Dense, "kernel_initializer"): "ones",
    (Dense, "bias_initializer"): "ones",
    (Dense, "kernel_regularizer"): regularizers.L1L2(l1=0.01, l2=0.02),
    (Dense, "bias_regularizer"): regularizers.L2(0.03),
    (Dense, "activity_regularizer"): regularizers.L2(0.01),
    (Dropout, "rate"): 0.5,
    (Dropout, "noise_shape"): (None, 1),
    (Dropout, "seed"): 11,
    (Activation, "activation"): "sigmoid",
    (losses.SparseCategoricalCrossentropy, "ignore_class"): 0,
    (metrics.BinaryAccuracy, "threshold"): 0.7,
    (optimizers.SGD, "nesterov"): dict(nesterov=True, momentum=0.9),  # no effect without momentum
    (optimizers.RMSprop, "rho"): 0.8,
    (optimizers.RMSprop, "centered"): True,
    (optimizers.Adam, "beta_1"): 0.8,
    (optimizers.Adam, "beta_2"): 0.99,
    (optimizers.Adam, "amsgrad"): True,
    (optimizers.Adagrad, "initial_accumulator_value"): 0.5,
}


def make_data(targets, k, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, D_IN)).astype(np.float32)
    if targets == "onehot":
        y = np.eye(k, dtype=np.float32)[rng.integers(0, k, N)]
    elif targets == "labels":
        y = rng.integers(0, k, N)
    elif targets == "binary":
        y = rng.integers(0, 2, (N, k)).astype(np.float32)
    else:
        y = rng.normal(size=(N, k)).astype(np.float32)
    return x, y


def train(parts, jit, fit_options=None):
    """Train the model of ``parts`` (factories) on one path; return what test_compiled compares."""
    mt.set_random_seed(5)
    stack = [parts["hidden"](), parts["dropout"](), parts["output"]()]
    if parts["activation"] is not None:
        stack.append(parts["activation"]())
    model = Sequential([Input(shape=(D_IN,)), *stack])
    model.compile(optimizer=parts["optimizer"](), loss=parts["loss"](), metrics=parts["metrics"](), jit_compile=jit)
    if parts["tracker"] is not None:
        model._loss_tracker = parts["tracker"]()  # the model makes its own: swapped in to walk its config
    x, y = make_data(parts["targets"], model.output_shape[-1])
    return fit_and_record(model, x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, **(fit_options or {}))


def parts_with(cls, make):
    """The parts of ``cls``'s context, with ``make()`` (an instance of ``cls``) in its place."""
    place, context, _ = PLACES[cls]
    parts = {**default_parts(), **context}
    if place == "kernel_regularizer":
        parts["hidden"] = lambda: Dense(6, activation="tanh", kernel_regularizer=make())
    elif place == "metrics":
        parts["metrics"] = lambda: [make()]
    else:
        parts[place] = make
    return parts


def assert_matches_or_falls_back_naming(ref, jit, *names):
    """The compiled run agrees with the reference run, or fell back with a warning naming all of ``names``."""
    if jit["fallbacks"]:
        assert len(jit["fallbacks"]) == 1, jit["fallbacks"]
        message = jit["fallbacks"][0]
        for name in names:
            assert name in message, f"the fallback warning does not name {name!r}: {message}"
        # it trained on the reference path: the very same numbers
        assert jit["history"] == ref["history"]
        for a, b in zip(jit["weights"], ref["weights"]):
            np.testing.assert_array_equal(a, b)
    else:
        assert_same_training(ref, jit)


# ============================================================================ the walk
def config_keys(cls):
    """Every key of the class's config (its usual instance), plus keys the table reads from attributes."""
    keys = list(cls(**PLACES[cls][2]).get_config())
    entry = compiled.SUPPORT[kind_of(cls)][cls]
    return keys + [key for key in entry.keys if key not in keys]


def kind_of(cls):
    return next(kind for kind, table in compiled.SUPPORT.items() if cls in table)


SUPPORTED = [cls for table in compiled.SUPPORT.values() for cls in table]
WALK = [(cls, key) for cls in SUPPORTED for key in config_keys(cls)]


def test_every_supported_class_has_a_place_in_the_walk():
    assert sorted(c.__name__ for c in SUPPORTED) == sorted(c.__name__ for c in PLACES)


@pytest.mark.parametrize("cls, key", WALK, ids=[f"{c.__name__}.{k}" for c, k in WALK])
def test_each_config_key_is_implemented_or_falls_back(cls, key):
    change = CHANGES.get((cls, key), CHANGES.get(key, KeyError))
    assert change is not KeyError, f"add a non-default valid value for {cls.__name__}.{key} to CHANGES"
    base = PLACES[cls][2]
    kwargs = {**base, **(change if isinstance(change, dict) else {key: change})}
    default, changed = cls(**base), cls(**kwargs)
    before, after = default.get_config().get(key, getattr(default, key, None)), changed.get_config().get(
        key, getattr(changed, key, None))
    assert before != after or type(before) is not type(after), f"{key}={change!r} is the usual value"
    ref = train(parts_with(cls, lambda: cls(**kwargs)), jit=False)
    jit = train(parts_with(cls, lambda: cls(**kwargs)), jit=True)
    assert ref["fallbacks"] == []
    assert_matches_or_falls_back_naming(ref, jit, cls.__name__, key)


def test_every_key_of_the_built_in_classes_is_declared():
    """The table declares every config key of the classes it lists (a key missing there would only
    make them fall back, silently slower)."""
    for cls in SUPPORTED:
        config = cls(**PLACES[cls][2]).get_config()
        declared = compiled.SUPPORT[kind_of(cls)][cls].keys
        assert set(config) <= set(declared), (cls.__name__, set(config) - set(declared))


# ============================================================================ subclasses
def _with_config_key(cls, key):
    class Extended(cls):
        def get_config(self):
            return {**super().get_config(), key: 5}

    Extended.__name__ = f"Extended{cls.__name__}"
    return Extended


@pytest.mark.parametrize("cls, key", [
    (optimizers.Adam, "lookahead"), (Dense, "groups"), (losses.CategoricalCrossentropy, "focal_gamma"),
    (metrics.CategoricalAccuracy, "top_k"), (regularizers.L2, "l3"), (Dropout, "scale"),
], ids=lambda v: getattr(v, "__name__", v))
def test_a_config_key_added_by_a_subclass_falls_back_naming_it(cls, key):
    extended = _with_config_key(cls, key)
    base = PLACES[cls][2]
    jit = train(parts_with(cls, lambda: extended(**base)), jit=True)
    assert len(jit["fallbacks"]) == 1 and repr(key) in jit["fallbacks"][0], jit["fallbacks"]
    assert extended.__name__ in jit["fallbacks"][0]


class StepAdam(optimizers.Adam):
    def _update_step(self, index, g, w, lr, part=None):
        return super()._update_step(index, g, w, lr, part)


class CallDense(Dense):
    def call(self, inputs, training=False):
        return super().call(inputs, training)


class CallCrossentropy(losses.CategoricalCrossentropy):
    def call(self, y_true, y_pred):
        return super().call(y_true, y_pred)


class UpdateAccuracy(metrics.CategoricalAccuracy):
    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(y_true, y_pred, sample_weight)


class HalfL2(regularizers.L2):
    def __call__(self, x):
        return super().__call__(x) * 0.5


@pytest.mark.parametrize("subclass, method", [
    (StepAdam, "_update_step"), (CallDense, "call"), (CallCrossentropy, "call"), (UpdateAccuracy, "update_state"),
    (HalfL2, "__call__"),
], ids=lambda v: getattr(v, "__name__", v))
def test_a_subclass_overriding_a_step_falls_back_naming_it(subclass, method):
    base_cls = subclass.__mro__[1]
    jit = train(parts_with(base_cls, lambda: subclass(**PLACES[base_cls][2])), jit=True)
    assert len(jit["fallbacks"]) == 1, jit["fallbacks"]
    assert subclass.__name__ in jit["fallbacks"][0] and method in jit["fallbacks"][0]


def test_a_plain_subclass_is_supported():
    """A subclass that overrides nothing the compiled path implements and adds no config keeps the compiled path."""

    class MyAdam(optimizers.Adam):
        pass

    class MyDense(Dense):
        pass

    parts = {**default_parts(), "optimizer": lambda: MyAdam(learning_rate=0.01), "output": lambda: MyDense(3)}
    ref, jit = train(parts, jit=False), train(parts, jit=True)
    assert_same_training(ref, jit)


# ============================================================================ config read during fit
class Schedule(callbacks.Callback):
    """Sets the optimizer's attributes before each epoch (epoch hooks keep the compiled path)."""

    def __init__(self, **per_epoch):
        super().__init__()
        self.per_epoch = per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        for attribute, values in self.per_epoch.items():
            setattr(self.model.optimizer, attribute, values[epoch])


def test_optimizer_settings_changed_by_a_callback_apply_from_the_next_epoch():
    parts = {**default_parts(), "optimizer": lambda: optimizers.SGD(learning_rate=0.1, momentum=0.5)}
    options = dict(callbacks=[Schedule(learning_rate=[0.1, 0.01], momentum=[0.5, 0.9])])
    ref, jit = train(parts, jit=False, fit_options=options), train(parts, jit=True, fit_options=options)
    assert_same_training(ref, jit)


class Swap(callbacks.Callback):
    """Gives the model a new optimizer before epoch 1."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            self.model.optimizer = optimizers.RMSprop(learning_rate=0.01, centered=True)


def test_an_optimizer_swapped_by_a_callback_takes_over():
    ref, jit = train(default_parts(), jit=False, fit_options=dict(callbacks=[Swap()])), train(
        default_parts(), jit=True, fit_options=dict(callbacks=[Swap()]))
    assert len(jit["state"]) == 3 and jit["iterations"] == N // BATCH  # the RMSprop's: iterations, velocity, average
    assert_same_training(ref, jit)


def _fit_with_schedule(jit, **per_epoch):
    mt.set_random_seed(0)
    model = Sequential([Input(shape=(D_IN,)), Dense(1)])
    model.compile(optimizer=optimizers.SGD(learning_rate=0.05), loss="mse", jit_compile=jit)
    x, y = make_data("regression", 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=3, verbose=0, callbacks=[Schedule(**per_epoch)] if per_epoch else None)
    notices = [str(w.message) for w in caught if "reference path" in str(w.message)]
    return history.history["loss"], model.get_weights(), notices


def test_an_unsupported_setting_made_during_fit_sends_the_remaining_epochs_to_the_reference_path():
    clip = dict(global_clipnorm=[None, 1e-3, 1e-3])  # small enough to change every step from epoch 2 on
    ref_loss, ref_weights, ref_notices = _fit_with_schedule(False, **clip)
    jit_loss, jit_weights, notices = _fit_with_schedule(True, **clip)
    assert ref_notices == []
    assert notices == [
        "jit_compile=True: the optimizer changed during fit, to a setting the compiled path does not support: "
        "SGD(global_clipnorm=0.001) is not supported by the compiled path (the default only: None). "
        "Training on the reference path from epoch 2 on."
    ]
    np.testing.assert_allclose(jit_loss, ref_loss, rtol=1e-5)
    for got, want in zip(jit_weights, ref_weights):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    unclipped_loss, _, _ = _fit_with_schedule(False)
    assert unclipped_loss[0] == ref_loss[0] and abs(unclipped_loss[2] - ref_loss[2]) > 1e-3 * abs(ref_loss[2])


# ============================================================================ what compiled.py reads
def _own_names(tree):
    """Names compiled.py binds at module level to its own objects (classes, functions, constants)."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_compiled_reads_no_private_attribute_of_another_module():
    """Every ``x._name`` in compiled.py is on ``self`` (the plan), on one of compiled.py's own
    module-level objects, or on the kernels module; no ``getattr(x, "_name")`` either."""
    tree = ast.parse(Path(inspect.getsourcefile(compiled)).read_text())
    allowed = {"self", "kernels", "k"} | _own_names(tree)
    offences = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.endswith("__"):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in allowed):
                offences.append(f"line {node.lineno}: {ast.unparse(node)}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr")
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
                and str(node.args[1].value).startswith("_")):
            offences.append(f"line {node.lineno}: {ast.unparse(node)}")
    assert not offences, "\n".join(offences)


def test_k_is_only_the_kernels_module():
    """The test above trusts the name ``k``: in compiled.py it is only ever bound to the kernels module."""
    tree = ast.parse(Path(inspect.getsourcefile(compiled)).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "k" for t in node.targets):
            assert ast.unparse(node.value) in ("self._k", "kernels"), ast.unparse(node)


def test_the_module_docstring_names_every_supported_class():
    for cls in SUPPORTED:
        assert cls.__name__ in compiled.__doc__, cls.__name__
    for name in compiled.ACTIVATIONS:
        assert name in compiled.__doc__, name
