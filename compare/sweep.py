"""Hyperparameter sweeps: every combination of a grid, trained in both engines, as independent tasks.

A sweep takes one of the lesson's experiments as its base and a grid of settings to vary
(:func:`parse_axis`: ``batch_size=1,8,32,128``, ``learning_rate=0.001,0.01,0.1``, ...). Every
combination, every seed and each engine is one :class:`SweepTask`, trained in *independent*
mode (each engine draws its own weights and shuffles itself, seeded with the task's seed) with
the validation split passed as ``validation_data``. A task is a pure function of its spec: the
same task gives the same numbers whether it runs alone, beside others, or on another machine.

Tasks run through existing engines, never a home-made one (:func:`parallel_map`):

* locally through joblib's process pool (``jobs`` worker processes; each task holds NumPy's BLAS
  and TensorFlow's thread pools to ``threads`` threads, so that ``jobs`` tasks share the cores
  instead of each starting one thread per core);
* on a Dask distributed cluster (``scheduler="tcp://host:8786"``), with Dask's futures.

Finished tasks are written to a :class:`TaskStore` as they arrive. Interrupting a sweep
(Ctrl-C) stops the workers and keeps what finished; running the same sweep again trains only
the tasks not yet in the store. tf.keras runs also go through the result cache
(:mod:`compare.cache`), which the side-by-side comparison shares.

Example:
    >>> grid = parse_grid(["batch_size=8,32", "learning_rate=0.01,0.1"])
    >>> grid
    {'batch_size': [8, 32], 'learning_rate': [0.01, 0.1]}
    >>> tasks = sweep_tasks(EXPERIMENTS["relu-adam"], grid, seeds=[0, 1])
    >>> len(tasks)   # 2 x 2 combinations, 2 seeds, 2 engines
    16
    >>> tasks[0].settings, tasks[0].engine, tasks[0].seed, tasks[0].experiment.validation
    ((('batch_size', 8), ('learning_rate', 0.01)), 'keras', 0, True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from .experiments import EXPERIMENTS, DenseSpec, Experiment

__all__ = [
    "AXES",
    "SweepTask",
    "TaskStore",
    "available_cores",
    "parse_axis",
    "parse_grid",
    "sweep_tasks",
    "apply_settings",
    "run_task",
    "run_experiment_task",
    "run_gradients_task",
    "call",
    "pin_threads",
    "parallel_map",
    "run_sweep",
    "minitensor_fingerprint",
]

#: The settings a sweep can vary: name -> (type of each value, what the value means).
AXES = {
    "batch_size": (int, "fit's batch_size"),
    "learning_rate": (float, "the optimizer's learning_rate"),
    "optimizer": (str, "sgd, adam or rmsprop (with its default settings but any swept learning rate)"),
    "epochs": (int, "fit's epochs"),
    "hidden": (str, "units of the hidden Dense layers, dash-separated, e.g. 12-8-4 (depth and width)"),
    "activation": (str, "the hidden layers' activation: relu or sigmoid"),
    "l2": (float, "an L2 penalty on every hidden layer's kernel (0: none)"),
}
_OPTIMIZERS = ("sgd", "adam", "rmsprop")
_ACTIVATIONS = ("relu", "sigmoid")


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one).

    Example:
        >>> available_cores() >= 1
        True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------


def _value(name: str, text: str):
    kind = AXES[name][0]
    text = text.strip()
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(
            f"Expected {'an integer' if kind is int else 'a number'} for each value of `{name}`. "
            f"Received: {name}={text!r}"
        ) from None
    if kind in (int, float) and not (value > 0 or (name == "l2" and value == 0)) or value != value:
        raise ValueError(f"Expected positive values for `{name}`. Received: {name}={text}")
    if name == "optimizer" and value not in _OPTIMIZERS:
        raise ValueError(f"Expected one of {', '.join(_OPTIMIZERS)} for `optimizer`. Received: optimizer={text!r}")
    if name == "activation" and value not in _ACTIVATIONS:
        raise ValueError(f"Expected relu or sigmoid for `activation`. Received: activation={text!r}")
    if name == "hidden":
        parts = value.split("-")
        if not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError(
                f"Expected dash-separated positive layer widths for `hidden`, e.g. 12-8-4. Received: hidden={text!r}"
            )
    return value


def parse_axis(text: str) -> tuple[str, list]:
    """``"name=v1,v2,..."`` as ``(name, [values])``, values converted to the axis's type.

    Raises:
        ValueError: for an unknown name, a missing ``=``, an empty, repeated or invalid value.

    Example:
        >>> parse_axis("learning_rate=0.001,0.01")
        ('learning_rate', [0.001, 0.01])
        >>> parse_axis("hidden=12-8,30-20-12")
        ('hidden', ['12-8', '30-20-12'])
    """
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep:
        raise ValueError(f"Expected `name=value,value,...` for a sweep axis. Received: {text!r}")
    if name not in AXES:
        raise ValueError(f"Unknown sweep axis {name!r}. Expected one of: {', '.join(AXES)}. Received: {text!r}")
    items = [v for v in values.split(",")]
    if not items or any(not v.strip() for v in items):
        raise ValueError(f"Expected comma-separated values for `{name}`, none empty. Received: {text!r}")
    parsed = [_value(name, v) for v in items]
    if len(set(parsed)) != len(parsed):
        raise ValueError(f"Expected distinct values for `{name}`. Received: {text!r}")
    return name, parsed


def parse_grid(texts: Iterable[str]) -> dict[str, list]:
    """The grid of several ``name=values`` texts, in the order given (each name once).

    Example:
        >>> parse_grid(["optimizer=sgd,adam"])
        {'optimizer': ['sgd', 'adam']}
    """
    grid: dict[str, list] = {}
    for text in texts:
        name, values = parse_axis(text)
        if name in grid:
            raise ValueError(f"Sweep axis `{name}` is given twice. Received: {text!r}")
        grid[name] = values
    if not grid:
        raise ValueError("Expected at least one sweep axis, e.g. batch_size=8,32. Received: none")
    return grid


def apply_settings(base: Experiment, settings: Sequence[tuple[str, object]]) -> Experiment:
    """``base`` with ``settings`` applied, named after them, validation on.

    Example:
        >>> e = apply_settings(EXPERIMENTS["relu-adam"], [("hidden", "30-20"), ("learning_rate", 0.01)])
        >>> e.architecture, e.optimizer_label(), e.name
        ('64-30r-20r-1s', 'Adam(learning_rate=0.01)', 'relu-adam[hidden=30-20,learning_rate=0.01]')
    """
    settings = dict(settings)
    dense = [layer for layer in base.layers if isinstance(layer, DenseSpec)]
    hidden, output = dense[:-1], dense[-1]
    activation = settings.get("activation", hidden[0].activation if hidden else "relu")
    if "hidden" in settings:
        hidden = [DenseSpec(int(u), activation, hidden[0].l2 if hidden else None) for u in settings["hidden"].split("-")]
        layers = (*hidden, output)
    else:
        layers = tuple(
            dataclasses.replace(layer, activation=activation) if isinstance(layer, DenseSpec) and layer is not output
            else layer
            for layer in base.layers
        )
    if "l2" in settings:
        l2 = float(settings["l2"]) or None
        layers = tuple(
            dataclasses.replace(layer, l2=l2) if isinstance(layer, DenseSpec) and layer is not layers[-1] else layer
            for layer in layers
        )
    optimizer = settings.get("optimizer", base.optimizer)
    options = dict(base.optimizer_options) if optimizer == base.optimizer else {}
    if "learning_rate" in settings:
        options["learning_rate"] = float(settings["learning_rate"])
    label = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())
    return dataclasses.replace(
        base,
        name=f"{base.name}[{label}]",
        title=f"{base.title}; {label}",
        layers=layers,
        optimizer=optimizer,
        optimizer_options=tuple(sorted(options.items())),
        batch_size=int(settings.get("batch_size", base.batch_size)),
        epochs=int(settings.get("epochs", base.epochs)),
        validation=True,
        chaotic="",
    )


@dataclass(frozen=True)
class SweepTask:
    """One training run of a sweep: one combination of settings, one seed, one engine.

    Attributes:
        settings: the swept values, as ``(name, value)`` pairs in grid order.
        experiment: the base experiment with ``settings`` applied (:func:`apply_settings`).
        engine: ``"keras"`` or ``"minitensor"``.
        seed: seeds the engine's own weights and shuffling.
        epochs_scale: the factor the experiment's epochs were scaled by.
    """

    settings: tuple[tuple[str, object], ...]
    experiment: Experiment
    engine: str
    seed: int
    epochs_scale: float = 1.0

    def key(self) -> dict:
        """Everything the task's result depends on except software versions (JSON-ready)."""
        spec = self.experiment.to_dict()
        for name in ("name", "section", "title", "architecture"):
            spec.pop(name, None)
        return {
            "settings": [list(pair) for pair in self.settings],
            "spec": spec,
            "engine": self.engine,
            "seed": self.seed,
            "mode": "independent",
            "epochs_scale": self.epochs_scale,
        }


def sweep_tasks(
    base: Experiment,
    grid: dict[str, list],
    *,
    seeds: Sequence[int],
    engines: Sequence[str] = ("keras", "minitensor"),
    epochs_scale: float = 1.0,
) -> list[SweepTask]:
    """Every combination of ``grid`` x ``seeds`` x ``engines`` as tasks (grid order, then seed, then engine)."""
    names = list(grid)
    tasks = []
    for values in itertools.product(*(grid[n] for n in names)):
        settings = tuple(zip(names, values))
        experiment = apply_settings(base, settings)
        if epochs_scale != 1:
            experiment = dataclasses.replace(experiment, epochs=max(1, round(experiment.epochs * epochs_scale)))
        for seed in seeds:
            for engine in engines:
                tasks.append(SweepTask(settings, experiment, engine, int(seed), float(epochs_scale)))
    return tasks


# --------------------------------------------------------------------------------------------
# One task
# --------------------------------------------------------------------------------------------


def pin_threads(threads: int, *, tensorflow: bool = False):
    """A context holding this process's BLAS (and TensorFlow) to ``threads`` threads each.

    BLAS (NumPy's, through threadpoolctl) is limited for the ``with`` block. With
    ``tensorflow=True`` (or once TensorFlow is imported), TensorFlow's intra-op pool gets
    ``threads`` threads and its inter-op pool one; TensorFlow fixes those when its runtime
    starts, so they are set before the process's first Keras task and kept after (a worker
    process runs all its tasks with the same ``threads``).

    Example:
        >>> with pin_threads(1):
        ...     pass
    """
    from threadpoolctl import threadpool_limits

    if tensorflow or "tensorflow" in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            import tensorflow as tf

            if tf.config.threading.get_intra_op_parallelism_threads() != threads:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
        except (ImportError, RuntimeError):  # no TensorFlow, or its runtime already started
            pass
    return threadpool_limits(limits=threads, user_api="blas")


def run_task(task: SweepTask, threads: int = 1, cache_dir: str | None = None) -> dict:
    """Train ``task`` and return its result (JSON-ready): the task's key, history, timings.

    ``cache_dir``: a :class:`compare.cache.ResultCache` folder for tf.keras runs (``None``: none).
    """
    from .engines import train

    with pin_threads(threads, tensorflow=task.engine == "keras"):
        started = time.perf_counter()
        if task.engine == "keras":
            from .cache import ResultCache

            run = _keras_only(task, ResultCache(cache_dir) if cache_dir is not None else None)
        else:
            run, _ = train(task.experiment, task.engine, seed=task.seed, shuffle=True)
        seconds = time.perf_counter() - started
    return {
        "key": task.key(),
        "name": task.experiment.name,
        "history": run.history,
        "epochs_run": run.epochs_run,
        "fit_seconds": run.fit_seconds,
        "task_seconds": seconds,
        "from_cache": bool(run.from_cache),
        "versions": run.versions,
        "threads": threads,
    }


def run_experiment_task(
    experiment: Experiment, *, mode: str, seeds: Sequence[int], threads: int = 1, cache_dir: str | None = None,
    epochs_scale: float = 1.0,
):
    """:func:`compare.engines.run_experiment` as a task: threads pinned, tf.keras through the cache.

    Returns the :class:`~compare.engines.ExperimentOutcome`.
    """
    from .cache import ResultCache
    from .engines import run_experiment

    with pin_threads(threads, tensorflow=True):
        return run_experiment(
            experiment, mode=mode, seeds=seeds, cache=ResultCache(cache_dir) if cache_dir is not None else None,
            epochs_scale=epochs_scale,
        )


def run_gradients_task(experiments: Sequence[Experiment], *, seed: int, epochs_scale: float = 1.0, threads: int = 1):
    """What ``--gradients`` computes (:mod:`compare.gradients`), as a task: ``(results, flow)``.

    One batch's per-layer gradients of each distinct model among ``experiments`` in both
    engines, and the deep model's gradient flow; the caller adds them to the report.
    """
    from .gradients import compare_all, flow_models, gradient_flow

    with pin_threads(threads, tensorflow=True):
        results = compare_all(list(experiments), seed)
        flow = gradient_flow(seed=seed, epochs=max(1, round(flow_models()["relu"].epochs * epochs_scale)))
    return results, flow


def call(item):
    """``function(*args, **kwargs)`` for ``item = (function, args, kwargs)``: different tasks in one :func:`parallel_map`.

    Example:
        >>> call((round, (2.567,), {"ndigits": 1}))
        2.6
    """
    function, args, kwargs = item
    return function(*args, **kwargs)


def _keras_only(task: SweepTask, cache):
    """The tf.keras run of ``task`` (independent mode), through ``cache`` when given."""
    from .engines import _train_keras_cached

    return _train_keras_cached(
        task.experiment, cache, seed=task.seed, mode="independent", epochs_scale=task.epochs_scale, shuffle=True
    )[0]


# --------------------------------------------------------------------------------------------
# Many tasks: joblib locally, Dask on a cluster
# --------------------------------------------------------------------------------------------


def _missing_extra(error: ImportError) -> ImportError:
    return ImportError(
        f"Parallel and distributed runs need joblib and Dask: pip install \"minitensor[sweep]\" ({error})"
    )


def parallel_map(
    function: Callable, items: Sequence, *, jobs: int = 1, scheduler: str | None = None, **kwargs
) -> Iterator[tuple[int, object]]:
    """Yield ``(index, function(item, **kwargs))`` for every item, in the order they finish.

    Args:
        function: a module-level function (it is pickled by reference to run elsewhere).
        items: its first arguments.
        jobs: worker processes on this machine (joblib's process pool); 1 runs in this process.
        scheduler: a Dask scheduler's address (``tcp://host:8786``); overrides ``jobs``.
        kwargs: passed to every call.

    Closing the generator early (a ``break``, or Ctrl-C while it waits) stops the work: joblib's
    workers are terminated; Dask's futures are cancelled.

    Example:
        >>> sorted(parallel_map(abs, [-3, 2], jobs=1))
        [(0, 3), (1, 2)]
    """
    if scheduler is not None:
        yield from _dask_map(function, items, scheduler, kwargs)
        return
    if jobs == 1 or len(items) <= 1:
        for index, item in enumerate(items):
            yield index, function(item, **kwargs)
        return
    try:
        from joblib import Parallel, delayed
    except ImportError as error:
        raise _missing_extra(error) from None

    parallel = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered", batch_size=1,
                        pre_dispatch="n_jobs")
    results = parallel(delayed(_indexed_call)(function, index, item, kwargs) for index, item in enumerate(items))
    try:
        for result in results:  # not ``yield from``: closing this generator must not close ``results`` first
            yield result
    finally:
        with warnings.catch_warnings():  # stopping early is what the caller asked for: no advice about it
            warnings.filterwarnings("ignore", message=r".*(cancelled|not used)", category=UserWarning)
            results.close()


def _indexed_call(function, index, item, kwargs):
    return index, function(item, **kwargs)


def _dask_map(function, items, scheduler, kwargs):
    try:
        from distributed import Client, as_completed
    except ImportError as error:
        raise _missing_extra(error) from None
    client = Client(scheduler, set_as_default=False)
    futures = []
    try:
        futures = [client.submit(_indexed_call, function, index, item, kwargs, pure=False)
                   for index, item in enumerate(items)]
        for future in as_completed(futures, loop=client.loop):
            yield future.result()
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
        client.close()


# --------------------------------------------------------------------------------------------
# The store of finished tasks, and the sweep
# --------------------------------------------------------------------------------------------


def minitensor_fingerprint() -> str:
    """A hash of minitensor's source files: a changed engine gives a new fingerprint.

    Example:
        >>> len(minitensor_fingerprint())
        16
    """
    import minitensor

    root = Path(minitensor.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class TaskStore:
    """Finished sweep tasks, one JSON file each, in ``directory``.

    A task's file is named by a hash of its key and of the software it ran on (tf.keras's
    versions for Keras tasks, minitensor's source fingerprint for minitensor tasks), so results
    made by other code are not reused.

    Example:
        >>> import tempfile
        >>> store = TaskStore(tempfile.mkdtemp())
        >>> task = sweep_tasks(EXPERIMENTS["relu-adam"], {"batch_size": [8]}, seeds=[0], engines=["minitensor"])[0]
        >>> store.load(task) is None
        True
        >>> store.store(task, {"key": task.key(), "history": {}})
        >>> store.load(task)["history"]
        {}
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        self._software: dict | None = None

    def _software_for(self, engine: str) -> dict:
        if self._software is None:
            from .cache import software_fingerprint

            self._software = {"keras": software_fingerprint(), "minitensor": {"source": minitensor_fingerprint()}}
        return self._software[engine]

    def path(self, task: SweepTask) -> Path:
        """The file of ``task``'s result."""
        text = json.dumps({"task": task.key(), "software": self._software_for(task.engine)}, sort_keys=True)
        return self.directory / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.json"

    def load(self, task: SweepTask) -> dict | None:
        """``task``'s stored result, or ``None``."""
        try:
            result = json.loads(self.path(task).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return result if result.get("key") == json.loads(json.dumps(task.key())) else None

    def store(self, task: SweepTask, result: dict) -> None:
        """Write ``task``'s result (atomically)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(task)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result), encoding="utf-8")
        os.replace(tmp, path)


def run_sweep(
    tasks: Sequence[SweepTask],
    store: TaskStore,
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    threads: int | None = None,
    cache_dir: str | None = None,
    on_result: Callable[[SweepTask, dict, bool], None] | None = None,
) -> tuple[list[dict | None], bool]:
    """Run every task not already in ``store``; return the results in task order and whether interrupted.

    Args:
        tasks: what to run.
        store: finished results are read from it and written to it as they arrive.
        jobs, scheduler: where to run (see :func:`parallel_map`).
        threads: BLAS and TensorFlow threads per task; default the cores shared out among
            ``jobs`` (at least one). On a cluster, one.
        cache_dir: the tf.keras result cache's folder, or ``None`` for none.
        on_result: called with ``(task, result, stored_before)`` for every result.

    A Ctrl-C (``KeyboardInterrupt``) stops the workers; the results that finished stay in the
    store and the list (unfinished ones are ``None``), and the second value is ``True``.
    """
    results: list[dict | None] = [None] * len(tasks)
    pending = []
    for index, task in enumerate(tasks):
        found = store.load(task)
        if found is not None:
            results[index] = found
            if on_result is not None:
                on_result(task, found, True)
        else:
            pending.append(index)
    if threads is None:
        threads = 1 if scheduler is not None else max(1, available_cores() // max(1, jobs))
    interrupted = False
    stream = parallel_map(run_task, [tasks[i] for i in pending], jobs=jobs, scheduler=scheduler,
                          threads=threads, cache_dir=cache_dir)
    try:
        for position, result in stream:
            index = pending[position]
            store.store(tasks[index], result)
            results[index] = result
            if on_result is not None:
                on_result(tasks[index], result, False)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        stream.close()
    return results, interrupted
