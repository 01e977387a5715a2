"""The compiled training path behind ``compile(jit_compile=True)``.

``fit`` calls :func:`build_plan` once per call. For a model the Numba kernels support it
returns ``(plan, None)``, and every epoch then runs as ONE call of
:func:`minitensor.kernels.train_epoch` (``plan.train_epoch``): Python is not entered per step.
For anything else it returns ``(None, reason)`` and ``fit`` trains on the reference path,
after a one-time ``UserWarning`` that names the reason.

Supported (anything else falls back):

* ``Sequential`` stacks of ``Dense`` layers (any depth and widths, with or without bias;
  activations ``linear``/``relu``/``sigmoid``/``tanh``/``softmax``, or an ``Activation``
  layer right after a linear ``Dense``) and ``Dropout`` layers (no ``noise_shape``) anywhere
  before the output layer, on inputs of shape ``(samples, features)``; float32, all weights
  trainable, no activity regularizer;
* weight penalties ``L1``, ``L2``, ``L1L2`` on kernels and biases;
* losses ``BinaryCrossentropy``, ``CategoricalCrossentropy`` (both with label smoothing),
  ``SparseCategoricalCrossentropy`` (no ``ignore_class``) with a sigmoid/softmax output or
  ``from_logits=True`` (the logits formula, as the reference path uses), and
  ``MeanSquaredError``; reduction ``sum_over_batch_size``; sample and class weights;
* metrics: none, or any of ``BinaryAccuracy`` (``'accuracy'`` with one output),
  ``CategoricalAccuracy``, ``SparseCategoricalAccuracy`` (with the sparse loss);
* optimizers ``SGD`` (momentum, Nesterov), ``RMSprop`` (momentum, centered), ``Adam``
  (amsgrad), ``Adagrad``, with ``weight_decay`` and ``clipvalue`` (not ``clipnorm`` nor
  ``global_clipnorm``).

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
before that step, as on the reference path (the update is checked, and undone, inside the
kernel). A Ctrl-C reaches Python only when the kernel returns; it is held back until the
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

import importlib.util
import math
import warnings

import numpy as np

from . import fpenv, interrupts, kernel_cache

__all__ = ["build_plan", "CompiledPlan", "BLAS_MIN_MACS"]

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

_ACTIVATION_CODES = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "softmax": 4}


class _Unsupported(Exception):
    """A model feature the compiled path does not implement (the message says which)."""


def build_plan(model, callbacks=()):
    """Return ``(plan, None)`` for a model the kernels support, else ``(None, reason)``.

    Called by ``fit`` after it resolved the metrics and prepared the optimizer, with the
    callbacks it was given. Building a plan imports Numba (compiling the kernels on the
    first epoch, or loading them from the on-disk cache); nothing is changed on the model.
    """
    try:
        _check_callbacks(callbacks)
        spec = _analyse(model)
    except _Unsupported as reason:
        return None, str(reason)
    if importlib.util.find_spec("numba") is None:
        return None, "Numba is not installed"
    for message, category in spec["warnings"]:
        warnings.warn(message, category, stacklevel=4)
    return CompiledPlan(model, spec), None


# ============================================================================ analysis
def _activation_name(fn):
    from . import activations

    for name in _ACTIVATION_CODES:
        if getattr(activations, name) is fn:
            return name
    return None


def _regularizer_factors(reg, what):
    """``(l1, l2)`` float32 factors of an L1/L2/L1L2 penalty (0 = absent)."""
    from . import regularizers

    if reg is None:
        return np.float32(0), np.float32(0)
    kind = type(reg)
    if kind is regularizers.L1:
        return np.float32(reg.l1), np.float32(0)
    if kind is regularizers.L2:
        return np.float32(0), np.float32(reg.l2)
    if kind is regularizers.L1L2:
        return np.float32(reg.l1), np.float32(reg.l2)
    raise _Unsupported(f"the {what} {type(reg).__name__} is not supported by the compiled path (L1, L2, L1L2 are)")


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
    from . import layers as layers_module
    from . import losses, metrics, optimizers

    if not model.built or model._input_shape is None or len(model._input_shape) != 2:
        raise _Unsupported("the compiled path needs a built model with inputs of shape (samples, features)")
    if model._flat_params.dtype != np.float32:
        raise _Unsupported("the compiled path trains float32 models only")
    dense = []  # per Dense layer: dict
    dropouts = []  # per Dropout layer (rate > 0): dict(after=index of the Dense before it, -1: input)
    last = None  # "dense" or "dropout": what the previous layer was
    for layer in model._layers:
        kind = type(layer)
        if kind is layers_module.Dense:
            if layer.dtype != np.float32:
                raise _Unsupported(f"layer {layer.name} is not float32")
            if not layer.trainable or any(not w.requires_grad for w in layer.weights):
                raise _Unsupported(f"layer {layer.name} has non-trainable weights")
            if layer.activity_regularizer is not None:
                raise _Unsupported(f"layer {layer.name} has an activity regularizer")
            name = _activation_name(layer.activation)
            if name is None:
                raise _Unsupported(
                    f"layer {layer.name} has a custom activation (relu, sigmoid, tanh, softmax, linear are supported)"
                )
            kl1, kl2 = _regularizer_factors(layer.kernel_regularizer, "kernel regularizer")
            bl1, bl2 = _regularizer_factors(layer.bias_regularizer if layer.use_bias else None, "bias regularizer")
            dense.append(
                dict(layer=layer, act=name, units=layer.units, in_features=layer.kernel.shape[0],
                     use_bias=layer.use_bias, reg=(kl1, kl2, bl1, bl2))
            )
            last = "dense"
        elif kind is layers_module.Dropout:
            if layer.noise_shape is not None:
                raise _Unsupported(f"layer {layer.name} has a noise_shape")
            if layer.rate > 0:  # rate 0 is the identity, and draws nothing
                dropouts.append(dict(layer=layer, after=len(dense) - 1, rate=layer.rate))
                last = "dropout"
        elif kind is layers_module.Activation:
            name = _activation_name(layer.activation)
            if last != "dense" or dense[-1]["act"] != "linear" or name is None:
                raise _Unsupported(
                    f"layer {layer.name}: an Activation layer is supported only right after a linear Dense layer, "
                    "with a built-in activation"
                )
            dense[-1]["act"] = name
        else:
            raise _Unsupported(f"layer {layer.name} ({kind.__name__}) is not supported by the compiled path")
    if not dense:
        raise _Unsupported("the model has no Dense layer")
    if dropouts and dropouts[-1]["after"] == len(dense) - 1:
        raise _Unsupported("a Dropout layer after the output layer is not supported by the compiled path")

    # ---- loss
    loss = model.loss
    loss_type = type(loss)
    k = dense[-1]["units"]
    last_act = dense[-1]["act"]
    warns = []
    codes = {
        losses.BinaryCrossentropy: 0,
        losses.CategoricalCrossentropy: 1,
        losses.SparseCategoricalCrossentropy: 2,
        losses.MeanSquaredError: 3,
    }
    if loss_type not in codes:
        raise _Unsupported(f"the loss {getattr(loss, 'name', loss)!r} is not supported by the compiled path")
    loss_kind = codes[loss_type]
    if loss.reduction not in ("sum_over_batch_size", "mean"):
        raise _Unsupported(f"the loss reduction {loss.reduction!r} is not supported (sum_over_batch_size is)")
    smoothing = 0.0
    if loss_kind == 3:
        logits = False
    else:
        if loss.axis not in (-1, 1):
            raise _Unsupported("a cross-entropy over an axis other than the last is not supported")
        if loss_kind == 2 and loss.ignore_class is not None:
            raise _Unsupported("SparseCategoricalCrossentropy(ignore_class=...) is not supported by the compiled path")
        if loss_kind != 2:
            smoothing = float(loss.label_smoothing)
        fn_name = ("binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy")[loss_kind]
        activation_word = "Sigmoid" if loss_kind == 0 else "Softmax"
        if last_act in ("sigmoid", "softmax"):
            logits = True  # Keras recovers the logits of a sigmoid/softmax output, whatever from_logits says
            if loss.from_logits:
                warns.append((
                    f"`{fn_name}` received `from_logits=True`, but the `output` argument was produced by a "
                    f"{activation_word} activation and thus does not represent logits. Was this intended?",
                    UserWarning,
                ))
        elif loss.from_logits:
            logits = False  # the formula on the layer's output, which holds the logits
        else:
            raise _Unsupported(
                f"{loss_type.__name__} on a {last_act} output uses the probability (clipping) form, "
                "which the compiled path does not implement (use a sigmoid/softmax output or from_logits=True)"
            )
        if loss_kind == 1 and k == 1:
            warns.append((
                "In loss categorical_crossentropy, expected y_pred.shape to be (batch_size, num_classes) with "
                f"num_classes > 1. Received: y_pred.shape={(None, 1)}. "
                "Consider using 'binary_crossentropy' if you only have 2 classes.",
                SyntaxWarning,
            ))

    # ---- metrics
    metric_specs = []
    for m in [model._loss_tracker, *(model._compiled_metrics or [])]:
        if m._dtype != np.float32:
            raise _Unsupported(f"metric {m.name} does not keep float32 state")
    for m in model._compiled_metrics or []:
        mtype = type(m)
        if mtype is metrics.BinaryAccuracy and loss_kind != 2:
            threshold = m._fn_kwargs.get("threshold", 0.5)
            metric_specs.append((1, np.float32(threshold)))
        elif mtype is metrics.CategoricalAccuracy and loss_kind != 2 and k > 1:
            metric_specs.append((2, np.float32(0)))
        elif mtype is metrics.SparseCategoricalAccuracy and loss_kind == 2:
            metric_specs.append((3, np.float32(0)))
        else:
            raise _Unsupported(
                f"the metric {m.name!r} ({mtype.__name__}) with this loss and output is not supported by the "
                "compiled path (the accuracy metrics are)"
            )

    # ---- optimizer
    opt = model.optimizer
    codes = {optimizers.SGD: 0, optimizers.RMSprop: 1, optimizers.Adam: 2, optimizers.Adagrad: 3}
    if type(opt) not in codes:
        raise _Unsupported(f"the optimizer {type(opt).__name__} is not supported by the compiled path")
    if opt.clipnorm is not None or opt.global_clipnorm is not None:
        raise _Unsupported("clipnorm / global_clipnorm are not supported by the compiled path (clipvalue is)")
    variables = getattr(model, "_optimizer_variables", None)
    if not variables or len(variables) != 1 or variables[0] is not model._flat_variable:
        raise _Unsupported("the optimizer does not update the model's flat parameter buffer")
    if opt.built:
        try:
            opt._check_same_variables([model._flat_params])
        except ValueError as error:
            raise _Unsupported(str(error)) from None

    return dict(
        dense=dense, dropouts=dropouts, loss_kind=loss_kind, logits=logits, smoothing=smoothing,
        metrics=metric_specs, opt_kind=codes[type(opt)], warnings=warns,
    )


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
        from . import kernels

        self._k = kernels
        self.model = model
        self.spec = spec
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
        if off != model._flat_params.size:
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
        self._undo = np.zeros(4 * model._flat_params.size, dtype=np.float32)
        self._hyper = np.zeros(kernels.H_N, dtype=np.float32)
        self._flags = np.zeros(kernels.F_N, dtype=np.int64)
        self.blas_layers = []
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
        if spec["loss_kind"] == 2:
            labels = _kernel_array(np.asarray(y).reshape(n), np.int64)
            prepared = (self._dummy_f2, self._dummy_f2, labels)
        else:
            yf = _kernel_array(np.asarray(y, dtype=np.float32).reshape(n, -1), np.float32)
            if yf.shape[1] != k:
                raise ValueError(f"Expected targets with {k} values per sample. Received: shape {np.shape(y)}")
            ls = spec["smoothing"]
            yb = yf
            if ls:
                if spec["loss_kind"] == 0:
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
        rngs = [d["layer"]._rng for d in dropouts]
        if limit_steps is None and len({id(r) for r in rngs}) == len(rngs):
            # one generator per layer: its per-batch draws are one stream, drawn in large chunks
            for d, view, w in zip(dropouts, views, widths):
                rows = max(1, _MASK_CHUNK // max(w, 1))
                for r0 in range(0, n, rows):
                    r1 = min(n, r0 + rows)
                    np.greater_equal(d["layer"]._rng.random((r1 - r0, w)), d["rate"], out=view[r0:r1])
        else:
            steps = math.ceil(n / batch_size) if limit_steps is None else limit_steps
            for step in range(steps):
                r0 = step * batch_size
                r1 = min(n, r0 + batch_size)
                for d, view, w in zip(dropouts, views, widths):
                    np.greater_equal(d["layer"]._rng.random((r1 - r0, w)), d["rate"], out=view[r0:r1])
        return masks

    # ------------------------------------------------------------------ optimizer
    def _optimizer_arrays(self):
        """(opt_kind, hyper, flags, s0, s1, s2, slots-to-attach) from the optimizer's current settings."""
        k = self._k
        opt = self.model.optimizer
        kind = self.spec["opt_kind"]
        f32 = np.float32
        hyper = self._hyper
        flags = self._flags
        hyper[:] = 0
        flags[:] = 0
        hyper[k.H_LR] = opt._learning_rate
        if opt.weight_decay is not None:
            flags[k.F_WD] = 1
            hyper[k.H_WD] = f32(opt.weight_decay)
        if opt.clipvalue is not None:
            flags[k.F_CLIP] = 1
            hyper[k.H_CLIP] = f32(opt.clipvalue)
        if kind == 0:
            hyper[k.H_C1] = f32(opt.momentum)
            flags[k.F_MOMENTUM] = int(opt.momentum != 0)
            flags[k.F_NESTEROV] = int(opt.nesterov)
            roles = ["momentum"] if opt.momentum != 0 else []
        elif kind == 1:
            hyper[k.H_C1] = f32(opt.rho)
            hyper[k.H_C2] = f32(1 - opt.rho)
            hyper[k.H_C3] = f32(opt.momentum)
            hyper[k.H_EPS] = f32(opt.epsilon)
            flags[k.F_MOMENTUM] = int(opt.momentum > 0)
            flags[k.F_CENTERED] = int(opt.centered)
            roles = ["velocity", "momentum" if opt.momentum > 0 else None,
                     "average_gradient" if opt.centered else None]
        elif kind == 2:
            hyper[k.H_C1] = f32(opt.beta_1)
            hyper[k.H_C2] = f32(opt.beta_2)
            hyper[k.H_C3] = f32(1 - opt.beta_1)
            hyper[k.H_C4] = f32(1 - opt.beta_2)
            hyper[k.H_EPS] = f32(opt.epsilon)
            flags[k.F_AMSGRAD] = int(opt.amsgrad)
            roles = ["momentum", "velocity", "velocity_hat" if opt.amsgrad else None]
        else:
            hyper[k.H_EPS] = f32(opt.epsilon)
            roles = ["accumulator"]
        size = self.model._flat_params.size
        fresh = {}
        arrays = []
        for role in roles + [None] * (3 - len(roles)):
            if role is None:
                arrays.append(self._dummy_f1)
            elif opt.built:
                arrays.append(opt._slots[role][0])
            else:
                fresh[role] = np.full(size, opt._slot_initial_value(role), dtype=np.float32)
                arrays.append(fresh[role])
        return kind, hyper, flags, arrays[0], arrays[1], arrays[2], fresh

    # ------------------------------------------------------------------ one epoch
    def train_epoch(self, x, y, sample_weight, order, batch_size) -> bool:
        """Run one epoch in compiled code. Returns False when a non-finite loss or update stopped training.

        The kernel runs without a pause for Python, so a Ctrl-C arrives when it returns; it is
        held back until the model, its metrics and optimizer reflect the steps taken, then raised.
        """
        k = self._k
        model = self.model
        spec = self.spec
        n = len(x)
        # the working memory holds one batch: of the rows there are, not of the size asked for
        batch_size = min(int(batch_size), n)
        x = _kernel_array(x, np.float32)
        layout = self._layout(int(batch_size))
        self.blas_layers = layout["blas"]
        yb, ym, labels = self._targets(y)
        if sample_weight is None:
            sw, has_sw = self._dummy_f1, False
        else:
            sw, has_sw = _kernel_array(sample_weight, np.float32, (n,)), True
        if order is None:
            order_arr, shuffled = self._dummy_i1, False
        else:
            order_arr, shuffled = _kernel_array(order, np.int64), True
        dropouts = spec["dropouts"]
        dmeta = layout["dmeta"]
        rng_states = None
        if dropouts:
            rngs = {id(d["layer"]._rng): d["layer"]._rng for d in dropouts}
            rng_states = [(rng, _rng_state(rng)) for rng in rngs.values()]
            dmeta = dmeta.copy()
            dmeta[:, k.D_MASK] *= n  # each layer's masks take n rows of its width
        masks = self._draw_masks(n, batch_size, layout)
        kind, hyper, flags, s0, s1, s2, fresh = self._optimizer_arrays()
        tracker_metric = model._loss_tracker
        tracker = self._tracker
        tracker[0] = tracker_metric.total
        tracker[1] = tracker_metric.count
        metric_objects = model._compiled_metrics or []
        mkinds, mthresh, mstate = self._mkinds, self._mthresh, self._mstate
        for i, m in enumerate(metric_objects):
            mstate[i, 0] = m.total
            mstate[i, 1] = m.count
        status = self._status
        opt = model.optimizer
        # as TensorFlow's kernels: float32 results below 1.2e-38 are 0 (a model that fits its
        # data ever more closely drives softmax outputs and their gradients into that range,
        # where arithmetic is many times slower)
        with interrupts.deferred:
            with fpenv.flush_subnormals(), kernel_cache.compiling_notice(k.train_epoch, self.verbose):
                steps = k.train_epoch(
                    x, yb, ym, labels, sw, has_sw, order_arr, shuffled, int(batch_size),
                    model._flat_params, model._flat_grads, layout["lmeta"], self._lreg, dmeta, layout["dscale"],
                    masks, layout["ws"], layout["labels_ws"], layout["goff"],
                    spec["loss_kind"], spec["logits"], mkinds, mthresh, mstate,
                    kind, hyper, flags, s0, s1, s2, opt._iterations, self._undo,
                    tracker, status,
                )
            steps = int(steps)
            # ---- leave every object as the reference path would
            tracker_metric.total = np.float32(tracker[0])
            tracker_metric.count = np.float32(tracker[1])
            for m, (total, count) in zip(metric_objects, mstate):
                m.total = np.float32(total)
                m.count = np.float32(count)
            if steps:
                if not opt.built:
                    opt.build(model._optimizer_variables)
                    for role, array in fresh.items():
                        opt._slots[role][0][...] = array
                opt._iterations += steps
        if status[0]:
            if rng_states is not None:
                # the reference path drew masks up to the failing batch only: replay exactly that
                for rng, state in rng_states:
                    _set_rng_state(rng, state)
                self._draw_masks(n, batch_size, layout, limit_steps=steps + 1)
            model._stop_on_non_finite_loss(float(status[1]), steps, update=status[0] == 2)
            return False
        return True
