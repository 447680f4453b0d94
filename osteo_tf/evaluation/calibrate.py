"""``osteo calibrate``: recalibrate a run on its validation split (TRIPOD+AI 12f), report it on test.

:func:`calibrate_run` fits a :class:`~osteo_tf.evaluation.calibration.Recalibration`
(logistic / Platt, isotonic, or temperature) on the run's validation predictions — never the
test ones — and writes ``RUN/calibration.json``: the method, its parameters, and the
calibration (intercept, slope, Brier, scaled Brier, ECE) and discrimination of val and test
before and after. From then on the run reports recalibrated probabilities
(:mod:`osteo_tf.evaluation.recalibration`): ``osteo evaluate``, ``osteo threshold``, the
report and ``osteo export`` (the serving graph applies the same map; the model card says so).

The decision threshold is on the reported probability's scale, so recalibrating moves it: a
threshold chosen by ``osteo threshold`` is chosen again, with the same target, on the
recalibrated validation probabilities (the previous record is kept under ``"before_calibration"``);
a run without one keeps its training threshold (default 0.5), now compared with the
recalibrated probability. ``method="none"`` removes the calibration (and re-chooses a chosen
threshold on the model's own probabilities).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pandas as pd

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.calibration import RECALIBRATION_METHODS, calibration_metrics, fit_recalibration
from osteo_tf.evaluation.threshold import run_threshold, select_threshold, threshold_record
from osteo_tf.io import write_json
from osteo_tf.runs.run_dir import RunDir

__all__ = ["CALIBRATE_CHOICES", "calibrate_run", "calibration_lines"]

CALIBRATE_CHOICES = (*RECALIBRATION_METHODS, "none")


def _raw_splits(run_dir: RunDir) -> dict[str, pd.DataFrame]:
    predictions = pd.read_csv(run_dir.predictions)
    return {name: predictions[predictions["split"] == name] for name in ("val", "test")}


def calibrate_run(run: str | Path, method: str) -> dict:
    """Fits a recalibration on the run's validation split and records it in ``RUN/calibration.json``.

    Args:
        run: a complete run folder.
        method: ``"logistic"``, ``"isotonic"``, ``"temperature"``, or ``"none"`` to remove it.

    Returns:
        The record written (``{"recalibration", "fitted_on", "n_val", "before", "after",
        "threshold", "fitted_at"}``; ``before``/``after``: ``{split: calibration metrics}``),
        or ``{"recalibration": None, ...}`` for ``"none"``.

    Raises:
        OsteoInputError: an unknown method, an unfinished run, a validation split of one class.
    """
    if method not in CALIBRATE_CHOICES:
        raise OsteoInputError(
            f"method={method!r} is not a recalibration; choose one of {', '.join(CALIBRATE_CHOICES)}",
            parameter="method",
        )
    run_dir = RunDir(run).require_complete()
    splits = _raw_splits(run_dir)
    if splits["val"]["label"].nunique() < 2:
        raise OsteoInputError(f"run {run_dir.path}: the validation split needs both classes to recalibrate on")
    chosen = threshold_record(run_dir.path)
    if method == "none":
        run_dir.calibration.unlink(missing_ok=True)
        record = {"recalibration": None}
    else:
        recalibration = fit_recalibration(splits["val"]["label"], splits["val"]["probability"], method)
        before = {name: calibration_metrics(rows["label"], rows["probability"]) for name, rows in splits.items()}
        after = {
            name: calibration_metrics(rows["label"], recalibration.apply(rows["probability"].to_numpy()))
            for name, rows in splits.items()
        }
        record = {
            "recalibration": recalibration.to_dict(),
            "fitted_on": "val",
            "n_val": int(len(splits["val"])),
            "before": before,
            "after": after,
            "fitted_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        write_json(run_dir.calibration, record)
    if chosen is not None:  # the same target, on the newly reported probabilities
        new = select_threshold(run_dir.path, chosen["target"])
        new["before_calibration"] = {k: chosen[k] for k in ("threshold", "target", "chosen_at") if k in chosen}
        write_json(run_dir.threshold, new)
    record["threshold"] = {
        "value": run_threshold(run_dir.path),
        "source": f"osteo threshold --target {chosen['target']}, re-chosen" if chosen else "training config",
    }
    if method != "none":
        write_json(run_dir.calibration, record)
    return record


def calibration_lines(run: str | Path, record: dict) -> list[str]:
    """What ``osteo calibrate`` prints: the method, then val and test calibration before → after.

    Args:
        run: the run folder (as the user named it).
        record: what :func:`calibrate_run` returned.

    Returns:
        The lines.
    """
    threshold = record["threshold"]
    if record["recalibration"] is None:
        return [f"{run}: calibration removed; threshold {threshold['value']:.6g} ({threshold['source']})"]
    method = record["recalibration"]["method"]
    lines = [
        f"{run}: {method} recalibration fitted on the validation split (n={record['n_val']}), "
        f"recorded in calibration.json; threshold {threshold['value']:.6g} ({threshold['source']})",
        f"  {'split':5} {'':8} {'intercept':>9} {'slope':>7} {'Brier':>7} {'scaled':>7} {'ECE':>7}",
    ]
    for split in ("val", "test"):
        for when in ("before", "after"):
            m = record[when][split]
            lines.append(
                f"  {split:5} {when:8} {m['intercept']:9.3f} {m['slope']:7.3f} {m['brier']:7.4f} "
                f"{m['scaled_brier']:7.3f} {m['ece']:7.4f}"
            )
    return lines
