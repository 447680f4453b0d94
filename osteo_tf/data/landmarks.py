"""The anatomical landmarks that define each paper's ROI, their manifest columns, and the box rules.

Keras-free facts shared by the whole-radiograph phantoms, the COCO import, the detector, its
evaluation and the two-stage serving graph (which re-implements :func:`roi_from_keypoints`
in TensorFlow and is tested against it).

Sides are the **patient's**: on an AP hip view and on a panoramic view the patient's left
is on the image's right (radiological convention). A manifest row's ``side`` column says
which side's ROI is used (hip: the side measured by DXA; dental: the left, as in Sukegawa
2022).

Landmark columns: ``{side}_{landmark}_x`` and ``_y``, in pixels of the whole image, origin at
the top-left corner, x rightwards, y downwards (e.g. ``left_head_top_x``). Keypoints are
ordered side-major: every landmark of the left side, then of the right (:func:`keypoint_names`).

Annotations come in one of two :data:`TARGETS`: ``"landmarks"`` (the columns above) or
``"box"`` (the ROI box of each side, ``{side}_roi_x``, ``_y``, ``_w``, ``_h`` in pixels, as
bounding-box annotation tools export it). A detector trained on boxes predicts two keypoints
per side, the box's top-left and bottom-right corners (``{side}_box_top_left`` …), and its
ROI is the box they span.

Box rules (pixels, ``(x, y, w, h)``):

- hip (Yamamoto 2020: "the lines of the femoral head and the inferior margin of the lesser
  trochanter"): the top edge on the femoral head's top, the bottom edge on the lesser
  trochanter's inferior margin; square (width = that height, as the papers' crops are
  resized to a square input); centred horizontally midway between the head's top and the
  shaft axis's upper point (so it spans the head's medial edge to the greater trochanter).
- dental (Sukegawa 2022: a fixed 250 × 400 px box just below the mental foramen): a box of
  a fixed size whose top edge is centred on the mental foramen. The size is a fraction of
  the image width (``dental_box``: (width, height) / image width), so it scales with the
  image; the phantoms use :data:`DENTAL_BOX_FRACTION`, a detector learns it from its
  annotations.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Mapping, Sequence

import numpy as np

from osteo_tf.errors import OsteoInputError

__all__ = [
    "DENTAL_BOX_FRACTION",
    "LANDMARKS",
    "SIDES",
    "SIDE_COLUMN",
    "BOX_CORNERS",
    "TARGETS",
    "box_columns",
    "box_iou",
    "clip_box",
    "keypoint_columns",
    "keypoint_names",
    "landmark_columns",
    "roi_from_keypoints",
    "roi_metrics",
    "side_keypoints",
]

SIDES = ("left", "right")
SIDE_COLUMN = "side"
LANDMARKS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "hip": ("head_top", "lesser_trochanter", "shaft_upper", "shaft_lower"),
        "dental": ("mental_foramen",),
    }
)
TARGETS = ("landmarks", "box")
BOX_CORNERS = ("box_top_left", "box_bottom_right")
#: The phantoms' dental box, (width, height) as fractions of the image width: 250 × 400 px
#: (the paper's ratio) on a panoramic view 2 × as wide as high.
DENTAL_BOX_FRACTION = (0.10, 0.16)


def _per_side(kind: str, target: str) -> tuple[str, ...]:
    _check_kind(kind)
    if target not in TARGETS:
        raise OsteoInputError(f"target must be one of {TARGETS}, got {target!r}")
    return LANDMARKS[kind] if target == "landmarks" else BOX_CORNERS


def keypoint_names(kind: str, target: str = "landmarks") -> tuple[str, ...]:
    """``("left_head_top", …, "right_shaft_lower")``: every keypoint of both sides, side-major."""
    return tuple(f"{side}_{name}" for side in SIDES for name in _per_side(kind, target))


def keypoint_columns(kind: str) -> tuple[tuple[str, str], ...]:
    """The (x column, y column) of each landmark, in :func:`keypoint_names` order."""
    return tuple((f"{name}_x", f"{name}_y") for name in keypoint_names(kind))


def landmark_columns(kind: str) -> tuple[str, ...]:
    """Every landmark column of ``kind``, flat: ``left_head_top_x, left_head_top_y, …``."""
    return tuple(c for pair in keypoint_columns(kind) for c in pair)


def box_columns(side: str) -> tuple[str, str, str, str]:
    """``(f"{side}_roi_x", …_y, …_w, …_h)``: one side's annotated ROI box."""
    if side not in SIDES:
        raise OsteoInputError(f"side must be one of {SIDES}, got {side!r}")
    return tuple(f"{side}_roi_{c}" for c in "xywh")  # type: ignore[return-value]


def side_keypoints(kind: str, side: str, target: str = "landmarks") -> slice:
    """The slice of :func:`keypoint_names` that holds ``side``'s keypoints."""
    if side not in SIDES:
        raise OsteoInputError(f"side must be one of {SIDES}, got {side!r}")
    n = len(_per_side(kind, target))
    start = SIDES.index(side) * n
    return slice(start, start + n)


def roi_from_keypoints(
    kind: str,
    keypoints: Sequence[Sequence[float]] | np.ndarray,
    side: str,
    image_width: float,
    *,
    target: str = "landmarks",
    dental_box: tuple[float, float] = DENTAL_BOX_FRACTION,
) -> tuple[float, float, float, float]:
    """The ROI box of ``side`` by the kind's rule (module docstring), unrounded and unclipped.

    Args:
        kind: "hip" or "dental".
        keypoints: (K, 2) pixel coordinates (x, y) of every keypoint, :func:`keypoint_names` order.
        side: "left" or "right" (the patient's).
        image_width: the whole image's width in pixels (the dental box scales with it).
        target: "landmarks" (the kind's rule) or "box" (the box the two corners span).
        dental_box: the dental box's (width, height) as fractions of the image width.

    Returns:
        ``(x, y, w, h)`` in pixels (floats).
    """
    points = np.asarray(keypoints, dtype=np.float64)[side_keypoints(kind, side, target)]
    if target == "box":
        (x0, y0), (x1, y1) = points
        return (x0, y0, x1 - x0, y1 - y0)
    if kind == "hip":
        (head_x, head_y), (_, trochanter_y), (shaft_x, _) = points[0], points[1], points[2]
        height = trochanter_y - head_y
        centre = (head_x + shaft_x) / 2.0
        return (centre - height / 2.0, head_y, height, height)
    fx, fy = points[0]
    w, h = dental_box[0] * image_width, dental_box[1] * image_width
    return (fx - w / 2.0, fy, w, h)


def clip_box(box: Sequence[float], size: tuple[int, int]) -> tuple[tuple[int, int, int, int], bool]:
    """Round ``box=(x, y, w, h)`` to whole pixels and clip it into ``size=(width, height)``.

    Returns:
        ``((x, y, w, h), inside)``: the whole-pixel box, non-empty, within the image; ``inside``
        False when the unclipped box reached outside the image (or had no area), so a caller
        can flag it for review.
    """
    width, height = size
    x0, y0, w, h = (float(v) for v in box)
    finite = all(math.isfinite(v) for v in (x0, y0, w, h))
    if not finite or w < 1 or h < 1:
        return (0, 0, width, height), False
    x1, y1 = x0 + w, y0 + h
    inside = x0 >= -0.5 and y0 >= -0.5 and x1 <= width + 0.5 and y1 <= height + 0.5
    left, top = min(max(int(round(x0)), 0), width - 1), min(max(int(round(y0)), 0), height - 1)
    right, bottom = min(max(int(round(x1)), left + 1), width), min(max(int(round(y1)), top + 1), height)
    return (left, top, right - left, bottom - top), inside


def _check_kind(kind: str) -> None:
    if kind not in LANDMARKS:
        raise OsteoInputError(f"kind must be one of {tuple(LANDMARKS)}, got {kind!r}")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of paired boxes; ``a``, ``b`` (N, 4) as (x, y, w, h) → (N,)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    left, top = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    right = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    bottom = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(right - left, 0.0, None) * np.clip(bottom - top, 0.0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def roi_metrics(
    predicted: np.ndarray, truth: np.ndarray, widths: np.ndarray, boxes: np.ndarray, true_boxes: np.ndarray
) -> dict[str, float | int]:
    """The detector's accuracy: landmark error in pixels and in % of the image width, box IoU.

    Args:
        predicted, truth: (N, K, 2) keypoints in pixels.
        widths: (N,) image widths in pixels.
        boxes, true_boxes: (N, 4) the ROI boxes used (x, y, w, h) in pixels.

    Returns:
        ``n``, ``error_px_mean/median/p95``, ``error_pct_width_mean/median/p95`` (over every
        keypoint of every image), ``iou_mean``, ``iou_median``, ``share_iou_50``,
        ``share_iou_75`` (share of boxes with IoU ≥ 0.5 / 0.75).
    """
    error = np.hypot(*(np.asarray(predicted, np.float64) - np.asarray(truth, np.float64)).transpose(2, 0, 1))
    percent = 100.0 * error / np.asarray(widths, np.float64)[:, None]
    iou = box_iou(boxes, true_boxes)
    out: dict[str, float | int] = {"n": int(len(iou))}
    for name, values in (("error_px", error), ("error_pct_width", percent)):
        out[f"{name}_mean"] = float(np.mean(values))
        out[f"{name}_median"] = float(np.median(values))
        out[f"{name}_p95"] = float(np.percentile(values, 95))
    out.update(
        iou_mean=float(iou.mean()),
        iou_median=float(np.median(iou)),
        share_iou_50=float(np.mean(iou >= 0.5)),
        share_iou_75=float(np.mean(iou >= 0.75)),
    )
    return out
