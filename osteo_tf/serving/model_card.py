"""The model card shipped inside every export (``<version>/assets/model_card.json``).

Everything a reviewer or the hospital's IT team needs to know about the served model, read
from the run folder: backbone, mode, image size, the inputs and the codes they accept, the
covariate encoding statistics (fitted on the training split), how the training manifest was read
(its manifest config: column names, sex codes, ROI box), the decision threshold and
where it came from, the training cohort (images, patients and osteoporosis cases per split),
the test metrics at that threshold, the recalibration the served probability went through
(``osteo calibrate``: method, parameters, fitted on the validation split, calibration before and
after), and the package versions at training and export time.
"""

from __future__ import annotations

import datetime as _dt
import platform
from pathlib import Path

import pandas as pd

import osteo_tf
from osteo_tf.evaluation.bootstrap import with_intervals
from osteo_tf.evaluation.metrics import binary_metrics
from osteo_tf.evaluation.threshold import split_predictions, threshold_record
from osteo_tf.io import read_json
from osteo_tf.runs.run_dir import RunDir
from osteo_tf.serving.spec import IMAGE_INPUT, RANGES, ServingSpec
from osteo_tf.vocabulary import DEFAULT_FUSION

__all__ = ["with_roi_stage", "INTENDED_USE", "build_model_card", "cohort_summary", "input_descriptions"]

INTENDED_USE = (
    "Research use: estimates the probability of osteoporosis (DXA T-score <= -2.5) from a radiograph "
    "crop and clinical covariates, reimplementing Yamamoto et al. 2020 and Sukegawa et al. 2022. Not a "
    "medical device; validate on your own population before any clinical use."
)


def cohort_summary(run: RunDir) -> dict:
    """Images, patients and osteoporosis cases per split, from the run's ``splits.csv``."""
    table = pd.read_csv(run.splits)
    summary = {}
    for name, rows in table.groupby("split", sort=False):
        summary[str(name)] = {
            "images": int(len(rows)),
            "patients": int(rows["patient_id"].nunique()),
            "osteoporosis": int(rows["label"].sum()),
        }
    return summary


def input_descriptions(spec: ServingSpec) -> dict[str, dict]:
    """Per raw input: dtype and what it accepts."""
    described = {}
    for name, dtype in spec.inputs.items():
        entry: dict = {"dtype": dtype, "shape": [None]}
        if name == IMAGE_INPUT:
            entry["accepts"] = (
                "encoded PNG (8/16 bit) or JPEG bytes, any size, grayscale or RGB(A); no ROI crop is applied"
            )
        elif name in spec.categorical:
            entry["accepts"] = sorted(spec.accepted_codes(name))
            entry["case_insensitive"] = spec.case_insensitive(name)
        elif name in RANGES:
            entry["range"] = list(RANGES[name])
        if name in spec.imputed:
            entry["missing"] = "allowed (NaN / empty): imputed with the training fill value plus a missing indicator"
        described[name] = entry
    return described


def build_model_card(run: str | Path, spec: ServingSpec, name: str, version: int) -> dict:
    """The model card as a JSON-able dict."""
    import keras
    import numpy as np
    import tensorflow as tf

    run_dir = RunDir(run)
    settings = run_dir.read_config()
    record = threshold_record(run_dir.path)
    metrics = read_json(run_dir.metrics) if run_dir.metrics.is_file() else {}
    calibration = read_json(run_dir.calibration) if run_dir.calibration.is_file() else None
    if calibration is not None and record is None:  # metrics.json holds the uncalibrated model's
        metrics = {
            split: _reported_metrics(run_dir, rows, spec.threshold)
            for split, rows in split_predictions(run_dir.path).items()
        }
    return {
        "name": name,
        "version": int(version),
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "run": str(run_dir.path.resolve()),
        "intended_use": INTENDED_USE,
        "backbone": spec.backbone,
        "mode": spec.mode,
        "fusion": _fusion(settings["train"], spec.mode),
        "missing_covariates": {
            "may_be_missing": list(spec.imputed),
            "required": [n for n in spec.inputs if n != IMAGE_INPUT and n not in spec.imputed],
        },
        "image_size": spec.image_size,
        "intensity": spec.intensity,
        "training": settings["train"],
        # How the training manifest was read (columns, sex codes, ROI box): osteo predict reads alike.
        "manifest_config": settings.get("manifest_config"),
        "signatures": {
            "serving_default": {
                "inputs": input_descriptions(spec),
                "outputs": {
                    "probability": "float32 (batch,)"
                    + (
                        f", recalibrated ({calibration['recalibration']['method']}, fitted on the validation split)"
                        if calibration
                        else ", the model's own (not recalibrated)"
                    ),
                    "label": "int64 (batch,), 1 = osteoporosis (probability >= threshold)",
                },
            },
            "serving_tensors": {
                "inputs": "the tensors model.keras takes: image (normalised for the backbone) and/or "
                "covariates (encoded)",
                "outputs": "as serving_default",
            },
        },
        "covariates": spec.encoder,
        "recalibration": None
        if calibration is None
        else {
            **calibration["recalibration"],
            "fitted_on": calibration.get("fitted_on", "val"),
            "calibration_before": calibration.get("before"),
            "calibration_after": calibration.get("after"),
        },
        "threshold": {
            "value": spec.threshold,
            "source": "osteo threshold (chosen on the validation split)" if record else "training config (default 0.5)",
            "target": record.get("target") if record else None,
            "validation_metrics": record.get("val") if record else metrics.get("val"),
        },
        "training_cohort": {"manifest": settings.get("manifest"), "splits": cohort_summary(run_dir)},
        "test_metrics": record.get("test") if record else metrics.get("test"),
        "versions": {
            "training": settings.get("versions", {}),
            "export": {
                "osteo_tf": osteo_tf.__version__,
                "python": platform.python_version(),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "numpy": np.__version__,
            },
        },
    }


def _reported_metrics(run_dir: RunDir, rows: pd.DataFrame, threshold: float) -> dict:
    """A split's metrics (with CIs) on the run's recalibrated probabilities."""
    labels, probability = rows["label"].to_numpy(), rows["probability"].to_numpy()
    seed = int(run_dir.read_config()["train"].get("seed", 0))
    return with_intervals(
        binary_metrics(labels, probability, threshold), labels, probability, groups=rows["patient_id"], seed=seed
    )


def _fusion(train: dict, mode: str) -> dict | None:
    """How the ensemble joins its inputs (None for a single-input model)."""
    if mode != "ensemble":
        return None
    return {
        "design": train.get("fusion", DEFAULT_FUSION),
        "aux_loss_weight": train.get("aux_loss_weight", 0.0),
        "covariate_dropout": train.get("covariate_dropout", 0.0),
    }


def with_roi_stage(card: dict, roi: dict) -> dict:
    """The card of a two-stage export (:mod:`osteo_tf.serving.two_stage`): the ROI detector run's
    settings under ``roi``, and the whole-image inputs and the ROI outputs in ``serving_default``."""
    default = card["signatures"]["serving_default"]
    inputs = {
        **default["inputs"],
        "image_bytes": {
            **default["inputs"]["image_bytes"],
            "accepts": "the whole radiograph: encoded PNG (8/16 bit) or JPEG bytes, any size; the ROI "
            f"detector finds the {roi['kind']} ROI and the crop is classified",
        },
        "side": {"dtype": "string", "shape": [None], "accepts": ["left", "right"], "case_insensitive": True},
    }
    outputs = {
        **default["outputs"],
        "roi": "int64 (batch, 4): the ROI box used, (x, y, w, h) in pixels of the whole image",
        "roi_confidence": "float32 (batch,): the detector's confidence (lowest of the side's keypoints); "
        f"below {roi['confidence_threshold']} a person should check the box",
    }
    signatures = {**card["signatures"], "serving_default": {"inputs": inputs, "outputs": outputs}}
    return {**card, "roi": roi, "signatures": signatures}
