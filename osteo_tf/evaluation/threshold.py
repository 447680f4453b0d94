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
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.metrics import binary_metrics
from osteo_tf.io import read_json, write_json
from osteo_tf.runs.run_dir import RunDir

__all__ = [
    "DEFAULT_THRESHOLD",
    "TARGET_HELP",
    "choose_threshold",
    "parse_target",
    "run_threshold",
    "select_threshold",
    "threshold_record",
]

DEFAULT_THRESHOLD = 0.5
TARGET_HELP = "sensitivity=X, specificity=X (0 < X ≤ 1) or youden"


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


def select_threshold(run: str | Path, target: str) -> dict:
    """Chooses the threshold on the run's validation predictions and records it.

    Writes ``RUN/threshold.json``: ``{"threshold", "target", "chosen_on": "val", "val": metrics,
    "test": metrics, "chosen_at"}`` (metrics as :func:`binary_metrics`, at the new threshold)
    and returns that dict.
    """
    run_dir = RunDir(run).require_complete()
    predictions = pd.read_csv(run_dir.predictions)
    val, test = (predictions[predictions["split"] == name] for name in ("val", "test"))
    if val.empty:
        raise OsteoInputError(f"run {run_dir.path} has no validation predictions to choose a threshold on")
    threshold = choose_threshold(val["label"], val["probability"], target)
    record = {
        "threshold": threshold,
        "target": str(target),
        "chosen_on": "val",
        "val": binary_metrics(val["label"], val["probability"], threshold),
        "test": binary_metrics(test["label"], test["probability"], threshold) if not test.empty else None,
        "chosen_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(run_dir.threshold, record)
    return record


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
