"""What is benchmarked: the models (A, B, C, D, L, Ls), the engine names, and the run's settings.

Every model is a stack of Dense layers trained with ``fit`` and ``metrics=["accuracy"]`` (as the
lesson compiles it), ``verbose=0`` and ``shuffle=True`` (every engine's default: each epoch sees
a fresh permutation of the rows). Inputs are float32 arrays made once, outside any timing.

* **A** 64-12-8-1, relu, sigmoid output, binary cross-entropy, Adam, batch 32, on the lesson's
  digits training split (1149 rows, target even/odd).
* **B** 64-300-200-80-4-1, otherwise as A.
* **C** 64-12-8-10, relu, softmax output, categorical cross-entropy on the one-hot digit, Adam,
  batch 32.
* **D** model A trained with plain SGD (Keras defaults: learning rate 0.01, no momentum) at batch
  size 1 (1149 steps per epoch).
* **L** 784-512-512-10, relu, softmax, categorical cross-entropy, Adam, batch 128, on 60,000 rows
  of random data shaped like MNIST: uniform [0, 1) pixels in the central 20x20 square and zeros
  in the 384 border pixels (MNIST digits sit in a 20x20 box of a 28x28 image), random labels.
* **Ls** model L with the Adam first moments of the 196,608 first-layer weights fed by the border
  pixels (29% of the 669,706 parameters) preset to float32 subnormals (+-1e-39) before every
  timed epoch. Those weights' gradient is exactly 0 (their input is), so in L their moments stay
  0; in Ls they show what an engine does with subnormal optimizer state (NumPy and Numba
  compute on subnormals slowly unless the processor flushes them to zero, as TensorFlow's CPU
  kernels do).

Example:
    >>> MODELS["A"].units
    (64, 12, 8, 1)
    >>> parse_list("A,c", MODEL_NAMES, "model")
    ['A', 'C']
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ModelSpec",
    "MODELS",
    "MODEL_NAMES",
    "ENGINE_NAMES",
    "ISOLATION_MODES",
    "BASELINE_ENGINE",
    "RunConfig",
    "full_config",
    "quick_config",
    "parse_list",
    "flops_per_row",
    "FLOP_COUNT_NOTE",
]


@dataclass(frozen=True)
class ModelSpec:
    """One benchmark model: layer widths, activations, loss, optimizer, batch size and data.

    Attributes:
        name: ``"A"``, ``"B"``, ``"C"``, ``"D"``, ``"L"`` or ``"Ls"``.
        units: widths from the input to the output, e.g. ``(64, 12, 8, 1)``.
        hidden_activation: activation of every hidden layer (``"relu"``).
        output_activation: ``"sigmoid"`` or ``"softmax"``.
        loss: ``"binary_crossentropy"`` or ``"categorical_crossentropy"``.
        optimizer: ``"adam"`` (Keras defaults) or ``"sgd"`` (Keras defaults, no momentum).
        batch_size: the ``fit`` batch size.
        data: ``"digits-binary"``, ``"digits-onehot"`` or ``"mnist-random"``.
        full_rows: rows of the full training set (1149 for the digits, 60,000 for L).
        subnormal_moments: preset Adam's first moments of the border weights to subnormals (Ls).
        description: one line for the report.
    """

    name: str
    units: tuple
    hidden_activation: str
    output_activation: str
    loss: str
    optimizer: str
    batch_size: int
    data: str
    full_rows: int
    subnormal_moments: bool = False
    description: str = ""

    @property
    def n_params(self) -> int:
        """Number of trainable parameters (kernels and biases)."""
        return sum(a * b + b for a, b in zip(self.units[:-1], self.units[1:]))


_DIGITS_ROWS = 1149  # the lesson's X_t: 1797 rows -> 80% train -> 80% of that
_MNIST_ROWS = 60_000

MODELS = {
    "A": ModelSpec("A", (64, 12, 8, 1), "relu", "sigmoid", "binary_crossentropy", "adam", 32,
                   "digits-binary", _DIGITS_ROWS, description="64-12-8-1 relu, Adam, batch 32, binary CE (lesson)"),
    "B": ModelSpec("B", (64, 300, 200, 80, 4, 1), "relu", "sigmoid", "binary_crossentropy", "adam", 32,
                   "digits-binary", _DIGITS_ROWS, description="64-300-200-80-4-1 relu, Adam, batch 32, binary CE"),
    "C": ModelSpec("C", (64, 12, 8, 10), "relu", "softmax", "categorical_crossentropy", "adam", 32,
                   "digits-onehot", _DIGITS_ROWS, description="64-12-8-10 relu/softmax, Adam, batch 32, categorical CE"),
    "D": ModelSpec("D", (64, 12, 8, 1), "relu", "sigmoid", "binary_crossentropy", "sgd", 1,
                   "digits-binary", _DIGITS_ROWS, description="model A with plain SGD at batch size 1"),
    "L": ModelSpec("L", (784, 512, 512, 10), "relu", "softmax", "categorical_crossentropy", "adam", 128,
                   "mnist-random", _MNIST_ROWS, description="784-512-512-10 relu/softmax, Adam, batch 128, random MNIST-sized data"),
    "Ls": ModelSpec("Ls", (784, 512, 512, 10), "relu", "softmax", "categorical_crossentropy", "adam", 128,
                    "mnist-random", _MNIST_ROWS, subnormal_moments=True,
                    description="model L with 29% of Adam's first moments preset subnormal"),
}
MODEL_NAMES = tuple(MODELS)

#: How engines are kept apart while they are timed (see :attr:`RunConfig.isolation`).
ISOLATION_MODES = ("process", "in-process")

#: Engine names as the CLI spells them, in table order. ``tf.keras`` is Keras 3 on TensorFlow with
#: ``jit_compile=False`` (TensorFlow's CPU default), ``tf.keras-xla`` the same model compiled with
#: ``jit_compile=True`` (XLA). ``pytorch`` and ``jax`` run only when installed (``jax`` comes with the
#: ``peers`` extra).
ENGINE_NAMES = ("tf.keras", "tf.keras-xla", "minitensor-reference", "minitensor-compiled", "pytorch", "jax")
#: The engine every ratio is taken against.
BASELINE_ENGINE = "tf.keras"

#: What the GFLOP/s column counts.
FLOP_COUNT_NOTE = (
    "2*m*n*k per matrix product: the forward product of every Dense layer, and in the backward pass "
    "dW of every layer and dX of every layer but the first (the input needs no gradient). "
    "Elementwise work (activations, loss, optimizer) is not counted."
)


def flops_per_row(units) -> int:
    """Matrix-product FLOPs per training row for a Dense stack of ``units`` (see :data:`FLOP_COUNT_NOTE`).

    Example:
        >>> flops_per_row((784, 512, 512, 10))  # 2*(3*(512*512 + 512*10) + 2*784*512)
        3209216
    """
    products = [a * b for a, b in zip(units[:-1], units[1:])]
    return 2 * (3 * sum(products) - products[0])


@dataclass
class RunConfig:
    """Settings of one benchmark run.

    Attributes:
        models: model names to run, in order.
        engines: engine names to try, in order (unavailable ones are reported as skipped).
        runs: how many times the whole measurement is repeated (every model in every engine, fresh
            worker processes, the GEMM peak); the report gives the median of the runs' medians and
            their spread (min–max over the runs).
        repeats: timed rounds per engine and model (engines alternate within each round).
        warmup: untimed epochs per engine after the first (timed, reported separately) epoch.
        rows: training rows per model (fewer than the full set means a subset, said in the report).
        memory: report the peak RSS of a process that trains the model (a worker's after its first
            epoch; with in-process isolation, a child process started for it).
        isolation: ``"process"`` (default): every engine trains in its own worker process
            (:mod:`benchmarks.worker`), one at a time; ``"in-process"``: all engines in this process.
        round_s: seconds of training per engine and round: an engine trains as many consecutive
            epochs per round as its last warm-up epoch says fit in this (at least one; always one
            for Ls); its epoch time in that round is their mean. 0 trains one epoch per round.
        settle_s: pause before every round, so that the previous engine's threads (TensorFlow's
            pools, OpenBLAS's spinning workers) are idle when the next engine is timed.
        gemm_size: side of the square float32 matrices of the GEMM-peak measurement.
        gemm_repeats: repeats of that measurement (the median is reported).
        adam_steps: Adam updates timed per case in the subnormal micro-benchmark (and steps timed
            per repeat in the measurement of L's matrix products alone).
        adam_repeats: repeats of each case, and of that measurement (the median is reported).
        cold_start: models whose compiled first epoch is also measured with an empty and then a warm
            Numba kernel cache, each in a fresh process (:mod:`benchmarks.coldstart`); empty: none.
        seed: seed for data, weights and shuffling.
        quick: whether this is a ``--quick`` run (recorded, and used in the file name).
        output_dir: where ``<date>-<host>.json`` and ``.md`` go; ``None`` writes nothing.
        argv: the command-line arguments, for the report's exact command (``None`` when the run
            was started from Python, not from the command line).
    """

    models: list = field(default_factory=lambda: list(MODEL_NAMES))
    engines: list = field(default_factory=lambda: list(ENGINE_NAMES))
    runs: int = 1
    repeats: int = 5
    warmup: int = 1
    rows: dict = field(default_factory=dict)
    memory: bool = True
    isolation: str = "process"
    settle_s: float = 0.2
    round_s: float = 0.25
    gemm_size: int = 2048
    gemm_repeats: int = 7
    adam_steps: int = 20
    adam_repeats: int = 5
    cold_start: list = field(default_factory=lambda: ["A"])
    seed: int = 0
    quick: bool = False
    output_dir: str | None = None
    argv: list | None = None

    def rows_for(self, model: str) -> int:
        """Training rows used for ``model`` (its full set unless :attr:`rows` says otherwise)."""
        return int(self.rows.get(model, MODELS[model].full_rows))


#: Rows of L (and Ls) per timed epoch in a full run: a subset keeps the run short on 2 cores.
FULL_L_ROWS = 12_800


def full_config(**overrides) -> RunConfig:
    """The default run: 5 repeats after 1 warm-up epoch; the digits models on their full training
    split, L and Ls on their first :data:`FULL_L_ROWS` rows (100 steps) per epoch."""
    config = RunConfig(rows={"L": FULL_L_ROWS, "Ls": FULL_L_ROWS})
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def quick_config(**overrides) -> RunConfig:
    """A short run that still trains every model in every engine: few rows, 2 repeats, no warm-up.

    Rows: 256 for A, B and C (8 steps), 64 for D (64 steps), 1280 for L and Ls (10 steps).
    """
    config = RunConfig(
        repeats=2,
        warmup=0,
        rows={"A": 256, "B": 256, "C": 256, "D": 64, "L": 1280, "Ls": 1280},
        gemm_size=512,
        gemm_repeats=3,
        adam_steps=3,
        adam_repeats=2,
        settle_s=0.05,
        round_s=0.05,
        quick=True,
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def parse_list(text: str, allowed, what: str) -> list:
    """Split a comma-separated list and check every item against ``allowed`` (case-insensitive).

    Returns the items spelled as in ``allowed``, in the given order, without duplicates.

    Raises:
        ValueError: on an empty list or an unknown name (the message lists the valid ones).

    Example:
        >>> parse_list("minitensor-reference", ENGINE_NAMES, "engine")
        ['minitensor-reference']
    """
    lookup = {name.lower(): name for name in allowed}
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise ValueError(f"Expected a comma-separated list of {what}s. Received: {text!r}")
    out = []
    for item in items:
        name = lookup.get(item.lower())
        if name is None:
            raise ValueError(f"Unknown {what} {item!r}. Expected one of: {', '.join(allowed)}")
        if name not in out:
            out.append(name)
    return out
