"""Failure analysis (CLAIM 2024 item 39): a run's most confident errors, with covariates and Grad-CAM.

From a finished run's predictions of one split (``test`` by default), at the run's decision
threshold (:func:`~osteo_tf.evaluation.threshold.run_threshold`) and on its reported probability
(recalibrated after ``osteo calibrate``; a case is called positive when ``probability >=
threshold``):

- the ``per_kind`` **false positives** with the highest probability (label 0, called positive);
- the ``per_kind`` **false negatives** with the lowest probability (label 1, called negative),

the cases a reader should look at first. Each row carries the patient's covariates (age, sex,
bmi, hip_fracture_history: those the run's cohort has, as the cohort encodes them, e.g. a
fracture history of 1/0), taken from the run's own manifest read as ``train`` read it
(:func:`~osteo_tf.runs.cohort.load_cohort` with the run's saved settings) and matched by image path.

:func:`write_failures` adds, for a model that reads images, one Grad-CAM figure per case made by
:func:`osteo_tf.explain.run.explain_run` (the maps, image reading and figure of ``osteo explain``;
its title gives the model's own probability, before any recalibration) and ``failures.png``, a
grid of those figures: false positives in the top row, false negatives in the bottom row, most
confident first. A covariates-only model reads no image: it gets the table alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.image import imread

from osteo_tf.data.manifest import ManifestConfig
from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.threshold import run_threshold, split_predictions
from osteo_tf.explain.run import explain_run
from osteo_tf.io import atomic_path, write_csv
from osteo_tf.runs.cohort import load_cohort
from osteo_tf.runs.config import TrainConfig
from osteo_tf.runs.run_dir import RunDir
from osteo_tf.vocabulary import COVARIATES, uses_covariates, uses_images

__all__ = ["CASE_COLUMNS", "FAILURE_KINDS", "SPLITS", "failure_cases", "failure_lines", "write_failures"]

#: The two kinds of error, in table order.
FAILURE_KINDS = ("false positive", "false negative")
#: The columns every failure table starts with (the cohort's covariates follow).
CASE_COLUMNS = ("kind", "rank", "image", "patient_id", "label", "probability")
#: The splits of ``predictions.csv``.
SPLITS = ("val", "test")
_PREDICTION_COLUMNS = ("image", "patient_id", "label", "probability", "split")
_FIGURES = "gradcam"


def failure_cases(run: str | Path, *, per_kind: int = 4, split: str = "test") -> pd.DataFrame:
    """The most confident false positives and false negatives of a run's ``split``.

    Args:
        run: a complete run folder (``config.json``, ``predictions.csv`` and the manifest it names).
        per_kind: how many of each kind; fewer (as many as exist) when the run made fewer such errors.
        split: ``"test"`` (default) or ``"val"``.

    Returns:
        Columns ``kind`` ("false positive" / "false negative"), ``rank`` (1 = most confident),
        ``image, patient_id, label, probability`` (the reported one) and the covariates of the
        run's cohort (age, sex, bmi, hip_fracture_history: those it has; empty where an image
        is no longer in the manifest): false positives by descending probability, then false
        negatives by ascending probability. No error: an empty frame with those columns.
        ``attrs`` holds ``threshold`` and ``split``.

    Raises:
        OsteoInputError: an unfinished run or one lacking a file (named), per_kind < 1, an unknown split.
    """
    per_kind = _count(per_kind)
    if split not in SPLITS:
        raise OsteoInputError(f"split must be one of {', '.join(SPLITS)}, got {split!r}", parameter="split")
    run_dir = _run_folder(run, "config.json", "predictions.csv")
    _check_predictions(run_dir)
    rows = split_predictions(run_dir.path)[split]
    threshold = run_threshold(run_dir.path)
    called = rows["probability"] >= threshold
    errors = (rows[called & (rows["label"] == 0)], rows[~called & (rows["label"] == 1)])
    parts = [
        frame.sort_values("probability", ascending=name == "false negative", kind="stable")
        .head(per_kind)
        .assign(kind=name, rank=np.arange(1, min(len(frame), per_kind) + 1))
        for name, frame in zip(FAILURE_KINDS, errors)
    ]
    table = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)[list(CASE_COLUMNS)]
    table["label"] = table["label"].astype(int)
    table["rank"] = table["rank"].astype(int)
    table = _with_covariates(table, run_dir)
    table.attrs.update(threshold=float(threshold), split=split)
    return table


def write_failures(run: str | Path, out: str | Path | None = None, *, per_kind: int = 4) -> pd.DataFrame:
    """Writes the failure analysis of a run's test split and returns its table.

    Writes into ``out`` (default ``RUN/failures/``):

    - ``failures.csv``: :func:`failure_cases` plus a ``figure`` column (the case's figure,
      relative to ``out``; empty for a covariates-only run);
    - image models only: ``gradcam/<image stem>.png``, one Grad-CAM figure per case, written by
      :func:`~osteo_tf.explain.run.explain_run` (which also leaves its ``explain.csv`` and
      ``grid.png`` there), and ``failures.png``, those figures in a grid: false positives in the
      top row, false negatives in the bottom row, rank 1 (most confident) on the left.

    A covariates-only run (``mode="covariates_only"``) reads no image, so it has no Grad-CAM:
    only ``failures.csv`` is written. A run without errors gets a header-only ``failures.csv``.

    Args:
        run: a complete run folder; an image model also needs its ``model.keras`` (and an
            ensemble its ``covariate_encoder.json``) and the images of its manifest.
        out: the output folder.
        per_kind: how many errors of each kind.

    Returns:
        The table written to ``failures.csv``.

    Raises:
        OsteoInputError: as :func:`failure_cases`; a model or encoder file missing from the run.
    """
    per_kind = _count(per_kind)
    run_dir = _run_folder(run, "config.json", "predictions.csv")
    mode = TrainConfig.from_dict(run_dir.read_config()["train"]).mode
    if uses_images(mode):
        _run_folder(run, run_dir.model.name, *([run_dir.encoder.name] if uses_covariates(mode) else []))
    out = Path(out) if out is not None else run_dir.path / "failures"
    table = failure_cases(run_dir.path, per_kind=per_kind)
    figures = [""] * len(table)
    if uses_images(mode) and len(table):
        explained = explain_run(run_dir.path, images=list(table["image"]), out=out / _FIGURES)
        figures = [f"{_FIGURES}/{name}" for name in explained["figure"]]  # one row per image, in order
    table["figure"] = figures
    out.mkdir(parents=True, exist_ok=True)
    if uses_images(mode) and len(table):
        _plot_failure_grid(table, out, out / "failures.png")
    write_csv(out / "failures.csv", table)
    return table


def failure_lines(table: pd.DataFrame) -> list[str]:
    """What a CLI prints: one line per case (kind, rank, probability against the threshold, label,
    image, covariates, figure).

    Args:
        table: :func:`failure_cases` or :func:`write_failures` output (or ``failures.csv`` read back).

    Returns:
        The lines; a single line saying so when the table holds no error.
    """
    threshold = table.attrs.get("threshold")
    if not len(table):
        at = "" if threshold is None else f" at threshold {threshold:.3g}"
        return [f"no false positives or false negatives{at}"]
    covariates = [c for c in COVARIATES if c in table]
    lines = []
    for row in table.to_dict("records"):
        versus = "" if threshold is None else (" ≥ " if row["kind"] == FAILURE_KINDS[0] else " < ") + f"{threshold:.3f}"
        values = "  ".join(f"{c}={_text(row[c])}" for c in covariates)
        figure = f"  → {row['figure']}" if row.get("figure") else ""
        lines.append(
            f"{row['kind']:14} #{int(row['rank'])}  p={row['probability']:.3f}{versus}  label {int(row['label'])}  "
            f"{Path(str(row['image'])).name}  {values}{figure}".rstrip()
        )
    return lines


def _count(per_kind: int) -> int:
    if isinstance(per_kind, bool) or not isinstance(per_kind, (int, np.integer)) or per_kind < 1:
        raise OsteoInputError(f"per_kind must be at least 1, got {per_kind!r}", parameter="per_kind")
    return int(per_kind)


def _run_folder(run: str | Path, *names: str) -> RunDir:
    """The complete run folder, refused when one of ``names`` is missing from it."""
    run_dir = RunDir(run).require_complete()
    for name in names:
        if not (run_dir.path / name).is_file():
            raise OsteoInputError(
                f"run {run_dir.path} has no {name}: it is needed for the failure analysis", parameter="run"
            )
    return run_dir


def _check_predictions(run_dir: RunDir) -> None:
    present = set(pd.read_csv(run_dir.predictions, nrows=0).columns)
    missing = [c for c in _PREDICTION_COLUMNS if c not in present]
    if missing:
        raise OsteoInputError(
            f"{run_dir.predictions} lacks column(s) {', '.join(missing)}; expected {', '.join(_PREDICTION_COLUMNS)}",
            parameter="run",
        )


def _with_covariates(table: pd.DataFrame, run_dir: RunDir) -> pd.DataFrame:
    """``table`` with the cohort's covariates of each image (matched by resolved path)."""
    settings = run_dir.read_config()
    config = TrainConfig.from_dict(settings["train"])
    # The cohort as train read it; the images are not decoded again (the table needs none).
    manifest_config = dataclasses.replace(ManifestConfig.from_dict(settings.get("manifest_config")), check_images=False)
    cohort = load_cohort(settings["manifest"], config, manifest_config)
    covariates = [c for c in COVARIATES if c in cohort]
    index: dict[str, int] = {}
    for i, path in enumerate(cohort["image"]):
        index.setdefault(_key(path), i)
    positions = [index.get(_key(path), -1) for path in table["image"]]  # -1: not in the manifest (any more)
    values = cohort[covariates].reset_index(drop=True).reindex(positions).reset_index(drop=True)
    return pd.concat([table.reset_index(drop=True), values], axis=1)


def _key(path: object) -> str:
    return str(Path(str(path)).resolve())


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "NA"
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def _plot_failure_grid(table: pd.DataFrame, folder: Path, path: Path) -> Path:
    """The cases' Grad-CAM figures as a grid: false positives on top, false negatives below."""
    threshold = table.attrs.get("threshold", float("nan"))
    groups = [table[table["kind"] == kind] for kind in FAILURE_KINDS]
    columns = max(1, *(len(g) for g in groups))
    figure = Figure(figsize=(5.0 * columns, 2 * 2.3 + 0.7), dpi=150, layout="constrained")
    axes = np.asarray(figure.subplots(2, columns, squeeze=False))
    names = (f"false positives\n(label 0, p ≥ {threshold:.3f})", f"false negatives\n(label 1, p < {threshold:.3f})")
    for row, (group, name) in enumerate(zip(groups, names)):
        for column in range(columns):
            axis = axes[row, column]
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
            if column < len(group):
                case = group.iloc[column]
                axis.imshow(imread(folder / case["figure"]))
                axis.set_title(f"#{int(case['rank'])} · reported p = {case['probability']:.3f}", fontsize=9)
            elif column == 0:
                axis.text(0.5, 0.5, f"no {name.splitlines()[0]}", ha="center", va="center", transform=axis.transAxes)
            if column == 0:
                axis.set_ylabel(name, fontsize=10)
    split = table.attrs.get("split", "test")
    figure.suptitle(
        f"Most confident errors of the {split} split at threshold {threshold:.3f} (Grad-CAM for osteoporosis)",
        fontsize=12,
    )
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    return path
