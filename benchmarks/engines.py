"""One adapter per engine: build a benchmark model, train one epoch at a time, report what ran.

Every adapter is created by :func:`make_trainer` and offers the same :class:`Trainer` methods.
A framework is imported only when its engine is first probed or used, so the harness runs (and
its tests pass) on a machine without TensorFlow, PyTorch or JAX.

Timing of a call that trains one or more consecutive epochs (:class:`EpochTime`):

* ``epoch_s``: each epoch itself. For tf.keras and minitensor it runs from ``on_epoch_begin`` to
  ``on_epoch_end`` of a callback (that callback has no batch hooks), which is the training loop
  of the epoch, shuffling included, exactly as it runs inside a multi-epoch ``fit``. For PyTorch
  and JAX, which have no ``fit``, it is the wall time of one pass of a hand-written loop.
* ``fit_s``: the wall time of the whole ``fit(epochs=n)`` call, so it adds what ``fit`` does
  once per call (argument checks, data adapters, callbacks); kept in the JSON.

The compiled engine compiles with ``jit_compile=True``. When minitensor cannot train the model
that way it falls back to the reference path with a ``UserWarning``; the adapter records that
(``fell_back`` and the warning's text), and the report marks the row instead of presenting
reference-path numbers as compiled ones.

Example:
    >>> available, reason, versions = probe("minitensor-reference")
    >>> available
    True
"""

from __future__ import annotations

import importlib
import os
import time
import warnings
from dataclasses import dataclass

import numpy as np

from .data import border_mask
from .specs import MODELS, ModelSpec

__all__ = ["EpochTime", "Trainer", "probe", "make_trainer", "SUBNORMAL_MOMENT"]

#: The value (a float32 subnormal, below 1.18e-38) Ls presets Adam's border moments to.
SUBNORMAL_MOMENT = 1e-39

_IMPORTS = {  # engine -> the module whose import decides availability
    "tf.keras": "keras",
    "tf.keras-xla": "keras",
    "minitensor-reference": "minitensor",
    "minitensor-compiled": "minitensor",
    "pytorch": "torch",
    "jax": "jax",
}


#: How to install a missing engine's framework, where the project declares it.
_INSTALL_HINTS = {
    "tf.keras": 'pip install "minitensor[compare]"',
    "tf.keras-xla": 'pip install "minitensor[compare]"',
    "jax": 'pip install "minitensor[peers]"',
}


@dataclass
class EpochTime:
    """Wall times of one :meth:`Trainer.train` call, in seconds (see the module docstring).

    Attributes:
        epoch_s: one entry per epoch trained.
        fit_s: the whole call.
    """

    epoch_s: list
    fit_s: float


def _version(distribution_names) -> str | None:
    from importlib import metadata

    for name in distribution_names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def probe(engine: str):
    """Return ``(available, reason, versions)`` for ``engine``; imports its framework.

    ``reason`` says why an engine is unavailable (``None`` when it is available).
    """
    module = _IMPORTS[engine]
    if module == "keras":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # logging only
    try:
        mod = importlib.import_module(module)
    except ImportError as error:
        hint = _INSTALL_HINTS.get(engine)
        return False, f"not installed ({module} cannot be imported: {error}{'; ' + hint if hint else ''})", {}
    if engine.startswith("tf.keras"):
        backend = mod.backend.backend()
        if backend != "tensorflow":
            return False, f"Keras runs on the {backend!r} backend, not tensorflow (set KERAS_BACKEND)", {}
        versions = {"tensorflow": _version(["tensorflow", "tensorflow-cpu"]), "keras": mod.__version__}
    elif engine == "pytorch":
        versions = {"torch": mod.__version__}
    elif engine == "jax":
        versions = {"jax": mod.__version__, "jaxlib": _version(["jaxlib"])}
    else:
        versions = {"minitensor": mod.__version__}
    return True, None, versions


class Trainer:
    """A model being benchmarked in one engine: call :meth:`epoch` repeatedly.

    Attributes:
        engine: the engine's name.
        spec: the :class:`~benchmarks.specs.ModelSpec`.
        notes: short remarks for the report (e.g. a fallback).
        fell_back: True when the compiled engine trained on the reference path.
    """

    def __init__(self, engine: str, spec: ModelSpec, x: np.ndarray, y: np.ndarray, seed: int):
        self.engine = engine
        self.spec = spec
        self.x = x
        self.y = y
        self.seed = seed
        self.notes: list = []
        self.fell_back = False
        self.epochs_run = 0

    def train(self, epochs: int = 1) -> EpochTime:
        """Train ``epochs`` consecutive epochs (``verbose=0``, ``shuffle=True``); return their wall times."""
        start = time.perf_counter()
        seconds = [self._one_epoch() for _ in range(epochs)]
        return EpochTime(epoch_s=seconds, fit_s=time.perf_counter() - start)

    def _one_epoch(self) -> float:
        """Train one epoch and return its wall time (engines without ``fit``)."""
        raise NotImplementedError

    def preset_subnormal_moments(self) -> None:
        """Set Adam's first moments of the border-pixel weights of the first layer to +-1e-39 (Ls)."""
        raise NotImplementedError(f"{self.engine} cannot preset its optimizer state")

    def diagnostics(self) -> dict:
        """Extra facts for the JSON after the timed epochs (e.g. subnormal share of Adam's moments)."""
        return {}


def _subnormal_pattern(shape, seed):
    """+-1e-39 on the border rows of a (784, n) kernel-shaped array, 0 elsewhere (float32)."""
    rng = np.random.default_rng(seed)
    values = np.zeros(shape, dtype=np.float32)
    rows = border_mask()
    values[rows] = np.float32(SUBNORMAL_MOMENT) * rng.choice(np.array([-1, 1], dtype=np.float32), size=(rows.sum(), shape[1]))
    return values


def _subnormal_share(array) -> float:
    a = np.abs(np.asarray(array, dtype=np.float32))
    return float(np.count_nonzero((a > 0) & (a < np.finfo(np.float32).tiny)) / max(a.size, 1))


# ==================================================================== Keras-API engines
class _KerasApiTrainer(Trainer):
    """Shared by tf.keras and minitensor: both build a Sequential and call ``fit``."""

    def _timer_class(self, base):
        class EpochTimer(base):
            """Records the wall time from on_epoch_begin to on_epoch_end of each epoch (no batch hooks)."""

            def on_train_begin(self, logs=None):
                self.seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self.begin = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self.begin)

        return EpochTimer

    def _fit(self, epochs: int) -> EpochTime:
        timer = self._timer()
        start = time.perf_counter()
        self.model.fit(self.x, self.y, batch_size=self.spec.batch_size, epochs=epochs, verbose=0,
                       shuffle=True, callbacks=[timer])
        fit_s = time.perf_counter() - start
        self.epochs_run += epochs
        return EpochTime(epoch_s=timer.seconds, fit_s=fit_s)


class KerasTrainer(_KerasApiTrainer):
    """tf.keras (Keras 3 on TensorFlow): ``compile(jit_compile=False)``, TensorFlow's CPU default, or
    with ``xla=True`` (engine ``tf.keras-xla``) ``compile(jit_compile=True)``: the train step is
    compiled by XLA, the strongest CPU setting of the reference framework."""

    def __init__(self, spec, x, y, seed, xla=False):
        super().__init__("tf.keras-xla" if xla else "tf.keras", spec, x, y, seed)
        import keras

        keras.utils.set_random_seed(seed)
        layers = [keras.Input(shape=(spec.units[0],))]
        layers += [keras.layers.Dense(u, activation=spec.hidden_activation) for u in spec.units[1:-1]]
        layers.append(keras.layers.Dense(spec.units[-1], activation=spec.output_activation))
        self.model = keras.Sequential(layers)
        optimizer = keras.optimizers.Adam() if spec.optimizer == "adam" else keras.optimizers.SGD()
        self.model.compile(optimizer=optimizer, loss=spec.loss, metrics=["accuracy"], jit_compile=xla)
        self._timer = self._timer_class(keras.callbacks.Callback)
        self.xla = xla

    def train(self, epochs=1):
        result = self._fit(epochs)
        if self.xla and self.model.jit_compile is not True:  # Keras may turn XLA off for a model it cannot compile
            note = f"XLA not used: model.jit_compile is {self.model.jit_compile!r} after fit"
            if note not in self.notes:
                self.notes.append(note)
        return result

    def _first_momentum(self):
        kernel_shape = (self.spec.units[0], self.spec.units[1])
        for variable in self.model.optimizer.variables:  # iterations, learning_rate, then m, v per weight
            if tuple(variable.shape) == kernel_shape:
                return variable  # the first kernel's momentum comes before its velocity
        raise RuntimeError("tf.keras optimizer: no slot with the first kernel's shape (is it built?)")

    def preset_subnormal_moments(self):
        momentum = self._first_momentum()
        momentum.assign(_subnormal_pattern(tuple(momentum.shape), self.seed))

    def diagnostics(self):
        if self.spec.optimizer != "adam" or self.spec.units[0] != 784:
            return {}
        return {"first_kernel_momentum_subnormal_share": _subnormal_share(self._first_momentum().numpy())}


class MinitensorTrainer(_KerasApiTrainer):
    """minitensor's Sequential: the reference path, or ``compile(jit_compile=True)`` for the compiled one."""

    def __init__(self, engine, spec, x, y, seed):
        super().__init__(engine, spec, x, y, seed)
        import minitensor
        from minitensor.callbacks import Callback
        from minitensor.layers import Dense, Input
        from minitensor.models import Sequential
        from minitensor.optimizers import SGD, Adam

        minitensor.set_random_seed(seed)
        layers = [Input(shape=(spec.units[0],))]
        layers += [Dense(u, activation=spec.hidden_activation) for u in spec.units[1:-1]]
        layers.append(Dense(spec.units[-1], activation=spec.output_activation))
        self.model = Sequential(layers)
        self.compiled = engine == "minitensor-compiled"
        optimizer = Adam() if spec.optimizer == "adam" else SGD()
        self.model.compile(optimizer=optimizer, loss=spec.loss, metrics=["accuracy"], jit_compile=self.compiled)
        self._timer = self._timer_class(Callback)

    def train(self, epochs=1):
        if not self.compiled:
            return self._fit(epochs)
        first_call = self.epochs_run == 0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = self._fit(epochs)
        for warning in caught:
            text = str(warning.message)
            if "jit_compile" in text or "reference path" in text:
                self._note_fallback(text)
            elif text not in self.notes:
                self.notes.append(f"warning: {text}")
        if first_call and not self.fell_back:
            self._check_plan()
        return result

    def _note_fallback(self, reason: str) -> None:
        if not self.fell_back:
            self.fell_back = True
            self.notes.append(f"fell back to reference path: {reason}")

    def _check_plan(self) -> None:
        """Second opinion after the first epoch: ask minitensor whether it has a compiled plan."""
        try:
            from minitensor import compiled

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the first epoch already reported its warnings
                plan, reason = compiled.build_plan(self.model)
        except Exception as error:  # noqa: BLE001 (the API may change; the warning stays the main evidence)
            self.notes.append(f"could not query minitensor.compiled.build_plan: {error!r}")
            return
        if plan is None:
            self._note_fallback(f"jit_compile=True: {reason} (from build_plan)")

    def _momentum_state(self):
        """The optimizer state, and the index and kernel-shaped view of the first kernel's momentum."""
        state = self.model.optimizer.get_state()  # [iterations, m0, v0, m1, v1, ...] as copies
        kernel_shape = (self.spec.units[0], self.spec.units[1])
        m = state[1]
        if m.size == self.spec.n_params:  # one flat variable for the whole model: the kernel comes first
            view = m[: kernel_shape[0] * kernel_shape[1]].reshape(kernel_shape)
        elif m.shape == kernel_shape:
            view = m
        else:
            raise RuntimeError(f"minitensor optimizer: unexpected first slot of shape {m.shape}")
        return state, view

    def preset_subnormal_moments(self):
        state, view = self._momentum_state()
        view[...] = _subnormal_pattern(view.shape, self.seed)
        self.model.optimizer.set_state(state)

    def diagnostics(self):
        if self.spec.optimizer != "adam" or self.spec.units[0] != 784 or self.epochs_run == 0:
            return {}
        state, view = self._momentum_state()
        return {
            "first_kernel_momentum_subnormal_share": _subnormal_share(view),
            "momentum_subnormal_share": _subnormal_share(state[1]) if len(state) == 3 else None,
        }


# ==================================================================== optional engines
class TorchTrainer(Trainer):
    """PyTorch eager, a plain loop: permutation, slicing, forward, loss, backward, optimizer step.

    The loss is computed from logits (``BCEWithLogitsLoss``/``CrossEntropyLoss``), the numerically
    equivalent fused form; accuracy is computed every step as Keras's metric does. Adam uses
    Keras's epsilon (1e-7); SGD learning rate 0.01. Threads: ``torch.get_num_threads()``.
    """

    def __init__(self, spec, x, y, seed):
        super().__init__("pytorch", spec, x, y, seed)
        import torch

        self.torch = torch
        torch.manual_seed(seed)
        modules = []
        for a, b in zip(spec.units[:-2], spec.units[1:-1]):
            modules += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        modules.append(torch.nn.Linear(spec.units[-2], spec.units[-1]))
        self.model = torch.nn.Sequential(*modules)
        if spec.optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
        else:
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self.binary = spec.output_activation == "sigmoid"
        self.loss = torch.nn.BCEWithLogitsLoss() if self.binary else torch.nn.CrossEntropyLoss()
        self.tx = torch.from_numpy(x)
        self.ty = torch.from_numpy(y if self.binary else y.argmax(axis=1).astype(np.int64))
        self.generator = torch.Generator().manual_seed(seed)
        self.notes.append(f"torch threads: {torch.get_num_threads()}")

    def _one_epoch(self):
        torch = self.torch
        start = time.perf_counter()
        n, bs = len(self.tx), self.spec.batch_size
        order = torch.randperm(n, generator=self.generator)
        correct = 0
        for begin in range(0, n, bs):
            index = order[begin : begin + bs]
            xb, yb = self.tx[index], self.ty[index]
            self.optimizer.zero_grad(set_to_none=True)
            logits = self.model(xb)
            loss = self.loss(logits, yb)
            loss.backward()
            self.optimizer.step()
            with torch.no_grad():
                if self.binary:
                    correct += int(((logits > 0).float() == yb).sum())
                else:
                    correct += int((logits.argmax(dim=1) == yb).sum())
        self.epochs_run += 1
        return time.perf_counter() - start


class JaxTrainer(Trainer):
    """JAX: one ``jax.jit``-compiled function trains a whole epoch of full batches (``lax.scan``);
    a second compiled step trains the final partial batch. Adam (Keras's form, epsilon 1e-7) and
    SGD are written out, so no optax is needed. Shuffling draws a NumPy permutation per epoch.
    """

    def __init__(self, spec, x, y, seed):
        super().__init__("jax", spec, x, y, seed)
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        key = jax.random.PRNGKey(seed)
        params = []
        for a, b in zip(spec.units[:-1], spec.units[1:]):
            key, sub = jax.random.split(key)
            limit = np.sqrt(6.0 / (a + b))  # Glorot uniform, as Keras's Dense
            params.append((jax.random.uniform(sub, (a, b), jnp.float32, -limit, limit), jnp.zeros((b,), jnp.float32)))
        self.params = params
        self.binary = spec.output_activation == "sigmoid"
        self.rng = np.random.default_rng(seed)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        self.state = (zeros, zeros, jnp.zeros((), jnp.float32))  # m, v, t
        self.xd, self.yd = jnp.asarray(x), jnp.asarray(y)
        self._build()

    def preset_subnormal_moments(self):
        """Replace the first kernel's Adam first moment by the subnormal pattern (the arrays are immutable)."""
        m, v, t = self.state
        kernel_m, bias_m = m[0]
        pattern = _subnormal_pattern(tuple(kernel_m.shape), self.seed)
        self.state = ([(self.jnp.asarray(pattern), bias_m)] + list(m[1:]), v, t)

    def first_kernel_momentum(self) -> np.ndarray:
        """A NumPy copy of Adam's first moment of the first kernel."""
        return np.asarray(self.state[0][0][0])

    def diagnostics(self):
        if self.spec.optimizer != "adam" or self.spec.units[0] != 784:
            return {}
        return {"first_kernel_momentum_subnormal_share": _subnormal_share(self.first_kernel_momentum())}

    def _build(self):
        jax, jnp, spec, binary = self.jax, self.jnp, self.spec, self.binary

        def loss_fn(params, xb, yb):
            h = xb
            for w, b in params[:-1]:
                h = jax.nn.relu(h @ w + b)
            logits = h @ params[-1][0] + params[-1][1]
            if binary:
                loss = jnp.mean(jnp.maximum(logits, 0) - logits * yb + jnp.log1p(jnp.exp(-jnp.abs(logits))))
                correct = jnp.sum((logits > 0) == (yb > 0.5))
            else:
                loss = -jnp.mean(jnp.sum(yb * jax.nn.log_softmax(logits), axis=1))
                correct = jnp.sum(jnp.argmax(logits, 1) == jnp.argmax(yb, 1))
            return loss, correct

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def step(carry, batch):
            params, (m, v, t) = carry
            xb, yb = batch
            (loss, correct), grads = grad_fn(params, xb, yb)
            if spec.optimizer == "adam":
                t = t + 1
                alpha = 1e-3 * jnp.sqrt(1 - 0.999**t) / (1 - 0.9**t)
                m = jax.tree_util.tree_map(lambda m, g: m + (g - m) * 0.1, m, grads)
                v = jax.tree_util.tree_map(lambda v, g: v + (g * g - v) * 0.001, v, grads)
                params = jax.tree_util.tree_map(lambda p, m, v: p - m * alpha / (jnp.sqrt(v) + 1e-7), params, m, v)
            else:
                params = jax.tree_util.tree_map(lambda p, g: p - 0.01 * g, params, grads)
            return (params, (m, v, t)), (loss, correct)

        def full_batches(params, state, xs, ys):
            return jax.lax.scan(step, (params, state), (xs, ys))

        self._scan = jax.jit(full_batches)
        self._step = jax.jit(lambda params, state, xb, yb: step((params, state), (xb, yb)))

    def _one_epoch(self):
        jax = self.jax
        start = time.perf_counter()
        n, bs = len(self.x), self.spec.batch_size
        order = self.rng.permutation(n)
        full = (n // bs) * bs
        xs = self.xd[order[:full]].reshape(n // bs, bs, -1)
        ys = self.yd[order[:full]].reshape(n // bs, bs, -1)
        (params, state), outputs = self._scan(self.params, self.state, xs, ys)
        if full < n:
            rest = order[full:]
            (params, state), _ = self._step(params, state, self.xd[rest], self.yd[rest])
        jax.block_until_ready((params, state, outputs))
        self.params, self.state = params, state
        self.epochs_run += 1
        return time.perf_counter() - start


def make_trainer(engine: str, model: str, x: np.ndarray, y: np.ndarray, seed: int = 0) -> Trainer:
    """Build ``model`` (a name from :data:`~benchmarks.specs.MODELS`) in ``engine`` on ``(x, y)``."""
    spec = MODELS[model]
    if engine in ("tf.keras", "tf.keras-xla"):
        return KerasTrainer(spec, x, y, seed, xla=engine == "tf.keras-xla")
    if engine in ("minitensor-reference", "minitensor-compiled"):
        return MinitensorTrainer(engine, spec, x, y, seed)
    if engine == "pytorch":
        return TorchTrainer(spec, x, y, seed)
    if engine == "jax":
        return JaxTrainer(spec, x, y, seed)
    raise ValueError(f"Unknown engine {engine!r}")
