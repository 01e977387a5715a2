"""scikit-learn estimators around minitensor models, with scikeras's API.

:class:`KerasClassifier` and :class:`KerasRegressor` take ``model=``: a ``Sequential``
(compiled or not) or a function that returns one. They fit, predict and score as any
scikit-learn estimator, so they work in ``GridSearchCV``/``RandomizedSearchCV`` (with
``n_jobs``), ``Pipeline``, ``cross_val_score`` and ``clone``, and they pickle.

Parameters are routed by prefix, as in scikeras:

* ``model__units=32`` goes to the model function (as ``units=32``);
* ``optimizer__learning_rate=0.01`` builds the optimizer (given by name or class) with it;
  likewise ``loss__...``, ``metrics__<i>__...``, ``callbacks__<i>__...``;
* ``fit__...``, ``predict__...`` and ``compile__...`` go to ``fit``, ``predict`` and
  ``compile`` (``compile__jit_compile=True`` selects the compiled training path).

``set_params`` accepts routed names that were not given at construction, which is how a
grid search sets them. A model function receives ``meta`` (what ``fit`` learned of the data:
``n_features_in_``, ``target_type_``, ``classes_``, ``n_classes_``, ``n_outputs_``, ...),
``compile_kwargs`` (the compile arguments built from the estimator's parameters) and
``params`` (all of ``get_params()``) only if it declares them (or ``**kwargs``).

Needs the ``sklearn`` extra (``pip install "minitensor[sklearn]"``).

Example:
    >>> import numpy as np
    >>> from minitensor.layers import Dense, Input
    >>> from minitensor.models import Sequential
    >>> def build(meta, units=8):
    ...     return Sequential([Input(shape=(meta["n_features_in_"],)), Dense(units, activation="relu"),
    ...                        Dense(meta["n_classes_"], activation="softmax")])
    >>> X = np.random.RandomState(0).rand(60, 4); y = np.array(["a", "b", "c"] * 20)
    >>> clf = KerasClassifier(build, loss="sparse_categorical_crossentropy", optimizer="adam",
    ...                       model__units=4, epochs=2, verbose=0, random_state=0).fit(X, y)
    >>> clf.classes_, clf.predict(X[:2]).shape, clf.predict_proba(X[:2]).shape
    (array(['a', 'b', 'c'], dtype='<U1'), (2,), (2, 3))
"""

from __future__ import annotations

import contextlib
import inspect
import random
from collections import defaultdict

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import NotFittedError
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.utils.class_weight import compute_sample_weight
    from sklearn.utils.multiclass import type_of_target
    from sklearn.utils.validation import _check_sample_weight, column_or_1d, validate_data
except ImportError:  # pragma: no cover - exercised with sklearn hidden from sys.modules
    raise ImportError(
        'minitensor.wrappers needs scikit-learn (1.6 or later), which is not installed. Install it with '
        '`pip install "minitensor[sklearn]"`.'
    ) from None

from . import callbacks as callbacks_module, losses, metrics as metrics_module, optimizers
from .models import Sequential
from .random import set_random_seed

__all__ = ["BaseWrapper", "KerasClassifier", "KerasRegressor"]


# =============================================================================== routing
def route_params(params: dict, destination: str, pass_filter, strict: bool = False) -> dict:
    """The parameters meant for ``destination``, with its prefix removed.

    Args:
        params: parameter names to values (``get_params()``).
        destination: a prefix such as ``"model"`` or ``"fit"``.
        pass_filter: unprefixed names also passed on (``None``: all of them).
        strict: leave out routed names nested further (``destination__a__b``).

    Example:
        >>> route_params({"epochs": 3, "fit__verbose": 0, "model__units": 8}, "fit", {"epochs"})
        {'epochs': 3, 'verbose': 0}
    """
    routed = {}
    prefix = destination + "__"
    for key, value in params.items():
        if "__" not in key and (pass_filter is None or key in pass_filter):
            routed[key] = value
    for key, value in params.items():  # a routed value wins over the plain one
        if key.startswith(prefix):
            name = key[len(prefix) :]
            if not (strict and "__" in name):
                routed[name] = value
    return routed


def _declares(function, name: str) -> bool:
    parameters = inspect.signature(function).parameters.values()
    return any(
        (p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)) or p.kind == p.VAR_KEYWORD
        for p in parameters
    )


def _instantiate(identifier, params: dict, kind: str, getter=None):
    """``identifier`` as an object: a class is built with ``params``; a name too when ``params`` are given."""
    if isinstance(identifier, str) and params and getter is not None:
        identifier = type(getter(identifier))
    if inspect.isclass(identifier):
        own = {k: v for k, v in params.items() if "__" not in k}
        return identifier(**own)
    if params:
        raise TypeError(
            f"Routed parameters {sorted(params)} need `{kind}` to be a class or a name. "
            f"Received: {kind}={identifier!r}"
        )
    return identifier


def _instantiate_each(items, params: dict, kind: str):
    """A list whose classes are built with ``<kind>__<i>__...`` (or shared ``<kind>__...``) parameters."""
    if isinstance(items, dict):
        items = list(items.values())
    if items is None:
        return []
    if not isinstance(items, (list, tuple)):
        items = [items]
    shared = {k: v for k, v in params.items() if "__" not in k}
    built = []
    for i, item in enumerate(items):
        indexed = route_params(params, str(i), pass_filter=set())
        if inspect.isclass(item):
            built.append(item(**{**shared, **indexed}))
        elif indexed:
            raise TypeError(
                f"Routed parameters {sorted(indexed)} for `{kind}[{i}]` need it to be a class. "
                f"Received: {kind}[{i}]={item!r}"
            )
        else:
            built.append(item)
    return built


@contextlib.contextmanager
def _seeded(seed):
    """Seed Python's and NumPy's global generators for a block, then put their states back."""
    if seed is None:
        yield
        return
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        set_random_seed(seed)
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


# =============================================================================== base
class BaseWrapper(BaseEstimator):
    """What :class:`KerasClassifier` and :class:`KerasRegressor` share (scikeras's ``BaseWrapper``).

    Args:
        model: a minitensor ``Sequential`` (used as is, compiled with the parameters below
            unless already compiled) or a function returning one, called at each fresh
            ``fit`` with its routed ``model__`` parameters and, if it declares them, ``meta``,
            ``compile_kwargs`` and ``params``. ``None`` uses the method ``_keras_build_fn``
            of a subclass.
        warm_start: if True, ``fit`` keeps the fitted model and trains it further (its
            ``history_`` starts over); if False (default), each ``fit`` builds a new model.
        random_state: ``None`` (default), an integer seed or a ``np.random.RandomState``
            (an integer is drawn from a copy of it). Seeds Python's and NumPy's global
            generators (minitensor's source of randomness) around building and fitting,
            and restores their states afterwards: a fixed value gives bit-identical models.
        optimizer: name, ``Optimizer`` class or instance (default ``"rmsprop"``); an
            instance is copied at each fresh build, so fits do not share its state.
        loss: name, ``Loss`` class or instance, or function (default ``None``: the model
            function must compile the model).
        metrics: list of names, ``Metric`` classes or instances (default ``None``).
        batch_size: batch size for ``fit`` and ``predict`` (``None``: 32; ``-1``: all rows).
        validation_batch_size: batch size for validation (default ``None``).
        verbose: 0, 1 (default) or 2, for ``fit`` and ``predict``.
        callbacks: list of callbacks (instances, or classes built with ``callbacks__...``).
        validation_split: fraction of the training rows held out for validation (default 0).
        shuffle: shuffle the rows each epoch (default True).
        run_eagerly: accepted for scikeras compatibility; minitensor always runs eagerly.
        epochs: number of epochs of each ``fit`` (default 1).
        **kwargs: routed parameters (``model__...``, ``fit__...``, ``optimizer__...``, ...),
            or plain ones passed to the model function.

    Attributes (after ``fit``):
        model_: the fitted ``Sequential``.
        history_: ``{"loss": [...], "accuracy": [...], ...}`` of the training since the last
            fresh ``fit`` (``partial_fit`` appends to it).
        n_features_in_: the number of input features.
        target_type_: the kind of target, as ``sklearn.utils.multiclass.type_of_target``.
        X_dtype_, X_shape_, y_dtype_, y_ndim_, n_outputs_, n_outputs_expected_: what ``fit`` saw.
    """

    _fit_kwargs = {
        "batch_size", "epochs", "verbose", "validation_split", "shuffle", "class_weight", "sample_weight",
        "initial_epoch", "validation_batch_size", "validation_freq",
    }
    _predict_kwargs = {"batch_size", "verbose"}
    _compile_kwargs = {"optimizer", "loss", "metrics", "loss_weights", "weighted_metrics", "run_eagerly", "jit_compile"}
    _routing_prefixes = {"model", "fit", "compile", "predict", "optimizer", "loss", "metrics", "callbacks", "score"}
    _meta_excluded = {"model_", "history_", "target_encoding_"}

    def __init__(
        self,
        model=None,
        *,
        warm_start=False,
        random_state=None,
        optimizer="rmsprop",
        loss=None,
        metrics=None,
        batch_size=None,
        validation_batch_size=None,
        verbose=1,
        callbacks=None,
        validation_split=0.0,
        shuffle=True,
        run_eagerly=False,
        epochs=1,
        **kwargs,
    ):
        self.model = model
        self.warm_start = warm_start
        self.random_state = random_state
        self.optimizer = optimizer
        self.loss = loss
        self.metrics = metrics
        self.batch_size = batch_size
        self.validation_batch_size = validation_batch_size
        self.verbose = verbose
        self.callbacks = callbacks
        self.validation_split = validation_split
        self.shuffle = shuffle
        self.run_eagerly = run_eagerly
        self.epochs = epochs
        vars(self).update(kwargs)
        if kwargs:
            self._user_params = set(kwargs)

    # ---------------------------------------------------------------- parameters
    def _get_param_names(self):
        """Every public attribute not ending in ``_``: the constructor's and the routed ones."""
        return sorted(k for k in vars(self) if not k.endswith("_") and not k.startswith("_"))

    def set_params(self, **params):
        """Set parameters, including routed ones not given at construction (``model__units=...``).

        Example:
            >>> KerasRegressor().set_params(optimizer__learning_rate=0.1).get_params()["optimizer__learning_rate"]
            0.1
        """
        plain = {}
        for name, value in params.items():
            if any(name.startswith(prefix + "__") for prefix in self._routing_prefixes):
                setattr(self, name, value)
            else:
                plain[name] = value
        if plain:
            super().set_params(**plain)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # densified before training
        tags.target_tags.required = True
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    @property
    def initialized_(self) -> bool:
        """Whether a model was built (``fit``, ``partial_fit`` or ``initialize`` was called)."""
        return hasattr(self, "model_")

    @property
    def current_epoch(self) -> int:
        """The number of epochs in ``history_`` (0 before fitting)."""
        history = getattr(self, "history_", None)
        return len(history["loss"]) if history and "loss" in history else 0

    # ---------------------------------------------------------------- building
    def _seed(self):
        state = self.random_state
        if state is None:
            return None
        if isinstance(state, np.random.RandomState):
            copy = np.random.RandomState()
            copy.set_state(state.get_state())
            return int(copy.randint(2**31 - 1))
        if isinstance(state, (int, np.integer)) and not isinstance(state, bool) and state >= 0:
            return int(state)
        raise ValueError(
            "Expected `random_state` to be None, a non-negative integer or a np.random.RandomState. "
            f"Received: random_state={state!r}"
        )

    def _build_function(self):
        model = self.model
        if model is None:
            if not hasattr(self, "_keras_build_fn"):
                raise ValueError(
                    "Expected `model` to be a minitensor model or a function returning one (or a subclass "
                    "implementing `_keras_build_fn`). Received: model=None"
                )
            return self._keras_build_fn
        if isinstance(model, Sequential):
            return lambda: model
        if callable(model):
            if hasattr(self, "_keras_build_fn"):
                raise ValueError(
                    "A subclass implementing `_keras_build_fn` cannot also be given `model`. "
                    f"Received: model={model!r}"
                )
            return model
        raise TypeError(
            "Expected `model` to be a minitensor Sequential, a function returning one, or None. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )

    def _get_metadata(self) -> dict:
        """What ``fit`` learned of the data: public attributes ending in one ``_``."""
        return {
            k: v
            for k, v in vars(self).items()
            if len(k) > 1 and k.endswith("_") and not k.endswith("__") and not k.startswith("_")
            and k not in self._meta_excluded
        }

    def _get_compile_kwargs(self) -> dict:
        """Arguments for ``model.compile`` from the parameters, routed ones applied."""
        params = self.get_params()
        kwargs = route_params(params, "compile", pass_filter=self._compile_kwargs)
        kwargs["optimizer"] = _instantiate(
            kwargs.get("optimizer"), route_params(params, "optimizer", set()), "optimizer", optimizers.get
        )
        if isinstance(kwargs["optimizer"], optimizers.Optimizer) and kwargs["optimizer"] is params.get("optimizer"):
            kwargs["optimizer"] = type(kwargs["optimizer"]).from_config(kwargs["optimizer"].get_config())
        kwargs["loss"] = _instantiate(kwargs.get("loss"), route_params(params, "loss", set()), "loss", losses.get)
        metrics = kwargs.get("metrics")
        if metrics is not None:
            kwargs["metrics"] = _instantiate_each(metrics, route_params(params, "metrics", set()), "metrics")
        return kwargs

    def _build_model(self):
        build = self._build_function()
        params = self.get_params()
        # plain extra arguments go to the model function, except those meant for compile, fit or predict
        plain = getattr(self, "_user_params", set()) - self._compile_kwargs - self._fit_kwargs - self._predict_kwargs
        build_params = route_params(params, "model", pass_filter=plain, strict=True)
        if _declares(build, "meta"):
            build_params["meta"] = self._get_metadata()
        if _declares(build, "compile_kwargs"):
            build_params["compile_kwargs"] = self._get_compile_kwargs()
        if _declares(build, "params"):
            build_params["params"] = params
        model = build(**build_params)
        if not isinstance(model, Sequential):
            raise TypeError(
                "Expected the model function to return a minitensor Sequential. "
                f"Received: {model!r} of type {type(model).__module__}.{type(model).__name__}"
            )
        return model

    def _ensure_compiled(self) -> None:
        if not self.model_.compiled:
            kwargs = self._get_compile_kwargs()
            if kwargs.get("loss") is None:
                raise ValueError(
                    "Expected a `loss` for an uncompiled model: pass loss=... (e.g. loss='binary_crossentropy') "
                    "or compile the model in the model function. Received: loss=None"
                )
            self.model_.compile(**{k: v for k, v in kwargs.items() if v is not None or k == "metrics"})

    def _fit_callbacks(self) -> list:
        params = self.get_params()
        found = _instantiate_each(params.get("callbacks"), route_params(params, "callbacks", set()), "callbacks")
        found += _instantiate_each(params.get("fit__callbacks"), route_params(params, "fit__callbacks", set()),
                                   "fit__callbacks")
        for callback in found:
            if not isinstance(callback, callbacks_module.Callback):
                raise TypeError(
                    "Expected `callbacks` to hold minitensor callbacks (or their classes). "
                    f"Received: {callback!r} of type {type(callback).__name__}"
                )
        return found

    # ---------------------------------------------------------------- data
    def _validate(self, X, y="no_validation", reset=False):
        """Check ``X`` (and ``y`` unless ``"no_validation"``) as scikit-learn does; sparse inputs are made dense."""
        common = dict(accept_sparse=True, allow_nd=True, dtype="numeric", reset=reset)
        if isinstance(y, str) and y == "no_validation":
            X, y = validate_data(self, X, **common), None
        else:
            X, y = validate_data(self, X, y, multi_output=True, y_numeric=self._y_numeric, **common)
            if hasattr(y, "toarray"):
                y = y.toarray()
            y = self._check_y(y)
        if hasattr(X, "toarray"):
            X = X.toarray()
        if reset:
            self.X_dtype_, self.X_shape_ = X.dtype, X.shape
        elif X.shape[1:] != self.X_shape_[1:]:
            raise ValueError(
                f"X has shape {X.shape[1:]} per sample, but this {type(self).__name__} was fitted on "
                f"{self.X_shape_[1:]}. Received: X of shape {X.shape}"
            )
        return X, y

    _y_numeric = False

    def _check_y(self, y):
        return y

    @staticmethod
    def _sample_weight(sample_weight, X, *arrays):
        """Checked weights; rows weighing zero are dropped (scikit-learn estimators ignore them)."""
        weights = _check_sample_weight(sample_weight, X, dtype=np.float32)  # all zeros: a ValueError
        if not np.all(weights >= 0):
            raise ValueError(f"Expected non-negative `sample_weight`. Received: a minimum of {weights.min()}")
        keep = weights != 0
        if keep.all():
            return (X, *arrays, weights)
        return (X[keep], *(a[keep] for a in arrays), weights[keep])

    # ---------------------------------------------------------------- fitting
    def initialize(self, X, y):
        """Build (and compile) the model for ``X``/``y`` without training it; returns ``self``."""
        self._initialize(*self._validate(X, y, reset=True))
        return self

    def _initialize(self, X, y) -> None:
        self._fit_target(y)
        with _seeded(self._seed()):
            self.model_ = self._build_model()
        self._ensure_compiled()
        self._set_target_encoding()

    def fit(self, X, y, sample_weight=None, **kwargs):
        """Build a new model (unless ``warm_start``) and train it on ``X``/``y``.

        Args:
            X: array-like or sparse matrix of shape ``(n_samples, n_features)``.
            y: targets, ``(n_samples,)`` or ``(n_samples, n_outputs)``.
            sample_weight: optional weights per sample (rows weighing 0 are left out).
            **kwargs: passed to ``model.fit`` (e.g. ``validation_data``), over the routed ones.

        Returns:
            ``self``.
        """
        kwargs["epochs"] = kwargs.get("epochs", getattr(self, "fit__epochs", self.epochs))
        kwargs["initial_epoch"] = kwargs.get("initial_epoch", 0)
        self._fit(X, y, sample_weight, warm=self.warm_start, **kwargs)
        return self

    def partial_fit(self, X, y, sample_weight=None, **kwargs):
        """Train one more epoch, keeping the model and appending to ``history_``; returns ``self``."""
        for name in ("epochs", "initial_epoch"):
            if name in kwargs:
                raise TypeError(f"partial_fit always trains one epoch from the current one. Received: {name}={kwargs[name]!r}")
        self._fit(X, y, sample_weight, warm=True, epochs=1, initial_epoch=self.current_epoch, **kwargs)
        return self

    def _fit(self, X, y, sample_weight, warm, epochs, initial_epoch, **kwargs) -> None:
        fresh = not (warm and self.initialized_)
        X, y = self._validate(X, y, reset=fresh)
        if fresh:
            self._initialize(X, y)
        y_model = self._encode_target(y)
        if sample_weight is not None:
            X, y_model, sample_weight = self._sample_weight(sample_weight, X, y_model)
        params = self.get_params()
        fit_args = route_params(params, "fit", pass_filter=self._fit_kwargs, strict=True)
        fit_args.pop("callbacks", None)
        fit_args.update(kwargs)
        fit_args["epochs"] = initial_epoch + epochs
        fit_args["initial_epoch"] = initial_epoch
        fit_args["sample_weight"] = sample_weight
        fit_args["callbacks"] = self._fit_callbacks()
        for name in ("batch_size", "validation_batch_size"):
            if fit_args.get(name) == -1:
                fit_args[name] = len(X)
        with _seeded(self._seed()):
            history = self.model_.fit(X, y_model, **fit_args)
        if fresh or not warm or initial_epoch == 0 or not hasattr(self, "history_"):
            self.history_ = defaultdict(list)
        for key, values in history.history.items():
            self.history_[key] += list(values)

    # ---------------------------------------------------------------- predicting
    def _predict_raw(self, X, **kwargs):
        if not self.initialized_:
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate arguments "
                "before using this estimator."
            )
        X, _ = self._validate(X)
        args = route_params(self.get_params(), "predict", pass_filter=self._predict_kwargs, strict=True)
        args.pop("callbacks", None)
        args.update(kwargs)
        if args.get("batch_size") == -1:
            args["batch_size"] = len(X)
        distinct, inverse = _distinct_rows(X)
        return self.model_.predict(distinct, **args)[inverse]

    def score(self, X, y, sample_weight=None) -> float:
        """The estimator's score of ``predict(X)`` against ``y`` (accuracy or R²), weighted by ``sample_weight``."""
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
        params = route_params(self.get_params(), "score", pass_filter=set())
        return float(self.scorer(y, self.predict(X), sample_weight=sample_weight, **params))

    # hooks of the subclasses
    def _fit_target(self, y) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _set_target_encoding(self) -> None:
        pass

    def _encode_target(self, y):  # pragma: no cover - abstract
        raise NotImplementedError


def _distinct_rows(X):
    """The distinct rows of ``X`` in an order fixed by their bytes, and where each row of ``X`` is among them.

    BLAS kernels may round a row's product differently with its position in a batch; predicting
    each distinct row once, in an order that depends only on the rows, makes a row's prediction
    independent of the order (and repetition) of the rows given.

    Example:
        >>> rows, where = _distinct_rows(np.array([[2.0], [1.0], [2.0]]))
        >>> rows[where].ravel().tolist(), len(rows)
        ([2.0, 1.0, 2.0], 2)
    """
    X = np.ascontiguousarray(X)
    flat = X.reshape(len(X), -1)
    keys = flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1]))).ravel()
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    new = np.empty(len(keys), dtype=bool)
    new[:1] = True
    new[1:] = ordered[1:] != ordered[:-1]
    inverse = np.empty(len(keys), dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    return X[order[new]], inverse


def _output_units(model) -> int | None:
    shape = model.output_shape
    return None if shape is None else shape[-1]


# =============================================================================== classifier
class KerasClassifier(ClassifierMixin, BaseWrapper):
    """A scikit-learn classifier around a minitensor model (scikeras's ``KerasClassifier``).

    Takes the arguments of :class:`BaseWrapper`, plus ``class_weight`` (``None``, a dict
    ``{label: weight}`` or ``"balanced"``; multiplies the sample weights).

    Targets: class labels of any type (strings too) in a vector, or a 0/1 indicator matrix
    (multilabel; one-hot rows are read as multiclass). ``classes_`` holds the labels and
    ``predict`` returns them. What the model trains on follows its loss:

    * ``sparse_categorical_crossentropy``: the class index, 0 to ``n_classes_ - 1``;
    * ``categorical_crossentropy``: one-hot rows;
    * ``binary_crossentropy``: 0/1 for two classes and one output unit, the indicator for
      multilabel targets, one-hot rows for an output per class;
    * any other loss: the class index for one output unit, one-hot rows otherwise.

    ``predict_proba`` returns ``(n_samples, n_classes)`` probabilities as float64 (rows
    summing to 1; a single sigmoid unit ``p`` gives columns ``1 - p`` and ``p``).

    Example:
        >>> import numpy as np
        >>> from minitensor.layers import Dense, Input
        >>> from minitensor.models import Sequential
        >>> def build(meta):
        ...     return Sequential([Input(shape=(meta["n_features_in_"],)), Dense(1, activation="sigmoid")])
        >>> X = np.array([[0.0], [0.1], [0.9], [1.0]]); y = np.array(["no", "no", "yes", "yes"])
        >>> clf = KerasClassifier(build, loss="binary_crossentropy", optimizer="sgd", epochs=1, verbose=0,
        ...                       random_state=1).fit(X, y)
        >>> clf.predict_proba(X).shape, list(clf.classes_)
        ((4, 2), [np.str_('no'), np.str_('yes')])
    """

    def __init__(
        self,
        model=None,
        *,
        warm_start=False,
        random_state=None,
        optimizer="rmsprop",
        loss=None,
        metrics=None,
        batch_size=None,
        validation_batch_size=None,
        verbose=1,
        callbacks=None,
        validation_split=0.0,
        shuffle=True,
        run_eagerly=False,
        epochs=1,
        class_weight=None,
        **kwargs,
    ):
        super().__init__(
            model=model, warm_start=warm_start, random_state=random_state, optimizer=optimizer, loss=loss,
            metrics=metrics, batch_size=batch_size, validation_batch_size=validation_batch_size, verbose=verbose,
            callbacks=callbacks, validation_split=validation_split, shuffle=shuffle, run_eagerly=run_eagerly,
            epochs=epochs, **kwargs,
        )
        self.class_weight = class_weight

    _fit_kwargs = BaseWrapper._fit_kwargs - {"class_weight"}  # folded into the sample weights

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    @staticmethod
    def scorer(y_true, y_pred, **kwargs) -> float:
        """Accuracy (``sklearn.metrics.accuracy_score``)."""
        return accuracy_score(y_true, y_pred, **kwargs)

    def _check_y(self, y):
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return y

    def _fit_target(self, y, classes=None) -> None:
        if classes is None:
            classes = getattr(self, "_partial_fit_classes", None)
        target_type = type_of_target(y if classes is None or y.ndim == 2 else np.asarray(classes))
        if target_type == "multilabel-indicator" and np.all(y.sum(axis=1) == 1):
            target_type = "multiclass-onehot"
        if target_type in ("binary", "multiclass"):
            self.classes_ = np.unique(y if classes is None else np.asarray(classes))
            self.n_classes_ = len(self.classes_)
        elif target_type in ("multilabel-indicator", "multiclass-onehot"):
            self.classes_ = np.arange(y.shape[1])
            self.n_classes_ = y.shape[1]
        else:
            raise ValueError(
                f"Unknown label type: {target_type!r}. Expected class labels (binary or multiclass) or a 0/1 "
                f"indicator matrix (multilabel). Received: y of shape {y.shape} and dtype {y.dtype}"
            )
        self.target_type_ = target_type
        self.y_dtype_, self.y_ndim_ = y.dtype, y.ndim
        self.n_outputs_ = 1
        self.n_outputs_expected_ = 1

    def _set_target_encoding(self) -> None:
        """How targets are given to the model, from its loss and output width."""
        loss = self.model_.loss
        units = _output_units(self.model_)
        kind = self.target_type_
        if kind == "multilabel-indicator":
            encoding = "indicator"
        elif isinstance(loss, losses.SparseCategoricalCrossentropy):
            encoding = "index"
        elif isinstance(loss, losses.CategoricalCrossentropy):
            encoding = "one-hot"
        elif units in (None, 1):
            encoding = "index"
        else:
            encoding = "one-hot"
        self.target_encoding_ = encoding

    def _class_indices(self, y):
        if self.target_type_ == "multiclass-onehot":
            return np.argmax(y, axis=1)
        index = np.searchsorted(self.classes_, y)
        index = np.clip(index, 0, len(self.classes_) - 1)
        unknown = self.classes_[index] != y
        if np.any(unknown):
            raise ValueError(
                f"Expected labels among the classes seen first ({list(self.classes_)}). "
                f"Received: {sorted(set(np.asarray(y)[unknown].tolist()))[:5]}"
            )
        return index

    def _encode_target(self, y):
        encoding = self.target_encoding_
        if encoding == "indicator":
            return np.asarray(y, dtype=np.float32)
        index = self._class_indices(y)
        if encoding == "index":
            return index.astype(np.int64 if isinstance(self.model_.loss, losses.SparseCategoricalCrossentropy)
                                else np.float32)
        width = max(self.n_classes_, _output_units(self.model_) or 0)
        one_hot = np.zeros((len(index), width), dtype=np.float32)
        one_hot[np.arange(len(index)), index] = 1
        return one_hot

    def fit(self, X, y, sample_weight=None, **kwargs):
        """Build a new model (unless ``warm_start``) and train it; see :meth:`BaseWrapper.fit`."""
        self.__dict__.pop("_partial_fit_classes", None)
        sample_weight = self._with_class_weight(y, sample_weight)
        return super().fit(X, y, sample_weight=sample_weight, **kwargs)

    def partial_fit(self, X, y, classes=None, sample_weight=None, **kwargs):
        """Train one epoch, keeping the model; ``classes`` lists every label (needed on the first call
        when ``y`` does not show them all)."""
        if classes is not None and not self.initialized_:
            self._partial_fit_classes = np.asarray(classes)
        sample_weight = self._with_class_weight(y, sample_weight)
        return super().partial_fit(X, y, sample_weight=sample_weight, **kwargs)

    def _with_class_weight(self, y, sample_weight):
        if self.class_weight is None:
            return sample_weight
        weights = compute_sample_weight(class_weight=self.class_weight, y=np.asarray(y))
        return weights if sample_weight is None else np.asarray(sample_weight, dtype=np.float64) * weights

    def predict_proba(self, X, **kwargs):
        """Class probabilities, ``(n_samples, n_classes)`` float64 (see the class docstring)."""
        outputs = np.asarray(self._predict_raw(X, **kwargs), dtype=np.float64)
        outputs = outputs.reshape(outputs.shape[0], -1)
        if self.target_type_ == "multilabel-indicator":
            return outputs
        if outputs.shape[1] == 1:
            p = outputs[:, 0]
            outputs = np.column_stack([1 - p, p]) if self.n_classes_ != 1 else np.ones((len(p), 1))
        return outputs / outputs.sum(axis=1, keepdims=True)

    def predict(self, X, **kwargs):
        """Predicted labels (of ``classes_``); 0/1 rows for indicator targets."""
        proba = self.predict_proba(X, **kwargs)
        if self.target_type_ == "multilabel-indicator":
            return (proba > 0.5).astype(self.y_dtype_ if self.y_dtype_.kind in "iub" else np.int64)
        index = np.argmax(proba, axis=1)
        if self.target_type_ == "multiclass-onehot":
            one_hot = np.zeros(proba.shape, dtype=self.y_dtype_)
            one_hot[np.arange(len(index)), index] = 1
            return one_hot
        return self.classes_[index]



# =============================================================================== regressor
class KerasRegressor(RegressorMixin, BaseWrapper):
    """A scikit-learn regressor around a minitensor model (scikeras's ``KerasRegressor``).

    Takes the arguments of :class:`BaseWrapper`. Targets are numbers, ``(n_samples,)`` or
    ``(n_samples, n_outputs)``; ``predict`` returns the same shape, in ``y``'s floating dtype
    (float64 for integer targets). ``score`` is R².

    Example:
        >>> import numpy as np
        >>> from minitensor.layers import Dense, Input
        >>> from minitensor.models import Sequential
        >>> def build(meta):
        ...     return Sequential([Input(shape=(meta["n_features_in_"],)), Dense(meta["n_outputs_"])])
        >>> X = np.linspace(0, 1, 20).reshape(-1, 1); y = 2 * X.ravel()
        >>> reg = KerasRegressor(build, loss="mse", optimizer="adam", epochs=1, verbose=0).fit(X, y)
        >>> reg.predict(X).shape, reg.predict(X).dtype
        ((20,), dtype('float64'))
    """

    _y_numeric = True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    @staticmethod
    def scorer(y_true, y_pred, **kwargs) -> float:
        """R² (``sklearn.metrics.r2_score``)."""
        return r2_score(y_true, y_pred, **kwargs)

    def _fit_target(self, y) -> None:
        if y.dtype.kind not in "iufb":
            raise ValueError(f"Expected numeric targets for a regressor. Received: y of dtype {y.dtype}")
        self.target_type_ = type_of_target(y)
        self.y_dtype_, self.y_ndim_ = y.dtype, y.ndim
        self.y_shape_ = y.shape
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        self.n_outputs_expected_ = 1

    def _encode_target(self, y):
        outputs = 1 if y.ndim == 1 else y.shape[1]
        if outputs != self.n_outputs_:
            raise ValueError(
                f"Expected y with {self.n_outputs_} output(s), as in the first fit. Received: y of shape {y.shape}"
            )
        return y

    def predict(self, X, **kwargs):
        """Predictions of shape ``(n_samples,)`` or ``(n_samples, n_outputs)``, as ``y`` was."""
        outputs = self._predict_raw(X, **kwargs)
        dtype = self.y_dtype_ if self.y_dtype_.kind == "f" else np.float64
        return outputs.reshape(len(outputs), *self.y_shape_[1:]).astype(dtype, copy=False)
