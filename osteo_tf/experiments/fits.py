"""One fit of an experiment, and what every executor shares: the grid, a fit's split, the step that
trains one fit and writes its record, and the progress line.

:class:`LocalExecutor` (here) and :class:`osteo_tf.experiments.ray_executor.RayExecutor` both
call :func:`run_fit`, so their folders are interchangeable; the runner
(:func:`osteo_tf.experiments.runner.run_experiment`) takes either, or any callable of the same
signature.
"""

from __future__ import annotations

import datetime
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from osteo_tf.data.splits import derive_seed, kfold_split, random_split, require_both_classes, site_split
from osteo_tf.errors import OsteoInputError
from osteo_tf.experiments.config import ExperimentConfig
from osteo_tf.experiments.results import fit_id, record_path
from osteo_tf.io import read_json, write_json
from osteo_tf.vocabulary import DEFAULT_FUSION, PROBABILITY_VAL_LOSS, model_label

__all__ = [
    "NO_BACKBONE",
    "Fit",
    "LocalExecutor",
    "Progress",
    "fit_splits",
    "load_fit_cohort",
    "make_record",
    "plan",
    "run_fit",
    "say",
]

NO_BACKBONE = "none"


@dataclass(frozen=True)
class Fit:
    """One cell of the grid. ``seed`` (from the config seed, repeat and fold) is shared by all
    fits of a (repeat, fold), so image-only and ensemble see the same split and initialisation.
    ``fusion``: the ensemble's design (the other modes keep the default). ``site``: with a
    leave-one-site-out split, the fold's test site (``config.split.sites[fold]``), else None."""

    backbone: str
    mode: str
    repeat: int
    fold: int
    seed: int
    fusion: str = DEFAULT_FUSION
    site: str | None = None

    @property
    def model(self) -> str:
        """The model's name in result tables: the mode, or ``ensemble_<fusion>`` for a non-default fusion."""
        return model_label(self.mode, self.fusion)

    @property
    def fit_id(self) -> str:
        return fit_id(self.backbone, self.model, self.repeat, self.fold)


def plan(config: ExperimentConfig) -> list[Fit]:
    """Every fit of the experiment, ordered repeat → fold → backbone → mode → fusion (covariates_only last).

    With a leave-one-site-out split (``split.kind: site``), fold f tests on ``split.sites[f]``,
    recorded in each fit's ``site``.

    Args:
        config: the experiment.

    Returns:
        The fits, in plan order.

    Raises:
        OsteoInputError: a site split whose config has no manifest yet (its folds are the manifest's sites).
    """
    split = config.split
    if split.kind == "site" and not split.sites:
        raise OsteoInputError(
            f"experiment {config.name} splits leave-one-site-out, and its folds are the sites of the cohort's "
            f"manifest (column {split.column!r}), but it names no manifest: pass manifest=CSV (osteo experiment "
            "--manifest CSV), or set cohort.manifest"
        )
    fits = []
    for repeat in range(split.repeats):
        for fold in range(split.n_folds):
            seed = derive_seed(config.seed, repeat, fold)
            site = split.sites[fold] if split.kind == "site" else None
            for backbone in config.backbones:
                for mode in config.modes:
                    if mode != "covariates_only":
                        fusions = config.fusions if mode == "ensemble" else (DEFAULT_FUSION,)
                        fits += [Fit(backbone, mode, repeat, fold, seed, fusion, site) for fusion in fusions]
            if "covariates_only" in config.modes:
                fits.append(Fit(NO_BACKBONE, "covariates_only", repeat, fold, seed, site=site))
    return fits


def fit_splits(config: ExperimentConfig, cohort: pd.DataFrame, fit: Fit) -> dict[str, np.ndarray]:
    """The train/val/test rows of a fit: reproducible from (config seed, repeat, fold).

    Returns:
        ``{"train", "val", "test"}`` → positional row indices into ``cohort``; for a site
        split, the test rows are those of ``fit.site``.

    Raises:
        OsteoInputError: a part of the split holds one class only; for a site split, what
            :func:`osteo_tf.data.splits.site_split` refuses (a patient at two sites, an empty
            site cell, a site without rows …).
    """
    s = config.split
    if s.kind == "random":
        return random_split(cohort, s.ratios, derive_seed(config.seed, fit.repeat))
    if s.kind == "site":
        return site_split(
            cohort, fit.site, s.column, val_ratio=s.val_ratio, seed=config.seed, repeat=fit.repeat, sites=s.sites
        )
    return kfold_split(cohort, fit.fold, s.folds, val_ratio=s.val_ratio, seed=config.seed, repeat=fit.repeat)


def load_fit_cohort(config: ExperimentConfig, manifest: Path, fits: Sequence[Fit] = ()) -> tuple[Any, pd.DataFrame]:
    """(ManifestConfig or None, the validated cohort table) shared by every fit of the experiment.

    Before any fit trains, the cohort must hold both classes and the split of every fit in
    ``fits`` must have both classes in its train, val and test parts (OsteoInputError naming
    the manifest, or the repeat and fold), so a bad fold stops the grid at its start.
    """
    from osteo_tf.data.manifest import ManifestConfig
    from osteo_tf.runs.cohort import load_cohort

    manifest_config = ManifestConfig.from_dict(config.manifest_config) if config.manifest_config else None
    needs_covariates = any(mode != "image_only" for mode in config.modes)
    reference = config.train_config(config.backbones[0], "ensemble" if needs_covariates else "image_only", 0)
    cohort = load_cohort(manifest, reference, manifest_config)
    require_both_classes(cohort)
    for fit in fits:
        fit_splits(config, cohort, fit)  # each raises for a part of one class
    return manifest_config, cohort


class LocalExecutor:
    """The local executor: the fits one after another in this process.

    An executor is any callable ``(config, out, manifest, todo, verbose, fit_function)`` that
    brings every fit of ``todo`` to a written record by :func:`run_fit`; ``check()``, where it
    has one, is called before the experiment folder is touched (see
    :class:`osteo_tf.experiments.ray_executor.RayExecutor`).
    """

    def check(self) -> None:
        """Nothing to check: this process can always train."""

    def __call__(
        self,
        config: ExperimentConfig,
        out: Path,
        manifest: Path,
        todo: list[Fit],
        verbose: int | str = 0,
        fit_function: Callable | None = None,
    ) -> None:
        manifest_config, cohort = load_fit_cohort(config, manifest, todo)
        progress = Progress(len(todo))
        for index, fit in enumerate(todo, start=1):
            if not (out / "runs" / fit.fit_id / "COMPLETE").is_file():
                say(f"[{index}/{len(todo)}] start {fit.fit_id}")
            record, trained = run_fit(
                config,
                out,
                manifest,
                fit,
                cohort,
                manifest_config=manifest_config,
                verbose=verbose,
                fit_function=fit_function,
            )
            progress.finished(record, trained)


def run_fit(
    config: ExperimentConfig,
    out: Path,
    manifest: Path,
    fit: Fit,
    cohort: pd.DataFrame,
    *,
    manifest_config=None,
    verbose: int | str = 0,
    fit_function: Callable | None = None,
) -> tuple[dict, bool]:
    """The step every executor runs: trains ``fit`` unless its run is complete, then writes its record.

    Safe to repeat (a retried task, a resumed run): a recorded fit is returned as stored; an
    interrupted one resumes from its last finished epoch; the record is written atomically,
    once per fit_id, and stale temporary files of killed writers are removed. Returns
    (record, whether this call trained).
    """
    existing = record_path(out, fit.fit_id)
    if existing.is_file():
        return read_json(existing), False
    run = out / "runs" / fit.fit_id
    trained = not (run / "COMPLETE").is_file()
    if trained:
        import keras

        from osteo_tf.training import train as training

        backbone = config.backbones[0] if fit.backbone == NO_BACKBONE else fit.backbone
        (fit_function or training.train)(
            manifest,
            run,
            config.train_config(backbone, fit.mode, fit.seed, fusion=fit.fusion),
            manifest_config=manifest_config,
            cohort=cohort,
            splits=fit_splits(config, cohort, fit),
            verbose=verbose,
        )
        keras.utils.clear_session(free_memory=True)
    record = make_record(config, out, fit)
    write_json(existing, record)
    shutil.rmtree(run / "checkpoints", ignore_errors=True)  # model.keras holds the same best-epoch weights
    _remove_stale_temporaries(out, fit.fit_id)
    return record, trained


def _remove_stale_temporaries(out: Path, fit: str) -> None:
    """Temporary files (io.atomic_path) a killed process left for this recorded fit."""
    for path in [*(out / "results").glob(f".{fit}.tmp-*"), *(out / "runs" / fit).rglob(".*.tmp-*")]:
        if path.is_file():
            path.unlink(missing_ok=True)


class Progress:
    """The line printed per finished fit: overall bar, elapsed time and an ETA from the mean
    wall time per trained fit so far (with parallel fits, that is the throughput)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.trained, self.started = total, 0, 0, time.time()

    def finished(self, record: dict, trained: bool) -> None:
        self.done += 1
        self.trained += trained
        elapsed = time.time() - self.started
        eta = elapsed / max(self.trained, 1) * (self.total - self.done)
        say(
            f"[{self.done}/{self.total}] done  {record['fit_id']}: test AUC {record['metrics']['test']['auc']:.3f}, "
            f"{record['seconds']:.0f} s  {_bar(self.done, self.total)} elapsed {_clock(elapsed)} ETA {_clock(eta)}"
        )


def make_record(config: ExperimentConfig, out: Path, fit: Fit) -> dict:
    """The result record of a fit whose run folder is complete.

    A fit of a leave-one-site-out split also records its test ``site`` (after ``fold``); the
    records of the other splits have no such key.
    ``seconds`` is the training time the run recorded (for a resumed fit, its last session's);
    ``epochs_run`` counts the epochs in history.csv; ``best_epoch`` (1-based) has the lowest
    validation loss (the probability's own, with auxiliary losses), whose weights the model keeps.
    """
    run = out / "runs" / fit.fit_id
    metrics = read_json(run / "metrics.json")
    predictions = pd.read_csv(run / "predictions.csv")
    test = predictions[predictions["split"] == "test"]
    history = pd.read_csv(run / "history.csv").drop_duplicates("epoch", keep="last")
    monitored = PROBABILITY_VAL_LOSS if PROBABILITY_VAL_LOSS in history else "val_loss"  # see train.monitored_loss
    best = int(history[monitored].to_numpy().argmin()) + 1 if len(history) else 0
    site = {"site": fit.site} if fit.site is not None else {}
    return {
        "fit_id": fit.fit_id,
        "config_hash": config.hash(),
        "experiment": config.name,
        "backbone": fit.backbone,
        "mode": fit.mode,
        "fusion": fit.fusion,
        "model": fit.model,
        "repeat": fit.repeat,
        "fold": fit.fold,
        **site,
        "seed": fit.seed,
        "metrics": {"val": metrics["val"], "test": metrics["test"]},
        "test_predictions": [
            {
                "image": str(r.image),
                "patient_id": str(r.patient_id),
                "label": int(r.label),
                "probability": float(r.probability),
            }
            for r in test.itertuples(index=False)
        ],
        "seconds": float(read_json(run / "COMPLETE")["seconds"]),
        "epochs_run": int(len(history)),
        "best_epoch": best,
        "run_dir": str(Path("runs") / fit.fit_id),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def say(message: str) -> None:
    print(f"[osteo experiment] {message}", file=sys.stderr, flush=True)


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = round(width * done / total)
    return f"|{'#' * filled}{'.' * (width - filled)}| {100 * done // total:3d}%"


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes:02d}:{seconds:02d}"
