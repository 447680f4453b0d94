"""The decision threshold of a run: 0.5 by default (the papers), or chosen on the validation split.

``select_threshold(run, "sensitivity=0.90")`` reads the run's ``predictions.csv``, picks the
threshold on the **validation** rows only — never the test rows — and records it in
``RUN/threshold.json`` (atomically) together with the target, the validation metrics at it and
the test metrics at it. :func:`run_threshold` is what ``evaluate`` and ``export`` use: the
recorded threshold, else the one the run was trained with (``--threshold``, default 0.5).

Targets (a case is positive when ``probability >= threshold``):

- ``sensitivity=X``: the highest threshold whose validation sensitivity is at least X (so the
  best specificity that still reaches the sensitivity);
- ``specificity=X``: the lowest threshold whose validation specificity is at least X;
- ``youden``: the threshold maximising sensitivity + specificity − 1 (ties: the highest).

Candidates are the validation probabilities themselves, so the chosen value is one of them.
Probabilities are the run's reported ones (:func:`~osteo_tf.evaluation.recalibration.reported_probability`:
recalibrated after ``osteo calibrate``), so the threshold is on the scale the run reports.

The metrics in the record carry 95 % bootstrap CIs over patients; :func:`threshold_table`
(``RUN/threshold_table.csv``, written by ``osteo threshold``) lists every metric with its CI
at each candidate threshold of :data:`TABLE_THRESHOLDS` and at the chosen one, on val and test.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.bootstrap import with_intervals
from osteo_tf.evaluation.metrics import METRIC_NAMES, binary_metrics
from osteo_tf.evaluation.recalibration import reported_probability
from osteo_tf.io import read_json, write_csv, write_json
from osteo_tf.runs.run_dir import RunDir

__all__ = [
    "DEFAULT_THRESHOLD",
    "TABLE_THRESHOLDS",
    "TARGET_HELP",
    "choose_threshold",
    "parse_target",
    "run_seed",
    "run_threshold",
    "select_threshold",
    "split_predictions",
    "threshold_record",
    "threshold_table",
]

DEFAULT_THRESHOLD = 0.5
TARGET_HELP = "sensitivity=X, specificity=X (0 < X ≤ 1) or youden"
#: Candidate thresholds of the threshold table (0.05, 0.10, …, 0.95), beside the chosen one.
TABLE_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))


def parse_target(target: str) -> tuple[str, float | None]:
    """'sensitivity=0.9' → ('sensitivity', 0.9); 'youden' → ('youden', None)."""
    text = str(target).strip().lower()
    if text == "youden":
        return "youden", None
    name, _, value = text.partition("=")
    name = {"sens": "sensitivity", "recall": "sensitivity", "spec": "specificity"}.get(name.strip(), name.strip())
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if name not in ("sensitivity", "specificity") or not 0.0 < number <= 1.0:
        raise OsteoInputError(f"threshold target {target!r} not understood; use {TARGET_HELP}")
    return name, number


def choose_threshold(y_true, y_score, target: str) -> float:
    """The threshold meeting ``target`` on (y_true, y_score) (see the module docstring)."""
    kind, value = parse_target(target)
    y_true = np.asarray(y_true).astype(int).reshape(-1)
    y_score = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if len(np.unique(y_true)) < 2:
        raise OsteoInputError("the validation split needs both classes to choose a threshold")
    fpr, tpr, thresholds = roc_curve(y_true, y_score, drop_intermediate=False)
    finite = np.isfinite(thresholds)  # the first candidate (+inf) calls nothing positive
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]  # thresholds decrease
    if kind == "youden":
        return float(thresholds[int(np.argmax(tpr - fpr))])
    if kind == "sensitivity":
        ok = np.flatnonzero(tpr >= value - 1e-12)
        return float(thresholds[ok[0]])  # the highest; tpr reaches 1 at the lowest score
    ok = np.flatnonzero(1.0 - fpr >= value - 1e-12)
    if ok.size == 0:
        raise OsteoInputError(f"no threshold reaches specificity {value} on the validation split")
    return float(thresholds[ok[-1]])


def split_predictions(run: str | Path) -> dict[str, pd.DataFrame]:
    """The run's validation and test predictions, with its reported probabilities.

    Args:
        run: a complete run folder.

    Returns:
        ``{"val": rows, "test": rows}`` of ``predictions.csv`` (image, patient_id, label,
        probability, split); ``probability`` recalibrated when the run has a calibration.
    """
    run_dir = RunDir(run).require_complete()
    predictions = pd.read_csv(run_dir.predictions)
    predictions["probability"] = reported_probability(run_dir.path, predictions["probability"])
    return {name: predictions[predictions["split"] == name] for name in ("val", "test")}


def _scored(rows: pd.DataFrame, threshold: float, seed: int) -> dict | None:
    if rows.empty:
        return None
    labels, probability = rows["label"].to_numpy(), rows["probability"].to_numpy()
    metrics = binary_metrics(labels, probability, threshold)
    return with_intervals(metrics, labels, probability, groups=rows["patient_id"].to_numpy(), seed=seed)


def run_seed(run_dir: RunDir) -> int:
    """The run's training seed (seeds its bootstraps); 0 when the config has none."""
    return int(read_json(run_dir.config).get("train", {}).get("seed", 0)) if run_dir.config.is_file() else 0


def select_threshold(run: str | Path, target: str) -> dict:
    """Chooses the threshold on the run's validation predictions and records it.

    Writes ``RUN/threshold.json``: ``{"threshold", "target", "chosen_on": "val", "val": metrics,
    "test": metrics, "chosen_at"}`` (metrics as :func:`binary_metrics`, at the new threshold,
    with bootstrap CIs), and ``RUN/threshold_table.csv`` (:func:`threshold_table`).

    Args:
        run: a complete run folder.
        target: ``sensitivity=X``, ``specificity=X`` or ``youden``.

    Returns:
        The record written to ``threshold.json``.
    """
    run_dir = RunDir(run).require_complete()
    parse_target(target)
    splits = split_predictions(run_dir.path)
    val = splits["val"]
    if val.empty:
        raise OsteoInputError(f"run {run_dir.path} has no validation predictions to choose a threshold on")
    threshold = choose_threshold(val["label"], val["probability"], target)
    record = {
        "threshold": threshold,
        "target": str(target),
        "chosen_on": "val",
        "calibrated": run_dir.calibration.is_file(),
        "val": _scored(val, threshold, run_seed(run_dir)),
        "test": _scored(splits["test"], threshold, run_seed(run_dir)),
        "chosen_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(run_dir.threshold, record)
    write_csv(run_dir.path / "threshold_table.csv", threshold_table(run_dir.path, chosen=threshold))
    return record


def threshold_table(run: str | Path, thresholds=TABLE_THRESHOLDS, *, chosen: float | None = None) -> pd.DataFrame:
    """Every metric with its 95 % CI at each candidate threshold, on the validation and test splits.

    Args:
        run: a complete run folder.
        thresholds: candidate thresholds on the reported probability (default 0.05 … 0.95).
        chosen: a threshold added to the candidates (e.g. the one ``osteo threshold`` chose).

    Returns:
        One row per split × threshold: ``split, threshold, chosen`` (bool), the confusion
        counts, and for each metric of METRIC_NAMES its value and ``<metric>_low`` /
        ``<metric>_high`` (bootstrap over patients; empty where undefined).
    """
    run_dir = RunDir(run)
    candidates = sorted({float(t) for t in thresholds} | ({float(chosen)} if chosen is not None else set()))
    rows = []
    for split, frame in split_predictions(run_dir.path).items():
        for threshold in candidates:
            metrics = _scored(frame, threshold, run_seed(run_dir))
            if metrics is None:
                continue
            row = {"split": split, "threshold": threshold, "chosen": chosen is not None and threshold == chosen}
            row.update({k: metrics[k] for k in ("tp", "fp", "tn", "fn")})
            for name in METRIC_NAMES:
                low, high = metrics["ci"]["metrics"][name]
                row.update({name: metrics[name], f"{name}_low": low, f"{name}_high": high})
            rows.append(row)
    return pd.DataFrame(rows)


def threshold_record(run: str | Path) -> dict | None:
    """The run's ``threshold.json`` as a dict, or None when no threshold was chosen."""
    path = RunDir(run).threshold
    return read_json(path) if path.is_file() else None


def run_threshold(run: str | Path) -> float:
    """The run's decision threshold: the recorded one, else the training config's (default 0.5)."""
    record = threshold_record(run)
    if record is not None:
        return float(record["threshold"])
    config_path = RunDir(run).config
    if config_path.is_file():
        return float(read_json(config_path).get("train", {}).get("threshold", DEFAULT_THRESHOLD))
    return DEFAULT_THRESHOLD
