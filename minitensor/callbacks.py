"""Callbacks, as Keras 3: hooks into ``fit``/``evaluate``/``predict``, ``History``, ``EarlyStopping``.

A callback overrides some of :class:`Callback`'s no-op hooks. The trainer drives a
:class:`CallbackList`, which holds the user's callbacks followed by :class:`History`
and :class:`ProgbarLogger` (Keras's order, docs/keras-formulas.md §8.2) and calls each
hook on every callback in turn. Per-batch hooks cost a call per step, so the list
reports through :attr:`CallbackList.needs_batch_logs` (alias
``needs_train_batch_hooks``; ``needs_test_batch_hooks`` and
``needs_predict_batch_hooks`` for evaluate/predict) whether any callback does
something there, and the trainer skips building per-batch logs when none does.

Keras 2 compatibility: ``history.history['acc']`` / ``['val_acc']`` after
``compile(metrics=['accuracy'])`` returns the ``'accuracy'`` / ``'val_accuracy'``
list with a ``DeprecationWarning`` (Keras 3 raises ``KeyError``); see :class:`HistoryDict`.

Example:
    >>> stop = EarlyStopping(monitor="val_loss", patience=2)
    >>> callbacks = CallbackList([stop], add_history=True, add_progbar=True,
    ...                          verbose=2, epochs=10, steps=45)
    >>> [type(c).__name__ for c in callbacks.callbacks]
    ['EarlyStopping', 'History', 'ProgbarLogger']
    >>> callbacks.needs_train_batch_hooks   # verbose=2 draws no live bar
    False
"""

from __future__ import annotations

import difflib
import numbers
import warnings

import numpy as np

from .progbar import Progbar, print_msg

__all__ = [
    "Callback",
    "CallbackList",
    "History",
    "HistoryDict",
    "EarlyStopping",
    "ProgbarLogger",
]

# Hooks that run once per batch, by phase. Keras's legacy `on_batch_begin/end` are
# what the default `on_train_batch_begin/end` call, so overriding them counts too.
_BATCH_HOOKS = {
    "train": ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end"),
    "test": ("on_test_batch_begin", "on_test_batch_end"),
    "predict": ("on_predict_batch_begin", "on_predict_batch_end"),
}


def _pythonify_logs(logs):
    """Keras's ``pythonify_logs``: sorted keys, nested dicts flattened, values made Python floats."""
    result = {}
    if not logs:
        return result
    for key, value in sorted(logs.items()):
        if isinstance(value, dict):
            result.update(_pythonify_logs(value))
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            pass
        result[key] = value
    return result


def _modern_metric_key(key, available):
    """The Keras 3 spelling of a Keras 2 ``*acc`` key (``'val_acc'`` -> ``'val_accuracy'``) if present."""
    if isinstance(key, str) and key.endswith("acc"):
        modern = key[: -len("acc")] + "accuracy"
        if modern in available:
            return modern
    return None


def _suggest_key(key, available):
    """The key of ``available`` that ``key`` most likely meant, or ``None``."""
    available = list(available)
    modern = _modern_metric_key(key, available)
    if modern is not None:
        return modern
    close = difflib.get_close_matches(key, available, n=1)
    return close[0] if close else None


class Callback:
    """Base class of callbacks: every hook is a no-op, override the ones you need.

    The trainer calls :meth:`set_model` and :meth:`set_params` before training, then
    the hooks. ``logs`` is a dict of Python floats: for ``on_epoch_end`` the epoch's
    metrics (``loss``, ``accuracy``, ``val_loss``, ...), for ``on_*_batch_end`` the
    running means so far in the epoch, for ``on_*_begin`` usually empty.

    Attributes:
        model: the model being trained (``None`` until :meth:`set_model`).
        params: Keras's dict ``{'verbose': v, 'epochs': E, 'steps': steps_per_epoch}``
            (``None`` until :meth:`set_params`).

    Example:
        >>> class PrintLoss(Callback):
        ...     def on_epoch_end(self, epoch, logs=None):
        ...         print(f"epoch {epoch}: loss={logs['loss']:.3f}")
        >>> PrintLoss().on_epoch_end(0, {"loss": 0.5})
        epoch 0: loss=0.500
    """

    # Class-level defaults, so a subclass that forgets super().__init__() still works.
    model = None
    params = None

    def __init__(self):
        self.model = None
        self.params = None

    def set_model(self, model):
        """Attach the model the hooks act on.

        Args:
            model: the model (needs only what the callback uses).

        Example:
            >>> cb = Callback(); cb.set_model("a model"); cb.model
            'a model'
        """
        self.model = model

    def set_params(self, params):
        """Store the training parameters.

        Args:
            params: dict ``{'verbose': v, 'epochs': E, 'steps': steps}``.

        Example:
            >>> cb = Callback(); cb.set_params({"verbose": 1, "epochs": 3, "steps": 45}); cb.params["epochs"]
            3
        """
        self.params = params

    # Batch-level hooks. The train ones call Keras's legacy aliases, as Keras does.
    def on_batch_begin(self, batch, logs=None):
        """Legacy alias of :meth:`on_train_batch_begin` (Keras 2 name)."""

    def on_batch_end(self, batch, logs=None):
        """Legacy alias of :meth:`on_train_batch_end` (Keras 2 name)."""

    def on_train_batch_begin(self, batch, logs=None):
        """Called before training batch ``batch`` (0-based within the epoch); ``logs`` is empty."""
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        """Called after training batch ``batch``; ``logs`` holds the epoch's running means so far."""
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch, logs=None):
        """Called before evaluation batch ``batch`` (also during ``fit``'s validation)."""

    def on_test_batch_end(self, batch, logs=None):
        """Called after evaluation batch ``batch``; ``logs`` holds running means so far."""

    def on_predict_batch_begin(self, batch, logs=None):
        """Called before prediction batch ``batch``."""

    def on_predict_batch_end(self, batch, logs=None):
        """Called after prediction batch ``batch``."""

    # Epoch- and run-level hooks.
    def on_epoch_begin(self, epoch, logs=None):
        """Called at the start of epoch ``epoch`` (0-based, counting from ``initial_epoch``)."""

    def on_epoch_end(self, epoch, logs=None):
        """Called at the end of epoch ``epoch`` with its metrics, validation ones prefixed ``val_``."""

    def on_train_begin(self, logs=None):
        """Called once at the start of ``fit``."""

    def on_train_end(self, logs=None):
        """Called once at the end of ``fit`` (also after an early stop)."""

    def on_test_begin(self, logs=None):
        """Called at the start of ``evaluate`` (and of each validation run in ``fit``)."""

    def on_test_end(self, logs=None):
        """Called at the end of ``evaluate`` with its metrics."""

    def on_predict_begin(self, logs=None):
        """Called at the start of ``predict``."""

    def on_predict_end(self, logs=None):
        """Called at the end of ``predict``."""

    def _uses_hook(self, name):
        """Whether hook ``name`` does anything for this callback.

        True when the hook is overridden (in a subclass or on the instance). A
        callback whose override is sometimes a no-op (``ProgbarLogger``) refines this.
        """
        method = getattr(self, name)
        return getattr(method, "__func__", method) is not getattr(Callback, name)


class CallbackList(Callback):
    """The callbacks of one ``fit``/``evaluate``/``predict`` run, called as one.

    Each hook calls the same hook on every callback, in order, with ``logs``
    converted as Keras does (keys sorted, nested dicts flattened, values made
    Python floats).

    Args:
        callbacks: a ``Callback`` or a (nested) list of them; default ``None``.
        add_history: append a :class:`History` unless one is given (default ``False``).
        add_progbar: append a :class:`ProgbarLogger` unless one is given (default ``False``).
        model: the model, passed to every callback's ``set_model`` (default ``None``).
        **params: the training parameters (``verbose``, ``epochs``, ``steps``), passed
            to every callback's ``set_params`` when given.

    Raises:
        TypeError: if an element is not a :class:`Callback` (e.g. a ``keras.callbacks``
            object: import the callback from ``minitensor.callbacks`` instead).

    The trainer should read :attr:`needs_train_batch_hooks` (fit),
    :attr:`needs_test_batch_hooks` (evaluate and fit's validation) and
    :attr:`needs_predict_batch_hooks` after the matching ``on_*_begin`` call, and
    call ``on_*_batch_begin``/``on_*_batch_end`` (and build per-batch logs) only
    when it is true.

    Example:
        >>> cbs = CallbackList(None, add_history=True, add_progbar=True, verbose=1, epochs=2, steps=45)
        >>> [type(c).__name__ for c in cbs.callbacks]
        ['History', 'ProgbarLogger']
        >>> cbs.needs_train_batch_hooks   # the live bar of verbose=1 is drawn per batch
        True
    """

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, **params):
        super().__init__()
        self.callbacks = _flatten_callbacks(callbacks)
        self._history = next((c for c in self.callbacks if isinstance(c, History)), None)
        self._progbar = next((c for c in self.callbacks if isinstance(c, ProgbarLogger)), None)
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
        if self._progbar is None and add_progbar:
            self._progbar = ProgbarLogger()
            self.callbacks.append(self._progbar)
        self.set_model(model)
        self.set_params(params)

    def set_model(self, model):
        """Give ``model`` to every callback, and make ``model.history`` the list's :class:`History`.

        Args:
            model: the model; ``None`` does nothing.

        Example:
            >>> class M: pass
            >>> m = M(); cbs = CallbackList(add_history=True, model=m)
            >>> m.history is cbs.callbacks[0]
            True
        """
        if model is None:
            return
        self.model = model
        if self._history is not None:
            model.history = self._history
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params):
        """Store ``params`` and, when not empty, give it to every callback.

        Args:
            params: dict ``{'verbose': v, 'epochs': E, 'steps': steps}``.

        Example:
            >>> cbs = CallbackList(add_history=True)
            >>> cbs.set_params({"verbose": 0, "epochs": 2, "steps": 3})
            >>> cbs.callbacks[0].params["steps"]
            3
        """
        self.params = params
        if params:
            for callback in self.callbacks:
                callback.set_params(params)

    # -- which per-batch hooks are live ---------------------------------------------

    def _any_uses(self, names):
        return any(callback._uses_hook(name) for callback in self.callbacks for name in names)

    def _uses_hook(self, name):  # a CallbackList nested in another one
        return self._any_uses((name,))

    @property
    def needs_train_batch_hooks(self):
        """True if some callback does something in a training-batch hook.

        When false, ``fit`` may skip ``on_train_batch_begin/end`` and the per-batch
        logs altogether. A subclass counts when it overrides ``on_train_batch_begin``,
        ``on_train_batch_end`` or the legacy ``on_batch_begin``/``on_batch_end``;
        :class:`ProgbarLogger` counts only with ``verbose=1``.

        Example:
            >>> CallbackList(add_history=True).needs_train_batch_hooks
            False
        """
        return self._any_uses(_BATCH_HOOKS["train"])

    @property
    def needs_batch_logs(self):
        """Same as :attr:`needs_train_batch_hooks`: whether ``fit`` must build per-batch logs.

        Example:
            >>> CallbackList(add_history=True, add_progbar=True, verbose=2, epochs=3, steps=9).needs_batch_logs
            False
        """
        return self.needs_train_batch_hooks

    @property
    def needs_test_batch_hooks(self):
        """True if some callback does something in ``on_test_batch_begin/end``.

        Read it after ``on_test_begin`` (or ``on_train_begin`` for ``fit``'s
        validation): the progress bar stays silent during ``fit``'s validation.

        Example:
            >>> CallbackList(add_progbar=True, verbose=1, epochs=1, steps=3).needs_test_batch_hooks
            True
        """
        return self._any_uses(_BATCH_HOOKS["test"])

    @property
    def needs_predict_batch_hooks(self):
        """True if some callback does something in ``on_predict_batch_begin/end``.

        Example:
            >>> CallbackList(add_progbar=True, verbose=2, epochs=1, steps=3).needs_predict_batch_hooks
            False
        """
        return self._any_uses(_BATCH_HOOKS["predict"])

    # -- dispatch ---------------------------------------------------------------------
    # Batch hooks receive logs as a keyword, the others positionally (as Keras).

    def on_batch_begin(self, batch, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            callback.on_batch_begin(batch, logs=logs)

    def on_batch_end(self, batch, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            callback.on_batch_end(batch, logs=logs)

    def on_train_batch_begin(self, batch, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            callback.on_train_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            callback.on_train_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            callback.on_test_batch_begin(batch, logs=logs)

    def on_test_batch_end(self, batch, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            callback.on_test_batch_end(batch, logs=logs)

    def on_predict_batch_begin(self, batch, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            callback.on_predict_batch_begin(batch, logs=logs)

    def on_predict_batch_end(self, batch, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            callback.on_predict_batch_end(batch, logs=logs)

    def on_epoch_begin(self, epoch, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def on_train_begin(self, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            callback.on_train_begin(logs)

    def on_train_end(self, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            callback.on_train_end(logs)

    def on_test_begin(self, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            callback.on_test_begin(logs)

    def on_test_end(self, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            callback.on_test_end(logs)

    def on_predict_begin(self, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            callback.on_predict_begin(logs)

    def on_predict_end(self, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            callback.on_predict_end(logs)


def batch_hook_overrides(callbacks, phase="train") -> list:
    """``(callback, hook name)`` for each per-batch hook of ``phase`` that a callback overrides.

    A :class:`ProgbarLogger` (the class itself, not a subclass) is left out: its batch
    hooks only redraw the bar. Training loops that do not call batch hooks after every
    batch use this to name what they would skip.

    Args:
        callbacks: a list of callbacks (nested lists allowed).
        phase: ``"train"``, ``"test"`` or ``"predict"``.

    Example:
        >>> class EveryBatch(Callback):
        ...     def on_train_batch_end(self, batch, logs=None):
        ...         pass
        >>> [(type(c).__name__, name) for c, name in batch_hook_overrides([EveryBatch(), History()])]
        [('EveryBatch', 'on_train_batch_end')]
    """
    return [
        (callback, name)
        for callback in _flatten_callbacks(callbacks)
        if type(callback) is not ProgbarLogger
        for name in _BATCH_HOOKS[phase]
        if callback._uses_hook(name)
    ]


def _flatten_callbacks(callbacks):
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(
            "Expected `callbacks` to be a list of `minitensor.callbacks.Callback` instances. "
            f"Received: callbacks={callbacks!r} (of type {type(callbacks).__name__})"
        )
    flat = []
    for item in callbacks:
        if isinstance(item, (list, tuple)):
            flat.extend(_flatten_callbacks(item))
        elif isinstance(item, Callback):
            flat.append(item)
        else:
            raise TypeError(
                "Expected every callback to be a `minitensor.callbacks.Callback` instance "
                "(import it from `minitensor.callbacks`, not `keras.callbacks`). "
                f"Received: {item!r} (of type {type(item).__name__})"
            )
    return flat


class HistoryDict(dict):
    """The ``dict`` behind ``History.history``, accepting Keras 2's ``'acc'`` spelling.

    A plain dict in every way (``==`` with dicts, ``json.dumps``, ``keys()``,
    ``in``, ``get``, pickling), except one: **deviation from Keras 3** —
    ``h['acc']`` where only ``'accuracy'`` exists returns ``h['accuracy']`` and
    emits a ``DeprecationWarning`` naming the modern key. The same holds for any
    missing key ending in ``acc`` whose ``accuracy`` form exists (``'val_acc'`` ->
    ``'val_accuracy'``). Keras 3 raises ``KeyError`` there; Keras 2 named the
    accuracy metric ``acc``, and the lesson reads ``results.history['acc']``.
    ``'acc' in h`` stays ``False`` and ``h.get('acc')`` stays ``None``: only
    subscription is forgiving.

    Example:
        >>> import warnings
        >>> h = HistoryDict(accuracy=[0.5, 0.75], loss=[1.0, 0.5])
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     h["acc"]
        [0.5, 0.75]
        >>> "acc" in h, sorted(h)
        (False, ['accuracy', 'loss'])
    """

    __slots__ = ()

    def __missing__(self, key):
        modern = _modern_metric_key(key, self)
        if modern is None:
            raise KeyError(key)
        warnings.warn(
            f"history[{key!r}] is the Keras 2 name of this metric. Keras 3 names a metric after "
            f"the string given to compile(metrics=[...]), so this history has {modern!r}: "
            f"use history[{modern!r}] (tf.keras 3 raises KeyError: {key!r}).",
            DeprecationWarning,
            stacklevel=2,
        )
        return dict.__getitem__(self, modern)


class History(Callback):
    """Records each epoch's logs; ``fit`` returns it and sets ``model.history`` to it.

    Attributes:
        history: :class:`HistoryDict` ``{name: [one Python float per epoch]}``, keys
            in alphabetical order (Keras sorts logs), e.g. ``['accuracy', 'loss',
            'val_accuracy', 'val_loss']``. It is kept across ``fit`` calls that reuse
            this object, as in Keras 3.
        epoch: the 0-based indices of the epochs run by the latest ``fit`` (reset by
            ``on_train_begin``), e.g. ``[1, 2]`` for ``initial_epoch=1, epochs=3``.
        params: ``{'verbose': v, 'epochs': E, 'steps': steps_per_epoch}``.
        model: the model.

    As in Keras 3 the History object itself is not subscriptable: read
    ``results.history['loss']``, not ``results['loss']``.

    Example:
        >>> h = History()
        >>> h.on_train_begin()
        >>> h.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.75})
        >>> list(h.history), h.epoch
        (['accuracy', 'loss'], [0])
    """

    def __init__(self):
        super().__init__()
        self.history = HistoryDict()
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in _pythonify_logs(logs).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self


# -- EarlyStopping --------------------------------------------------------------------

def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _less(a, b):
    # Keras compares with `ops.less`, which converts Python floats to float32 tensors.
    with np.errstate(over="ignore"):
        return bool(np.float32(a) < np.float32(b))


def _greater(a, b):
    with np.errstate(over="ignore"):
        return bool(np.float32(a) > np.float32(b))


class EarlyStopping(Callback):
    """Stop training when a monitored quantity has stopped improving (Keras 3's algorithm).

    At each epoch end (from ``start_from_epoch`` on) the monitored value counts as an
    improvement when it beats the best so far by more than ``min_delta`` (strictly:
    equal is no improvement). An improvement resets the count of waiting epochs,
    unless ``baseline`` is given and not beaten. Training stops once ``wait >=
    patience`` at a non-improving epoch after the first, so **``patience=0`` behaves
    as ``patience=1``**. Comparisons are made in float32, as Keras's ``ops.less``.

    Args:
        monitor: the logs key to watch (default ``"val_loss"``).
        min_delta: the smallest change that counts as an improvement (default 0; its
            sign is ignored).
        patience: non-improving epochs tolerated before stopping (default 0).
        verbose: 1 prints ``"Epoch N: early stopping"`` (and the restore message) at
            the end of training; 0 (default) is silent.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (default): ``*loss`` is minimised,
            any other monitor takes the direction (``_direction`` ``"up"``/``"down"``)
            of the model's metric of that name (``None`` counts as unknown), and
            ``ValueError`` is raised at the first epoch end if there is none.
        baseline: a value the monitor must beat for an improvement to reset the
            wait (default ``None``).
        restore_best_weights: at the end of training, put back the weights of the best
            epoch (default ``False``). As Keras 3, this happens **even when training
            was not stopped early**.
        start_from_epoch: epochs to ignore entirely before monitoring (default 0).

    Attributes:
        stopped_epoch: the epoch at which training was stopped (0 if it was not).
        best: the best monitored value so far (``None`` before the first).
        best_epoch: the epoch of ``best``.
        wait: epochs since the last improvement.
        best_weights: the weights saved for ``restore_best_weights``.

    Raises:
        ValueError: for an invalid argument (Keras only warns on an unknown ``mode``
            and falls back to ``"auto"``; minitensor refuses it), or in ``"auto"`` mode
            when the monitor's direction cannot be determined.

    Example:
        >>> stop = EarlyStopping(monitor="val_loss", patience=2)
        >>> class Model:                                 # a stand-in for Sequential
        ...     stop_training = False
        >>> stop.set_model(Model()); stop.on_train_begin()
        >>> for epoch, v in enumerate([1.0, 0.9, 0.95, 0.85, 0.86, 0.87]):
        ...     stop.on_epoch_end(epoch, {"val_loss": v})
        ...     if stop.model.stop_training: break
        >>> stop.stopped_epoch, stop.best, stop.best_epoch
        (5, 0.85, 3)
    """

    def __init__(
        self,
        monitor="val_loss",
        min_delta=0,
        patience=0,
        verbose=0,
        mode="auto",
        baseline=None,
        restore_best_weights=False,
        start_from_epoch=0,
    ):
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(
                "Received an invalid value for `monitor`, expected the name of a logged quantity "
                f"such as 'val_loss'. Received: monitor={monitor!r}"
            )
        if not _is_real(min_delta) or not np.isfinite(min_delta):
            raise ValueError(
                "Received an invalid value for `min_delta`, expected a finite number. "
                f"Received: min_delta={min_delta!r}"
            )
        if not _is_int(patience) or patience < 0:
            raise ValueError(
                "Received an invalid value for `patience`, expected a non-negative integer. "
                f"Received: patience={patience!r}"
            )
        if not isinstance(verbose, numbers.Integral) or verbose < 0:
            raise ValueError(
                "Received an invalid value for `verbose`, expected 0 or 1. "
                f"Received: verbose={verbose!r}"
            )
        if mode not in ("auto", "min", "max"):
            raise ValueError(
                "Received an invalid value for `mode`, expected one of 'auto', 'min', 'max'. "
                f"Received: mode={mode!r}"
            )
        if baseline is not None and not _is_real(baseline):
            raise ValueError(
                "Received an invalid value for `baseline`, expected None or a number. "
                f"Received: baseline={baseline!r}"
            )
        if not isinstance(restore_best_weights, (bool, np.bool_)) and restore_best_weights not in (0, 1):
            raise ValueError(
                "Received an invalid value for `restore_best_weights`, expected True or False. "
                f"Received: restore_best_weights={restore_best_weights!r}"
            )
        if not _is_int(start_from_epoch) or start_from_epoch < 0:
            raise ValueError(
                "Received an invalid value for `start_from_epoch`, expected a non-negative "
                f"integer. Received: start_from_epoch={start_from_epoch!r}"
            )
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))  # signed once the direction is known
        self.patience = int(patience)
        self.verbose = int(verbose)
        self.mode = mode
        self.baseline = None if baseline is None else float(baseline)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self.monitor_op = None
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs=None):
        # Reset, so that one instance can serve several fit() calls.
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()  # lazily, once the model's metrics exist
        current = self._get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch

        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return  # never stop on an improving epoch

        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print_msg(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print_msg(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        return self.monitor_op(value - self.min_delta, reference)

    def _get_monitor_value(self, logs):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            hint = _suggest_key(self.monitor, logs)
            warnings.warn(
                f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
                f"Available metrics are: {','.join(logs)}"
                + (f". Did you mean monitor={hint!r}?" if hint else ""),
                stacklevel=3,
            )
        return value

    def _set_monitor_op(self):
        if self.mode == "min":
            self.monitor_op = _less
        elif self.mode == "max":
            self.monitor_op = _greater
        else:
            name = self.monitor.removeprefix("val_")
            if name == "loss":
                self.monitor_op = _less
            metrics = _flatten_metrics(getattr(self.model, "metrics", None))
            for metric in metrics:
                # Keras metrics of unknown direction lack `_direction`; ours set it to None.
                direction = getattr(metric, "_direction", None)
                if getattr(metric, "name", None) == name and direction is not None:
                    self.monitor_op = _greater if direction == "up" else _less
            if self.monitor_op is None:
                raise ValueError(self._unknown_direction_message(name, metrics))
        if self.monitor_op is _less:
            self.min_delta = -self.min_delta

    def _unknown_direction_message(self, name, metrics):
        names = [m.name for m in metrics if isinstance(getattr(m, "name", None), str)]
        if name in names:
            reason = f"The model's metric {name!r} does not say whether it should go up or down."
        else:
            reason = f"The model has no metric named {name!r} (its metrics: {names})."
            candidates = ["loss", "val_loss"] + names + [f"val_{n}" for n in names]
            hint = _suggest_key(self.monitor, candidates)
            if hint is not None:
                reason += f" Did you mean monitor={hint!r}?"
                if _modern_metric_key(self.monitor, candidates) is not None:
                    reason += (
                        " (Keras 2 called accuracy 'acc'; Keras 3 names a metric after the string "
                        "given to compile(metrics=[...]).)"
                    )
        return (
            f"EarlyStopping callback received monitor={self.monitor}, but minitensor (like Keras) "
            "isn't able to automatically determine whether that metric should be maximized or "
            f"minimized. {reason} Pass `mode='max'` in order to monitor based on the highest "
            "metric value, or pass `mode='min'` in order to use the lowest value."
        )


def _flatten_metrics(metrics):
    """``model.metrics`` as a flat list, opening containers that hold a ``metrics`` list."""
    flat = []
    for metric in metrics or ():
        inner = getattr(metric, "metrics", None)
        if isinstance(inner, (list, tuple)) and getattr(metric, "_direction", None) is None:
            flat.extend(_flatten_metrics(inner))
        else:
            flat.append(metric)
    return flat


# -- progress display ---------------------------------------------------------------

class ProgbarLogger(Callback):
    """Prints Keras's progress bar for ``fit``, ``evaluate`` and ``predict``.

    It reads ``params = {'verbose', 'epochs', 'steps'}`` (``verbose="auto"`` means
    1). ``fit`` prints ``"Epoch k/E"`` before each epoch when ``epochs > 1``, then
    with ``verbose=1`` a live bar redrawn per batch from the running means in the
    batch logs, finalized with the epoch logs; with ``verbose=2`` one line per epoch.
    ``fit``'s validation is silent; ``evaluate`` and ``predict`` (run with ``epochs=1``
    and ``steps`` = their number of batches) draw their own bar. The format is
    :class:`~minitensor.progbar.Progbar`'s.

    Example:
        >>> bar = ProgbarLogger()
        >>> bar.set_params({"verbose": 2, "epochs": 2, "steps": 45})
        >>> bar.on_train_begin(); bar.on_epoch_begin(0)
        Epoch 1/2
        >>> bar.on_epoch_end(0, {"accuracy": 0.04375, "loss": 2.35769})  # doctest: +ELLIPSIS
        45/45 - 0s - ...s/step - accuracy: 0.0437 - loss: 2.3577
    """

    def __init__(self):
        super().__init__()
        self.seen = 0
        self.progbar = None
        self.target = None
        self.verbose = 1
        self.epochs = 1
        self._called_in_fit = False

    def set_params(self, params):
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def _uses_hook(self, name):
        if name in ("on_train_batch_end", "on_predict_batch_end"):
            return self.verbose == 1
        if name == "on_test_batch_end":
            return self.verbose == 1 and not self._called_in_fit
        return super()._uses_hook(name)

    def on_train_begin(self, logs=None):
        self._called_in_fit = True  # validation inside fit is silent

    def on_train_end(self, logs=None):
        self._called_in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self._reset_progbar()
        if self.verbose and self.epochs > 1:
            print_msg(f"Epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        self._update_progbar(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._finalize_progbar(logs)

    def on_test_begin(self, logs=None):
        if not self._called_in_fit:
            self._reset_progbar()

    def on_test_batch_end(self, batch, logs=None):
        if not self._called_in_fit:
            self._update_progbar(batch, logs)

    def on_test_end(self, logs=None):
        if not self._called_in_fit:
            self._finalize_progbar(logs)

    def on_predict_begin(self, logs=None):
        self._reset_progbar()

    def on_predict_batch_end(self, batch, logs=None):
        self._update_progbar(batch, None)  # predictions are not shown

    def on_predict_end(self, logs=None):
        self._finalize_progbar(logs)

    def _reset_progbar(self):
        self.seen = 0
        self.progbar = Progbar(target=self.target, verbose=self.verbose, unit_name="step")

    def _update_progbar(self, batch, logs):
        if self.progbar is None:
            self._reset_progbar()
        self.seen = batch + 1
        if self.verbose == 1:
            self.progbar.update(self.seen, logs.items() if logs else None, finalize=False)

    def _finalize_progbar(self, logs):
        if self.progbar is None:
            self._reset_progbar()
        if self.target is None:
            self.target = self.progbar.target = self.seen
        self.progbar.update(self.target, logs.items() if logs else None, finalize=True)
