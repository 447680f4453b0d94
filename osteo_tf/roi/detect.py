"""``osteo roi detect``: crop a whole-radiograph manifest automatically, and flag what a person must check.

For every row of the manifest the run's detector finds the keypoints, the kind's rule makes
the ROI box of the row's side (:mod:`osteo_tf.data.landmarks`), and the output manifest gets
the data contract's ``roi_x, roi_y, roi_w, roi_h`` plus:

- ``roi_confidence``: the lowest confidence among the side's keypoints (0–1, three decimals);
- ``roi_status``: ``detected``, or ``review`` when the confidence is below the run's threshold
  (or ``threshold=``) or the rule's box reached outside the image (it is clipped).

Rows marked ``review`` are never used silently: ``osteo train`` and ``osteo data check`` refuse
a manifest holding them, naming each line (:mod:`osteo_tf.data.manifest`), unless
``--allow-exclusions`` leaves them out and lists them in ``exclusions.csv``. A reviewer
looks at them first in the contact sheets (flagged tiles come first, in red), corrects the
box if needed and sets ``roi_status`` to ``checked``. Image paths are rewritten relative to
the output CSV's folder, so the output can live anywhere. All other columns pass through.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osteo_tf.data.annotations import read_whole_images
from osteo_tf.data.landmarks import SIDE_COLUMN
from osteo_tf.errors import OsteoInputError
from osteo_tf.io import write_csv
from osteo_tf.roi.contact_sheet import Tile, contact_sheets
from osteo_tf.runs.roi_predict import detect_boxes, load_detector, predict_keypoints
from osteo_tf.vocabulary import ROI_COLUMNS, ROI_CONFIDENCE_COLUMN, ROI_STATUS_COLUMN

__all__ = ["DetectResult", "detect_lines", "detect_manifest"]


@dataclass(frozen=True)
class DetectResult:
    """What :func:`detect_manifest` wrote: the manifest, the contact sheets, counts and the threshold."""

    manifest: Path
    sheets: list[Path]
    n_rows: int
    n_review: int
    threshold: float


def detect_manifest(
    run: str | Path,
    manifest: str | Path,
    out: str | Path,
    *,
    threshold: float | None = None,
    sheets: str | Path | None = None,
    batch_size: int = 16,
) -> DetectResult:
    """Detect the ROI of every row of ``manifest`` and write the cropped manifest ``out`` and contact sheets.

    Args:
        run: a finished ROI run (``osteo roi train``).
        manifest: whole-image manifest (``image``, optional ``side``; other columns pass through).
        out: the CSV to write.
        threshold: flag rows whose confidence is below it (default: the run's).
        sheets: folder of the contact sheets (default: ``<out without .csv>_sheets`` beside ``out``).
        batch_size: images per detector batch.

    Returns:
        A :class:`DetectResult`.

    Raises:
        OsteoInputError: an unfinished run, a bad manifest or image (named), a bad threshold.
    """
    model, settings = load_detector(run)
    limit = settings.confidence_threshold if threshold is None else threshold
    if not isinstance(limit, (int, float)) or not 0 <= limit < 1:
        raise OsteoInputError(f"threshold must be in [0, 1), got {threshold!r}", parameter="threshold")
    images = read_whole_images(manifest)
    out = Path(out)
    if out.resolve() == Path(manifest).resolve():
        raise OsteoInputError(f"out must not be the input manifest {manifest}; write a new CSV", parameter="out")
    keypoints, confidence = predict_keypoints(model, settings, images.paths, batch_size=batch_size)
    found = detect_boxes(settings, keypoints, confidence, images.sizes, images.sides)
    review = (found.confidence < limit) | ~found.inside
    table = images.table.copy()
    table["image"] = [os.path.relpath(Path(p).resolve(), out.resolve().parent) for p in images.paths]
    if SIDE_COLUMN not in table:
        table[SIDE_COLUMN] = images.sides
    for c, column in enumerate(ROI_COLUMNS):
        table[column] = found.boxes[:, c]
    table[ROI_CONFIDENCE_COLUMN] = [f"{v:.3f}" for v in found.confidence]
    table[ROI_STATUS_COLUMN] = np.where(review, "review", "detected")
    write_csv(out, table)
    labels = table["patient_id"] if "patient_id" in table else [Path(p).name for p in images.paths]
    tiles = [
        Tile(
            image=path,
            label=str(label),
            box=tuple(int(v) for v in box),
            keypoints=points,
            confidence=float(conf),
            flagged=bool(flag),
        )
        for path, label, box, points, conf, flag in zip(
            images.paths, labels, found.boxes, found.keypoints, found.confidence, review
        )
    ]
    folder = Path(sheets) if sheets is not None else out.with_name(f"{out.stem}_sheets")
    written = contact_sheets(tiles, folder)
    return DetectResult(out, written, len(table), int(review.sum()), float(limit))


def detect_lines(result: DetectResult) -> list[str]:
    """What ``osteo roi detect`` prints."""
    lines = [
        f"wrote {result.manifest}: {result.n_rows} rows with roi_x, roi_y, roi_w, roi_h, "
        f"{ROI_CONFIDENCE_COLUMN}, {ROI_STATUS_COLUMN}",
        f"{result.n_review} rows flagged for review (confidence < {result.threshold:.2f} or box outside the "
        f"image): {ROI_STATUS_COLUMN}=review; osteo train refuses them until a person sets it to checked",
    ]
    if result.sheets:
        lines.append(f"contact sheets ({len(result.sheets)}, flagged first): {result.sheets[0].parent}/")
    return lines
