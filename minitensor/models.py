"""``Sequential``: a stack of layers trained with Keras's ``compile``/``fit`` semantics.

Training runs on the reference path: the layers' forward pass builds an autograd
graph of ops, the loss (plus any weight penalties) is a scalar Tensor, and
``backward()`` fills the gradients. All parameters live as views into one flat
float32 buffer and their gradients into another, so the optimizer updates the
whole model with a few vector operations.

What is reported follows Keras 3 to the letter (docs/keras-formulas.md): the epoch
``loss`` is the batch-size-weighted mean of the per-batch losses (penalties
included), training accuracy uses each step's pre-update predictions, and
validation runs at the end of each epoch with dropout off.

Example:
    >>> import numpy as np
    >>> from minitensor.models import Sequential
    >>> from minitensor.layers import Dense, Input
    >>> model = Sequential([Input(shape=(4,)), Dense(8, activation="relu"), Dense(1, activation="sigmoid")])
    >>> model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    >>> x = np.random.rand(64, 4).astype("float32"); y = (x.sum(1) > 2).astype("float32")
    >>> history = model.fit(x, y, epochs=2, verbose=0)
    >>> sorted(history.history)
    ['accuracy', 'loss']
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import warnings

import numpy as np

from . import callbacks as callbacks_module
from . import data_adapter, fpenv, interrupts, losses, metrics as metrics_module, optimizers, threads
from .layers import InputLayer, Layer
from .random import generator
from .tensor import Tensor, no_grad

__all__ = ["Sequential", "load_model"]

_model_counter: dict[str, int] = {}


def _model_name() -> str:
    count = _model_counter.get("sequential", 0)
    _model_counter["sequential"] = count + 1
    return "sequential" if count == 0 else f"sequential_{count}"


def _check_positive_int(value, argument, allow_none=False, minimum=1):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"Expected `{argument}` to be {expected}. Received: {argument}={value!r}")
    return int(value)


def _check_verbose(verbose):
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"Expected `verbose` to be 'auto', 0, 1 or 2. Received: verbose={verbose!r}")
    return int(verbose)


_RUNNING: dict[int, tuple] = {}  # id(model) -> (thread ident, "fit" or "evaluate") while one runs
_RUNNING_LOCK = threading.Lock()


def _one_thread_at_a_time(method):
    """Make ``fit``/``evaluate`` raise, before any change, while another thread runs either on the same model.

    They share the model's weights, optimizer and metric state; the same thread may
    nest them (a callback that evaluates inside ``fit``).
    """

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        key, me = id(self), threading.get_ident()
        with _RUNNING_LOCK:
            running = _RUNNING.get(key)
            if running is not None and running[0] != me:
                raise RuntimeError(
                    f"Model '{self.name}' is running {running[1]}() in another thread: one model cannot be trained "
                    "or evaluated by two threads at once (they would share its weights, optimizer and metric "
                    "state). Use one model per thread, or wait for the other call to finish. "
                    f"Received: {method.__name__}() while {running[1]}() runs"
                )
            if running is None:
                _RUNNING[key] = (me, method.__name__)
        try:
            return method(self, *args, **kwargs)
        finally:
            if running is None:
                del _RUNNING[key]

    return guarded


class Sequential:
    """A linear stack of layers with Keras's training API.

    Args:
        layers: optional list of layers (an ``Input`` first declares the input shape).
        name: the model's name (``sequential``, ``sequential_1``, ... by default).

    Example:
        >>> from minitensor.layers import Dense, Input
        >>> model = Sequential()
        >>> model.add(Input(shape=(64,)))
        >>> model.add(Dense(12, activation="relu"))
        >>> model.add(Dense(1, activation="sigmoid"))
        >>> model.count_params()
        793
    """

    def __init__(self, layers=None, name=None):
        self.name = name or _model_name()
        self._layers: list[Layer] = []
        self._input_shape = None
        self.built = False
        self.optimizer = None
        self.loss = None
        self._metric_identifiers = []
        self._compiled_metrics = None
        self._loss_tracker = metrics_module.Mean(name="loss")
        self.stop_training = False
        self.history = None
        self.compiled = False
        self.jit_compile = False
        for layer in layers or []:
            self.add(layer)

    # ================================================================ structure
    def add(self, layer) -> None:
        """Append ``layer`` (an ``Input`` sets the input shape and is not listed in ``layers``).

        Raises:
            TypeError: if ``layer`` is not a minitensor layer.
        """
        if not isinstance(layer, Layer):
            raise TypeError(
                f"Expected a minitensor layer (e.g. minitensor.layers.Dense) in Sequential.add. "
                f"Received: {layer!r} of type {type(layer).__name__}"
            )
        if isinstance(layer, InputLayer):
            if self._layers or self._input_shape is not None:
                raise ValueError("An Input can only be the first layer of a Sequential model. Received: a second input")
            self._input_shape = layer.batch_shape
            return
        if layer._declared_input_shape is not None and not self._layers and self._input_shape is None:
            self._input_shape = layer._declared_input_shape
        if any(existing is layer for existing in self._layers):
            raise ValueError(f"Layer {layer.name} is already in the model. Received: the same layer twice")
        self._layers.append(layer)
        self.built = False
        if self._input_shape is not None:
            self.build(self._input_shape)

    def pop(self) -> Layer:
        """Remove and return the last layer."""
        if not self._layers:
            raise ValueError("There are no layers in the model to pop. Received: an empty model")
        layer = self._layers.pop()
        self.built = False
        if self._input_shape is not None and self._layers:
            self.build(self._input_shape)
        return layer

    @property
    def layers(self) -> list:
        return list(self._layers)

    @property
    def input_shape(self):
        return self._input_shape

    @property
    def output_shape(self):
        if self._input_shape is None:
            return None
        shape = self._input_shape
        for layer in self._layers:
            shape = layer.compute_output_shape(shape)
        return shape

    # Buffers and variables for code that trains the model's parameters directly (the compiled path).
    @property
    def flat_parameters(self) -> np.ndarray:
        """The one buffer every weight of a built model is a view into (kernel, bias, ... layer by layer).

        Writing into it changes the weights; a later :meth:`build` (``add``, ``pop``) makes a new one.

        Example:
            >>> from minitensor.layers import Dense, Input
            >>> model = Sequential([Input(shape=(3,)), Dense(2)])
            >>> model.flat_parameters.shape, model.flat_parameters.base is None
            ((8,), True)
        """
        self._require_built("flat_parameters")
        return self._flat_params

    @property
    def flat_gradients(self) -> np.ndarray:
        """The buffer every weight's ``grad`` is a view into, laid out as :attr:`flat_parameters`.

        Example:
            >>> from minitensor.layers import Dense, Input
            >>> model = Sequential([Input(shape=(3,)), Dense(2)])
            >>> model.flat_gradients.shape == model.flat_parameters.shape
            True
        """
        self._require_built("flat_gradients")
        return self._flat_grads

    @property
    def optimizer_variables(self):
        """The variables ``fit`` hands to the optimizer, or ``None`` before ``fit`` prepared it.

        One Tensor over :attr:`flat_parameters` (the usual case), or one Tensor per trainable
        weight (with ``clipnorm``, which clips each weight's gradient, or with frozen weights).

        Example:
            >>> from minitensor.layers import Dense, Input
            >>> model = Sequential([Input(shape=(3,)), Dense(1)])
            >>> model.compile(optimizer="sgd", loss="mse")
            >>> _ = model.fit(np.zeros((4, 3), "float32"), np.zeros(4, "float32"), verbose=0)
            >>> [v.data is model.flat_parameters for v in model.optimizer_variables]
            [True]
        """
        variables = getattr(self, "_optimizer_variables", None)
        return None if variables is None else list(variables)

    def build(self, input_shape) -> None:
        """Create every layer's weights for inputs of ``input_shape`` (e.g. ``(None, 64)``).

        Parameters then live as views into one flat buffer (``self._flat_params``), and
        their gradients into another (``self._flat_grads``).
        """
        input_shape = tuple(input_shape)
        if self._input_shape is not None and tuple(self._input_shape[1:]) != input_shape[1:]:
            raise ValueError(f"Expected inputs of shape {self._input_shape}. Received: input_shape={input_shape}")
        self._input_shape = (None, *input_shape[1:])
        shape = self._input_shape
        for layer in self._layers:
            if not layer.built:
                layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self._pack_parameters()
        self.built = True

    def _pack_parameters(self) -> None:
        weights = self.weights
        dtype = weights[0].dtype if weights else np.dtype(np.float32)
        total = sum(w.size for w in weights)
        flat = np.empty(total, dtype=dtype)
        grads = np.zeros(total, dtype=dtype)
        offset = 0
        for w in weights:
            n = w.size
            flat[offset : offset + n] = w.data.ravel()
            w.data = flat[offset : offset + n].reshape(w.shape)
            w.grad = grads[offset : offset + n].reshape(w.shape)
            offset += n
        self._flat_params = flat
        self._flat_grads = grads
        self._flat_variable = Tensor(flat)
        self._optimizer_variables = None  # the optimizer must be pointed at the new buffer

    @property
    def weights(self) -> list:
        """All weight Tensors, layer by layer (``[kernel, bias, kernel, bias, ...]``)."""
        return [w for layer in self._layers for w in layer.weights]

    @property
    def trainable_weights(self) -> list:
        return [w for layer in self._layers for w in layer.trainable_weights]

    def get_weights(self) -> list:
        """Copies of all weights as NumPy arrays, in Keras order."""
        return [w.data.copy() for w in self.weights]

    def set_weights(self, weights) -> None:
        """Set all weights from a list of arrays (same order and shapes as :meth:`get_weights`)."""
        self._require_built("set_weights")
        current = self.weights
        if len(weights) != len(current):
            raise ValueError(
                f"Expected a list of {len(current)} arrays (the model's weights, in get_weights() order). "
                f"Received: {len(weights)} arrays"
            )
        arrays = [np.asarray(w) for w in weights]
        for i, (w, a) in enumerate(zip(current, arrays)):
            if a.shape != w.shape:
                raise ValueError(f"Expected weight {i} ({w.name}) with shape {w.shape}. Received: shape {a.shape}")
        for w, a in zip(current, arrays):
            w.data[...] = a

    def count_params(self) -> int:
        return int(sum(w.size for w in self.weights))

    def _require_built(self, what):
        if not self.built:
            raise ValueError(
                f"The model must be built before {what}(): declare the input with Input(shape=...) as the first "
                "layer (or input_dim= on it), or call fit/build first."
            )

    # ================================================================ forward
    def __call__(self, x, training: bool = False) -> Tensor:
        """Run the layers on ``x`` (a Tensor or array), recording the graph."""
        if not isinstance(x, Tensor):
            x = Tensor(data_adapter.to_array(x, "x"))
        if not self.built:
            self.build((None, *x.shape[1:]))
        y_pred, self._activity_losses = self._forward(x, training)
        return y_pred

    def _forward(self, x: Tensor, training: bool):
        """Outputs and activity penalties (already divided by the batch size, as Keras)."""
        activity = []
        for layer in self._layers:
            x = layer.call(x, training=training)
            regularizer = getattr(layer, "activity_regularizer", None)
            if regularizer is not None:
                activity.append(regularizer(x) / x.dtype.type(len(x.data)))
        return x, activity

    @property
    def losses(self) -> list:
        """The regularization penalties, as scalar Tensors (Keras's ``model.losses``).

        First the activity penalties of the model's last call ``model(x)`` (each divided by the
        batch size, as Keras), then every layer's weight penalties at the current weights. They
        are part of the graph: ``backward()`` through them reaches the weights.

        Example:
            >>> from minitensor import regularizers
            >>> from minitensor.layers import Dense, Input
            >>> model = Sequential([Input(shape=(2,)), Dense(1, kernel_regularizer=regularizers.l2(0.5))])
            >>> model.set_weights([np.array([[1.0], [2.0]]), np.zeros(1)])
            >>> [float(p.item()) for p in model.losses]   # 0.5 * (1 + 4)
            [2.5]
        """
        weight_penalties = [p for layer in self._layers for p in layer.regularization_losses()]
        return [*getattr(self, "_activity_losses", []), *weight_penalties]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True) -> Tensor:
        """The scalar that ``fit`` minimizes for the batch ``(x, y)``, as a Tensor (Keras 3's ``compute_loss``).

        The compiled loss (weighted by ``sample_weight``) plus the activity and weight penalties:
        ``compute_loss(x, y).backward()`` gives exactly the gradients of a ``fit`` step on that batch,
        where ``model.loss(y, model(x))`` alone would leave the penalties out.

        Args:
            x: the inputs, shape ``(batch, ...)``; needed unless ``y_pred`` is given.
            y: the targets, as ``fit`` takes them.
            y_pred: the model's outputs for ``x`` (a Tensor). When given, the activity penalties are
                those of the model's last call (as Keras); when omitted, the model is run on ``x``.
            sample_weight: optional per-sample weights, shape ``(batch,)``.
            training: run the layers in training mode (dropout on), as ``fit`` does. Defaults to True.

        Returns:
            A scalar Tensor that requires grad.

        Example:
            >>> from minitensor.layers import Dense, Input
            >>> model = Sequential([Input(shape=(3,)), Dense(1, activation="sigmoid")])
            >>> model.compile(optimizer="sgd", loss="binary_crossentropy")
            >>> loss = model.compute_loss(np.ones((4, 3), "float32"), np.ones((4, 1), "float32"))
            >>> loss.shape, loss.requires_grad
            ((), True)
        """
        self._require_compiled("compute_loss")
        if training not in (True, False):
            raise ValueError(f"Expected `training` to be True or False. Received: training={training!r}")
        if y_pred is None:
            x = data_adapter.check_x(x, self._input_shape)
            if not self.built:
                self.build((None, *x.shape[1:]))
            n = len(x)
        else:
            if not isinstance(y_pred, Tensor):
                raise TypeError(
                    "Expected `y_pred` to be a Tensor (the output of model(x)), so that the loss reaches the "
                    f"weights. Received: y_pred of type {type(y_pred).__name__}"
                )
            n = len(y_pred.data)
        y = data_adapter.check_targets(y, n, self.loss, self.output_shape)
        weights = data_adapter.sample_weights(sample_weight, None, y, n)
        if y_pred is None:
            with fpenv.flush_subnormals():  # as fit computes its steps
                y_pred, activity = self._forward(Tensor._from_op(x, None), training)
        else:
            activity = getattr(self, "_activity_losses", [])
        with fpenv.flush_subnormals():
            return self._total_loss(y, y_pred, weights, activity)

    def _total_loss(self, y, y_pred: Tensor, sample_weight, activity) -> Tensor:
        """Compiled loss plus activity and weight penalties, summed as Keras's ``compute_loss``."""
        total = self.loss(y, y_pred, sample_weight=sample_weight)
        for penalty in activity:
            total = total + penalty
        for layer in self._layers:
            for penalty in layer.regularization_losses():
                total = total + penalty
        return total

    # ================================================================ compile
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, jit_compile="auto", **kwargs) -> None:
        """Configure training.

        Args:
            optimizer: name (``"sgd"``, ``"adam"``, ``"rmsprop"``, ``"adagrad"``) or optimizer instance.
            loss: name (``"binary_crossentropy"``, ...), ``Loss`` instance or function.
            metrics: list of names (``"accuracy"``/``"acc"`` resolved from shapes, as Keras) or ``Metric``s.
            jit_compile: ``True`` asks for the Numba-compiled training path where available;
                ``"auto"``/``False`` use the reference path.
        """
        unsupported = set(kwargs) - {"loss_weights", "weighted_metrics", "run_eagerly", "steps_per_execution"}
        if unsupported:
            raise ValueError(f"Argument(s) not recognized by compile: {sorted(unsupported)}")
        if loss is None:
            raise ValueError("Expected a `loss` in compile(), e.g. loss='binary_crossentropy'. Received: loss=None")
        if metrics is None:
            metrics = []
        if isinstance(metrics, (str, metrics_module.Metric)):
            raise ValueError(
                f"Expected `metrics` to be a list, e.g. metrics=['accuracy']. Received: metrics={metrics!r}"
            )
        if jit_compile not in ("auto", True, False):
            raise ValueError(f"Expected `jit_compile` to be 'auto', True or False. Received: jit_compile={jit_compile!r}")
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        self._metric_identifiers = list(metrics)
        for identifier in self._metric_identifiers:  # fail early on unknown names
            if isinstance(identifier, str) and identifier not in ("accuracy", "acc"):
                metrics_module.get(identifier)
        self._compiled_metrics = None
        self.jit_compile = jit_compile is True
        self.compiled = True

    @property
    def metrics(self) -> list:
        """The loss tracker followed by the compiled metrics (once resolved by fit/evaluate)."""
        return [self._loss_tracker, *(self._compiled_metrics or [])]

    @property
    def metrics_names(self) -> list:
        return [m.name for m in self.metrics]

    def _resolve_metrics(self, y) -> None:
        if self._compiled_metrics is not None:
            return
        y_pred_shape = np.zeros((1, *self.output_shape[1:]), dtype=np.float32)
        self._compiled_metrics = [metrics_module.get(i, y[:1], y_pred_shape) for i in self._metric_identifiers]

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"You must call compile() before {what}(). Received: an uncompiled model")

    # ================================================================ fit
    @_one_thread_at_a_time
    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        shuffle=True,
        class_weight=None,
        sample_weight=None,
        initial_epoch=0,
        steps_per_epoch=None,
        validation_steps=None,
        validation_batch_size=None,
        validation_freq=1,
    ):
        """Train for ``epochs`` epochs; return the ``History`` (also ``model.history``).

        Args (Keras defaults): ``batch_size=None`` (32), ``epochs=1``, ``verbose="auto"`` (1),
            ``callbacks=None``, ``validation_split=0.0`` (the LAST fraction of x/y, taken before
            shuffling), ``validation_data=None`` (``(x_val, y_val)``), ``shuffle=True``,
            ``class_weight=None``, ``sample_weight=None``, ``initial_epoch=0``, ``validation_freq=1``.

        Everything is checked before any weight changes. A non-finite training loss, or
        an update that would make a weight or optimizer slot non-finite, stops training at
        that batch, before its update, with a warning; the History keeps the epochs
        completed before it. A Ctrl-C (``KeyboardInterrupt``) leaves the weights, the
        optimizer's slots and ``iterations`` as after a whole number of steps; calling
        ``fit`` again resumes from there.
        """
        self._require_compiled("fit")
        if steps_per_epoch is not None or validation_steps is not None:
            raise ValueError("steps_per_epoch/validation_steps are not supported for array inputs. Received: a value")
        batch_size = _check_positive_int(32 if batch_size is None else batch_size, "batch_size")
        epochs = _check_positive_int(epochs, "epochs", minimum=0)
        initial_epoch = _check_positive_int(initial_epoch, "initial_epoch", minimum=0)
        verbose = _check_verbose(verbose)
        validation_freq = _check_positive_int(validation_freq, "validation_freq")
        validation_batch_size = _check_positive_int(validation_batch_size, "validation_batch_size", allow_none=True)
        if shuffle not in (True, False):
            raise ValueError(f"Expected `shuffle` to be True or False. Received: shuffle={shuffle!r}")
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) or not 0 <= validation_split < 1:
            raise ValueError(
                f"Expected `validation_split` to be a float in [0, 1). Received: validation_split={validation_split!r}"
            )
        callback_list = callbacks_module.CallbackList(callbacks).callbacks  # type-checks them early

        x = data_adapter.check_x(x, self._input_shape)
        if not self.built:
            self.build((None, *x.shape[1:]))
        y = data_adapter.check_targets(y, len(x), self.loss, self.output_shape)
        weights = data_adapter.sample_weights(sample_weight, class_weight, y, len(x))
        val = None
        if validation_data is not None:
            val = self._check_validation_data(validation_data)
        elif validation_split:
            (x, y, weights), val = data_adapter.train_validation_split((x, y, weights), validation_split)
        self._resolve_metrics(y)
        self._prepare_optimizer()
        plan = self._compiled_plan(callback_list) if self.jit_compile else None
        if plan is not None:
            plan.verbose = verbose

        n = len(x)
        steps = math.ceil(n / batch_size)
        cbs = callbacks_module.CallbackList(
            callback_list, add_history=True, add_progbar=verbose != 0, model=self,
            verbose=verbose, epochs=epochs, steps=steps,
        )
        history = self.history
        self.stop_training = False
        cbs.on_train_begin()
        batch_logs = cbs.needs_train_batch_hooks
        one_thread = threads.one_thread_suffices(self._matrix_product_sizes(batch_size))
        # a Ctrl-C lands between whole steps (see minitensor.interrupts)
        with interrupts.handler_installed(), threads.blas_threads(1) if one_thread else contextlib.nullcontext():
            self._fit_epochs(x, y, weights, val, plan, cbs, batch_logs, shuffle, batch_size, initial_epoch, epochs,
                             validation_freq, validation_batch_size)
        cbs.on_train_end()
        return history

    def _matrix_product_sizes(self, batch_size) -> list:
        """Multiply-adds per batch of each Dense-like layer's product (``batch * kernel size``)."""
        return [batch_size * w.size for layer in self._layers for w in layer.trainable_weights if w.ndim == 2]

    def _fit_epochs(self, x, y, weights, val, plan, cbs, batch_logs, shuffle, batch_size, initial_epoch, epochs,
                    validation_freq, validation_batch_size) -> None:
        """The epochs of ``fit``, from ``initial_epoch`` until ``epochs`` or a stop."""
        n = len(x)
        steps = math.ceil(n / batch_size)
        if plan is not None:
            from .compiled import UnsupportedChange
        for epoch in range(initial_epoch, epochs):
            for m in self.metrics:
                m.reset_state()
            cbs.on_epoch_begin(epoch)
            order = generator().permutation(n) if shuffle else None
            if plan is not None:
                # the whole epoch runs in compiled code: only a progress bar has batch hooks
                # here (other callbacks with batch hooks make fit use the reference path)
                try:
                    finite = plan.train_epoch(x, y, weights, order, batch_size)
                except UnsupportedChange as change:  # a callback changed the optimizer: nothing was trained yet
                    warnings.warn(
                        f"jit_compile=True: {change}. Training on the reference path from epoch {epoch + 1} on.",
                        UserWarning, stacklevel=3,
                    )
                    plan = None
                else:
                    if not finite:
                        self._stop_on_non_finite_loss(*plan.stopped_at)
                    elif batch_logs:
                        cbs.on_train_batch_end(steps - 1, self._metric_logs())
            if plan is None:
                finite = self._train_epoch(x, y, weights, order, batch_size, cbs if batch_logs else None)
            if not finite:
                break
            logs = self._metric_logs()
            if val is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._evaluate_arrays(*val, validation_batch_size or batch_size)
                logs.update({"val_" + k: v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break

    def _check_validation_data(self, validation_data):
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError(
                "Expected `validation_data` to be a tuple (x_val, y_val) or (x_val, y_val, sample_weight). "
                f"Received: {type(validation_data).__name__}"
                + (f" of length {len(validation_data)}" if isinstance(validation_data, (tuple, list)) else "")
            )
        x_val = data_adapter.check_x(validation_data[0], self._input_shape, argument="validation_data[0]")
        y_val = data_adapter.check_targets(validation_data[1], len(x_val), self.loss, self.output_shape, "validation_data[1]")
        w_val = None
        if len(validation_data) == 3 and validation_data[2] is not None:
            w_val = data_adapter.sample_weights(validation_data[2], None, y_val, len(x_val))
        return x_val, y_val, w_val

    def _prepare_optimizer(self) -> None:
        """Give the optimizer the flat parameter buffer (or per-weight views when that would differ)."""
        if getattr(self, "_optimizer_variables", None) is not None and self._optimizer_owner is self.optimizer:
            return
        if self._optimizer_steps_per_weight():
            self._optimizer_variables = self.trainable_weights
        else:
            self._optimizer_variables = [self._flat_variable]
        self._optimizer_owner = self.optimizer

    def _optimizer_steps_per_weight(self) -> bool:
        """Whether ``fit`` gives the optimizer one variable per trainable weight rather than the
        flat buffer: clipping by norm is per tensor, and a frozen weight must be left out."""
        return self.optimizer.get_config().get("clipnorm") is not None or any(
            not w.requires_grad for w in self.weights
        )

    def _grads_and_vars(self):
        if self._optimizer_variables[0] is self._flat_variable:
            return [(self._flat_grads, self._flat_variable)]
        return [(w.grad, w) for w in self._optimizer_variables]

    def _train_epoch(self, x, y, weights, order, batch_size, cbs) -> bool:
        """One pass over the data. Returns False when a non-finite loss or update stopped training.

        Each step's update (weights, optimizer slots, ``iterations``, loss tracker and
        metrics) runs whole or not at all: a Ctrl-C is held back until it is over, and an
        update that would make a weight or slot non-finite is undone.
        """
        tracker = self._loss_tracker
        compiled = self._compiled_metrics
        grads = self._flat_grads
        checked = None  # the optimizer whose checked step lets the next ones skip the checks
        # each step computes as TensorFlow's kernels do, flushing float32 subnormals to zero
        # (a model fitting its data ever more closely drives softmax outputs, their gradients and
        # Adam's moments there, where NumPy is many times slower); callbacks run outside: with
        # per-batch callbacks each step is a block of its own, else the epoch is one block
        flush = fpenv.flush_subnormals()
        no_block = contextlib.nullcontext()
        epoch_block, step_block = (no_block, flush) if cbs is not None else (flush, no_block)
        with epoch_block:
            for step, (xb, yb, wb) in enumerate(_batches(x, y, weights, order, batch_size)):
                if cbs is not None:
                    cbs.on_train_batch_begin(step)
                with step_block:
                    grads.fill(0)
                    y_pred, activity = self._forward(Tensor._from_op(xb, None), True)
                    loss = self._total_loss(yb, y_pred, wb, activity)
                    value = float(loss.data)
                    finite = updated = math.isfinite(value)
                    if finite:
                        loss.backward()
                        with interrupts.deferred:
                            updated, checked = self._apply_gradients(checked)
                            if updated:
                                tracker._add_weighted(loss.data, len(xb))
                                for m in compiled:
                                    m.update_state(yb, y_pred.data, sample_weight=wb)
                if not updated:
                    self._stop_on_non_finite_loss(value, step, update=finite)
                    return False
                if cbs is not None:
                    cbs.on_train_batch_end(step, self._metric_logs())
                    if self.stop_training:  # as Keras: a callback may stop training mid-epoch
                        break
        return True

    def _apply_gradients(self, checked):
        """One optimizer step: ``(applied, the optimizer when the next step may skip its checks)``.

        On the flat buffer, once ``apply_gradients`` has accepted it, nothing that the
        checks look at can change; a callback may still swap ``model.optimizer``, which
        then gets a checked step of its own. A step that would make a weight or slot
        non-finite is not applied (an optimizer that replaces ``apply_gradients`` is not
        guarded so).
        """
        optimizer = self.optimizer
        if optimizer is checked:  # the caller flushes
            return optimizer._flushed_step([self._flat_grads], [self._flat_params], guard=True) is not None, optimizer
        if not _steps_as_optimizer_does(optimizer):
            optimizer.apply_gradients(self._grads_and_vars())
            return True, None
        pairs = self._grads_and_vars()
        applied = optimizer._apply([g for g, _ in pairs], [v for _, v in pairs], guard=True) is not None
        flat = self._optimizer_variables[0] is self._flat_variable
        return applied, optimizer if flat and applied else None

    def _stop_on_non_finite_loss(self, value, step, update=False) -> None:
        """Warn and stop: called before the update of the batch whose loss (or, with ``update``, update) is not finite."""
        what = (
            f"The update of batch {step} of epoch {len(self.history.epoch) + 1} would have made weights or "
            f"optimizer slots non-finite (its loss was {value})"
            if update
            else f"The training loss became {value} at batch {step} of epoch {len(self.history.epoch) + 1}"
        )
        warnings.warn(
            f"{what}: training stopped before applying that update. The History holds the epochs completed "
            "before it; try a smaller learning rate or check the data.",
            RuntimeWarning,
            stacklevel=4,
        )
        self.stop_training = True

    def _compiled_plan(self, callbacks=()):
        """The Numba training plan for this model, or None (with a one-time notice) to use the reference path."""
        from . import compiled

        plan, reason = compiled.build_plan(self, callbacks)
        if plan is None and not getattr(self, "_fallback_noted", False):
            warnings.warn(
                f"jit_compile=True: {reason}. Training on the reference path instead.", UserWarning, stacklevel=3
            )
            self._fallback_noted = True
        return plan

    def _metric_logs(self) -> dict:
        return {m.name: m.result() for m in self.metrics}

    # ================================================================ evaluate
    @_one_thread_at_a_time
    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, return_dict=False, **kwargs):
        """Loss (penalties included) and metrics on ``x``/``y``, with dropout off.

        Returns a scalar when there are no metrics, else ``[loss, *metrics]`` in compile
        order, or a dict (sorted keys) with ``return_dict=True`` — as Keras.
        """
        self._require_compiled("evaluate")
        if kwargs:
            raise ValueError(f"Argument(s) not recognized by evaluate: {sorted(kwargs)}")
        batch_size = _check_positive_int(32 if batch_size is None else batch_size, "batch_size")
        verbose = _check_verbose(verbose)
        x = data_adapter.check_x(x, self._input_shape)
        if not self.built:
            self.build((None, *x.shape[1:]))
        y = data_adapter.check_targets(y, len(x), self.loss, self.output_shape)
        weights = data_adapter.sample_weights(sample_weight, None, y, len(x))
        self._resolve_metrics(y)
        logs = self._evaluate_arrays(x, y, weights, batch_size)
        if verbose:
            bar = callbacks_module.ProgbarLogger()
            bar.set_model(self)
            bar.set_params({"verbose": verbose, "epochs": 1, "steps": math.ceil(len(x) / batch_size)})
            bar.on_test_begin()
            bar.on_test_end(logs)
        if return_dict:
            return dict(sorted(logs.items()))
        if not self._compiled_metrics:
            return logs["loss"]
        return [logs["loss"], *[logs[m.name] for m in self._compiled_metrics]]

    def _evaluate_arrays(self, x, y, weights, batch_size) -> dict:
        for m in self.metrics:
            m.reset_state()
        with no_grad():
            for start in range(0, len(x), batch_size):
                index = slice(start, start + batch_size)
                xb, yb = x[index], y[index]
                wb = None if weights is None else weights[index]
                y_pred, activity = self._forward(Tensor._from_op(xb, None), False)
                loss = self._total_loss(yb, y_pred, wb, activity)
                self._loss_tracker.update_state(loss.data, sample_weight=len(xb))
                for m in self._compiled_metrics:
                    m.update_state(yb, y_pred.data, sample_weight=wb)
        return self._metric_logs()

    # ================================================================ predict
    def predict(self, x, batch_size=None, verbose="auto"):
        """Model outputs for ``x`` (dropout off), in batches of ``batch_size`` (32), as float32 ndarray."""
        batch_size = _check_positive_int(32 if batch_size is None else batch_size, "batch_size")
        verbose = _check_verbose(verbose)
        x = data_adapter.check_x(x, self._input_shape)
        if not self.built:
            self.build((None, *x.shape[1:]))
        with no_grad():
            outputs = [
                self._forward(Tensor._from_op(x[s : s + batch_size], None), False)[0].data
                for s in range(0, len(x), batch_size)
            ]
        if verbose:
            bar = callbacks_module.ProgbarLogger()
            bar.set_model(self)
            bar.set_params({"verbose": verbose, "epochs": 1, "steps": len(outputs)})
            bar.on_predict_begin()
            bar.on_predict_end()
        return np.concatenate(outputs, axis=0)

    def predict_classes(self, x, batch_size=None, verbose=0):
        """Keras-2 spelling kept for old notebooks (removed in Keras 3): class indices.

        For a one-unit sigmoid output, 0/1 of shape ``(n, 1)``; otherwise ``argmax`` over the
        last axis. Warns with the modern spelling.
        """
        warnings.warn(
            "`model.predict_classes()` was removed in Keras 3. Use `np.argmax(model.predict(x), axis=-1)`, "
            "or `(model.predict(x) > 0.5).astype('int32')` for a sigmoid output.",
            DeprecationWarning,
            stacklevel=2,
        )
        proba = self.predict(x, batch_size=batch_size, verbose=verbose)
        if proba.shape[-1] == 1:
            return (proba > 0.5).astype("int32")
        return np.argmax(proba, axis=-1)

    # ================================================================ misc
    def summary(self, print_fn=None) -> None:
        """Print a Keras-style table of layers, output shapes and parameter counts."""
        from .summary import format_summary

        (print_fn or print)(format_summary(self))

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "input_shape": None if self._input_shape is None else list(self._input_shape[1:]),
            "layers": [{"class_name": type(l).__name__, "config": l.get_config()} for l in self._layers],
        }

    @classmethod
    def from_config(cls, config: dict) -> "Sequential":
        from .layers import Input, deserialize

        model = cls(name=config.get("name"))
        if config.get("input_shape") is not None:
            model.add(Input(shape=tuple(config["input_shape"])))
        for spec in config["layers"]:
            model.add(deserialize(spec))
        return model

    def save(self, filepath) -> None:
        """Save config, weights and optimizer state to one file (see :mod:`minitensor.saving`).

        A path ending in ``.keras`` is written as a Keras 3 ``.keras`` file instead
        (see :mod:`minitensor.keras_format`; needs ``pip install "minitensor[keras-files]"``).
        """
        if str(filepath).endswith(".keras"):
            from .keras_format import save_model as save_keras

            save_keras(self, filepath)
            return
        from .saving import save_model

        save_model(self, filepath)

    def __setstate__(self, state) -> None:
        # pickle and copy.deepcopy copy each weight on its own, which cuts the weights loose from
        # the flat buffer that training updates: gather them into a new one
        self.__dict__.update(state)
        if self.built:
            self._pack_parameters()

    def __repr__(self) -> str:
        return f"<Sequential name={self.name}, layers={len(self._layers)}, built={self.built}>"


def _steps_as_optimizer_does(optimizer) -> bool:
    """Whether ``optimizer`` applies gradients with ``Optimizer``'s own methods (so ``_step`` is its step)."""
    cls, base = type(optimizer), optimizers.Optimizer
    return isinstance(optimizer, base) and cls.apply_gradients is base.apply_gradients and cls.apply is base.apply


def _batches(x, y, weights, order, batch_size):
    """Yield ``(x, y, sample_weight)`` batches in ``order`` (row order when ``None``).

    Shuffled rows are gathered a chunk of batches at a time, not batch by batch: one
    fancy index per array per chunk, and each batch a slice of it (the same values).
    """
    n = len(x)
    if order is None:
        for start in range(0, n, batch_size):
            index = slice(start, start + batch_size)
            yield x[index], y[index], None if weights is None else weights[index]
        return
    row_bytes = max(1, x[:1].nbytes)
    chunk = max(1, _CHUNK_BYTES // (row_bytes * batch_size)) * batch_size
    for first in range(0, n, chunk):
        rows = order[first : first + chunk]
        xc, yc = x[rows], y[rows]
        wc = None if weights is None else weights[rows]
        for start in range(0, len(rows), batch_size):
            index = slice(start, start + batch_size)
            yield xc[index], yc[index], None if wc is None else wc[index]


_CHUNK_BYTES = 1 << 20  # rows of x gathered at once when shuffling


def load_model(filepath, compile: bool = True) -> Sequential:  # noqa: A002 - Keras's argument name
    """Load a model written by ``Sequential.save`` (see :mod:`minitensor.saving`).

    A path ending in ``.keras`` is read as a Keras 3 ``.keras`` file, from Keras or from
    ``save`` (see :mod:`minitensor.keras_format`).

    Args:
        filepath: the file to read.
        compile: also restore the compile settings and optimizer state (default True, as Keras).

    Example:
        >>> from minitensor.layers import Dense, Input
        >>> model = Sequential([Input(shape=(3,)), Dense(2)])
        >>> model.compile(optimizer="adam", loss="mse")
        >>> model.save("/tmp/load_model_example.minitensor")
        >>> load_model("/tmp/load_model_example.minitensor", compile=False).compiled
        False
    """
    if str(filepath).endswith(".keras"):
        from .keras_format import load_model as load_keras

        return load_keras(filepath, compile=compile)
    from .saving import load_model as _load

    return _load(filepath, compile=compile)
