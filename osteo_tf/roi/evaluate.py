"""``osteo roi evaluate``: the detector's accuracy on annotated images it did not train on.

Landmark error (pixels and % of the image width: mean, median, 95th percentile, over every
keypoint of every image), the IoU of each row's ROI box (its side's, by the kind's rule)
with the one the annotations give, and the share of boxes with IoU ≥ 0.5 and ≥ 0.75
(:func:`osteo_tf.data.landmarks.roi_metrics`), plus the share the run's threshold flags.
Without a manifest it scores the run's own validation split. Writes ``evaluation.json`` and
``evaluation_rows.csv`` (one row per image: its error, IoU, confidence, flag).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from osteo_tf.data.annotations import read_annotations
from osteo_tf.data.landmarks import box_iou, roi_metrics
from osteo_tf.io import write_csv, write_json
from osteo_tf.runs.roi_predict import detect_boxes, load_detector, predict_keypoints, reference_boxes
from osteo_tf.runs.roi_run import RoiRun

__all__ = ["evaluate_roi", "evaluation_lines"]


def evaluate_roi(run: str | Path, manifest: str | Path | None = None, *, out: str | Path | None = None) -> dict:
    """Score a finished ROI run on an annotated manifest (default: its validation split).

    Args:
        run: the ROI run folder.
        manifest: annotated whole-image manifest (landmark or box columns of the run's target).
        out: folder for ``evaluation.json`` / ``evaluation_rows.csv`` (default: the run folder).

    Returns:
        The figures of :func:`osteo_tf.data.landmarks.roi_metrics` plus ``share_flagged``,
        ``manifest`` and ``split``.
    """
    roi_run = RoiRun(run)
    model, settings = load_detector(roi_run)
    source = Path(manifest) if manifest is not None else Path(settings.manifest)
    annotations = read_annotations(source, settings.kind, target=settings.target)
    rows = np.arange(len(annotations.images.paths))
    if manifest is None:
        splits = pd.read_csv(roi_run.splits)
        rows = np.flatnonzero(splits["split"].to_numpy() == "val")
    images = annotations.images
    paths, sizes = [images.paths[i] for i in rows], images.sizes[rows]
    sides = [images.sides[i] for i in rows]
    keypoints, confidence = predict_keypoints(model, settings, paths)
    found = detect_boxes(settings, keypoints, confidence, sizes, sides)
    truth = annotations.pixels()[rows]
    truth_boxes = reference_boxes(settings, truth, sides, sizes)
    flagged = (found.confidence < settings.confidence_threshold) | ~found.inside
    metrics = {
        "manifest": str(source),
        "split": "val" if manifest is None else "all rows",
        **roi_metrics(found.keypoints, truth, sizes[:, 0], found.boxes, truth_boxes),
        "share_flagged": float(flagged.mean()),
        "confidence_threshold": settings.confidence_threshold,
    }
    error = np.hypot(*(found.keypoints - truth).transpose(2, 0, 1))
    folder = Path(out) if out is not None else roi_run.path
    write_json(folder / "evaluation.json", metrics)
    write_csv(
        folder / "evaluation_rows.csv",
        pd.DataFrame(
            {
                "image": [images.table["image"].iloc[i] for i in rows],
                "side": sides,
                "error_px_mean": error.mean(axis=1).round(2),
                "error_px_max": error.max(axis=1).round(2),
                "iou": box_iou(found.boxes, truth_boxes).round(4),
                "confidence": found.confidence.round(4),
                "flagged": flagged,
            }
        ),
    )
    return metrics


def evaluation_lines(metrics: dict) -> list[str]:
    """What ``osteo roi evaluate`` prints."""
    m = metrics
    return [
        f"{m['n']} images ({m['split']} of {m['manifest']})",
        f"landmark error: mean {m['error_px_mean']:.2f} px ({m['error_pct_width_mean']:.2f} % of width), "
        f"median {m['error_px_median']:.2f} px ({m['error_pct_width_median']:.2f} %), "
        f"95th percentile {m['error_px_p95']:.2f} px ({m['error_pct_width_p95']:.2f} %)",
        f"ROI box IoU: mean {m['iou_mean']:.3f}, median {m['iou_median']:.3f}; "
        f"IoU ≥ 0.5: {100 * m['share_iou_50']:.1f} %, IoU ≥ 0.75: {100 * m['share_iou_75']:.1f} %",
        f"flagged for review (confidence < {m['confidence_threshold']:.2f}): {100 * m['share_flagged']:.1f} %",
    ]
