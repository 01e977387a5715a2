"""The compiled training path behind ``compile(jit_compile=True)``.

``fit`` calls :func:`build_plan` once per call. For a model the Numba kernels support it
returns ``(plan, None)``, and every epoch then runs as ONE call of
:func:`minitensor.kernels.train_epoch` (``plan.train_epoch``): Python is not entered per step.
For anything else it returns ``(None, reason)`` and ``fit`` trains on the reference path,
after a one-time ``UserWarning`` that names the reason.

Support is declared in :data:`SUPPORT`: each supported class with every key of its
``get_config()`` and the rule for it (:data:`ANY` value, :func:`one_of` some values, or
:data:`DEFAULT` only), and the methods a subclass must not override. :func:`check_supported`
decides from that table and the objects' ``get_config()``: a class not listed, a config key not
declared (added to a class later, or by a subclass), a value outside its rule, or a subclass
overriding one of the methods falls back, naming it. A plain subclass that changes none of
these is supported. In words, the table says (anything else falls back):

* layers (of a ``Sequential`` model with inputs of shape ``(samples, features)``): ``Dense``
  (any units, with or without bias, any initializers; activations ``linear``/``relu``/
  ``sigmoid``/``tanh``/``softmax``; no activity regularizer), ``Activation`` (those
  activations, right after a linear ``Dense``), ``Dropout`` (any rate and seed, no
  ``noise_shape``; not after the output layer); float32, all weights trainable;
* regularizers ``L1``, ``L2``, ``L1L2`` on kernels and biases;
* losses ``BinaryCrossentropy``, ``CategoricalCrossentropy`` (both with label smoothing),
  ``SparseCategoricalCrossentropy`` (no ``ignore_class``) with a sigmoid/softmax output or
  ``from_logits=True`` (the logits formula, as the reference path uses), and
  ``MeanSquaredError``; reduction ``sum_over_batch_size``; sample and class weights;
* metrics: the loss tracker (a ``Mean``) and none, or any of ``BinaryAccuracy`` (any
  ``threshold``; ``'accuracy'`` with one output), ``CategoricalAccuracy``,
  ``SparseCategoricalAccuracy`` (with the sparse loss); float32 state;
* optimizers ``SGD`` (momentum, Nesterov), ``RMSprop`` (momentum, centered), ``Adam``
  (amsgrad), ``Adagrad``, with ``weight_decay`` and ``clipvalue`` (not ``clipnorm`` nor
  ``global_clipnorm``).

What the plan reads and writes goes through the objects' public state interfaces (the model's
``flat_parameters``/``flat_gradients``/``optimizer_variables``/``metrics``, each metric's
``get_state``/``set_state``, the optimizer's ``slot_arrays``/``slot_initial_value``/
``advance_iterations``, a Dropout layer's ``generator``), never their private attributes. Layers,
loss and metrics are read once per ``fit``; the optimizer's config at every epoch (a callback may
change the learning rate); after a change to a setting the kernels do not implement, ``fit`` trains
its remaining epochs on the reference path, with a warning naming the setting.

Semantics are the reference path's (``Sequential._train_epoch``): same batches, same dropout
masks (drawn here, before the kernel, from each Dropout layer's generator in the reference
path's order: per batch, per layer), same formulas in float32, the loss tracker and metrics
left in the state the reference path leaves them, the optimizer's slots and ``iterations``
updated in place (so ``get_state``, saving and a later reference-path epoch continue exactly),
and a non-finite batch loss or update stops before that batch's update. Results agree with the
reference path to float32 round-off (matrix products sum in another order); the optimizer
flushes subnormal products to zero (see :mod:`minitensor.kernels`).

Callbacks: no Python runs between the steps of a compiled epoch, so a callback that
overrides a per-batch training hook (``on_train_batch_begin``/``_end``, ``on_batch_begin``/``_end``)
makes ``fit`` fall back to the reference path, where every hook runs at every step (and may
stop training or raise). History, EarlyStopping and the progress bar keep the compiled path;
the bar's ``on_train_batch_end`` is called once, after the epoch's last step.

Faults: a non-finite loss, or an update that would make a weight or slot non-finite, stops
before that step, as on the reference path (inside the kernel each layer's update is written
into a second set of weights and slots, checked, and adopted only when every value is finite). A Ctrl-C reaches Python only when the kernel returns; it is held back until the
model and optimizer reflect the steps taken, so they always match a whole number of steps.

Differences a user can see: the progress bar jumps to the end of each epoch, and the
``from_logits`` / single-class warnings of the losses are given once per ``fit`` instead of
once per step.

Example:
    >>> import numpy as np
    >>> from minitensor.models import Sequential
    >>> from minitensor.layers import Dense, Input
    >>> model = Sequential([Input(shape=(4,)), Dense(3, activation="relu"), Dense(1, activation="sigmoid")])
    >>> model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"], jit_compile=True)
    >>> x = np.random.rand(64, 4).astype("float32"); y = (x.sum(1) > 2).astype("float32")
    >>> history = model.fit(x, y, epochs=2, verbose=0)   # compiles (or loads) the kernels once
    >>> sorted(history.history)
    ['accuracy', 'loss']
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings

import numpy as np

from . import fpenv, interrupts, kernel_cache, kernels, layers, losses, metrics, optimizers, regularizers

__all__ = [
    "build_plan", "CompiledPlan", "BLAS_MIN_MACS", "SUPPORT", "check_supported", "Rule", "ANY", "DEFAULT", "one_of",
    "ACTIVATIONS", "LAYERS", "REGULARIZERS", "LOSSES", "METRICS", "OPTIMIZERS", "SLOT_ROLES", "Supported",
    "UnsupportedChange",
]

#: A layer whose matrix products take at least this many multiply-adds per batch
#: (batch * in * out), at a batch size of at least 2, goes through BLAS (``np.dot`` inside
#: Numba: ``sgemm``); smaller ones, and matrix-vector products (batch size 1), use plain loops.
#: Measured on a 2-core x86 machine (AVX-512, OpenBLAS): one sgemm call from Numba costs
#: about 0.3 us, and OpenBLAS's small-matrix kernels beat vectorised loops 2-4x already at
#: 32x64x12 (the lesson's first layer); the loops win only below a few thousand
#: multiply-adds and for batch size 1.
BLAS_MIN_MACS = 2048

#: Rows of dropout masks drawn per call of the generator (bounds the float64 temporary).
_MASK_CHUNK = 1 << 20


# ============================================================================ support table
class Rule:
    """What the compiled path accepts for one configuration key (see :data:`SUPPORT`).

    Args:
        text: the rule in words (used in the fallback warning and the docs).
        allows: ``allows(value, default) -> bool``, ``default`` being the constructor's default.

    Example:
        >>> one_of("float32").allows("float64", None), DEFAULT.allows(None, None), ANY.allows(3, None)
        (False, True, True)
        >>> OPTIMIZERS[optimizers.Adam].keys["clipnorm"]
        the default only
    """

    def __init__(self, text, allows):
        self.text = text
        self.allows = allows

    def __repr__(self) -> str:
        return self.text


def _same(a, b) -> bool:
    """``a == b`` where ``True != 1`` and ``None`` only equals ``None``."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def one_of(*values) -> Rule:
    """A rule that accepts exactly ``values`` (compared without ``True == 1``).

    Example:
        >>> rule = one_of(True)
        >>> rule, rule.allows(True, None), rule.allows(1, None)
        (one of True, True, False)
    """
    return Rule("one of " + ", ".join(map(repr, values)), lambda value, default: any(_same(value, v) for v in values))


#: Any value: the kernels implement every value the class accepts.
ANY = Rule("any value", lambda value, default: True)
#: Only the constructor's default value (the kernels do not implement the others).
DEFAULT = Rule("the default only", lambda value, default: _same(value, default))
#: ``None``, or a regularizer object that is itself checked against :data:`REGULARIZERS`.
REGULARIZER = Rule("None or a regularizer listed in REGULARIZERS", lambda value, default: True)


class Supported:
    """One supported class: every key of its ``get_config()`` with its :class:`Rule`.

    Args:
        keys: ``{config key: Rule}``. A key the class does not put in its ``get_config()`` is
            read from the attribute of that name (``SparseCategoricalCrossentropy.axis``, which
            Keras does not save either).
        methods: what the compiled path implements itself: a subclass that overrides one of
            them (defines it in its own body) falls back.
        code: the kernels' code for it (``None`` where the kernels need none).

    Example:
        >>> entry = OPTIMIZERS[optimizers.Adam]
        >>> entry.keys["amsgrad"], "_update_step" in entry.methods, entry.code == kernels.OPT_ADAM
        (any value, True, True)
    """

    def __init__(self, keys, methods, code=None):
        self.keys = dict(keys)
        self.methods = tuple(methods)
        self.code = code


_LAYER_KEYS = {"name": ANY, "trainable": ANY, "dtype": one_of("float32")}
_DENSE_METHODS = ("__call__", "call", "build", "add_weight", "compute_output_shape", "regularization_losses")
_LOSS_METHODS = ("__call__", "call", "_call_with_mask", "_fused_mean")
_LOSS_KEYS = {"name": ANY, "reduction": one_of("sum_over_batch_size", "mean")}
_CROSS_ENTROPY_KEYS = {**_LOSS_KEYS, "from_logits": ANY, "label_smoothing": ANY, "axis": one_of(-1, 1)}
_METRIC_METHODS = ("update_state", "result", "reset_state", "get_state", "set_state", "_add_hits", "_add_weighted")
_METRIC_KEYS = {"name": ANY, "dtype": one_of("float32")}
_OPTIMIZER_METHODS = (
    "_update_step", "apply_gradients", "apply", "_apply", "_step", "_flushed_step", "_clip_gradients",
    "_slot_names", "_slot_initial_value", "build", "slot_names", "slot_initial_value", "slot_arrays",
    "advance_iterations",
)
_OPTIMIZER_KEYS = {
    "name": ANY, "learning_rate": ANY, "weight_decay": ANY, "clipvalue": ANY,
    "clipnorm": DEFAULT, "global_clipnorm": DEFAULT,  # clipping by norm: not implemented
}

#: The activations the kernels implement (a ``Dense`` activation or an ``Activation`` layer).
ACTIVATIONS = {
    "linear": kernels.ACT_LINEAR, "relu": kernels.ACT_RELU, "sigmoid": kernels.ACT_SIGMOID,
    "tanh": kernels.ACT_TANH, "softmax": kernels.ACT_SOFTMAX,
}
_ACTIVATION_CODES = ACTIVATIONS
_ACTIVATION = one_of(*ACTIVATIONS)

#: Layers (of a ``Sequential`` model; an ``Input`` is not a layer of it).
LAYERS = {
    layers.Dense: Supported(
        {**_LAYER_KEYS, "trainable": one_of(True), "units": ANY, "activation": _ACTIVATION, "use_bias": ANY,
         "kernel_initializer": ANY, "bias_initializer": ANY,  # initial values only: the weights are read
         "kernel_regularizer": REGULARIZER, "bias_regularizer": REGULARIZER, "activity_regularizer": DEFAULT},
        _DENSE_METHODS),
    layers.Dropout: Supported({**_LAYER_KEYS, "rate": ANY, "noise_shape": DEFAULT, "seed": ANY}, ("__call__", "call")),
    layers.Activation: Supported({**_LAYER_KEYS, "activation": _ACTIVATION}, ("__call__", "call")),
}

#: Weight penalties (on Dense kernels and biases).
REGULARIZERS = {
    regularizers.L1: Supported({"l1": ANY}, ("__call__",)),
    regularizers.L2: Supported({"l2": ANY}, ("__call__",)),
    regularizers.L1L2: Supported({"l1": ANY, "l2": ANY}, ("__call__",)),
}

#: Losses.
LOSSES = {
    losses.BinaryCrossentropy: Supported(_CROSS_ENTROPY_KEYS, _LOSS_METHODS, kernels.LOSS_BCE),
    losses.CategoricalCrossentropy: Supported(_CROSS_ENTROPY_KEYS, _LOSS_METHODS, kernels.LOSS_CCE),
    losses.SparseCategoricalCrossentropy: Supported(
        {**_LOSS_KEYS, "from_logits": ANY, "ignore_class": DEFAULT, "axis": one_of(-1, 1)},
        _LOSS_METHODS, kernels.LOSS_SCCE),
    losses.MeanSquaredError: Supported(_LOSS_KEYS, _LOSS_METHODS, kernels.LOSS_MSE),
}

#: Metrics: the loss tracker (a ``Mean``) and the compiled metrics.
METRICS = {
    metrics.Mean: Supported(_METRIC_KEYS, _METRIC_METHODS),
    metrics.BinaryAccuracy: Supported({**_METRIC_KEYS, "threshold": ANY}, _METRIC_METHODS, kernels.MET_BINARY),
    metrics.CategoricalAccuracy: Supported(_METRIC_KEYS, _METRIC_METHODS, kernels.MET_CATEGORICAL),
    metrics.SparseCategoricalAccuracy: Supported(_METRIC_KEYS, _METRIC_METHODS, kernels.MET_SPARSE),
}

#: Optimizers.
OPTIMIZERS = {
    optimizers.SGD: Supported({**_OPTIMIZER_KEYS, "momentum": ANY, "nesterov": ANY}, _OPTIMIZER_METHODS,
                              kernels.OPT_SGD),
    optimizers.RMSprop: Supported(
        {**_OPTIMIZER_KEYS, "rho": ANY, "momentum": ANY, "epsilon": ANY, "centered": ANY},
        _OPTIMIZER_METHODS, kernels.OPT_RMSPROP),
    optimizers.Adam: Supported(
        {**_OPTIMIZER_KEYS, "beta_1": ANY, "beta_2": ANY, "epsilon": ANY, "amsgrad": ANY},
        _OPTIMIZER_METHODS, kernels.OPT_ADAM),
    optimizers.Adagrad: Supported(
        {**_OPTIMIZER_KEYS, "initial_accumulator_value": ANY, "epsilon": ANY}, _OPTIMIZER_METHODS, kernels.OPT_ADAGRAD),
}

#: Everything the compiled path supports, by kind. Support is decided from this table and the
#: objects' ``get_config()`` (see :func:`check_supported`); a few combinations are decided by
#: the analysis itself (documented in the module docstring).
SUPPORT = {"layer": LAYERS, "regularizer": REGULARIZERS, "loss": LOSSES, "metric": METRICS, "optimizer": OPTIMIZERS}

#: Per optimizer code, the slot names in the order of the kernel's slot arguments.
SLOT_ROLES = kernels.SLOT_ROLES
_KERNEL_SLOTS = 3  # slot arguments of the kernel
# the kernel's ``status`` output: [what stopped the epoch, the loss then]; what stopped it is one of
_STATUS_WHOLE_EPOCH, _STATUS_NON_FINITE_LOSS, _STATUS_NON_FINITE_UPDATE = 0, 1, 2
# positions in the kernel's argument list of the arguments that change between epochs
_KERNEL_ARGUMENTS = list(inspect.signature(kernels.train_epoch.py_func).parameters)
_A_ORDER, _A_SHUFFLED, _A_ROWS, _A_MASKS, _A_OPT_KIND, _A_ITERATIONS = map(
    _KERNEL_ARGUMENTS.index, ("order", "shuffled", "batch_size", "masks", "opt_kind", "iterations"))
_A_SLOTS = tuple(map(_KERNEL_ARGUMENTS.index, ("s0", "s1", "s2")))


class _Unsupported(Exception):
    """A model feature the compiled path does not implement (the message says which)."""


class UnsupportedChange(Exception):
    """Raised by :meth:`CompiledPlan.train_epoch`, before it changes anything, when the optimizer was
    changed during ``fit`` (by a callback) to a setting the kernels do not implement: ``fit`` then
    trains the rest of its epochs on the reference path (the message says which setting).

    Example:
        >>> str(UnsupportedChange("SGD(global_clipnorm=1.0) is not supported"))
        'SGD(global_clipnorm=1.0) is not supported'
    """


@functools.lru_cache(maxsize=256)
def _parameters(function):
    """``inspect.signature(function).parameters``, read once per function (``fit`` checks every config key)."""
    return inspect.signature(function).parameters


def _default(cls, key):
    """The default of ``cls``'s constructor argument ``key`` (``inspect.Parameter.empty`` if none)."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            try:
                parameters = _parameters(init)
            except TypeError:  # an unhashable callable as __init__: read it each time
                parameters = inspect.signature(init).parameters
            parameter = parameters.get(key)
            if parameter is not None:
                return parameter.default
    return inspect.Parameter.empty


def check_supported(obj, kind):
    """``(supported class, its table entry, config)`` for ``obj``, or raise the reason it falls back.

    ``obj``'s class (or the nearest class it derives from) must be in ``SUPPORT[kind]``; no
    class between the two may define one of the entry's ``methods``; every key of
    ``obj.get_config()`` must be in the entry, with a value its rule allows. A plain subclass
    that overrides none of the methods and adds no configuration is supported.

    Example:
        >>> from minitensor import optimizers
        >>> check_supported(optimizers.Adam(amsgrad=True), "optimizer")[2]["amsgrad"]
        True
        >>> try:
        ...     check_supported(optimizers.Adam(clipnorm=1.0), "optimizer")
        ... except Exception as reason:
        ...     print(reason)
        Adam(clipnorm=1.0) is not supported by the compiled path (the default only: None)
    """
    table = SUPPORT[kind]
    cls = type(obj)
    base = next((c for c in cls.__mro__ if c in table), None)
    if base is None:
        names = ", ".join(c.__name__ for c in table)
        raise _Unsupported(f"the {kind} {cls.__name__} is not supported by the compiled path ({names} are)")
    entry = table[base]
    for klass in cls.__mro__[: cls.__mro__.index(base)]:
        overridden = [m for m in entry.methods if m in vars(klass)]
        if overridden:
            raise _Unsupported(
                f"the {kind} {cls.__name__} overrides {base.__name__}.{overridden[0]}, which the compiled path "
                "implements itself"
            )
    try:
        config = dict(obj.get_config())
    except Exception as error:  # e.g. a custom activation cannot be serialized
        raise _Unsupported(f"the {kind} {cls.__name__}'s configuration cannot be read ({error})") from None
    for key, value in config.items():
        rule = entry.keys.get(key)
        if rule is None:
            raise _Unsupported(
                f"the {kind} {cls.__name__} has the configuration key {key!r} (= {value!r}), which the compiled "
                "path does not implement"
            )
        default = _default(base, key)
        if not rule.allows(value, default):
            shown = f": {default!r}" if rule is DEFAULT else ""
            raise _Unsupported(f"{cls.__name__}({key}={value!r}) is not supported by the compiled path ({rule}{shown})")
    for key in entry.keys.keys() - config.keys():  # not saved in the config: read from the attribute
        value = getattr(obj, key, None)
        if not entry.keys[key].allows(value, _default(base, key)):
            raise _Unsupported(f"{cls.__name__}({key}={value!r}) is not supported by the compiled path ({entry.keys[key]})")
        config[key] = value
    return base, entry, config


def build_plan(model, callbacks=()):
    """Return ``(plan, None)`` for a model the kernels support, else ``(None, reason)``.

    Called by ``fit`` after it resolved the metrics and prepared the optimizer, with the
    callbacks it was given. Nothing is changed on the model.
    """
    try:
        _check_callbacks(callbacks)
        spec = _analyse(model)
    except _Unsupported as reason:
        return None, str(reason)
    for message, category in spec["warnings"]:
        warnings.warn(message, category, stacklevel=4)
    return CompiledPlan(model, spec), None


# ============================================================================ analysis
def _regularizer_factors(reg):
    """``(l1, l2)`` float32 factors of an L1/L2/L1L2 penalty (0 = absent)."""
    if reg is None:
        return np.float32(0), np.float32(0)
    _, _, config = check_supported(reg, "regularizer")
    return np.float32(config.get("l1", 0)), np.float32(config.get("l2", 0))


def _check_callbacks(callbacks) -> None:
    """A compiled epoch calls no callback between its steps: a callback with batch hooks needs the reference path.

    Only the progress bar (whose batch hook merely redraws it) is left to see the epoch's
    last step alone.
    """
    from .callbacks import batch_hook_overrides

    overrides = batch_hook_overrides(callbacks)
    if overrides:
        callback, name = overrides[0]
        raise _Unsupported(
            f"the callback {type(callback).__name__} overrides {name}, and the compiled path calls no callback "
            "between the steps of an epoch"
        )


def _analyse(model) -> dict:
    input_shape = model.input_shape
    if not model.built or input_shape is None or len(input_shape) != 2:
        raise _Unsupported("the compiled path needs a built model with inputs of shape (samples, features)")
    dense = []  # per Dense layer: dict
    dropouts = []  # per Dropout layer (rate > 0): dict(after=index of the Dense before it, -1: input)
    last = None  # "dense" or "dropout": what the previous layer was
    for layer in model.layers:
        kind, _, config = check_supported(layer, "layer")
        if kind is layers.Dense:
            if any(not w.requires_grad for w in layer.weights):
                raise _Unsupported(f"layer {layer.name} has non-trainable weights")
            kl1, kl2 = _regularizer_factors(layer.kernel_regularizer)
            bl1, bl2 = _regularizer_factors(layer.bias_regularizer if config["use_bias"] else None)
            dense.append(
                dict(layer=layer, act=config["activation"], units=config["units"], in_features=layer.kernel.shape[0],
                     use_bias=config["use_bias"], reg=(kl1, kl2, bl1, bl2))
            )
            last = "dense"
        elif kind is layers.Dropout:
            if config["rate"] > 0:  # rate 0 is the identity, and draws nothing
                dropouts.append(dict(layer=layer, after=len(dense) - 1, rate=config["rate"]))
                last = "dropout"
        else:  # Activation
            if last != "dense" or dense[-1]["act"] != "linear":
                raise _Unsupported(
                    f"layer {layer.name}: an Activation layer is supported only right after a linear Dense layer"
                )
            dense[-1]["act"] = config["activation"]
    if not dense:
        raise _Unsupported("the model has no Dense layer")
    if model.flat_parameters.dtype != np.float32:  # each layer is float32 (checked above): this is a guard
        raise _Unsupported("the compiled path trains float32 models only")
    if dropouts and dropouts[-1]["after"] == len(dense) - 1:
        raise _Unsupported("a Dropout layer after the output layer is not supported by the compiled path")

    # ---- loss
    loss = model.loss
    loss_type, loss_entry, loss_config = check_supported(loss, "loss")
    loss_kind = loss_entry.code
    outputs = dense[-1]["units"]
    last_act = dense[-1]["act"]
    warns = []
    smoothing = float(loss_config.get("label_smoothing", 0.0))
    if loss_kind == kernels.LOSS_MSE:
        logits = False
    else:
        fn_name = {kernels.LOSS_BCE: "binary_crossentropy", kernels.LOSS_CCE: "categorical_crossentropy",
                   kernels.LOSS_SCCE: "sparse_categorical_crossentropy"}[loss_kind]
        activation_word = "Sigmoid" if loss_kind == kernels.LOSS_BCE else "Softmax"
        if last_act in ("sigmoid", "softmax"):
            logits = True  # Keras recovers the logits of a sigmoid/softmax output, whatever from_logits says
            if loss_config["from_logits"]:
                warns.append((
                    f"`{fn_name}` received `from_logits=True`, but the `output` argument was produced by a "
                    f"{activation_word} activation and thus does not represent logits. Was this intended?",
                    UserWarning,
                ))
        elif loss_config["from_logits"]:
            logits = False  # the formula on the layer's output, which holds the logits
        else:
            raise _Unsupported(
                f"{loss_type.__name__} on a {last_act} output uses the probability (clipping) form, "
                "which the compiled path does not implement (use a sigmoid/softmax output or from_logits=True)"
            )
        if loss_kind == kernels.LOSS_CCE and outputs == 1:
            warns.append((
                "In loss categorical_crossentropy, expected y_pred.shape to be (batch_size, num_classes) with "
                f"num_classes > 1. Received: y_pred.shape={(None, 1)}. "
                "Consider using 'binary_crossentropy' if you only have 2 classes.",
                SyntaxWarning,
            ))

    # ---- metrics: the loss tracker, then the compiled ones
    tracker, *compiled_metrics = model.metrics
    check_supported(tracker, "metric")
    metric_specs = []
    sparse = loss_kind == kernels.LOSS_SCCE
    for m in compiled_metrics:
        mtype, entry, config = check_supported(m, "metric")
        fits = {
            metrics.BinaryAccuracy: not sparse, metrics.CategoricalAccuracy: not sparse and outputs > 1,
            metrics.SparseCategoricalAccuracy: sparse,
        }.get(mtype, False)
        if not fits:
            raise _Unsupported(
                f"the metric {m.name!r} ({type(m).__name__}) with this loss and output is not supported by the "
                "compiled path"
            )
        metric_specs.append((entry.code, np.float32(config.get("threshold", 0))))

    # ---- optimizer
    opt = model.optimizer
    opt_kind, opt_config = _check_optimizer(opt)
    variables = model.optimizer_variables
    if not variables or len(variables) != 1 or variables[0].data is not model.flat_parameters:
        raise _Unsupported("the optimizer does not update the model's flat parameter buffer")
    if opt.built:
        try:
            opt.build(variables)  # built already: only checks that they are the variables it was built for
        except ValueError as error:
            raise _Unsupported(str(error)) from None

    return dict(
        dense=dense, dropouts=dropouts, loss_kind=loss_kind, logits=logits, smoothing=smoothing,
        metrics=metric_specs, opt_kind=opt_kind, opt_config=opt_config, warnings=warns,
    )


def _check_optimizer(opt):
    """``(kernel code, config)`` of a supported optimizer."""
    _, entry, config = check_supported(opt, "optimizer")
    return entry.code, config


def _optimizer_settings(code, config, hyper, flags):
    """Fill the kernel's ``hyper`` (float32) and ``flags`` (int64) from an optimizer's config."""
    k, f32 = kernels, np.float32
    hyper[:] = 0
    flags[:] = 0
    hyper[k.H_LR] = f32(config["learning_rate"])  # the float32 value, exactly
    if config["weight_decay"] is not None:
        flags[k.F_WD] = 1
        hyper[k.H_WD] = f32(config["weight_decay"])
    if config["clipvalue"] is not None:
        flags[k.F_CLIP] = 1
        hyper[k.H_CLIP] = f32(config["clipvalue"])
    if code == k.OPT_SGD:
        hyper[k.H_MOMENTUM] = f32(config["momentum"])
        flags[k.F_MOMENTUM] = int(config["momentum"] != 0)
        flags[k.F_NESTEROV] = int(config["nesterov"])
    elif code == k.OPT_RMSPROP:
        hyper[k.H_RHO] = f32(config["rho"])
        hyper[k.H_ONE_MINUS_RHO] = f32(1 - config["rho"])
        hyper[k.H_MOMENTUM] = f32(config["momentum"])
        hyper[k.H_EPS] = f32(config["epsilon"])
        flags[k.F_MOMENTUM] = int(config["momentum"] > 0)
        flags[k.F_CENTERED] = int(config["centered"])
    elif code == k.OPT_ADAM:
        hyper[k.H_BETA_1] = f32(config["beta_1"])
        hyper[k.H_BETA_2] = f32(config["beta_2"])
        hyper[k.H_ONE_MINUS_BETA_1] = f32(1 - config["beta_1"])
        hyper[k.H_ONE_MINUS_BETA_2] = f32(1 - config["beta_2"])
        hyper[k.H_EPS] = f32(config["epsilon"])
        flags[k.F_AMSGRAD] = int(config["amsgrad"])
    else:  # Adagrad (its initial accumulator value is the slot's initial value)
        hyper[k.H_EPS] = f32(config["epsilon"])


# ============================================================================ the plan
def _kernel_array(array, dtype, shape=None):
    """``array`` as a C-contiguous, writeable array of ``dtype`` (what the compiled kernel's one
    signature takes: a read-only view would make Numba compile, and cache, a second variant)."""
    array = np.ascontiguousarray(array, dtype=dtype)
    if shape is not None:
        array = array.reshape(shape)
    if not array.flags.writeable:
        array = array.copy()
    return array


def _rng_state(rng):
    return rng.bit_generator.state if isinstance(rng, np.random.Generator) else rng.get_state()


def _set_rng_state(rng, state):
    if isinstance(rng, np.random.Generator):
        rng.bit_generator.state = state
    else:
        rng.set_state(state)


class CompiledPlan:
    """Trains epochs of one model in compiled code (built by :func:`build_plan`).

    Attributes:
        blas_layers: for each Dense layer, whether its products go through BLAS (at the
            batch size of the last epoch).
    """

    def __init__(self, model, spec):
        self._k = kernels
        self.model = model
        self.spec = spec
        # what the epochs read and write, through the objects' state interfaces (constant during a fit)
        self._params = model.flat_parameters
        self._grads = model.flat_gradients
        self._variables = model.optimizer_variables
        self._tracker_metric, *self._metric_objects = model.metrics
        #: ``(loss value, step, whether the update was the problem)`` of the step that stopped the
        #: last epoch (when :meth:`train_epoch` returned False).
        self.stopped_at = None
        self._flush = fpenv.flush_subnormals()  # one instance, entered once per epoch
        dense = spec["dense"]
        self._nl = len(dense)
        self._dims = [dense[0]["in_features"]] + [d["units"] for d in dense]
        self._out = dense[-1]["units"]
        # parameter offsets in the flat buffer (layer order, [kernel, bias])
        offsets, off = [], 0
        for d in dense:
            woff = off
            off += d["in_features"] * d["units"]
            boff = -1
            if d["use_bias"]:
                boff = off
                off += d["units"]
            offsets.append((woff, boff))
        if off != self._params.size:
            raise RuntimeError("internal error: the flat parameter layout is not the Dense layers'")  # pragma: no cover
        self._offsets = offsets
        self._lreg = np.array([d["reg"] for d in dense], dtype=np.float32).reshape(self._nl, 4)
        self._layouts = {}
        self._y_cache = None
        self._masks = np.zeros(1, dtype=np.bool_)
        self._no_masks = np.zeros(1, dtype=np.bool_)
        self._dummy_f1 = np.zeros(1, dtype=np.float32)
        self._dummy_f2 = np.zeros((1, 1), dtype=np.float32)
        self._dummy_i1 = np.zeros(1, dtype=np.int64)
        self._mkinds = np.array([m[0] for m in spec["metrics"]], dtype=np.int64)
        self._mthresh = np.array([m[1] for m in spec["metrics"]], dtype=np.float32)
        self._mstate = np.zeros((len(spec["metrics"]), 2), dtype=np.float32)
        self._tracker = np.zeros(2, dtype=np.float32)
        self._status = np.zeros(2, dtype=np.float64)
        self._spare = np.zeros(4 * self._params.size, dtype=np.float32)
        self._hyper = np.zeros(kernels.H_N, dtype=np.float32)
        self._flags = np.zeros(kernels.F_N, dtype=np.int64)
        self._set_optimizer(model.optimizer, spec["opt_kind"], spec["opt_config"])
        self.blas_layers = []
        self._bound = None  # (x, y, sample weights, batch size, reusable, kernel arguments, layout): see _bind
        #: ``fit``'s verbosity: at 1 or 2 a first epoch that compiles the kernels says so (one line).
        self.verbose = 0

    # ------------------------------------------------------------------ layout
    def _layout(self, batch_size):
        cached = self._layouts.get(batch_size)
        if cached is not None:
            return cached
        k = self._k
        spec = self.spec
        dense, dropouts = spec["dense"], spec["dropouts"]
        nl, dims, bsz = self._nl, self._dims, batch_size
        widest = max(dims)
        after = {d["after"] for d in dropouts}
        offset = 0

        def alloc(size):
            nonlocal offset
            start = offset
            offset += max(int(size), 1)
            offset += (-offset) % 16  # regions start at multiples of 16 floats
            return start

        goff = np.zeros(k.G_NCOLS, dtype=np.int64)
        goff[k.G_XB] = alloc(bsz * dims[0])
        goff[k.G_YB] = alloc(bsz * self._out)
        goff[k.G_YM] = alloc(bsz * self._out)
        goff[k.G_SW] = alloc(bsz)
        goff[k.G_G1] = alloc(bsz * widest)
        goff[k.G_G2] = alloc(bsz * widest)
        goff[k.G_V] = alloc(bsz)
        lmeta = np.zeros((nl, k.L_NCOLS), dtype=np.int64)
        blas = []
        for l, d in enumerate(dense):
            kin, jout = dims[l], dims[l + 1]
            use_blas = k.HAVE_BLAS and bsz >= 2 and bsz * kin * jout >= BLAS_MIN_MACS
            blas.append(bool(use_blas))
            lmeta[l, k.L_IN] = kin
            lmeta[l, k.L_OUT] = jout
            lmeta[l, k.L_WOFF], lmeta[l, k.L_BOFF] = self._offsets[l]
            lmeta[l, k.L_ACT] = _ACTIVATION_CODES[d["act"]]
            lmeta[l, k.L_BLAS] = int(use_blas)
            if l - 1 in after:
                lmeta[l, k.L_A] = alloc(bsz * kin)
            elif l == 0:
                lmeta[l, k.L_A] = goff[k.G_XB]
            else:
                lmeta[l, k.L_A] = lmeta[l - 1, k.L_H]
            lmeta[l, k.L_Z] = alloc(bsz * jout)
            lmeta[l, k.L_H] = lmeta[l, k.L_Z] if d["act"] == "linear" else alloc(bsz * jout)
        goff[k.G_R] = alloc(widest + 16)
        dmeta = np.zeros((len(dropouts), 5), dtype=np.int64)
        mask_off = 0
        seen = set()
        for i, d in enumerate(dropouts):
            p = d["after"]
            width = dims[p + 1]
            dmeta[i, k.D_AFTER] = p
            dmeta[i, k.D_WIDTH] = width
            dmeta[i, k.D_MASK] = mask_off  # times n rows, set per epoch (see _draw_masks)
            dst = lmeta[p + 1, k.L_A]
            if p in seen:
                src = dst
            else:
                src = goff[k.G_XB] if p == -1 else lmeta[p, k.L_H]
                seen.add(p)
            dmeta[i, k.D_SRC] = src
            dmeta[i, k.D_DST] = dst
            mask_off += width
        dscale = np.array(
            [np.float32(1.0 / (1.0 - d["rate"])) if d["rate"] < 1 else np.float32(0) for d in dropouts],
            dtype=np.float32,
        )
        ws = np.zeros(offset, dtype=np.float32)
        labels_ws = np.zeros(max(bsz, 1), dtype=np.int64)
        layout = dict(goff=goff, lmeta=lmeta, dmeta=dmeta, dscale=dscale, ws=ws, labels_ws=labels_ws,
                      blas=blas, mask_widths=[int(w) for w in dmeta[:, k.D_WIDTH]])
        self._layouts = {batch_size: layout}  # keep one: batch sizes rarely change within a fit
        return layout

    # ------------------------------------------------------------------ targets
    def _targets(self, y):
        if self._y_cache is not None and self._y_cache[0] is y:
            return self._y_cache[1]
        spec = self.spec
        n, k = len(y), self._out
        if spec["loss_kind"] == kernels.LOSS_SCCE:
            labels = _kernel_array(np.asarray(y).reshape(n), np.int64)
            prepared = (self._dummy_f2, self._dummy_f2, labels)
        else:
            yf = _kernel_array(np.asarray(y, dtype=np.float32).reshape(n, -1), np.float32)
            if yf.shape[1] != k:
                raise ValueError(f"Expected targets with {k} values per sample. Received: shape {np.shape(y)}")
            ls = spec["smoothing"]
            yb = yf
            if ls:
                if spec["loss_kind"] == kernels.LOSS_BCE:
                    yb = yf * np.float32(1.0 - ls) + np.float32(0.5 * ls)
                else:
                    yb = yf * np.float32(1.0 - ls) + np.float32(ls) / np.float32(k)
            prepared = (yb, yf, self._dummy_i1)
        self._y_cache = (y, prepared)
        return prepared

    # ------------------------------------------------------------------ dropout masks
    def _draw_masks(self, n, batch_size, layout, limit_steps=None):
        """Each Dropout layer's keep-masks for the epoch's rows, drawn as the reference path draws them."""
        dropouts = self.spec["dropouts"]
        if not dropouts:
            return self._no_masks
        widths = layout["mask_widths"]
        total = n * sum(widths)
        if self._masks.size < total:
            self._masks = np.empty(total, dtype=np.bool_)
        masks = self._masks
        views, off = [], 0
        for w in widths:
            views.append(masks[off: off + n * w].reshape(n, w))
            off += n * w
        rngs = [d["layer"].generator for d in dropouts]
        if limit_steps is None and len({id(r) for r in rngs}) == len(rngs):
            # one generator per layer: its per-batch draws are one stream, drawn in large chunks
            for d, view, w in zip(dropouts, views, widths):
                rows = max(1, _MASK_CHUNK // max(w, 1))
                for r0 in range(0, n, rows):
                    r1 = min(n, r0 + rows)
                    np.greater_equal(d["layer"].generator.random((r1 - r0, w)), d["rate"], out=view[r0:r1])
        else:
            steps = math.ceil(n / batch_size) if limit_steps is None else limit_steps
            for step in range(steps):
                r0 = step * batch_size
                r1 = min(n, r0 + batch_size)
                for d, view, w in zip(dropouts, views, widths):
                    np.greater_equal(d["layer"].generator.random((r1 - r0, w)), d["rate"], out=view[r0:r1])
        return masks

    # ------------------------------------------------------------------ optimizer
    def _set_optimizer(self, opt, code, config):
        """Take ``opt`` (supported, with kernel ``code`` and ``config``): fill the kernel's settings."""
        _optimizer_settings(code, config, self._hyper, self._flags)
        roles = tuple(SLOT_ROLES[code])
        self._opt, self._opt_kind, self._opt_config = opt, code, config
        self._roles = roles + (None,) * (_KERNEL_SLOTS - len(roles))
        # the slots these settings use (slot_names follows from the config: a supported
        # optimizer does not override it), by their position in the kernel's arguments
        used = opt.slot_names
        self._slot_positions = [(position, role) for position, role in zip(_A_SLOTS, self._roles) if role in used]

    def _optimizer_arrays(self, args):
        """Put this epoch's optimizer code, settings and slots into the kernel's ``args``; return
        the slots to attach after the epoch (``{role: array}``, while the optimizer is not built).

        The slots go in :data:`SLOT_ROLES` order: the optimizer's own arrays, updated in place,
        or, while it is not built, new arrays at its initial values. Its config is read every
        epoch (a callback may change the learning rate, or swap the optimizer); a change the
        compiled path does not support raises :class:`UnsupportedChange` before anything changes.
        """
        opt = self.model.optimizer
        if opt is not self._opt or opt.get_config() != self._opt_config:
            if opt is not self._opt and opt.built:
                opt.build(self._variables)  # as the reference path: an error if built for other variables
            try:
                code, config = _check_optimizer(opt)
            except _Unsupported as reason:
                raise UnsupportedChange(f"the optimizer changed during fit, to a setting the compiled path "
                                        f"does not support: {reason}") from None
            self._set_optimizer(opt, code, config)
            args[_A_OPT_KIND] = code
            for position in _A_SLOTS:
                args[position] = self._dummy_f1
        fresh = {}
        if opt.built:
            for position, role in self._slot_positions:
                args[position] = opt.slot_arrays(role)[0]
        else:
            for position, role in self._slot_positions:
                args[position] = fresh[role] = np.full(self._params.size, opt.slot_initial_value(role), dtype=np.float32)
        return fresh

    # ------------------------------------------------------------------ one epoch
    def _bind(self, x, y, sample_weight, batch_size):
        """The kernel's arguments for epochs over these arrays (see :meth:`train_epoch`).

        Inputs that are already what the kernel takes are kept by reference, so an in-place
        change between epochs is seen as on the reference path; the others are converted again
        each epoch (``reusable`` is False then).
        """
        k = self._k
        n = len(x)
        # the working memory holds one batch: of the rows there are, not of the size asked for
        rows = min(int(batch_size), n)
        xk = _kernel_array(x, np.float32)
        layout = self._layout(rows)
        yb, ym, labels = self._targets(y)
        if sample_weight is None:
            sw, has_sw = self._dummy_f1, False
        else:
            sw, has_sw = _kernel_array(sample_weight, np.float32, (n,)), True
        dmeta = layout["dmeta"]
        if self.spec["dropouts"]:
            dmeta = dmeta.copy()
            dmeta[:, k.D_MASK] *= n  # each layer's masks take n rows of its width
        args = [
            xk, yb, ym, labels, sw, has_sw, self._dummy_i1, False, rows,
            self._params, self._grads, layout["lmeta"], self._lreg, dmeta, layout["dscale"],
            self._no_masks, layout["ws"], layout["labels_ws"], layout["goff"],
            self.spec["loss_kind"], self.spec["logits"], self._mkinds, self._mthresh, self._mstate,
            self._opt_kind, self._hyper, self._flags, self._dummy_f1, self._dummy_f1, self._dummy_f1, 0, self._spare,
            self._tracker, self._status,
        ]
        reusable = xk is x and (sample_weight is None or sw is sample_weight)
        self._bound = (x, y, sample_weight, batch_size, reusable, args, layout)
        return self._bound

    def train_epoch(self, x, y, sample_weight, order, batch_size) -> bool:
        """Run one epoch in compiled code. Returns False when a non-finite loss or update stopped training
        (then :attr:`stopped_at` says where, and ``fit`` stops as the reference path does).

        The kernel runs without a pause for Python, so a Ctrl-C arrives when it returns; it is
        held back until the model, its metrics and optimizer reflect the steps taken, then raised.
        """
        bound = self._bound
        if (bound is None or bound[0] is not x or bound[1] is not y or bound[2] is not sample_weight
                or bound[3] != batch_size or not bound[4]):
            bound = self._bind(x, y, sample_weight, batch_size)
        args, layout = bound[5], bound[6]
        self.blas_layers = layout["blas"]
        if order is None:
            args[_A_ORDER], args[_A_SHUFFLED] = self._dummy_i1, False
        else:
            args[_A_ORDER], args[_A_SHUFFLED] = _kernel_array(order, np.int64), True
        fresh = self._optimizer_arrays(args)  # first: it may raise UnsupportedChange, before any state changes
        rng_states = None
        if self.spec["dropouts"]:
            rngs = {id(d["layer"].generator): d["layer"].generator for d in self.spec["dropouts"]}
            rng_states = [(rng, _rng_state(rng)) for rng in rngs.values()]
            args[_A_MASKS] = self._draw_masks(len(x), args[_A_ROWS], layout)
        opt = self._opt
        args[_A_ITERATIONS] = opt.iterations
        tracker_metric, tracker = self._tracker_metric, self._tracker
        tracker[0], tracker[1] = tracker_metric.get_state()
        metric_objects, mstate = self._metric_objects, self._mstate
        for i, m in enumerate(metric_objects):
            mstate[i, 0], mstate[i, 1] = m.get_state()
        status = self._status
        kernel = self._k.train_epoch
        # as TensorFlow's kernels: float32 results below 1.2e-38 are 0 (a model that fits its
        # data ever more closely drives softmax outputs and their gradients into that range,
        # where arithmetic is many times slower)
        with interrupts.deferred:
            with self._flush, kernel_cache.compiling_notice(kernel, self.verbose):
                steps = kernel(*args)
            # ---- leave every object as the reference path would
            tracker_metric.set_state((tracker[0], tracker[1]))  # float32 scalars: set_state keeps them
            for i, m in enumerate(metric_objects):
                m.set_state((mstate[i, 0], mstate[i, 1]))
            if steps:
                if not opt.built:
                    opt.build(self._variables)
                    for role, array in fresh.items():
                        opt.slot_arrays(role)[0][...] = array
                opt.advance_iterations(steps)
        if status[0] != _STATUS_WHOLE_EPOCH:
            if rng_states is not None:
                # the reference path drew masks up to the failing batch only: replay exactly that
                for rng, state in rng_states:
                    _set_rng_state(rng, state)
                self._draw_masks(len(x), args[_A_ROWS], layout, limit_steps=steps + 1)
            self.stopped_at = (float(status[1]), steps, bool(status[0] == _STATUS_NON_FINITE_UPDATE))
            return False
        return True
