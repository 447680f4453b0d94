"""The experiment runner: the grid backbone × mode × repeat × fold, resumable and shardable.

``run_experiment(config, out)`` trains every fit of :func:`plan` that has no result record
yet. Layout of ``out``::

    experiment.yaml            the resolved config as run (a different config is refused)
    phantom/                   the synthetic cohort, when the config asks for one
    results/<fit_id>.json      one record per finished fit, written atomically
    runs/<fit_id>/             the fit's run folder (osteo_tf.training.train)

A killed run loses at most its unfinished fit, which resumes from its last epoch on the next
run; a fit whose run folder is complete but whose record is missing is recorded without
retraining. ``shard=(i, n)`` (1-based) runs fits i, i+n, i+2n, … of the plan: shards are
disjoint, cover the grid, and write to the same store without locks (one file per fit). A
finished fit's ``checkpoints/`` is deleted once recorded (``model.keras`` holds the same
best-epoch weights), halving the disk a large grid needs. covariates_only ignores
the image, so it is fitted once per (repeat, fold), recorded with backbone ``"none"``.

Executors: ``"local"`` trains the fits one after another in this process; ``"ray"`` (or a
:class:`osteo_tf.experiments.ray_executor.RayExecutor`) runs each as a Ray task. Both call
:func:`run_fit` — train one fit, write its record — so their folders are interchangeable.
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
import yaml

from osteo_tf.data.splits import derive_seed, kfold_split, random_split, require_both_classes
from osteo_tf.errors import OsteoInputError
from osteo_tf.experiments.config import ExperimentConfig, parse_experiment
from osteo_tf.experiments.results import fit_id, read_records, read_results, record_path  # noqa: F401 (re-export)
from osteo_tf.io import atomic_path, read_json, write_json
from osteo_tf.vocabulary import DEFAULT_FUSION, PROBABILITY_VAL_LOSS, model_label

NO_BACKBONE = "none"


@dataclass(frozen=True)
class Fit:
    """One cell of the grid. ``seed`` (from the config seed, repeat and fold) is shared by all
    fits of a (repeat, fold), so image-only and ensemble see the same split and initialisation.
    ``fusion``: the ensemble's design (the other modes keep the default)."""

    backbone: str
    mode: str
    repeat: int
    fold: int
    seed: int
    fusion: str = DEFAULT_FUSION

    @property
    def model(self) -> str:
        """The model's name in result tables: the mode, or ``ensemble_<fusion>`` for a non-default fusion."""
        return model_label(self.mode, self.fusion)

    @property
    def fit_id(self) -> str:
        return fit_id(self.backbone, self.model, self.repeat, self.fold)


def plan(config: ExperimentConfig) -> list[Fit]:
    """Every fit of the experiment, ordered repeat → fold → backbone → mode → fusion (covariates_only last)."""
    fits = []
    for repeat in range(config.split.repeats):
        for fold in range(config.split.n_folds):
            seed = derive_seed(config.seed, repeat, fold)
            for backbone in config.backbones:
                for mode in config.modes:
                    if mode != "covariates_only":
                        fusions = config.fusions if mode == "ensemble" else (DEFAULT_FUSION,)
                        fits += [Fit(backbone, mode, repeat, fold, seed, fusion) for fusion in fusions]
            if "covariates_only" in config.modes:
                fits.append(Fit(NO_BACKBONE, "covariates_only", repeat, fold, seed))
    return fits


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → (i, n) with 1 <= i <= n; anything else raises OsteoInputError."""
    try:
        i, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise OsteoInputError(f"--shard must look like i/n (e.g. 2/4: the second of four shards), got {text!r}") from None
    check_shard((i, n))
    return i, n


def check_shard(shard: tuple[int, int]) -> None:
    i, n = shard
    if not (n >= 1 and 1 <= i <= n):
        raise OsteoInputError(f"bad shard {i}/{n}: need n >= 1 and 1 <= i <= n (shards are numbered from 1)")


def shard_fits(fits: list[Fit], shard: tuple[int, int]) -> list[Fit]:
    check_shard(shard)
    return fits[shard[0] - 1::shard[1]]


def run_experiment(
    config: ExperimentConfig | str | Path, out: str | Path, shard: tuple[int, int] = (1, 1), dry_run: bool = False,
    force: bool = False, verbose: int | str = 0, fit_function: Callable | None = None, executor: Any = "local",
) -> list[dict]:
    """Runs this shard's unfinished fits into ``out``; returns the records of this shard's fits.

    ``config``: an ExperimentConfig, or a path / packaged name for load_experiment. With
    ``dry_run`` prints the plan and returns [] without touching ``out``. ``force`` discards the
    results of a different config in ``out``. ``executor``: ``"local"`` (default), ``"ray"``,
    or a configured ``RayExecutor(address=..., gpus_per_fit=..., max_retries=...)``.
    ``fit_function`` replaces osteo_tf.training.train.train (same signature; for tests).
    """
    if not isinstance(config, ExperimentConfig):
        from osteo_tf.experiments.config import load_experiment

        config = load_experiment(config)
    out = Path(out)
    fits = plan(config)
    mine = shard_fits(fits, shard)
    if dry_run:
        print_plan(config, out, fits, mine, shard)
        return []
    run_fits = _resolve_executor(executor)
    _prepare_out(config, out, force)
    manifest = _cohort_manifest(config, out)
    done = {r["fit_id"] for r in read_records(out)}
    todo = [f for f in mine if f.fit_id not in done]
    _say(f"experiment {config.name} ({config.hash()}): {len(fits)} fits, shard {shard[0]}/{shard[1]} has {len(mine)}, "
         f"{len(mine) - len(todo)} already done, {len(todo)} to run")
    if todo:
        run_fits(config, out, manifest, todo, verbose, fit_function)
    records = {r["fit_id"]: r for r in read_records(out)}
    return [records[f.fit_id] for f in mine if f.fit_id in records]


def print_plan(config: ExperimentConfig, out: Path, fits: list[Fit], mine: list[Fit], shard: tuple[int, int]) -> None:
    split = config.split.to_dict()
    p = config.phantom
    cohort = f"{p.kind} phantom, {p.n} subjects at {p.image_size} px, seed {p.seed}" if p else (config.manifest or "none given (pass --manifest)")
    print(f"experiment {config.name} (config hash {config.hash()}) → {out}")
    print(f"  cohort: {cohort}\n  covariates: {', '.join(config.covariates)}\n  split: {split}")
    print(f"  grid: {len(config.backbones)} backbone(s) {list(config.backbones)} × modes {list(config.modes)} × "
          f"{config.split.repeats} repeat(s) × {config.split.n_folds} fold(s) = {len(fits)} fits")
    done = {r["fit_id"] for r in read_records(out)} if (out / "results").is_dir() else set()
    print(f"  shard {shard[0]}/{shard[1]}: {len(mine)} fits, {sum(f.fit_id in done for f in mine)} already done")
    for fit in mine:
        print(f"    {fit.fit_id}  seed {fit.seed}{'  (done)' if fit.fit_id in done else ''}")
    print(f"{len(mine)} fit(s) in shard {shard[0]}/{shard[1]} of {len(fits)}")


def _prepare_out(config: ExperimentConfig, out: Path, force: bool) -> None:
    """Writes experiment.yaml once; refuses (or with force, clears) a folder of another config."""
    path = out / "experiment.yaml"
    if path.is_file():
        previous = parse_experiment(yaml.safe_load(path.read_text()), source=str(path))
        if previous.hash() == config.hash():
            return
        if not force:
            raise OsteoInputError(
                f"{out} holds experiment '{previous.name}' with config hash {previous.hash()}, but this config's hash "
                f"is {config.hash()}; use another --out, or pass --force to discard its results")
        for name in ("results", "runs", "phantom"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(f"# resolved config of experiment {config.name}; config hash {config.hash()}\n"
                             + yaml.safe_dump(config.to_dict(), sort_keys=False))


def _cohort_manifest(config: ExperimentConfig, out: Path) -> Path:
    if config.phantom is not None:
        manifest = out / "phantom" / "manifest.csv"
        if not manifest.is_file():  # written last by make_cohort: its presence means complete
            from osteo_tf.data.synthetic import make_cohort

            p = config.phantom
            _say(f"generating a {p.kind} phantom of {p.n} subjects at {p.image_size} px in {manifest.parent}")
            make_cohort(p.kind, p.n, manifest.parent, seed=p.seed, image_size=p.image_size, information=p.information)
        return manifest
    if config.manifest is None:
        raise OsteoInputError(f"experiment {config.name} names no cohort: pass --manifest CSV (or set cohort.manifest)")
    return Path(config.manifest)


def fit_splits(config: ExperimentConfig, cohort: pd.DataFrame, fit: Fit) -> dict[str, np.ndarray]:
    """The train/val/test rows of a fit: reproducible from (config seed, repeat, fold)."""
    s = config.split
    if s.kind == "random":
        return random_split(cohort, s.ratios, derive_seed(config.seed, fit.repeat))
    return kfold_split(cohort, fit.fold, s.folds, s.val_ratio, config.seed, fit.repeat)


def _resolve_executor(executor: Any) -> Callable:
    """The function that runs a list of fits: run_fits_locally, or a RayExecutor (checked usable)."""
    if executor == "local":
        return run_fits_locally
    from osteo_tf.experiments.ray_executor import RayExecutor

    if executor == "ray":
        executor = RayExecutor()
    if not isinstance(executor, RayExecutor):
        raise OsteoInputError(f"unknown executor {executor!r}; choose local or ray")
    executor.require_ray()
    return executor


def load_fit_cohort(config: ExperimentConfig, manifest: Path, fits: Sequence[Fit] = ()) -> tuple[Any, pd.DataFrame]:
    """(ManifestConfig or None, the validated cohort table) shared by every fit of the experiment.

    Before any fit trains, the cohort must hold both classes and the split of every fit in
    ``fits`` must have both classes in its train, val and test parts (OsteoInputError naming
    the manifest, or the repeat and fold), so a bad fold stops the grid at its start.
    """
    from osteo_tf.data.manifest import ManifestConfig
    from osteo_tf.training import train as training

    manifest_config = ManifestConfig.from_dict(config.manifest_config) if config.manifest_config else None
    needs_covariates = any(mode != "image_only" for mode in config.modes)
    reference = config.train_config(config.backbones[0], "ensemble" if needs_covariates else "image_only", 0)
    cohort = training.load_cohort(manifest, reference, manifest_config)
    require_both_classes(cohort)
    for fit in fits:
        fit_splits(config, cohort, fit)  # each raises for a part of one class
    return manifest_config, cohort


def run_fits_locally(config: ExperimentConfig, out: Path, manifest: Path, todo: list[Fit], verbose: int | str = 0,
                     fit_function: Callable | None = None) -> None:
    """The local executor: the fits one after another in this process."""
    manifest_config, cohort = load_fit_cohort(config, manifest, todo)
    progress = Progress(len(todo))
    for index, fit in enumerate(todo, start=1):
        if not (out / "runs" / fit.fit_id / "COMPLETE").is_file():
            _say(f"[{index}/{len(todo)}] start {fit.fit_id}")
        record, trained = run_fit(config, out, manifest, fit, cohort, manifest_config, verbose, fit_function)
        progress.finished(record, trained)


def run_fit(config: ExperimentConfig, out: Path, manifest: Path, fit: Fit, cohort: pd.DataFrame, manifest_config=None,
            verbose: int | str = 0, fit_function: Callable | None = None) -> tuple[dict, bool]:
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
            manifest, run, config.train_config(backbone, fit.mode, fit.seed, fit.fusion), manifest_config=manifest_config,
            cohort=cohort, splits=fit_splits(config, cohort, fit), verbose=verbose)
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
        _say(f"[{self.done}/{self.total}] done  {record['fit_id']}: test AUC {record['metrics']['test']['auc']:.3f}, "
             f"{record['seconds']:.0f} s  {_bar(self.done, self.total)} elapsed {_clock(elapsed)} ETA {_clock(eta)}")


def make_record(config: ExperimentConfig, out: Path, fit: Fit) -> dict:
    """The result record of a fit whose run folder is complete.

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
    return {
        "fit_id": fit.fit_id, "config_hash": config.hash(), "experiment": config.name, "backbone": fit.backbone,
        "mode": fit.mode, "fusion": fit.fusion, "model": fit.model, "repeat": fit.repeat, "fold": fit.fold, "seed": fit.seed,
        "metrics": {"val": metrics["val"], "test": metrics["test"]},
        "test_predictions": [
            {"image": str(r.image), "patient_id": str(r.patient_id), "label": int(r.label), "probability": float(r.probability)}
            for r in test.itertuples(index=False)],
        "seconds": float(read_json(run / "COMPLETE")["seconds"]), "epochs_run": int(len(history)), "best_epoch": best,
        "run_dir": str(Path("runs") / fit.fit_id),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _say(message: str) -> None:
    print(f"[osteo experiment] {message}", file=sys.stderr, flush=True)


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = round(width * done / total)
    return f"|{'#' * filled}{'.' * (width - filled)}| {100 * done // total:3d}%"


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes:02d}:{seconds:02d}"
