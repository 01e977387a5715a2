"""Build and train one experiment in either engine, tf.keras or minitensor.

Both engines expose the same Keras API, so one function, :func:`build_model`, builds the model in
either from an :class:`~compare.experiments.Experiment`; only the module it takes the classes
from differs (:func:`engine_api`). :func:`train` fits one model and returns a plain
:class:`RunResult`: the per-epoch history, wall time of every epoch (measured by a callback), time
per step, the final weights, test-split metrics, and for the multiclass model the predictions and
confusion matrix on the test split.

:func:`run_experiment` runs one experiment in both engines in one of two modes:

* **parity** (default). Keras creates the model after ``keras.utils.set_random_seed(seed)``; its
  initial weights are copied into minitensor with ``set_weights``. The batch order is fixed by
  permuting the training rows once, with ``numpy.random.default_rng(seed).permutation``, and
  fitting both engines on the permuted rows with ``shuffle=False``: every epoch of both engines
  sees the same batches in the same order (Keras, seeded, also repeats one permutation every
  epoch; docs/keras-formulas.md §9.2). Dropout masks cannot be shared (Keras draws them from
  TensorFlow's stateless RNG), so a model with dropout is run once per seed, with shared weights
  and order per seed, and compared as a distribution.
* **independent**. Each engine seeds itself with the same seed, creates its own weights and
  shuffles on its own (``shuffle=True``), over several seeds; the final metrics are compared as
  distributions.

In parity mode, when a chaotic experiment's engines part, Keras is run a third time from the same
weights and order with every weight nudged by one ulp after every step, until it parts from its
un-nudged run: that step measures the training's own sensitivity to round-off (see
:mod:`compare.parity`).

TensorFlow is imported only when the Keras engine is first used (with ``TF_CPP_MIN_LOG_LEVEL=3``
unless the caller set it), and minitensor's Keras layer only when the minitensor engine is.

Example:
    >>> from compare.experiments import EXPERIMENTS
    >>> outcome = run_experiment(EXPERIMENTS["sigmoid-sgd-b100"], mode="parity", seeds=[42])  # doctest: +SKIP
    >>> len(outcome.runs["keras"][0].history["loss"])  # doctest: +SKIP
    10
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable, Sequence

import numpy as np

from .data import TaskData, load_digits_splits
from .experiments import INPUT_DIM, DropoutSpec, Experiment
from .parity import STRICT_RTOL, relative_difference, step_divergence

__all__ = [
    "ENGINES",
    "MODES",
    "RunResult",
    "ExperimentOutcome",
    "engine_api",
    "engine_versions",
    "machine_info",
    "build_model",
    "training_arrays",
    "batch_order",
    "train",
    "run_experiment",
]

#: The engines, in the order they are trained and shown.
ENGINES = ("keras", "minitensor")
#: The comparison modes.
MODES = ("parity", "independent")

_OPTIMIZER_CLASSES = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop"}

#: ``progress(engine, seed, epoch, epochs)`` is called after every epoch (epoch counts from 1).
ProgressHook = Callable[[str, int, int, int], None]


@dataclass
class RunResult:
    """What one training run produced, in plain Python and NumPy types.

    Attributes:
        engine: ``"keras"`` or ``"minitensor"``.
        experiment: the experiment's name.
        seed: the seed the run was made with.
        history: ``History.history`` as a dict of lists of floats (``loss``, ``accuracy`` and,
            with validation, ``val_loss``, ``val_accuracy``).
        epochs_run: how many epochs ran (fewer than asked when early stopping stopped training).
        epoch_seconds: wall time of each epoch, validation included (``on_epoch_begin`` to
            ``on_epoch_end``).
        steps_per_epoch: optimizer steps per epoch.
        fit_seconds: wall time of the whole ``fit`` call.
        step_losses: when recorded, per epoch the running-average loss that ``on_train_batch_end``
            reports after each step (Keras reports the mean so far of the epoch, not the batch's
            own loss); otherwise ``None``.
        final_weights: ``get_weights()`` after training.
        test_loss, test_accuracy: ``evaluate`` on the test split (``None`` for a model trained on
            all rows, where no split is held out).
        test_predictions: predicted class of each test row (multiclass only).
        confusion: confusion matrix on the test split, rows = true class, columns = predicted
            (multiclass only).
        versions: the engine's package versions.
        from_cache: whether this run was read from the result cache (:mod:`compare.cache`)
            rather than trained now; its timings are those measured when it was trained.
    """

    engine: str
    experiment: str
    seed: int
    history: dict[str, list[float]]
    epochs_run: int
    epoch_seconds: list[float]
    steps_per_epoch: int
    fit_seconds: float
    step_losses: list[list[float]] | None = None
    final_weights: list[np.ndarray] = field(default_factory=list, repr=False)
    test_loss: float | None = None
    test_accuracy: float | None = None
    test_predictions: np.ndarray | None = field(default=None, repr=False)
    confusion: np.ndarray | None = None
    versions: dict[str, str] = field(default_factory=dict)
    from_cache: bool = False

    @property
    def first_epoch_seconds(self) -> float | None:
        """Wall time of the first epoch (it includes tracing/compilation in either engine)."""
        return self.epoch_seconds[0] if self.epoch_seconds else None

    @property
    def steady_epoch_seconds(self) -> float | None:
        """Median wall time of the epochs after the first (the first one's if only one ran)."""
        if not self.epoch_seconds:
            return None
        later = self.epoch_seconds[1:] or self.epoch_seconds
        return float(np.median(later))

    @property
    def step_seconds(self) -> float | None:
        """Steady-state wall time per optimizer step (validation included in the epoch time)."""
        steady = self.steady_epoch_seconds
        return None if steady is None or not self.steps_per_epoch else steady / self.steps_per_epoch


@dataclass
class ExperimentOutcome:
    """Both engines' runs of one experiment.

    Attributes:
        experiment: the experiment as run (epochs possibly scaled down).
        mode: ``"parity"`` or ``"independent"``.
        seeds: the seeds used, one run per engine and seed.
        runs: per engine, the runs in seed order.
        order: how the batch order was fixed (a JSON-ready dict; see :func:`batch_order`).
        weights_from: where the initial weights came from (``"keras"`` in parity mode, or
            ``"own"`` when each engine initialised itself).
        sensitivity: for a chaotic experiment whose engines parted, Keras run again from the
            same weights and order with every weight nudged by one ulp after every step (see
            :func:`train`'s ``nudge_seed``); otherwise ``None``.
        reused_from: the name of an earlier experiment with the same model and training whose
            runs these are (training is deterministic given the seed), or ``None``.
    """

    experiment: Experiment
    mode: str
    seeds: list[int]
    runs: dict[str, list[RunResult]]
    order: dict
    weights_from: str
    sensitivity: RunResult | None = None
    reused_from: str | None = None


# --------------------------------------------------------------------------------------------
# The two engines behind one API
# --------------------------------------------------------------------------------------------

_API_CACHE: dict[str, SimpleNamespace] = {}


def engine_api(engine: str) -> SimpleNamespace:
    """The Keras-style classes of ``engine``, importing it on first use.

    Returns a namespace with ``Sequential``, ``Input``, ``Dense``, ``Dropout``, ``regularizers``,
    ``optimizers``, ``EarlyStopping``, ``Callback``, ``set_random_seed`` and ``clear_session``
    (a no-op for minitensor).

    Raises:
        ValueError: for an unknown engine name.
    """
    if engine in _API_CACHE:
        return _API_CACHE[engine]
    if engine == "keras":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras

        api = SimpleNamespace(
            name="keras",
            module=keras,
            Sequential=keras.Sequential,
            Input=keras.Input,
            Dense=keras.layers.Dense,
            Dropout=keras.layers.Dropout,
            regularizers=keras.regularizers,
            optimizers=keras.optimizers,
            EarlyStopping=keras.callbacks.EarlyStopping,
            Callback=keras.callbacks.Callback,
            set_random_seed=_keras_seeding(keras),
            clear_session=lambda: keras.backend.clear_session(free_memory=False),
        )
    elif engine == "minitensor":
        import minitensor
        from minitensor import optimizers, regularizers
        from minitensor.callbacks import Callback, EarlyStopping
        from minitensor.layers import Dense, Dropout, Input
        from minitensor.models import Sequential

        api = SimpleNamespace(
            name="minitensor",
            module=minitensor,
            Sequential=Sequential,
            Input=Input,
            Dense=Dense,
            Dropout=Dropout,
            regularizers=regularizers,
            optimizers=optimizers,
            EarlyStopping=EarlyStopping,
            Callback=Callback,
            set_random_seed=minitensor.set_random_seed,
            clear_session=lambda: None,
        )
    else:
        raise ValueError(f"Unknown engine {engine!r}. Expected one of: {', '.join(ENGINES)}")
    _API_CACHE[engine] = api
    return api


def _keras_seeding(keras):
    """``keras.utils.set_random_seed``, with Keras's default seeds drawn from a generator of its own.

    Keras gives every initializer and dropout layer built without a seed a default seed drawn
    from Python's global ``random`` module. That module is shared by every thread of the process,
    so in a Dask worker, whose event loop draws from it in another thread (connection and
    heartbeat jitter), a model's initial weights could depend on when those draws happen. Here
    Keras draws its default seeds from a ``random.Random`` seeded with the same seed:
    ``random.Random(seed)`` gives the same numbers as ``random.seed(seed)``, so the weights are
    those of ``keras.utils.set_random_seed(seed)``, in any thread.
    """
    import random

    from keras.src.random import seed_generator

    own = random.Random()
    seed_generator.python_random = own

    def set_random_seed(seed):
        keras.utils.set_random_seed(seed)
        own.seed(seed)

    return set_random_seed


def engine_versions(engine: str) -> dict[str, str]:
    """Package versions behind ``engine`` (imports it)."""
    api = engine_api(engine)
    if engine == "keras":
        import tensorflow as tf

        return {
            "keras": api.module.__version__,
            "tensorflow": tf.__version__,
            "keras_backend": api.module.backend.backend(),
            "numpy": np.__version__,
        }
    versions = {"minitensor": getattr(api.module, "__version__", "unknown"), "numpy": np.__version__}
    try:
        import numba

        versions["numba"] = numba.__version__
    except ImportError:  # numba is a dependency, but report its absence rather than fail
        versions["numba"] = "not installed"
    return versions


def _blas_libraries() -> list[dict] | str:
    """The BLAS libraries loaded (NumPy's, SciPy's) and their default thread counts (via threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    return [
        {"library": info.get("internal_api"), "version": info.get("version"), "num_threads": info.get("num_threads")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]


def machine_info() -> dict:
    """The machine the comparison ran on (JSON-ready)."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: TensorFlow's default)"),
        "blas_libraries": _blas_libraries(),
    }


def build_model(experiment: Experiment, engine: str, *, steps_per_execution: int = 1):
    """Build and compile ``experiment``'s model in ``engine`` (weights drawn from its own seeded RNG).

    The model starts with ``Input(shape=(64,))``, so it is built (has weights) at once.
    ``steps_per_execution`` is passed to Keras's ``compile`` (minitensor ignores it).
    """
    api = engine_api(engine)
    model = api.Sequential()
    model.add(api.Input(shape=(INPUT_DIM,)))
    for layer in experiment.layers:
        if isinstance(layer, DropoutSpec):
            model.add(api.Dropout(layer.rate))
        else:
            regularizer = None if layer.l2 is None else api.regularizers.l2(layer.l2)
            model.add(api.Dense(layer.units, activation=layer.activation, kernel_regularizer=regularizer))
    optimizer_class = getattr(api.optimizers, _OPTIMIZER_CLASSES[experiment.optimizer])
    compile_kwargs = dict(
        optimizer=optimizer_class(**experiment.optimizer_settings),
        loss=experiment.loss,
        metrics=list(experiment.metrics),
    )
    if engine == "keras" and steps_per_execution != 1:
        compile_kwargs["steps_per_execution"] = steps_per_execution
    model.compile(**compile_kwargs)
    return model


def training_arrays(experiment: Experiment, data: TaskData | None = None):
    """The ``(x, y)`` the lesson fits ``experiment`` on, unpermuted."""
    data = data if data is not None else load_digits_splits().target(experiment.task)
    if experiment.train_on == "all-unscaled":
        return data.x_all, data.y_all
    return data.x_t, data.y_t


def batch_order(n_rows: int, seed: int) -> np.ndarray:
    """The one permutation of the training rows both engines train on in parity mode.

    Drawn with ``numpy.random.default_rng(seed).permutation(n_rows)``, independent of any
    engine's global random state.
    """
    return np.random.default_rng(seed).permutation(n_rows)


def _callback_classes(api: SimpleNamespace):
    """An epoch timer and a per-step loss recorder, subclassing ``api.Callback``."""

    class EpochTimer(api.Callback):
        """Records the wall time of every epoch and reports progress."""

        def __init__(self, on_epoch=None):
            super().__init__()
            self.seconds: list[float] = []
            self._on_epoch = on_epoch
            self._start = None

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)
            if self._on_epoch is not None:
                self._on_epoch(epoch + 1)

    class StepRecorder(api.Callback):
        """Records the running-average loss reported after every training step."""

        def __init__(self):
            super().__init__()
            self.losses: list[list[float]] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.losses.append([])

        def on_train_batch_end(self, batch, logs=None):
            self.losses[-1].append(float(logs["loss"]))

    class Nudger(api.Callback):
        """After every training step, moves every weight by one float32 ulp in a random direction.

        With a ``reference`` (per-epoch lists of the un-nudged run's logged losses), training
        stops at the first step whose logged loss differs from the reference by more than
        ``rtol``: that step is all the sensitivity measurement needs.
        """

        def __init__(self, seed, reference=None, rtol=STRICT_RTOL):
            super().__init__()
            self._rng = np.random.default_rng(seed)
            self._reference = reference
            self._rtol = rtol
            self._epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self._reference is not None and self._epoch < len(self._reference):
                expected = self._reference[self._epoch]
                if batch < len(expected):
                    if float(relative_difference(float(logs["loss"]), expected[batch])) > self._rtol:
                        self.model.stop_training = True
                        return
            nudged = []
            for w in self.model.get_weights():
                direction = np.where(self._rng.random(w.shape) < 0.5, -np.inf, np.inf).astype(w.dtype)
                nudged.append(np.nextafter(w, direction))
            self.model.set_weights(nudged)

    return EpochTimer, StepRecorder, Nudger


class _KerasStepLog:
    """Per-step losses and one-ulp nudges of a Keras model, inside its compiled training step.

    Keras runs ``steps_per_execution`` steps in one TensorFlow call; a callback then sees only
    the last step of each call. Wrapping the model's ``train_step`` instead writes the
    running-average loss that step returns (the value ``logs["loss"]`` would carry) into a
    variable at the step's index and, with ``nudge_seed``, then moves every weight by one
    float32 ulp (``nextafter``). The directions are those the per-step ``Nudger`` callback
    draws: ``numpy.random.default_rng(nudge_seed).random(shape) < 0.5`` (down) for each weight
    in ``get_weights()`` order, step after step; :meth:`draw_epoch` draws one epoch's worth
    into a variable before the epoch starts. The training arithmetic is untouched: the step's
    own ops run as before, and these only read its result, or write the weights after it.
    """

    def __init__(self, model, total_steps: int, steps_per_epoch: int, *, record: bool, nudge_seed: int | None):
        import tensorflow as tf

        self.losses = tf.Variable(tf.zeros([max(total_steps, 1)], tf.float32), trainable=False) if record else None
        variables = [w.value for w in model.weights]
        self._shapes = [tuple(v.shape) for v in variables]
        self._sizes = [int(np.prod(shape)) for shape in self._shapes]
        self._steps_per_epoch = steps_per_epoch
        self._rng = None if nudge_seed is None else np.random.default_rng(nudge_seed)
        self._down = None
        if nudge_seed is not None:
            self._down = tf.Variable(tf.zeros([steps_per_epoch, sum(self._sizes)], tf.bool), trainable=False)
        original = model.train_step

        def train_step(data):
            logs = original(data)
            step = model.optimizer.iterations - 1
            if self.losses is not None:
                self.losses.scatter_nd_update(tf.reshape(step, [1, 1]), tf.reshape(tf.cast(logs["loss"], tf.float32), [1]))
            if self._down is not None:
                row = self._down[tf.math.floormod(step, steps_per_epoch)]
                start = 0
                for v, shape, size in zip(variables, self._shapes, self._sizes):
                    down = tf.reshape(row[start : start + size], shape)
                    start += size
                    infinity = tf.constant(np.inf, v.dtype)
                    v.assign(tf.math.nextafter(v, tf.where(down, -infinity, infinity)))
            return logs

        model.train_step = train_step

    def draw_epoch(self) -> None:
        """Draw the next epoch's nudge directions (call before the epoch starts)."""
        rows = [
            np.concatenate([(self._rng.random(shape) < 0.5).reshape(-1) for shape in self._shapes])
            for _ in range(self._steps_per_epoch)
        ]
        self._down.assign(np.stack(rows))

    def per_epoch(self, epochs: int, steps_per_epoch: int) -> list[list[float]]:
        """The recorded losses, one list per epoch run."""
        values = self.losses.numpy().astype(np.float64)
        return [values[e * steps_per_epoch : (e + 1) * steps_per_epoch].tolist() for e in range(epochs)]


def _stop_when_parted(api: SimpleNamespace, step_log: _KerasStepLog, reference, steps_per_epoch: int):
    """A callback stopping training after the first epoch whose logged losses part from ``reference``."""

    class StopWhenParted(api.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if step_log._down is not None:
                step_log.draw_epoch()

        def on_epoch_end(self, epoch, logs=None):
            if epoch >= len(reference):
                return
            losses = step_log.per_epoch(epoch + 1, steps_per_epoch)[epoch]
            n = min(len(losses), len(reference[epoch]))
            if np.any(relative_difference(losses[:n], reference[epoch][:n]) > STRICT_RTOL):
                self.model.stop_training = True

    return StopWhenParted()


def _as_datasets(fit_args, fit_kwargs):
    """``fit``'s arrays as unshuffled batched ``tf.data`` datasets, the batches Keras would make."""
    import tensorflow as tf

    fit_kwargs = dict(fit_kwargs)
    batch_size = fit_kwargs.pop("batch_size")

    def batched(x, y):
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)

    if "validation_data" in fit_kwargs:
        fit_kwargs["validation_data"] = batched(*fit_kwargs["validation_data"])
    return (batched(*fit_args),), fit_kwargs


def _confusion(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def train(
    experiment: Experiment,
    engine: str,
    *,
    seed: int,
    initial_weights: Sequence[np.ndarray] | None = None,
    order: np.ndarray | None = None,
    shuffle: bool = False,
    record_steps: bool = False,
    nudge_seed: int | None = None,
    nudge_reference: list[list[float]] | None = None,
    progress: ProgressHook | None = None,
    keras_execution: str = "epoch",
) -> tuple[RunResult, list[np.ndarray]]:
    """Build ``experiment`` in ``engine`` and fit it as the lesson does.

    Args:
        experiment: what to build and how to train it.
        engine: ``"keras"`` or ``"minitensor"``.
        seed: passed to the engine's ``set_random_seed`` before the model is built.
        initial_weights: if given, loaded with ``set_weights`` before training.
        order: if given, the training rows are reordered by it before ``fit``.
        shuffle: passed to ``fit``.
        record_steps: record the loss logged after every step (:attr:`RunResult.step_losses`).
        nudge_seed: if given, every weight is moved by one float32 ulp, in a direction drawn from
            ``numpy.random.default_rng(nudge_seed)``, after every step (after the step's loss
            is logged). This measures how sensitive the training is to round-off.
        nudge_reference: with ``nudge_seed``, the un-nudged run's per-step losses: training stops
            at the first step that differs from them by more than the strict tolerance.
        progress: called after every epoch, see :data:`ProgressHook`.
        keras_execution: how Keras is driven (ignored by minitensor). ``"epoch"`` (default): one
            TensorFlow call runs a whole epoch's steps (``steps_per_execution`` = steps per
            epoch), per-step losses and nudges are made inside the compiled step; ``"step"``:
            one call per step, as Keras's default, with per-step losses and nudges made by
            callbacks in Python. Both compute the same numbers (a Keras-marked test checks the
            histories are bit-identical); ``"epoch"`` saves Keras's per-step Python overhead.

    Without ``shuffle``, Keras is given its training and validation rows as batched
    ``tf.data`` datasets (``from_tensor_slices(...).batch(batch_size)``): the same batches, in
    the same order, that ``fit`` makes from arrays with ``shuffle=False``, but a plain dataset
    starts its iterator every epoch far faster than Keras's array pipeline does (measured on a
    busy 2-core machine, one epoch per call: deeper-adam-val's median epoch fell from 354 to
    79 ms, softmax's from 561 to 119 ms). With ``shuffle=True`` Keras gets the arrays and
    shuffles them itself.

    Returns:
        The run's result, and the weights the model started from.
    """
    if keras_execution not in ("epoch", "step"):
        raise ValueError(f"Expected `keras_execution` to be 'epoch' or 'step'. Received: keras_execution={keras_execution!r}")
    api = engine_api(engine)
    api.clear_session()
    api.set_random_seed(seed)
    data = load_digits_splits().target(experiment.task)
    x, y = training_arrays(experiment, data)
    if order is not None:
        x, y = x[order], y[order]
    steps_per_epoch = -(-len(x) // experiment.batch_size)
    in_graph = engine == "keras" and keras_execution == "epoch"
    model = build_model(experiment, engine, steps_per_execution=steps_per_epoch if in_graph else 1)
    if initial_weights is not None:
        model.set_weights([np.array(w) for w in initial_weights])
    start_weights = [np.array(w) for w in model.get_weights()]

    EpochTimer, StepRecorder, Nudger = _callback_classes(api)
    timer = EpochTimer(None if progress is None else (lambda epoch: progress(engine, seed, epoch, experiment.epochs)))
    callbacks = [timer]
    if experiment.early_stopping is not None:
        callbacks.append(api.EarlyStopping(**experiment.early_stopping.as_kwargs(), verbose=0))
    recorder = step_log = None
    if in_graph:
        if record_steps or nudge_seed is not None:
            step_log = _KerasStepLog(
                model, experiment.epochs * steps_per_epoch, steps_per_epoch,
                record=bool(record_steps) or nudge_reference is not None, nudge_seed=nudge_seed,
            )
        if nudge_seed is not None:
            # draws each epoch's nudges; with a reference, also stops once the run has parted from it
            callbacks.append(_stop_when_parted(api, step_log, nudge_reference or [], steps_per_epoch))
    else:
        if record_steps:
            recorder = StepRecorder()
            callbacks.append(recorder)
        if nudge_seed is not None:
            callbacks.append(Nudger(nudge_seed, nudge_reference))

    fit_kwargs = dict(
        batch_size=experiment.batch_size, epochs=experiment.epochs, verbose=0, callbacks=callbacks, shuffle=shuffle
    )
    if experiment.validation:
        fit_kwargs["validation_data"] = (data.x_val, data.y_val)
    fit_args = (x, y)
    if engine == "keras" and not shuffle:
        fit_args, fit_kwargs = _as_datasets(fit_args, fit_kwargs)
    started = time.perf_counter()
    history = model.fit(*fit_args, **fit_kwargs)
    fit_seconds = time.perf_counter() - started

    result = RunResult(
        engine=engine,
        experiment=experiment.name,
        seed=seed,
        history={key: [float(v) for v in values] for key, values in sorted(history.history.items())},
        epochs_run=len(history.epoch),
        epoch_seconds=list(timer.seconds),
        steps_per_epoch=steps_per_epoch,
        fit_seconds=fit_seconds,
        step_losses=(
            recorder.losses if recorder is not None
            else step_log.per_epoch(len(history.epoch), steps_per_epoch) if step_log is not None and record_steps
            else None
        ),
        final_weights=[np.array(w) for w in model.get_weights()],
        versions=engine_versions(engine),
    )
    if experiment.train_on == "split":
        test_loss, test_accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)
        result.test_loss, result.test_accuracy = float(test_loss), float(test_accuracy)
        if experiment.task == "multiclass":
            probabilities = np.asarray(model.predict(data.x_test, verbose=0))
            result.test_predictions = probabilities.argmax(axis=-1)
            result.confusion = _confusion(data.labels_test, result.test_predictions, data.num_classes)
    return result, start_weights


def _train_keras_cached(experiment: Experiment, cache, *, seed: int, mode: str, epochs_scale: float = 1.0,
                        nudge_seed: int | None = None, **kwargs) -> tuple[RunResult, list[np.ndarray]]:
    """``train(experiment, "keras", ...)``, read from ``cache`` when it holds the run, else stored in it.

    ``mode`` and ``epochs_scale`` are part of the cache key (:func:`compare.cache.keras_run_key`);
    ``cache=None`` trains without one.
    """
    if cache is None:
        return train(experiment, "keras", seed=seed, nudge_seed=nudge_seed, **kwargs)
    from .cache import keras_run_key

    key = keras_run_key(
        experiment, seed=seed, mode=mode, record_steps=bool(kwargs.get("record_steps")),
        epochs_scale=epochs_scale, nudge_seed=nudge_seed,
    )
    found = cache.load(key)
    if found is not None:
        found[0].experiment = experiment.name
        return found
    result, start = train(experiment, "keras", seed=seed, nudge_seed=nudge_seed, **kwargs)
    cache.store(key, result, start)
    return result, start


def run_experiment(
    experiment: Experiment,
    *,
    mode: str = "parity",
    seeds: Sequence[int] = (42,),
    record_steps: bool | None = None,
    progress: ProgressHook | None = None,
    cache=None,
    epochs_scale: float = 1.0,
    keras_execution: str = "epoch",
) -> ExperimentOutcome:
    """Train ``experiment`` in both engines and collect the runs.

    Args:
        experiment: what to run.
        mode: ``"parity"`` or ``"independent"`` (see the module docstring).
        seeds: one run per engine and seed. In parity mode a model without dropout is run with
            the first seed only.
        record_steps: record per-step losses; by default only in parity mode for a chaotic
            experiment without dropout, where it locates the step the engines part at.
        progress: called after every epoch of every run.
        cache: a :class:`compare.cache.ResultCache`: tf.keras runs found in it are read rather
            than trained, and runs trained are stored in it. ``None``: no cache.
        epochs_scale: the factor ``experiment``'s epochs were scaled by (part of the cache key).
        keras_execution: see :func:`train`.

    In parity mode, when a chaotic experiment's engines part (per-step losses differ by more
    than the strict tolerance), Keras is run a third time with its weights nudged by one ulp
    after every step, to measure how fast the training parts from itself.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}. Expected one of: {', '.join(MODES)}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("Expected at least one seed.")
    n_rows = len(training_arrays(experiment)[0])
    runs: dict[str, list[RunResult]] = {engine: [] for engine in ENGINES}
    sensitivity = None

    def keras_train(seed, **kwargs):
        return _train_keras_cached(
            experiment, cache, seed=seed, mode=mode, epochs_scale=epochs_scale,
            keras_execution=keras_execution, progress=progress, **kwargs,
        )

    if mode == "parity":
        if not experiment.has_dropout:
            seeds = seeds[:1]
        if record_steps is None:
            record_steps = bool(experiment.chaotic) and not experiment.has_dropout
        for seed in seeds:
            order = batch_order(n_rows, seed)
            keras_run, start_weights = keras_train(seed, order=order, record_steps=record_steps)
            runs["keras"].append(keras_run)
            mt_run, _ = train(
                experiment, "minitensor", seed=seed, initial_weights=start_weights, order=order,
                record_steps=record_steps, progress=progress,
            )
            runs["minitensor"].append(mt_run)
        if experiment.chaotic and record_steps and not experiment.has_dropout:
            parting = step_divergence(keras_run.step_losses, mt_run.step_losses, STRICT_RTOL)
            if parting is not None and parting["first_step_over"] is not None:
                sensitivity, _ = keras_train(
                    seeds[0], initial_weights=start_weights, order=order, record_steps=True, nudge_seed=seeds[0],
                    nudge_reference=keras_run.step_losses,
                )
        order_record = {
            "method": "pre-permuted",
            "description": (
                "The training rows were permuted once with numpy.random.default_rng(seed).permutation"
                "(n_rows) and both engines were fit on the permuted rows with shuffle=False, so every "
                "epoch of both engines saw the same batches in the same order. Keras's own shuffling "
                "was not used."
            ),
            "generator": "numpy.random.default_rng",
            "shuffle": False,
            "n_rows": n_rows,
        }
        weights_from = "keras"
    else:
        for seed in seeds:
            runs["keras"].append(keras_train(seed, shuffle=True, record_steps=bool(record_steps))[0])
            run, _ = train(experiment, "minitensor", seed=seed, shuffle=True, record_steps=bool(record_steps),
                           progress=progress)
            runs["minitensor"].append(run)
        order_record = {
            "method": "own-shuffle",
            "description": (
                "Each engine was seeded with the same seed (keras.utils.set_random_seed, "
                "minitensor.set_random_seed) and shuffled the training rows itself (shuffle=True); "
                "the orders differ between engines."
            ),
            "shuffle": True,
            "n_rows": n_rows,
        }
        weights_from = "own"
    return ExperimentOutcome(
        experiment=experiment, mode=mode, seeds=seeds, runs=runs, order=order_record, weights_from=weights_from,
        sensitivity=sensitivity,
    )
