"""Every model the lesson trains, as engine-neutral data.

Each :class:`Experiment` says what the lesson's cell builds and how it trains it, in terms that
both engines understand: the hidden and output layers (units, activation, L2 penalty), dropout
layers, the loss, the optimizer and its settings, epochs, batch size, whether the validation split
is passed as ``validation_data``, and early stopping. :mod:`compare.engines` turns one into a
Keras or a minitensor model.

Settings use today's spellings (``learning_rate=``, not the lesson's Keras-2 ``lr=``); accepting
the old spellings is minitensor's concern, not the comparison's. ``np.random.seed(42)`` in the
lesson's cells does not pin Keras 3's weights; the comparison seeds both engines itself.

Example:
    >>> EXPERIMENTS["lr-9"].optimizer_settings
    {'learning_rate': 9.0}
    >>> [e.name for e in select(["softmax"])]
    ['softmax']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Union

__all__ = [
    "DenseSpec",
    "DropoutSpec",
    "EarlyStoppingSpec",
    "Experiment",
    "EXPERIMENTS",
    "ALL",
    "select",
]

INPUT_DIM = 64


@dataclass(frozen=True)
class DenseSpec:
    """A ``Dense(units, activation=..., kernel_regularizer=l2(l2))`` layer.

    Attributes:
        units: output width.
        activation: ``"sigmoid"``, ``"relu"`` or ``"softmax"``.
        l2: the L2 factor of the kernel regularizer, or ``None`` for none.
    """

    units: int
    activation: str
    l2: float | None = None


@dataclass(frozen=True)
class DropoutSpec:
    """A ``Dropout(rate)`` layer."""

    rate: float


LayerSpec = Union[DenseSpec, DropoutSpec]


@dataclass(frozen=True)
class EarlyStoppingSpec:
    """An ``EarlyStopping`` callback; the defaults are the lesson's arguments."""

    monitor: str = "val_loss"
    min_delta: float = 1e-8
    patience: int = 0
    mode: str = "min"

    def as_kwargs(self) -> dict:
        """The constructor arguments, the same for both engines."""
        return dict(monitor=self.monitor, min_delta=self.min_delta, patience=self.patience, mode=self.mode)


@dataclass(frozen=True)
class Experiment:
    """One model of the lesson and how it is trained.

    Attributes:
        name: short, command-line friendly identifier (``sigmoid-sgd-b100``).
        section: the lesson's section the cell belongs to.
        title: a one-line description for the report.
        task: ``"binary"`` (even/odd, sigmoid + binary cross-entropy) or ``"multiclass"``
            (softmax + categorical cross-entropy on one-hot targets).
        layers: the layers after the 64-wide input, in order (the last is the output layer).
        loss: the loss's Keras name.
        optimizer: the optimizer's class name in lower case (``"sgd"``, ``"adam"``, ``"rmsprop"``).
        optimizer_options: the settings the lesson gives the optimizer beyond its defaults, as
            ``(name, value)`` pairs (see :attr:`optimizer_settings`).
        epochs: the lesson's ``epochs``.
        batch_size: the lesson's ``batch_size``.
        validation: whether the lesson passes ``validation_data=(X_val, y_val)``.
        early_stopping: the lesson's ``EarlyStopping`` callback, if any.
        train_on: ``"split"`` (the lesson's scaled ``X_t``) or ``"all-unscaled"`` (the pair
            challenge's ``fit(X, y_binary)`` on all 1797 unscaled rows).
        chaotic: why this training run is chaotic (it amplifies float32 round-off until the
            engines' curves part), or ``""``. Such runs are reported with their measured
            divergence rather than held to the strict tolerance.
    """

    name: str
    section: str
    title: str
    task: str
    layers: tuple[LayerSpec, ...]
    loss: str
    optimizer: str
    epochs: int
    batch_size: int
    optimizer_options: tuple[tuple[str, float], ...] = ()
    validation: bool = False
    early_stopping: EarlyStoppingSpec | None = None
    train_on: str = "split"
    chaotic: str = ""
    metrics: tuple[str, ...] = field(default=("accuracy",))

    def __post_init__(self):
        if self.task not in ("binary", "multiclass"):
            raise ValueError(f"Unknown task {self.task!r} in experiment {self.name!r}")
        if self.train_on not in ("split", "all-unscaled"):
            raise ValueError(f"Unknown train_on {self.train_on!r} in experiment {self.name!r}")
        if self.early_stopping is not None and not self.validation:
            raise ValueError(f"Experiment {self.name!r}: early stopping on val_loss needs validation data")
        if not self.layers or not isinstance(self.layers[-1], DenseSpec):
            raise ValueError(f"Experiment {self.name!r} must end with a Dense layer")

    @property
    def optimizer_settings(self) -> dict:
        """The optimizer's non-default constructor arguments as a dict."""
        return dict(self.optimizer_options)

    @property
    def has_dropout(self) -> bool:
        """Whether any layer is a ``Dropout`` (then the engines cannot share masks)."""
        return any(isinstance(layer, DropoutSpec) for layer in self.layers)

    @property
    def architecture(self) -> str:
        """A compact description, e.g. ``64-12r-8r-1s`` (r=relu, s=sigmoid, x=softmax, d=dropout)."""
        parts = [str(INPUT_DIM)]
        for layer in self.layers:
            if isinstance(layer, DropoutSpec):
                parts.append(f"d{layer.rate:g}")
            else:
                mark = {"relu": "r", "sigmoid": "s", "softmax": "x"}.get(layer.activation, layer.activation)
                parts.append(f"{layer.units}{mark}" + ("+l2" if layer.l2 else ""))
        return "-".join(parts)

    def optimizer_label(self) -> str:
        """The optimizer as the report shows it, e.g. ``SGD(learning_rate=9.0)``."""
        name = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop"}.get(self.optimizer, self.optimizer)
        args = ", ".join(f"{k}={v!r}" for k, v in self.optimizer_options)
        return f"{name}({args})"

    def to_dict(self) -> dict:
        """A JSON-ready description (used in ``results.json``)."""
        return {
            "name": self.name,
            "section": self.section,
            "title": self.title,
            "task": self.task,
            "architecture": self.architecture,
            "layers": [
                {"type": "dropout", "rate": layer.rate}
                if isinstance(layer, DropoutSpec)
                else {"type": "dense", "units": layer.units, "activation": layer.activation, "l2": layer.l2}
                for layer in self.layers
            ],
            "loss": self.loss,
            "optimizer": self.optimizer,
            "optimizer_settings": self.optimizer_settings,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "validation": self.validation,
            "early_stopping": None if self.early_stopping is None else self.early_stopping.as_kwargs(),
            "train_on": self.train_on,
            "chaotic": self.chaotic,
            "metrics": list(self.metrics),
        }


def _dense(*units_activation, l2: float | None = None, l2_from: int = 0, l2_to: int = 0):
    """Dense specs from ``(units, activation)`` pairs; layers ``l2_from..l2_to-1`` get ``l2``."""
    return tuple(
        DenseSpec(units, activation, l2 if l2_from <= i < l2_to else None)
        for i, (units, activation) in enumerate(units_activation)
    )


_SIGMOID_3 = _dense((12, "sigmoid"), (8, "sigmoid"), (1, "sigmoid"))
_RELU_3 = _dense((12, "relu"), (8, "relu"), (1, "sigmoid"))
_RELU_4 = _dense((12, "relu"), (8, "relu"), (4, "relu"), (1, "sigmoid"))
_DEEP = ((30, "relu"), (20, "relu"), (12, "relu"), (12, "relu"), (12, "relu"), (8, "relu"), (4, "relu"), (1, "sigmoid"))
_WIDE = ((300, "relu"), (200, "relu"), (80, "relu"), (4, "relu"), (1, "sigmoid"))

_BCE = "binary_crossentropy"
_SECTION_INTRO = "Getting data ready for modeling: sigmoid and SGD"
_SECTION_RELU = "Getting data ready for modeling: relu and Adam"
_SECTION_DEPTH = "Getting data ready for modeling: validation and depth"
_BATCH_ONE = "batch size 1: over 11,000 single-sample SGD steps may amplify float32 round-off"
_ADAM_OVERFIT = (
    "100 epochs of Adam on a relu net that overfits: as the training loss nears 0, Adam's normalised "
    "steps amplify round-off in the tiny gradients, and tf.keras parts from its own one-ulp-nudged run"
)

#: Every model the lesson trains, in the lesson's order.
ALL: tuple[Experiment, ...] = (
    Experiment(
        "rmsprop-b10", "Pair Challenge, Part 3", "relu 12-8-1, RMSprop, batch 10, all 1797 unscaled rows",
        "binary", _RELU_3, _BCE, "rmsprop", epochs=50, batch_size=10, train_on="all-unscaled",
        chaotic=(
            "9,000 RMSprop steps on unscaled inputs (0 to 16): round-off grows late in training until "
            "tf.keras parts from its own one-ulp-nudged run"
        ),
    ),
    Experiment(
        "sigmoid-sgd-b100", _SECTION_INTRO, "sigmoid 12-8-1, SGD, batch 100, 10 epochs",
        "binary", _SIGMOID_3, _BCE, "sgd", epochs=10, batch_size=100,
    ),
    Experiment(
        "sigmoid-sgd-b32", _SECTION_INTRO, "sigmoid 12-8-1, SGD, batch 32, 50 epochs",
        "binary", _SIGMOID_3, _BCE, "sgd", epochs=50, batch_size=32,
    ),
    Experiment(
        "sigmoid-sgd-b1", _SECTION_INTRO, "sigmoid 12-8-1, SGD, batch 1 (true stochastic gradient descent)",
        "binary", _SIGMOID_3, _BCE, "sgd", epochs=10, batch_size=1, chaotic=_BATCH_ONE,
    ),
    Experiment(
        "lr-0.02", _SECTION_INTRO, "sigmoid 12-8-1, SGD(learning_rate=0.02), batch 1",
        "binary", _SIGMOID_3, _BCE, "sgd", optimizer_options=(("learning_rate", 0.02),),
        epochs=10, batch_size=1, chaotic=_BATCH_ONE,
    ),
    Experiment(
        "lr-9", _SECTION_INTRO, "sigmoid 12-8-1, SGD(learning_rate=9), batch 10: overshooting",
        "binary", _SIGMOID_3, _BCE, "sgd", optimizer_options=(("learning_rate", 9.0),),
        epochs=30, batch_size=10,
        chaotic="learning rate 9: the lesson's example of steps so large that training bounces around",
    ),
    Experiment(
        "relu-sgd-b32", _SECTION_RELU, "relu 12-8-1, SGD, batch 32, 50 epochs",
        "binary", _RELU_3, _BCE, "sgd", epochs=50, batch_size=32,
    ),
    Experiment(
        "relu-sgd-b1", _SECTION_RELU, "relu 12-8-1, SGD, batch 1, 10 epochs",
        "binary", _RELU_3, _BCE, "sgd", epochs=10, batch_size=1, chaotic=_BATCH_ONE,
    ),
    Experiment(
        "relu-adam", _SECTION_RELU, "relu 12-8-1, Adam, batch 32, 50 epochs",
        "binary", _RELU_3, _BCE, "adam", epochs=50, batch_size=32,
    ),
    Experiment(
        "deeper-adam", _SECTION_RELU, "relu 12-8-4-1, Adam, batch 32, 100 epochs",
        "binary", _RELU_4, _BCE, "adam", epochs=100, batch_size=32,
    ),
    Experiment(
        "deeper-sgd", _SECTION_RELU, "relu 12-8-4-1, SGD, batch 32, 100 epochs (Adam vs SGD)",
        "binary", _RELU_4, _BCE, "sgd", epochs=100, batch_size=32,
    ),
    Experiment(
        "deeper-adam-val", _SECTION_DEPTH, "relu 12-8-4-1, Adam, with the validation set",
        "binary", _RELU_4, _BCE, "adam", epochs=100, batch_size=32, validation=True,
    ),
    Experiment(
        "deep", _SECTION_DEPTH, "relu 30-20-12-12-12-8-4-1, Adam, validation",
        "binary", _dense(*_DEEP), _BCE, "adam", epochs=100, batch_size=32, validation=True, chaotic=_ADAM_OVERFIT,
    ),
    Experiment(
        "wide", _SECTION_DEPTH, "relu 300-200-80-4-1, Adam, validation",
        "binary", _dense(*_WIDE), _BCE, "adam", epochs=100, batch_size=32, validation=True, chaotic=_ADAM_OVERFIT,
    ),
    Experiment(
        "l2-one", "Regularization", "the deep model with L2(0.01) on its second layer",
        "binary", _dense(*_DEEP, l2=0.01, l2_from=1, l2_to=2), _BCE, "adam",
        epochs=100, batch_size=32, validation=True, chaotic=_ADAM_OVERFIT,
    ),
    Experiment(
        "l2-all", "Regularization", "the deep model with L2(0.01) on every hidden layer but the first",
        "binary", _dense(*_DEEP, l2=0.01, l2_from=1, l2_to=7), _BCE, "adam",
        epochs=100, batch_size=32, validation=True,
    ),
    Experiment(
        "dropout", "Dropout", "the wide model with Dropout(.5), Dropout(.5), Dropout(.1)",
        "binary",
        (
            DenseSpec(300, "relu"), DropoutSpec(0.5), DenseSpec(200, "relu"), DropoutSpec(0.5),
            DenseSpec(80, "relu"), DropoutSpec(0.1), DenseSpec(4, "relu"), DenseSpec(1, "sigmoid"),
        ),
        _BCE, "adam", epochs=100, batch_size=32, validation=True,
    ),
    Experiment(
        "no-early-stop", "Early Stopping", "the deep model again, without early stopping (the baseline)",
        "binary", _dense(*_DEEP), _BCE, "adam", epochs=100, batch_size=32, validation=True, chaotic=_ADAM_OVERFIT,
    ),
    Experiment(
        "early-stop-0", "Early Stopping", "the deep model, EarlyStopping(val_loss, min_delta=1e-8, patience=0)",
        "binary", _dense(*_DEEP), _BCE, "adam", epochs=100, batch_size=32, validation=True,
        early_stopping=EarlyStoppingSpec(patience=0),
    ),
    Experiment(
        "early-stop-15", "Early Stopping", "the deep model, EarlyStopping(val_loss, min_delta=1e-8, patience=15)",
        "binary", _dense(*_DEEP), _BCE, "adam", epochs=100, batch_size=32, validation=True,
        early_stopping=EarlyStoppingSpec(patience=15), chaotic=_ADAM_OVERFIT,
    ),
    Experiment(
        "softmax", "Multiclass Classification and Softmax", "relu 12-8, softmax 10, Adam, batch 10, one-hot targets",
        "multiclass", _dense((12, "relu"), (8, "relu"), (10, "softmax")), "categorical_crossentropy", "adam",
        epochs=50, batch_size=10, validation=True,
    ),
)

#: The experiments by name.
EXPERIMENTS: dict[str, Experiment] = {experiment.name: experiment for experiment in ALL}
assert len(EXPERIMENTS) == len(ALL), "experiment names must be unique"


def select(names: Iterable[str] | None) -> list[Experiment]:
    """Return the experiments named in ``names`` (in the lesson's order), or all of them for ``None``.

    Raises:
        KeyError: naming the unknown names and listing the valid ones.
    """
    if names is None:
        return list(ALL)
    names = list(names)
    unknown = [name for name in names if name not in EXPERIMENTS]
    if unknown:
        raise KeyError(f"unknown experiment(s): {', '.join(unknown)}; valid names: {', '.join(EXPERIMENTS)}")
    wanted = set(names)
    return [experiment for experiment in ALL if experiment.name in wanted]
