"""Experiment configs: one YAML file describes a whole study grid, validated on load.

``load_experiment("demo")`` reads a config shipped in the package (``osteo_tf/configs/``);
``load_experiment("path/to/x.yaml")`` reads a file. Schema (every key but ``name`` optional)::

    name: hip_2020                     # the experiment's name (letters, digits, _ and -)
    description: free text
    seed: 0                            # base seed; each (repeat, fold) derives its own
    cohort:                            # exactly one of:
      manifest: cohort.csv             #   a manifest (relative to the YAML's folder; to the
                                       #   working directory for a packaged config), or
      phantom: {kind: hip, n: 500, image_size: 48, seed: 0}   # a synthetic cohort (optional
                                       #   information: balanced — see osteo_tf.data.synthetic)
      manifest_config: {columns: {...}, sex_codes: {...}}       # optional, with a manifest
    backbones: [resnet18, efficientnet_b3]
    modes: [image_only, ensemble]      # and/or covariates_only (fitted once per split)
    fusions: [concat, late, film]      # ensemble designs, each fitted (default [concat]; models
                                       # ensemble, ensemble_late, ensemble_film in the report)
    covariates: [age, sex, bmi, hip_fracture_history]          # or "hip" / "dental"
    split: {kind: random, ratios: [8, 1, 1], repeats: 1}
       or {kind: kfold, folds: 5, repeats: 30, val_ratio: [8, 1]}
       or {kind: site, column: site, val_ratio: 0.1, repeats: 1}   # leave one site out (below)
    train: {epochs: 100, patience: 20, batch_size: 16, image_size: null,
            learning_rate: null, weights: none, momentum: 0.9, weight_decay: 0, threshold: 0.5,
            aux_loss_weight: 0, covariate_dropout: 0,
            deterministic: false,      # true: TensorFlow op determinism (as osteo train --deterministic)
            cache: memory,             # memory | disk (run/cache/) | none: not part of the hash
            precision: auto, jit: auto}  # float32 | mixed_float16 | mixed_bfloat16; true | false (jit: not hashed)

Each ``train`` option is checked as :class:`osteo_tf.runs.config.TrainConfig` checks it
(integers are ints — 3.0 and true are refused —, numbers finite and in range, booleans YAML
true/false), and a mistake names the file and key path: ``demo.yaml: train.epochs: 'two' is
not an integer in [1, inf)``; so does one in ``cohort.manifest_config``
(``demo.yaml: cohort.manifest_config.columns.age: …``).

A config may name no cohort (the papers' configs): the cohort is then given at run time
(``osteo experiment hip_2020 --manifest cohort.csv``). Every mistake raises
:class:`OsteoInputError` naming the file and the key.

``kind: site`` is a leave-one-site-out validation (TRIPOD+AI 23b, CLAIM 32–33): one fold per
site of the manifest's ``column`` (default ``site``), that site's patients the test set, the
other sites' patients split train/val by ``val_ratio`` (a pair as for kfold, or the validation
fraction, ``0.1`` = ``[0.9, 0.1]``); see :func:`osteo_tf.data.splits.site_splits`. The folds are
the manifest's sites, sorted, read when the config gets its manifest (on load, or by
:meth:`ExperimentConfig.with_manifest`, which reads them again) and written to the resolved
config as ``split.sites``, so they are part of the hash: a manifest whose sites changed is
another experiment. A ``sites`` list in the YAML is taken as given (fold f tests ``sites[f]``).
A phantom has no sites, and the site column cannot be a covariate (the test site would be a
category never seen in training).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from osteo_tf.errors import OsteoInputError
from osteo_tf.vocabulary import (
    BACKBONES,
    COVARIATE_SETS,
    COVARIATES,
    DEFAULT_FUSION,
    DEFAULT_INFORMATION,
    FUSIONS,
    MIN_IMAGE_SIZE,
    MODES,
    PHANTOM_INFORMATION,
)

__all__ = [
    "CONFIG_DIR",
    "PHANTOM_COLUMNS",
    "SPLIT_KINDS",
    "TOP_KEYS",
    "TRAIN_KEYS",
    "ExperimentConfig",
    "load_experiment",
    "packaged_configs",
    "parse_experiment",
    "PhantomSpec",
    "SplitSpec",
]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"  # package data: osteo_tf/configs/*.yaml
# The covariate columns of each phantom (osteo_tf.data.synthetic): the dental one has no fracture history.
PHANTOM_COLUMNS = {"hip": COVARIATES, "dental": tuple(c for c in COVARIATES if c != "hip_fracture_history")}
TRAIN_KEYS = (
    "epochs",
    "patience",
    "batch_size",
    "image_size",
    "learning_rate",
    "weights",
    "momentum",
    "weight_decay",
    "threshold",
    "intensity",
    "impute",
    "allow_exclusions",
    "aux_loss_weight",
    "covariate_dropout",
    "deterministic",
    "cache",
    "precision",
    "jit",
)
#: The kinds of ``split``: a random split per repeat, stratified k-fold, or leave one site out.
SPLIT_KINDS = ("random", "kfold", "site")
TOP_KEYS = ("name", "description", "seed", "cohort", "backbones", "modes", "fusions", "covariates", "split", "train")


@dataclass(frozen=True)
class PhantomSpec:
    """A synthetic cohort generated into the experiment folder (osteo_tf.data.synthetic)."""

    kind: str = "hip"
    n: int = 500
    image_size: int = 48
    seed: int = 0
    information: str = DEFAULT_INFORMATION  # or "balanced" (osteo_tf.data.synthetic.INFORMATION_SIGMA)


@dataclass(frozen=True)
class SplitSpec:
    """``random``: one train/val/test split per repeat (ratios). ``kfold``: stratified k-fold
    per repeat, each training fold split train/val by ``val_ratio``. ``site``: leave one site
    out, fold f testing on ``sites[f]`` (the sites of the manifest's ``column``; empty until the
    config has a manifest), the other sites split train/val by ``val_ratio``."""

    kind: str = "kfold"
    folds: int = 5
    repeats: int = 1
    ratios: tuple[float, float, float] = (8.0, 1.0, 1.0)
    val_ratio: tuple[float, float] = (8.0, 1.0)
    column: str = "site"
    sites: tuple[str, ...] = ()

    @property
    def n_folds(self) -> int:
        if self.kind == "site":
            return len(self.sites)
        return self.folds if self.kind == "kfold" else 1

    def to_dict(self) -> dict:
        if self.kind == "random":
            return {"kind": "random", "ratios": list(self.ratios), "repeats": self.repeats}
        if self.kind == "site":
            values = {"kind": "site", "column": self.column, "val_ratio": list(self.val_ratio), "repeats": self.repeats}
            return {**values, "sites": list(self.sites)} if self.sites else values
        return {"kind": "kfold", "folds": self.folds, "repeats": self.repeats, "val_ratio": list(self.val_ratio)}


@dataclass(frozen=True)
class ExperimentConfig:
    """A validated experiment: cohort × backbones × modes × repeats × folds."""

    name: str
    backbones: tuple[str, ...]
    modes: tuple[str, ...]
    covariates: tuple[str, ...]
    split: SplitSpec
    train: dict = field(default_factory=dict)
    seed: int = 0
    manifest: str | None = None
    manifest_config: dict | None = None
    phantom: PhantomSpec | None = None
    description: str = ""
    source: str = ""
    fusions: tuple[str, ...] = (DEFAULT_FUSION,)

    def to_dict(self) -> dict:
        """The resolved config, as written to ``DIR/experiment.yaml`` (loads back identically)."""
        cohort: dict[str, Any] = {}
        if self.phantom is not None:
            cohort["phantom"] = dataclasses.asdict(self.phantom)
            if (
                self.phantom.information == DEFAULT_INFORMATION
            ):  # the default is left out: older experiments keep their hash
                del cohort["phantom"]["information"]
        if self.manifest is not None:
            cohort["manifest"] = self.manifest
        if self.manifest_config is not None:
            cohort["manifest_config"] = self.manifest_config
        values = {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "cohort": cohort,
            "backbones": list(self.backbones),
            "modes": list(self.modes),
            "covariates": list(self.covariates),
            "split": self.split.to_dict(),
            "train": dict(self.train),
        }
        if self.fusions != (DEFAULT_FUSION,):  # the default is left out: older experiments keep their hash
            values["fusions"] = list(self.fusions)
        return values

    def hash(self) -> str:
        """12 hex digits of SHA-256 over everything that changes results (not the description)."""
        from osteo_tf.runs.config import RESULT_NEUTRAL_OPTIONS  # parse_experiment imported it to validate `train`

        values = {k: v for k, v in self.to_dict().items() if k != "description"}
        values["train"] = {k: v for k, v in values["train"].items() if k not in RESULT_NEUTRAL_OPTIONS}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]

    def with_manifest(self, manifest: str | Path) -> "ExperimentConfig":
        """The same study on another cohort manifest (replaces a phantom), validated again; a site
        split's sites are read again from the new manifest."""
        split = dataclasses.replace(self.split, sites=()) if self.split.kind == "site" else self.split
        changed = dataclasses.replace(self, manifest=str(Path(manifest).resolve()), phantom=None, split=split)
        _check_covariates(changed, _where(self.source))
        return _resolve_sites(changed, _where(self.source))

    def train_config(self, backbone: str, mode: str, seed: int, *, fusion: str = DEFAULT_FUSION):
        """The TrainConfig of one fit."""
        from osteo_tf.runs.config import TrainConfig

        return TrainConfig(
            backbone=backbone, mode=mode, covariates=self.covariates, seed=seed, fusion=fusion, **self.train
        )


def load_experiment(path_or_name: str | Path, manifest: str | Path | None = None) -> ExperimentConfig:
    """Reads and validates a config: a YAML path, or the name of a packaged config.

    ``manifest`` replaces the config's cohort with that manifest. Raises OsteoInputError for
    a missing file, bad YAML, an unknown key, backbone, mode or covariate column, or a bad
    split or training option.
    """
    text, source, base = _read(path_or_name)
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise OsteoInputError(f"{source} is not valid YAML: {error}") from None
    config = parse_experiment(values, source=source, base=base)
    return config.with_manifest(manifest) if manifest is not None else config


def packaged_configs() -> list[str]:
    """Names of the configs shipped in the package (``osteo_tf/configs/*.yaml``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _read(path_or_name: str | Path) -> tuple[str, str, Path]:
    path = Path(path_or_name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise OsteoInputError(f"experiment config {path} does not exist")
        return path.read_text(), str(path), path.resolve().parent
    name = str(path_or_name)
    if name not in packaged_configs():
        raise OsteoInputError(
            f"no experiment config '{name}': give a .yaml path or one of the packaged "
            f"configs: {', '.join(packaged_configs())}"
        )
    text = (CONFIG_DIR / f"{name}.yaml").read_text()
    return text, f"packaged config '{name}'", Path.cwd()


def _where(source: str) -> str:
    return f"{source}: " if source else ""


def parse_experiment(values: Any, source: str = "", base: Path | None = None) -> ExperimentConfig:
    """Validates a config mapping (as read from YAML); relative manifest paths resolve against ``base``."""
    where = _where(source)
    if not isinstance(values, dict):
        raise OsteoInputError(f"{where}an experiment config must be a mapping of keys, got {type(values).__name__}")
    _unknown(values, TOP_KEYS, where, "")
    name = values.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise OsteoInputError(f"{where}'name' must be a word of letters, digits, _ . or -, got {name!r}")
    seed = _int(values.get("seed", 0), f"{where}'seed'", 0)
    backbones = _names(values.get("backbones"), f"{where}'backbones'")
    for backbone in backbones:
        if backbone not in BACKBONES:
            raise OsteoInputError(
                f"{where}unknown backbone '{backbone}' in 'backbones'; choose from: {', '.join(BACKBONES)}"
            )
    modes = _names(values.get("modes", ["image_only", "ensemble"]), f"{where}'modes'")
    for mode in modes:
        if mode not in MODES:
            raise OsteoInputError(f"{where}unknown mode '{mode}' in 'modes'; choose from: {', '.join(MODES)}")
    fusions = _names(values.get("fusions", [DEFAULT_FUSION]), f"{where}'fusions'")
    for fusion in fusions:
        if fusion not in FUSIONS:
            raise OsteoInputError(f"{where}unknown fusion '{fusion}' in 'fusions'; choose from: {', '.join(FUSIONS)}")
    if fusions != (DEFAULT_FUSION,) and "ensemble" not in modes:
        raise OsteoInputError(
            f"{where}'fusions' lists {list(fusions)}, but 'modes' has no ensemble to fuse; "
            "add ensemble to 'modes' or drop 'fusions'"
        )
    covariates = values.get("covariates", "dental")
    if isinstance(covariates, str) and covariates in COVARIATE_SETS:
        covariates = list(COVARIATE_SETS[covariates])
    covariates = _names(covariates, f"{where}'covariates'")
    manifest, manifest_config, phantom = _cohort(values.get("cohort"), where, base or Path.cwd())
    config = ExperimentConfig(
        name=name,
        backbones=backbones,
        modes=modes,
        covariates=covariates,
        split=_split(values.get("split"), where),
        train=_train(values.get("train"), where),
        seed=seed,
        manifest=manifest,
        manifest_config=manifest_config,
        phantom=phantom,
        description=_description(values.get("description"), where),
        source=source,
        fusions=fusions,
    )
    _check_train_options(config, where)
    _check_covariates(config, where)
    return _resolve_sites(config, where)


def _check_train_options(config: ExperimentConfig, where: str) -> None:
    """Every training option must make a valid TrainConfig; a bad one is named by its key path."""
    from osteo_tf.runs.config import TrainOptionError

    for backbone in config.backbones:
        try:  # seed 0: each fit's own seed is derived from the base seed (31-bit, always valid)
            config.train_config(backbone, config.modes[0], 0)
        except TrainOptionError as error:
            key = f"train.{error.option}" if error.option in config.train else error.option
            raise OsteoInputError(f"{where}{error.at(key)}") from None
        except OsteoInputError as error:
            raise OsteoInputError(f"{where}train: {error}") from None


def _description(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise OsteoInputError(f"{where}'description' must be text, got {value!r}")
    return value.strip()


def _unknown(values: dict, known: tuple[str, ...], where: str, section: str) -> None:
    unknown = sorted(str(k) for k in values if k not in known)
    if unknown:
        raise OsteoInputError(
            f"{where}unknown key(s) {unknown}{' in ' + repr(section) if section else ''}; known: {', '.join(known)}"
        )


def _int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise OsteoInputError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _ratios(value: Any, count: int, what: str) -> tuple[float, ...]:
    ok = (
        isinstance(value, (list, tuple))
        and len(value) == count
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf for v in value)
    )
    if not ok:
        raise OsteoInputError(f"{what} must be a list of {count} positive numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _names(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise OsteoInputError(f"{what} must be a non-empty list of names, got {value!r}")
    if len(set(value)) != len(value):
        raise OsteoInputError(f"{what} lists a name twice: {value}")
    return tuple(value)


def _split(value: Any, where: str) -> SplitSpec:
    if not isinstance(value, dict) or value.get("kind") not in SPLIT_KINDS:
        raise OsteoInputError(
            f"{where}'split' must be a mapping with kind: random or kind: kfold or kind: site, got {value!r}"
        )
    what = f"{where}split."
    if value["kind"] == "site":
        _unknown(value, ("kind", "column", "val_ratio", "repeats", "sites"), where, "split")
        column = value.get("column", "site")
        if not isinstance(column, str) or not column.strip():
            raise OsteoInputError(f"{what}column must be the name of the manifest's site column, got {column!r}")
        sites = value.get("sites")
        sites = () if sites is None else tuple(s.strip() for s in _names(sites, what + "sites"))
        if sites and (len(sites) < 2 or "" in sites or len(set(sites)) != len(sites)):
            raise OsteoInputError(f"{what}sites must list at least 2 distinct site names, got {value['sites']!r}")
        return SplitSpec(
            kind="site",
            repeats=_int(value.get("repeats", 1), what + "repeats", 1),
            val_ratio=_val_fraction(value.get("val_ratio", [8, 1]), what + "val_ratio"),
            column=column.strip(),
            sites=sites,
        )
    if value["kind"] == "random":
        _unknown(value, ("kind", "ratios", "repeats"), where, "split")
        return SplitSpec(
            kind="random",
            repeats=_int(value.get("repeats", 1), what + "repeats", 1),
            ratios=_ratios(value.get("ratios", [8, 1, 1]), 3, what + "ratios"),
        )
    _unknown(value, ("kind", "folds", "repeats", "val_ratio"), where, "split")
    return SplitSpec(
        kind="kfold",
        folds=_int(value.get("folds", 5), what + "folds", 2),
        repeats=_int(value.get("repeats", 1), what + "repeats", 1),
        val_ratio=_ratios(value.get("val_ratio", [8, 1]), 2, what + "val_ratio"),
    )


def _val_fraction(value: Any, what: str) -> tuple[float, float]:
    """A site split's ``val_ratio``: a (train, val) pair as for kfold, or the validation fraction in (0, 1)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not 0 < value < 1:
            raise OsteoInputError(
                f"{what} must be a fraction in (0, 1) or a list of 2 positive numbers (train, val), got {value!r}"
            )
        return (1.0 - float(value), float(value))
    try:
        return _ratios(value, 2, what)
    except OsteoInputError:
        raise OsteoInputError(
            f"{what} must be a fraction in (0, 1) or a list of 2 positive numbers (train, val), got {value!r}"
        ) from None


def _resolve_sites(config: ExperimentConfig, where: str) -> ExperimentConfig:
    """A site split's checks against the cohort, and its sites read from the manifest (when it has none yet)."""
    split = config.split
    if split.kind != "site":
        return config
    if config.phantom is not None:
        raise OsteoInputError(
            f"{where}split kind site needs a manifest with a site column ({split.column!r}); the "
            f"{config.phantom.kind} phantom has no sites: give cohort.manifest, or use split kind random or kfold"
        )
    if split.column in config.covariates:
        raise OsteoInputError(
            f"{where}the site column {split.column!r} of split kind site is also in 'covariates'; leaving one site "
            "out, its test site is a category the model never saw in training: drop it from 'covariates'"
        )
    if split.sites or config.manifest is None:
        return config
    sites = _manifest_sites(config, where)
    return dataclasses.replace(config, split=dataclasses.replace(split, sites=sites))


def _manifest_sites(config: ExperimentConfig, where: str) -> tuple[str, ...]:
    """The sites of the manifest's site column, sorted, checked by :func:`osteo_tf.data.splits.site_names`
    (read from the CSV cells: the rows' other checks come when the cohort is loaded)."""
    import pandas as pd

    from osteo_tf.data.splits import SOURCE_ATTR, site_names

    path = Path(config.manifest)
    if not path.is_file():
        raise OsteoInputError(f"{where}cohort manifest {path} does not exist")
    patient_column = (config.manifest_config or {}).get("columns", {}).get("patient_id", "patient_id")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader, [])]
            records, start = [], reader.line_num + 1
            for row in reader:
                if any(cell.strip() for cell in row):  # blank lines are skipped, as the manifest reader does
                    records.append((start, row))
                start = reader.line_num + 1
    except (UnicodeDecodeError, csv.Error) as error:
        raise OsteoInputError(f"{where}cannot read the sites of manifest {path}: {error}") from None

    def cells(name: str) -> list[str] | None:
        if name not in header:
            return None
        j = header.index(name)
        return [row[j] if j < len(row) else "" for _, row in records]

    lines = [line for line, _ in records]
    patients = cells(patient_column) or [f"line {line}" for line in lines]  # no patient column: the reader says so
    table = pd.DataFrame({"patient_id": patients, "line": lines})
    if (split_cells := cells(config.split.column)) is not None:
        table[config.split.column] = split_cells
    table.attrs[SOURCE_ATTR] = f"manifest {path}"
    try:
        return site_names(table, config.split.column)
    except OsteoInputError as error:
        raise OsteoInputError(f"{where}{error}", parameter=error.parameter) from None


def _train(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OsteoInputError(f"{where}'train' must be a mapping of training options, got {value!r}")
    _unknown(value, TRAIN_KEYS, where, "train")
    return {k: v for k, v in value.items() if v is not None}  # null: the default (YAML reads a bare `none` as "none")


def _cohort(value: Any, where: str, base: Path) -> tuple[str | None, dict | None, PhantomSpec | None]:
    if value is None:
        return None, None, None
    if not isinstance(value, dict):
        raise OsteoInputError(f"{where}'cohort' must be a mapping (manifest: PATH or phantom: {{...}}), got {value!r}")
    _unknown(value, ("manifest", "phantom", "manifest_config"), where, "cohort")
    if value.get("manifest") is not None and value.get("phantom") is not None:
        raise OsteoInputError(f"{where}'cohort' gives both a manifest and a phantom; keep one")
    manifest_config = _manifest_config(value.get("manifest_config"), where)
    if value.get("phantom") is not None:
        spec = value["phantom"]
        if not isinstance(spec, dict):
            raise OsteoInputError(
                f"{where}cohort.phantom must be a mapping {{kind, n, image_size, seed}}, got {spec!r}"
            )
        _unknown(spec, ("kind", "n", "image_size", "seed", "information"), where, "cohort.phantom")
        phantom = PhantomSpec(**spec)
        if not isinstance(phantom.kind, str) or phantom.kind not in PHANTOM_COLUMNS:
            raise OsteoInputError(f"{where}cohort.phantom.kind must be hip or dental, got {phantom.kind!r}")
        _int(phantom.n, f"{where}cohort.phantom.n", 10)
        _int(phantom.image_size, f"{where}cohort.phantom.image_size", MIN_IMAGE_SIZE)
        _int(phantom.seed, f"{where}cohort.phantom.seed", 0)
        if phantom.information not in PHANTOM_INFORMATION:
            raise OsteoInputError(
                f"{where}cohort.phantom.information must be one of {', '.join(PHANTOM_INFORMATION)}, "
                f"got {phantom.information!r}"
            )
        return None, manifest_config, phantom
    if value.get("manifest") is None:
        return None, manifest_config, None
    if not isinstance(value["manifest"], str) or not value["manifest"].strip():
        raise OsteoInputError(f"{where}cohort.manifest must be the path of a CSV manifest, got {value['manifest']!r}")
    path = Path(value["manifest"])
    return str(path if path.is_absolute() else (base / path).resolve()), manifest_config, None


def _manifest_config(value: Any, where: str) -> dict | None:
    """``cohort.manifest_config`` validated as a ManifestConfig (its resolved dict); None if absent."""
    if value is None:
        return None
    from osteo_tf.data.manifest import ManifestConfig, ManifestConfigError

    try:
        return ManifestConfig.from_dict(value).to_dict()
    except ManifestConfigError as error:
        raise OsteoInputError(error.at(where, "cohort.manifest_config")) from None


def _check_covariates(config: ExperimentConfig, where: str) -> None:
    """Each covariate must be a column of the cohort (or, with no cohort yet, a canonical covariate)."""
    if config.phantom is not None:
        available, cohort = PHANTOM_COLUMNS[config.phantom.kind], f"the {config.phantom.kind} phantom"
    elif config.manifest is not None:
        available, cohort = _manifest_columns(config, where), f"manifest {config.manifest}"
    else:
        available, cohort = COVARIATES, "the data contract (no cohort given yet)"
    for name in config.covariates:
        if name not in available:
            raise OsteoInputError(
                f"{where}unknown covariate column '{name}' in 'covariates': not in {cohort}; "
                f"available: {', '.join(available)}"
            )


def _manifest_columns(config: ExperimentConfig, where: str) -> tuple[str, ...]:
    """The manifest's header, with the user's names of canonical columns mapped to canonical ones."""
    path = Path(config.manifest)
    if not path.is_file():
        raise OsteoInputError(f"{where}cohort manifest {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        header = [h.strip() for h in next(csv.reader(handle), [])]
    renamed = (config.manifest_config or {}).get("columns", {})
    to_canonical = {user: canon for canon, user in renamed.items()}
    columns = [to_canonical.get(h, h) for h in header]
    if "bmi" not in columns and {"height_cm", "weight_kg"} <= set(columns):
        columns.append("bmi")  # derived from height and weight
    return tuple(columns)
