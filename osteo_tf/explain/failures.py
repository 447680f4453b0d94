"""Failure analysis (CLAIM 2024 item 39): a run's most confident errors, with covariates and Grad-CAM.

From the run's test predictions, at its threshold and on its reported probability (recalibrated
after ``osteo calibrate``): the ``per_kind`` false positives with the highest probability and the
``per_kind`` false negatives with the lowest — the cases a reader should look at first. Each row
carries the patient's covariates from the run's manifest, and for a model that reads images a
Grad-CAM figure made by :func:`osteo_tf.explain.run.explain_run` (the maps of ``osteo explain``:
the same image reading, the model's own probability in the figure title). A covariates-only
run gets the table alone.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pandas as pd

from osteo_tf.data.manifest import ManifestConfig
from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.threshold import run_threshold, split_predictions
from osteo_tf.explain.run import explain_run
from osteo_tf.io import write_csv
from osteo_tf.runs.cohort import load_cohort
from osteo_tf.runs.config import TrainConfig
from osteo_tf.runs.run_dir import RunDir
from osteo_tf.vocabulary import COVARIATES, uses_images

__all__ = ["FAILURE_KINDS", "failure_cases", "failure_lines", "write_failures"]

FAILURE_KINDS = ("false positive", "false negative")
_COLUMNS = ["kind", "rank", "image", "patient_id", "label", "probability"]


def failure_cases(run: str | Path, *, per_kind: int = 4, split: str = "test") -> pd.DataFrame:
    """The most confident false positives and false negatives of a run's ``split``.

    Args:
        run: a complete run folder.
        per_kind: how many of each kind (fewer when the run made fewer such errors).
        split: ``"test"`` (default) or ``"val"``.

    Returns:
        Columns ``kind, rank`` (1 = most confident), ``image, patient_id, label, probability``
        and the covariates of the run's manifest (age, sex, bmi, hip_fracture_history, those
        it has); false positives by descending probability, then false negatives ascending.

    Raises:
        OsteoInputError: an unfinished run, per_kind < 1, an unknown split.
    """
    if int(per_kind) < 1:
        raise OsteoInputError(f"per_kind must be at least 1, got {per_kind}", parameter="per_kind")
    if split not in ("val", "test"):
        raise OsteoInputError(f"split must be 'val' or 'test', got {split!r}", parameter="split")
    run_dir = RunDir(run).require_complete()
    rows = split_predictions(run_dir.path)[split]
    threshold = run_threshold(run_dir.path)
    called = rows["probability"] >= threshold
    positives = rows[called & (rows["label"] == 0)].sort_values("probability", ascending=False, kind="stable")
    negatives = rows[~called & (rows["label"] == 1)].sort_values("probability", ascending=True, kind="stable")
    parts = [
        frame.head(int(per_kind)).assign(kind=kind, rank=range(1, min(len(frame), int(per_kind)) + 1))
        for kind, frame in zip(FAILURE_KINDS, (positives, negatives))
    ]
    table = (
        pd.concat(parts, ignore_index=True)[_COLUMNS] if any(len(p) for p in parts) else pd.DataFrame(columns=_COLUMNS)
    )
    return _with_covariates(table, run_dir)


def _with_covariates(table: pd.DataFrame, run_dir: RunDir) -> pd.DataFrame:
    settings = run_dir.read_config()
    config = TrainConfig.from_dict(settings["train"])
    manifest_config = dataclasses.replace(ManifestConfig.from_dict(settings.get("manifest_config")), check_images=False)
    cohort = load_cohort(settings["manifest"], config, manifest_config)
    covariates = [c for c in COVARIATES if c in cohort]
    return table.merge(cohort[["image", *covariates]].drop_duplicates("image"), on="image", how="left")


def write_failures(run: str | Path, out: str | Path | None = None, *, per_kind: int = 4) -> pd.DataFrame:
    """Writes the failure analysis of a run's test split and returns its table.

    Writes into ``out`` (default ``RUN/failures/``): ``failures.csv`` (:func:`failure_cases` plus a
    ``figure`` column), and for an image model one Grad-CAM figure per case under ``gradcam/``
    and ``failures.png`` (the Grad-CAM grid: false negatives — true osteoporosis — on the left,
    false positives on the right).

    Args:
        run: a complete run folder.
        out: the output folder.
        per_kind: how many errors of each kind.

    Returns:
        The table written to ``failures.csv``.
    """
    run_dir = RunDir(run).require_complete()
    out = Path(out) if out is not None else run_dir.path / "failures"
    table = failure_cases(run_dir.path, per_kind=per_kind)
    table["figure"] = ""
    mode = run_dir.read_config()["train"]["mode"]
    if uses_images(mode) and len(table):
        explained = explain_run(run_dir.path, images=list(table["image"]), out=out / "gradcam")
        figures = dict(zip(explained["image"], explained["figure"]))
        table["figure"] = [f"gradcam/{figures[image]}" for image in table["image"]]
        shutil.copyfile(out / "gradcam" / "grid.png", out / "failures.png")
    write_csv(out / "failures.csv", table)
    return table


def failure_lines(table: pd.DataFrame) -> list[str]:
    """One line per case: kind, rank, probability, label, image, covariates.

    Args:
        table: :func:`failure_cases` (or :func:`write_failures`) output.

    Returns:
        The lines (a single line saying so when the run made no error).
    """
    if not len(table):
        return ["no false positives or false negatives at the run's threshold"]
    covariates = [c for c in COVARIATES if c in table]
    return [
        f"{row.kind:14} #{row.rank}  p={row.probability:.3f}  label {row.label}  {Path(row.image).name}  "
        + "  ".join(f"{c}={getattr(row, c)}" for c in covariates)
        for row in table.itertuples()
    ]
