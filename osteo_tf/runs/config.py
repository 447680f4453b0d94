"""Training options in one place, with the papers' defaults, validated on construction."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from osteo_tf.data.covariates import IMPUTE_METHODS
from osteo_tf.data.images import parse_intensity
from osteo_tf.errors import OsteoInputError
from osteo_tf.vocabulary import (
    BACKBONES,
    CACHE_CHOICES,
    COVARIATE_SETS,
    DEFAULT_FUSION,
    FUSIONS,
    MIN_IMAGE_SIZE,
    MODES,
    BackboneSpec,
    get_backbone_spec,
)

__all__ = [
    "BOOLEAN_OPTIONS",
    "INTEGER_RANGES",
    "JIT_WORDS",
    "MAX_SEED",
    "NUMBER_RANGES",
    "PRECISIONS",
    "RESULT_NEUTRAL_OPTIONS",
    "check_boolean",
    "check_choice",
    "check_integer",
    "check_number",
    "check_option",
    "Interval",
    "TrainConfig",
    "TrainOptionError",
]

# Options that do not change a fit's results: a run may be resumed, and an experiment's hash
# stays, with other values of these.
RESULT_NEUTRAL_OPTIONS = ("cache", "jit")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")  # Keras dtype policies; see training.hardware

MAX_SEED = 2**31 - 1  # seeds are 31-bit, as osteo_tf.data.splits.derive_seed makes them
JIT_WORDS = {"true": True, "on": True, "false": False, "off": False}  # jit may also be written as a word


class TrainOptionError(OsteoInputError):
    """A training option with a wrong type or value.

    ``str(error)`` reads ``invalid training option epochs='two': not an integer in [1, inf)``;
    a caller that knows where the value came from names it its own way with :meth:`at`.
    """

    def __init__(self, option: str, value: Any, problem: str = "", hint: str = "") -> None:
        self.option, self.value, self.problem, self.hint = option, value, problem, hint
        super().__init__(
            f"invalid training option {option}={value!r}"
            + (f": {problem}" if problem else "")
            + (f"; {hint}" if hint else ""),
            parameter=option,
        )

    def at(self, key: str) -> str:
        """The message under another name for the option, e.g. ``at("demo.yaml: train.epochs")``.

        Args:
            key: where the value was given (file and key path, or a command-line flag).

        Returns:
            ``"KEY: 'two' is not an integer in [1, inf)"``.
        """
        return f"{key}: {self.value!r} is {self.problem or 'not a valid choice'}" + (
            f"; {self.hint}" if self.hint else ""
        )


@dataclass(frozen=True)
class Interval:
    """The valid range of a numeric option, written as ``[1, inf)`` / ``(0, 1)``."""

    low: float
    high: float = math.inf
    low_closed: bool = True
    high_closed: bool = False

    def __contains__(self, value: float) -> bool:
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def __str__(self) -> str:
        low, high = (
            f"{v:g}" if math.isinf(v) or not float(v).is_integer() else str(int(v)) for v in (self.low, self.high)
        )
        return f"{'[' if self.low_closed else '('}{low}, {high}{']' if self.high_closed else ')'}"


# The numeric options' ranges: integers, then real numbers (the models' smallest input is MIN_IMAGE_SIZE px).
INTEGER_RANGES = {
    "image_size": Interval(MIN_IMAGE_SIZE),
    "epochs": Interval(1),
    "patience": Interval(1),
    "batch_size": Interval(1),
    "seed": Interval(0, MAX_SEED, high_closed=True),
}
NUMBER_RANGES = {
    "learning_rate": Interval(0, low_closed=False),
    "momentum": Interval(0, 1),
    "weight_decay": Interval(0),
    "threshold": Interval(0, 1, low_closed=False),
    "aux_loss_weight": Interval(0),
    "covariate_dropout": Interval(0, 1),
}
BOOLEAN_OPTIONS = ("allow_exclusions", "deterministic")


def check_integer(option: str, value: Any) -> int:
    """An integer option: an ``int`` (not a bool, not a float such as 3.0) inside its range.

    Args:
        option: the option's name, a key of :data:`INTEGER_RANGES`.
        value: the value given.

    Returns:
        The value as an ``int``.

    Raises:
        TrainOptionError: another type, or outside the range.
    """
    valid = INTEGER_RANGES[option]
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) in valid:
        return int(value)
    whole = isinstance(value, float) and value.is_integer()
    raise TrainOptionError(option, value, f"not an integer in {valid}", f"write {int(value)}" if whole else "")


def check_number(option: str, value: Any) -> float:
    """A real-valued option: a finite int or float (not a bool, not a string) inside its range.

    Args:
        option: the option's name, a key of :data:`NUMBER_RANGES`.
        value: the value given.

    Returns:
        The value as a ``float``.

    Raises:
        TrainOptionError: another type, not finite, or outside the range.
    """
    valid = NUMBER_RANGES[option]
    if _is_real(value) and float(value) in valid:
        return float(value)
    raise TrainOptionError(option, value, f"not a number in {valid}")


def check_boolean(option: str, value: Any) -> bool:
    """A true/false option: a ``bool`` only (YAML's true/false); "yes", 1 or "true" are refused.

    Raises:
        TrainOptionError: any other value.
    """
    if isinstance(value, bool):
        return value
    raise TrainOptionError(option, value, "not true or false")


def check_choice(option: str, value: Any, choices: tuple[str, ...], *, hint: str = "") -> str:
    """A string option with fixed ``choices``; ``hint`` replaces the default "choose one of: …".

    Raises:
        TrainOptionError: a value not among the choices.
    """
    if isinstance(value, str) and value in choices:
        return value
    raise TrainOptionError(option, value, hint=hint or f"choose one of: {', '.join(choices)}")


def check_option(option: str, value: Any) -> Any:
    """Checks one TrainConfig field (every one but ``backbone`` and ``intensity``) and returns
    its normalised value (ints as int, numbers as float, lists as tuples).

    Raises:
        TrainOptionError: naming the option and what it must be.
    """
    if option in INTEGER_RANGES:
        return check_integer(option, value)
    if option in NUMBER_RANGES:
        return check_number(option, value)
    if option in BOOLEAN_OPTIONS:
        return check_boolean(option, value)
    return _OTHER_CHECKS[option](value)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _backbone_spec(name: Any) -> BackboneSpec:
    if not isinstance(name, str):
        raise TrainOptionError(
            "backbone", name, "not a backbone name", f"choose one of: {', '.join(sorted(BACKBONES))}"
        )
    return get_backbone_spec(name)  # an unknown name: "unknown backbone 'x'; choose one of: …"


def _check_split(value: Any) -> tuple[float, float, float]:
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(_is_real(v) and v > 0 for v in value):
        return tuple(float(v) for v in value)
    raise TrainOptionError("split", value, "not three positive numbers", "the train:val:test ratios, e.g. (8, 1, 1)")


def _check_covariates(value: Any) -> str | tuple[str, ...]:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v.strip() for v in value):
        return tuple(value)
    raise TrainOptionError(
        "covariates",
        value,
        "not a covariate set",
        "give auto, hip, dental, comma-separated column names or a list of column names",
    )


def _check_weights(value: Any) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str) and value:
        return value
    raise TrainOptionError(
        "weights",
        value,
        "not a weights name or path",
        "give none, imagenet, imagenet:SOURCE or a path to weights (a file or folder)",
    )


def _check_jit(value: Any) -> str | bool:
    if isinstance(value, str) and value.lower() in JIT_WORDS:
        return JIT_WORDS[value.lower()]
    if isinstance(value, bool) or value == "auto":
        return value
    raise TrainOptionError("jit", value, hint="choose auto, true or false")


def _check_extra(value: Any) -> dict:
    if isinstance(value, dict):
        return value
    raise TrainOptionError("extra", value, "not a mapping")


_OTHER_CHECKS: dict[str, Callable[[Any], Any]] = {
    "mode": lambda v: check_choice("mode", v, MODES),
    "weights": _check_weights,
    "covariates": _check_covariates,
    "split": _check_split,
    "impute": lambda v: check_choice("impute", v, IMPUTE_METHODS),
    "fusion": lambda v: check_choice("fusion", v, FUSIONS),
    "cache": lambda v: check_choice(
        "cache",
        v,
        CACHE_CHOICES,
        hint="choose one of: memory (decoded images in RAM, "
        "default), disk (a cache file in the run folder, for cohorts larger than RAM), "
        "none (decode every epoch)",
    ),
    "precision": lambda v: check_choice("precision", v, PRECISIONS),
    "jit": _check_jit,
    "extra": _check_extra,
}


@dataclass
class TrainConfig:
    """One fit's settings.

    image_size: pixels (square); None → the backbone's paper size. learning_rate: None →
    the papers' rate for the backbone family (0.01 EfficientNet, 0.001 ResNet/GoogLeNet).
    covariates: column names, or "hip"/"dental" for the papers' sets, or "auto" (hip set
    when the manifest has hip_fracture_history, else the dental set). split: train:val:test
    ratios of the random split. weights: "none", "imagenet" or a .weights.h5 path.
    intensity: per-image normalisation, "minmax" or "percentile:LOW,HIGH"
    (:func:`osteo_tf.data.pipeline.normalize_intensity`). impute: "none" (a missing covariate
    is an error) or "median" (training-row medians plus missing indicators).
    fusion: how the ensemble joins image and covariates, one of ``FUSIONS`` ("concat", the
    papers', default; "late"; "film"; :mod:`osteo_tf.models.heads`). aux_loss_weight: weight
    of each branch's own auxiliary loss (0: none; ensemble only). covariate_dropout:
    probability of withholding each covariate of each training subject (0: never); > 0
    makes every covariate imputable (training fill + missing indicator), so the model
    predicts with any of them missing (:class:`osteo_tf.models.layers.CovariateWithholding`).
    fusion and aux_loss_weight do not apply to the single-branch modes.
    allow_exclusions: leave invalid manifest rows out (listed in the run's exclusions.csv)
    instead of stopping. deterministic: TensorFlow op determinism (identical reruns).
    cache: where decoded images stay between epochs — "memory" (RAM), "disk" (a tf.data cache
    file in the run's ``cache/`` folder, for cohorts larger than RAM) or "none" (decode every
    epoch); same batches either way (:func:`osteo_tf.data.pipeline.make_dataset`).
    precision: "auto" (mixed precision on a GPU, float32 on CPU), "float32", "mixed_float16"
    or "mixed_bfloat16". jit: XLA-compile the train step, "auto" (on a GPU) or true/false
    (:mod:`osteo_tf.training.hardware`). batch_size is per replica: with several GPUs the
    global batch is batch_size × GPUs.

    Every option is checked on construction (:func:`check_option`), whatever the source (the
    Python API, the command line, an experiment YAML's ``train:``): integers
    (:data:`INTEGER_RANGES`: image_size ≥ 32, epochs, patience, batch_size ≥ 1, seed in
    [0, 2**31 − 1]) must be ints — a bool or a float, even 3.0, is refused, as ``--epochs 3.0``
    is; numbers (:data:`NUMBER_RANGES`: learning_rate > 0, momentum in [0, 1), weight_decay ≥ 0,
    threshold in (0, 1), aux_loss_weight ≥ 0, covariate_dropout in [0, 1)) finite ints or
    floats; allow_exclusions and deterministic bools (not "yes", "true" or 1); the others one
    of their choices or forms. A mistake raises :class:`TrainOptionError`, e.g.
    ``invalid training option epochs='two': not an integer in [1, inf)``.
    """

    backbone: str = "efficientnet_b0"
    mode: str = "ensemble"
    image_size: int | None = None
    weights: str = "none"
    covariates: str | tuple[str, ...] = "auto"
    epochs: int = 100
    patience: int = 20
    batch_size: int = 16
    learning_rate: float | None = None
    momentum: float = 0.9
    weight_decay: float = 0.0
    split: tuple[float, float, float] = (8.0, 1.0, 1.0)
    seed: int = 0
    threshold: float = 0.5
    intensity: str = "minmax"
    impute: str = "none"
    fusion: str = DEFAULT_FUSION
    aux_loss_weight: float = 0.0
    covariate_dropout: float = 0.0
    allow_exclusions: bool = False
    deterministic: bool = False
    cache: str = "memory"
    precision: str = "auto"
    jit: str | bool = "auto"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Checks every option's type and range (:func:`check_option`); fills the backbone's defaults.

        Raises:
            TrainOptionError: naming the option, its value and what it must be.
        """
        spec = _backbone_spec(self.backbone)
        self.image_size = spec.image_size if self.image_size is None else self.image_size
        self.learning_rate = spec.learning_rate if self.learning_rate is None else self.learning_rate
        for f in fields(self):
            if f.name not in ("backbone", "intensity"):
                setattr(self, f.name, check_option(f.name, getattr(self, f.name)))
        self.intensity = str(parse_intensity(self.intensity))

    @property
    def uses_aux_loss(self) -> bool:
        """Whether the fit adds the branches' auxiliary losses (an ensemble with aux_loss_weight > 0)."""
        return self.mode == "ensemble" and self.aux_loss_weight > 0

    def covariate_columns(self, available: list[str]) -> tuple[str, ...]:
        """Resolves the covariate set against the manifest's columns."""
        if isinstance(self.covariates, str):
            if self.covariates == "auto":
                return COVARIATE_SETS["hip" if "hip_fracture_history" in available else "dental"]
            if self.covariates in COVARIATE_SETS:
                return COVARIATE_SETS[self.covariates]
            return tuple(c.strip() for c in self.covariates.split(",") if c.strip())
        return tuple(self.covariates)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise OsteoInputError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**values)
