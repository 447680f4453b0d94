"""Training options in one place, with the papers' defaults, validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from osteo_tf.data.covariates import IMPUTE_METHODS
from osteo_tf.data.images import parse_intensity
from osteo_tf.errors import OsteoInputError
from osteo_tf.models import get_backbone_spec
from osteo_tf.vocabulary import DEFAULT_FUSION, FUSIONS, MODES

# Options that do not change a fit's results: a run may be resumed, and an experiment's hash
# stays, with other values of these.
RESULT_NEUTRAL_OPTIONS = ("cache", "jit")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")  # Keras dtype policies; see training.hardware
CACHE_CHOICES = ("memory", "disk", "none")  # as osteo_tf.data.pipeline.CACHE_CHOICES (tests/data/test_pipeline.py checks)

COVARIATE_SETS = {
    "hip": ("age", "bmi", "sex", "hip_fracture_history"),  # Yamamoto 2020: 1×6 vector
    "dental": ("age", "bmi", "sex"),  # Sukegawa 2022: 1×4 vector
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
        spec = get_backbone_spec(self.backbone)  # raises for an unknown name
        if self.mode not in MODES:
            raise OsteoInputError(f"unknown mode '{self.mode}'; choose one of: {', '.join(MODES)}")
        self.image_size = int(self.image_size or spec.image_size)
        self.learning_rate = float(self.learning_rate if self.learning_rate is not None else spec.learning_rate)
        self.split = tuple(float(v) for v in self.split)
        if isinstance(self.covariates, list):
            self.covariates = tuple(self.covariates)
        self.intensity = str(parse_intensity(self.intensity))
        if self.impute not in IMPUTE_METHODS:
            raise OsteoInputError(f"invalid training option impute={self.impute!r}; choose one of: {', '.join(IMPUTE_METHODS)}")
        if self.fusion not in FUSIONS:
            raise OsteoInputError(f"invalid training option fusion={self.fusion!r}; choose one of: {', '.join(FUSIONS)}")
        self.aux_loss_weight, self.covariate_dropout = float(self.aux_loss_weight), float(self.covariate_dropout)
        if self.cache not in CACHE_CHOICES:
            raise OsteoInputError(f"invalid training option cache={self.cache!r}; choose one of: memory (decoded images "
                                  "in RAM, default), disk (a cache file in the run folder, for cohorts larger than RAM), "
                                  "none (decode every epoch)")
        if self.precision not in PRECISIONS:
            raise OsteoInputError(f"invalid training option precision={self.precision!r}; choose one of: {', '.join(PRECISIONS)}")
        if isinstance(self.jit, str) and self.jit.lower() in ("true", "false", "on", "off"):
            self.jit = self.jit.lower() in ("true", "on")
        if not isinstance(self.jit, bool) and self.jit != "auto":
            raise OsteoInputError(f"invalid training option jit={self.jit!r}; choose auto, true or false")
        checks = {
            "image_size": self.image_size >= 32, "epochs": self.epochs >= 1, "patience": self.patience >= 1,
            "batch_size": self.batch_size >= 1, "learning_rate": self.learning_rate > 0,
            "threshold": 0.0 < self.threshold < 1.0, "aux_loss_weight": self.aux_loss_weight >= 0.0,
            "covariate_dropout": 0.0 <= self.covariate_dropout < 1.0,
        }
        for name, ok in checks.items():
            if not ok:
                raise OsteoInputError(f"invalid training option {name}={getattr(self, name)!r}")

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
