"""Whole-radiograph phantoms: the whole AP hip view or panoramic view, with landmark ground truth.

:func:`make_whole_cohort` writes, under ``out_dir``::

    images/<id>.png   the whole view, grayscale 8-bit: hip width × width, dental width × width/2
    cohort.json       the generation parameters
    manifest.csv      written last: one row per subject, with the ground truth

The subjects (covariates, T-score, bone quality) are drawn exactly as the crop phantoms'
(:func:`osteo_tf.data.synthetic.draw_subjects`, same seed → same subjects), and the bone's
look follows the same physics in crop units: cortical thickness, trabecular density and
contrast (hip), inferior-cortex width and erosion (dental) are the crop renderers' functions
of ``bone_quality``, measured in half-widths of the paper's ROI box, with the texture spacing
of a crop of that box's size. Both sides show the same subject's bone.

- **hip**: an AP pelvis with both proximal femurs (head in the acetabulum, neck, trochanters,
  shaft running out of the image), the ilia, sacrum, pubic and ischial rami (the obturator
  foramina between them), the body outline against air, a side marker ("R", bright square on
  the patient's right = image left) and a calibration ball. Each femur is the crop phantom's
  femur (:func:`osteo_tf.data.synthetic._femur_sdf`, mirrored for the patient's right) placed
  with its own jitter (±0.03 of the width, ±5°, ±5 % size) under the view's nuisance pose.
- **dental**: a panoramic view twice as wide as high: the mandible (body between the lower
  border and the alveolar crest, both rami), the lower and upper teeth, the maxilla and hard
  palate, the spine's ghost, both mental foramina (dark ovals in the body below the
  premolars, jittered per side) and a side marker.

Nuisances as the crop phantoms' (:data:`osteo_tf.data.synthetic.NUISANCE_RANGES`: the view's
rotation — halved for the wide panoramic —, shift, scale, exposure, contrast, noise, soft
tissue). Ground truth per row, columns of :mod:`osteo_tf.data.landmarks`: every landmark of
both sides (``left_head_top_x`` …, pixels, origin at the image's top-left corner, so the first
pixel's centre is at 0.5, 0.5), each side's ROI box by the paper's rule (``left_roi_x`` …,
whole pixels), the side used (``side``; hip: the DXA side, drawn 50/50 per subject; dental:
left, as in Sukegawa 2022) and that side's box as the data contract's ``roi_x, roi_y, roi_w,
roi_h``: the manifest *is* the hand-cropped cohort, ready for ``osteo train``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from osteo_tf.data import synthetic as crop
from osteo_tf.data.landmarks import (
    DENTAL_BOX_FRACTION,
    LANDMARKS,
    SIDE_COLUMN,
    SIDES,
    box_columns,
    clip_box,
    keypoint_columns,
    roi_from_keypoints,
)
from osteo_tf.errors import OsteoInputError
from osteo_tf.vocabulary import DEFAULT_INFORMATION

__all__ = [
    "FEMUR_CENTRE",
    "FEMUR_SCALE",
    "HIP_LANDMARKS_BONE",
    "MIN_WHOLE_WIDTH",
    "WholeView",
    "make_whole_cohort",
    "render_whole",
    "whole_shape",
]

MIN_WHOLE_WIDTH = 64
#: Each femur's bone-frame origin in the view's frame ([-1, 1] over the width; x right, y
#: down), for the patient's left (image right); the right is mirrored.
FEMUR_CENTRE = (0.42, 0.18)
#: View half-widths per bone-frame unit (the crop phantom's half-width).
FEMUR_SCALE = 0.40
#: The hip landmarks in the bone frame (:func:`osteo_tf.data.synthetic._femur_sdf`): the head's
#: top (head centre − radius along the bone's axis), the lesser trochanter's inferior margin,
#: and two points of the shaft's axis (at its upper end and 1.5 units down).
HIP_LANDMARKS_BONE = {
    "head_top": (-0.50, -0.85),
    "lesser_trochanter": (-0.08, 0.73),
    "shaft_upper": crop.SHAFT_AXIS[0],
    "shaft_lower": (0.22 - 0.06 * (1.35 / 1.65), 1.5),
}
_WHOLE_SHAFT = 1.8  # the femur's shaft, multiple of the crop's: it leaves the view
# Dental anatomy, in units of half the view's height (u across in [-2, 2], v down in [-1, 1]).
_BORDER = (0.62, 0.12)  # lower border v = 0.62 - 0.12 u², lowest at the chin (half-heights)
_BODY_HEIGHT = 0.70
_FORAMEN = (0.85, 0.40)  # |u| of the foramina, and their height above the lower border


class WholeView:
    """One rendered view: ``image`` uint8 (H, W) and ``keypoints`` (K, 2) pixels (x, y)."""

    def __init__(self, image: np.ndarray, keypoints: np.ndarray) -> None:
        self.image = image
        self.keypoints = keypoints


def whole_shape(kind: str, width: int) -> tuple[int, int]:
    """``(height, width)`` in pixels of a whole view ``width`` px wide (dental: half as high)."""
    return (width, width) if kind == "hip" else (width // 2, width)


def _forward(nu: crop.Nuisance, ax: float, ay: float) -> tuple[float, float]:
    """View frame → image frame (the inverse of :func:`osteo_tf.data.synthetic._to_bone_frame`)."""
    cos, sin = np.cos(nu.angle), np.sin(nu.angle)
    return nu.shift_x + nu.scale * (cos * ax - sin * ay), nu.shift_y + nu.scale * (sin * ax + cos * ay)


def _rotate(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    cos, sin = np.cos(angle), np.sin(angle)
    return cos * x + sin * y, -sin * x + cos * y


# ------------------------------------------------------------------------------------------- hip


def _femur_pose(side: str, rng: np.random.Generator) -> tuple[float, float, float, float, int]:
    """(centre x, centre y, scale, angle, mirror) of one femur's bone frame in the view frame."""
    mirror = 1 if side == "left" else -1
    cx = mirror * FEMUR_CENTRE[0] + rng.uniform(-0.03, 0.03)
    cy = FEMUR_CENTRE[1] + rng.uniform(-0.03, 0.03)
    return cx, cy, FEMUR_SCALE * rng.uniform(0.95, 1.05), float(np.deg2rad(rng.uniform(-5.0, 5.0))), mirror


def _pelvis_sdf(ax: np.ndarray, ay: np.ndarray, heads: list[tuple[float, float]]) -> np.ndarray:
    """Signed distance (view half-widths) to the pelvis: ilia, sacrum, acetabular roofs, rami."""
    parts = [crop._circle(ax / 1.0, ay / 1.55, (0.0, -0.32), 0.13) * 1.2]  # sacrum
    for mirror, (hx, hy) in zip((1, -1), heads):
        ilium = np.hypot((ax - mirror * 0.47) / 0.36, (ay + 0.58) / 0.30) - 1.0
        parts += [
            ilium * 0.30,
            crop._capsule(ax, ay, (mirror * 0.40, -0.42), (hx + mirror * 0.02, hy - 0.12), 0.085),
            crop._capsule(ax, ay, (hx - mirror * 0.02, hy + 0.04), (mirror * 0.05, 0.24), 0.045),  # pubic ramus
            crop._capsule(ax, ay, (hx + mirror * 0.04, hy + 0.06), (mirror * 0.21, 0.42), 0.06),  # ischium
            crop._capsule(ax, ay, (mirror * 0.21, 0.42), (mirror * 0.05, 0.31), 0.04),  # inferior ramus
        ]
    return crop._smooth_union(parts, k=0.04)


def _render_hip(q: float, width: int, rng: np.random.Generator) -> WholeView:
    nu = crop.draw_nuisance(rng)
    x, y = crop._grid(width)
    ax, ay = crop._to_bone_frame(x, y, nu)  # the view's own frame
    raw = _body(ax, ay, width, rng)
    keypoints, heads = [], []
    for side in SIDES:
        cx, cy, scale, angle, mirror = _femur_pose(side, rng)
        xb, yb = _rotate((ax - cx) / scale, (ay - cy) / scale, angle)
        xb = mirror * xb
        px_per_unit = scale * nu.scale * width / 2.0
        depth = -crop._femur_sdf(xb, yb, _WHOLE_SHAFT)  # bone-frame units
        edge = 0.5 / px_per_unit
        thickness = (0.03 + 0.20 * q) * (0.7 + 0.5 * expit(3.0 * yb))
        cortex_w = expit((thickness - depth) / edge)
        trabecular = crop._trabecular((width, width), q, rng, field_px=2.0 * px_per_unit)
        bone = cortex_w * (0.78 + 0.12 * q) + (1.0 - cortex_w) * trabecular
        raw = raw + 0.7 * expit(depth / edge) * bone
        for name in LANDMARKS["hip"]:
            bx, by = HIP_LANDMARKS_BONE[name]
            vx, vy = _rotate(np.float64(mirror * bx), np.float64(by), -angle)
            keypoints.append(_forward(nu, cx + scale * vx, cy + scale * vy))
        hx, hy = _rotate(np.float64(mirror * -0.50), np.float64(-0.52), -angle)
        heads.append((cx + scale * hx, cy + scale * hy))
    depth = -_pelvis_sdf(ax, ay, heads) * nu.scale
    edge = 1.0 / width
    cortex_w = expit((0.012 - depth) / edge)
    pelvis = cortex_w * (0.70 + 0.10 * q) + (1.0 - cortex_w) * crop._trabecular((width, width), q, rng, field_px=width)
    raw = raw + 0.35 * expit(depth / edge) * pelvis
    raw = _markers(raw, x, y, rng, marker_x=(-0.9, -0.65))
    return WholeView(crop._finish(raw, nu, rng), _to_pixels(keypoints, (width, width)))


def _body(ax: np.ndarray, ay: np.ndarray, width: int, rng: np.random.Generator) -> np.ndarray:
    """Soft tissue inside the body's outline (the crop phantoms' gradient and blob), air outside."""
    outline = np.hypot(ax / 0.97, (ay - 0.1) / 1.35) - 1.0
    inside = expit(-outline * width / 2.0)
    return 0.04 + inside * (crop._soft_tissue(ax, ay, rng) - 0.04)


def _markers(
    raw: np.ndarray, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, *, marker_x: tuple[float, float]
) -> np.ndarray:
    """A bright side-marker square near the top and a calibration ball near the bottom (image frame)."""
    mx, my = rng.uniform(*marker_x), rng.uniform(-0.92, -0.75)
    square = (np.abs(x - mx) < 0.06) & (np.abs(y - my) < 0.07)
    bx, by = rng.uniform(-0.85, 0.85), rng.uniform(0.78, 0.9)
    ball = np.hypot(x - bx, (y - by) * 0.8) < 0.05
    return np.where(square | ball, 0.95, raw)


# ---------------------------------------------------------------------------------------- dental


def _grid_wide(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in half-heights: u in [-W/H, W/H] across, v in [-1, 1] down; (H, W)."""
    u = ((np.arange(width) + 0.5) - width / 2.0) / (height / 2.0)
    v = ((np.arange(height) + 0.5) - height / 2.0) / (height / 2.0)
    return np.meshgrid(u, v)


def _border(u: np.ndarray) -> np.ndarray:
    return _BORDER[0] - _BORDER[1] * u**2


def _render_dental(q: float, width: int, rng: np.random.Generator) -> WholeView:
    height = width // 2
    nu = crop.draw_nuisance(rng)
    nu = crop.Nuisance(**{**nu.__dict__, "angle": nu.angle / 2.0})  # a wide view tilts less
    u, v = _grid_wide(height, width)
    ub, vb = crop._to_bone_frame(u, v, nu)
    box_half = DENTAL_BOX_FRACTION[1] * width / height  # the ROI's half-height, in half-heights
    px_per_unit = nu.scale * height / 2.0
    edge = 0.5 / px_per_unit
    above = _border(np.clip(ub, -1.55, 1.55)) - vb  # height above the lower border
    body = expit(above / edge) * expit((_BODY_HEIGHT - above) / (3.0 * edge)) * expit((1.6 - np.abs(ub)) / edge)
    ramus = np.minimum(
        *(crop._capsule(ub, vb, (m * 1.62, _border(1.55) - 0.15), (m * 1.75, -0.65), 0.20) for m in (1, -1))
    )
    bone_w = np.maximum(body, expit(-ramus / edge))
    crop_units = np.maximum(above, 0.0) / box_half  # depth above the border, crop half-widths
    profile = crop._smooth_profile(ub, rng, knots=320)
    crop_px = 2.0 * box_half * px_per_unit
    trabecular = crop._trabecular((height, width), q, rng, field_px=crop_px)
    cortex_w, pore_w = crop._eroded_cortex(
        crop_units, ub, q, int(round(crop_px)), rng, edge=edge / box_half, profile=profile
    )
    cortex_w = cortex_w * body
    cortex = (0.82 + 0.08 * q) * (1.0 - pore_w) + trabecular * pore_w
    bone = cortex_w * cortex + (1.0 - cortex_w) * trabecular
    raw = 0.12 + crop._soft_tissue(u / 2.0, v, rng) + 0.7 * bone_w * bone
    raw = raw + _teeth(ub, vb, edge, rng) + _midface(ub, vb, edge)
    keypoints = []
    for mirror in (1, -1):  # the patient's left is the image's right
        fu = mirror * (_FORAMEN[0] + rng.uniform(-0.06, 0.06))
        fv = float(_border(np.float64(fu))) - _FORAMEN[1] + rng.uniform(-0.03, 0.03)
        foramen = np.hypot((ub - fu) / 0.05, (vb - fv) / 0.035) - 1.0
        raw = raw - 0.25 * expit(-foramen * 0.035 / edge)
        iu, iv = _forward(nu, fu, fv)
        keypoints.append((iu * height / 2.0 + width / 2.0, (iv + 1.0) * height / 2.0))
    raw = _markers(raw, u / 2.0, v, rng, marker_x=(0.65, 0.9))
    return WholeView(crop._finish(raw, nu, rng), np.asarray(keypoints, dtype=np.float64))


def _teeth(u: np.ndarray, v: np.ndarray, edge: float, rng: np.random.Generator) -> np.ndarray:
    """Lower and upper teeth: rounded crowns above the alveolar crest and below the maxilla."""
    out = np.zeros_like(u)
    positions = np.linspace(-1.35, 1.35, 14) + rng.uniform(-0.02, 0.02, 14)
    for position in positions:
        crest = float(_border(np.float64(position))) - _BODY_HEIGHT
        lower = crop._capsule(u, v, (position, crest + 0.12), (position, crest - 0.30), 0.075)
        upper = crop._capsule(u, v, (position, crest - 0.42), (position, crest - 0.80), 0.075)
        out = out + 0.35 * expit(-np.minimum(lower, upper) / edge)
    return out


def _midface(u: np.ndarray, v: np.ndarray, edge: float) -> np.ndarray:
    """The maxilla's band, the hard palate and the spine's blurred ghost in the middle."""
    maxilla = expit((-0.55 - v + 0.08 * u**2) / (4.0 * edge)) * expit((v + 0.95) / (4.0 * edge))
    spine = np.exp(-0.5 * (u / 0.12) ** 2) * expit((v + 0.2) / 0.1)
    return 0.22 * maxilla + 0.12 * spine


# ------------------------------------------------------------------------------------------- io


def _to_pixels(points: list[tuple[float, float]], size: tuple[int, int]) -> np.ndarray:
    """View-frame points ([-1, 1] over each side) → pixels, origin at the top-left corner; (K, 2)."""
    width, height = size
    xy = np.asarray(points, dtype=np.float64)
    return np.stack([(xy[:, 0] + 1.0) * width / 2.0, (xy[:, 1] + 1.0) * height / 2.0], axis=1)


RENDERERS = {"hip": _render_hip, "dental": _render_dental}


def render_whole(kind: str, bone_quality: float, width: int, rng: np.random.Generator) -> WholeView:
    """Render one whole view of a subject of ``bone_quality`` (T-score units), ``width`` px wide.

    Returns:
        A :class:`WholeView`: ``image`` uint8 of :func:`whole_shape`, ``keypoints`` (K, 2) in
        pixels in :func:`osteo_tf.data.landmarks.keypoint_names` order.
    """
    return RENDERERS[kind](crop.quality_to_unit(bone_quality), width, rng)


def _check(kind: object, n: object, width: object, seed: object, information: object) -> None:
    crop._check_args(kind, n, 64, seed)
    if not crop._is_int(width) or width < MIN_WHOLE_WIDTH:
        raise OsteoInputError(
            f"image_size must be an integer >= {MIN_WHOLE_WIDTH} (the whole view's width, pixels), got {width!r}",
            parameter="image_size",
        )
    if kind == "dental" and width % 2:
        raise OsteoInputError(
            f"image_size must be even for a dental whole view (its height is half its width), got {width}",
            parameter="image_size",
        )
    if information not in crop.INFORMATION_SIGMA:
        raise OsteoInputError(f"information must be one of {tuple(crop.INFORMATION_SIGMA)}, got {information!r}")


def _manifest(kind: str, subjects: pd.DataFrame, ids: list[str], views: list[WholeView], sides: list[str]) -> str:
    """Manifest CSV text: the crop manifest's columns, then side, ROI, landmarks, both boxes."""
    height, width = views[0].image.shape
    out = crop.subject_table(kind, subjects, ids, masks=False)
    out[SIDE_COLUMN] = sides
    boxes = {
        side: [clip_box(roi_from_keypoints(kind, view.keypoints, side, width), (width, height)) for view in views]
        for side in SIDES
    }
    outside = [ids[i] for i in range(len(ids)) if not all(boxes[s][i][1] for s in SIDES)]
    if outside:  # the pose ranges keep every box inside; a change that breaks this must not pass
        raise AssertionError(f"ground-truth ROI boxes outside the image: {outside[:5]}")
    for c, column in enumerate(("roi_x", "roi_y", "roi_w", "roi_h")):
        out[column] = [boxes[side][i][0][c] for i, side in enumerate(sides)]
    for k, (cx, cy) in enumerate(keypoint_columns(kind)):
        out[cx] = [f"{view.keypoints[k, 0]:.2f}" for view in views]
        out[cy] = [f"{view.keypoints[k, 1]:.2f}" for view in views]
    for side in SIDES:
        for c, column in enumerate(box_columns(side)):
            out[column] = [box[0][c] for box in boxes[side]]
    return out.to_csv(index=False, lineterminator="\n")


def make_whole_cohort(
    kind: str,
    n: int,
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = 256,
    information: str = DEFAULT_INFORMATION,
) -> Path:
    """Write a whole-radiograph phantom cohort under ``out_dir``; return the manifest's path.

    Args:
        kind: "hip" (AP pelvis, ``image_size`` × ``image_size``) or "dental" (panoramic,
            ``image_size`` × ``image_size // 2``).
        n: subjects (≥ 10), one image each; the same subjects as the crop phantom's with this seed.
        out_dir: the folder (created; files of the same names replaced).
        seed: the generator's seed; same arguments give byte-identical files.
        image_size: the view's width in pixels (≥ 64; even for dental).
        information: the label's split between image and covariates, as for the crop phantoms.

    Returns:
        The path of ``manifest.csv`` (module docstring for its columns).

    Raises:
        OsteoInputError: naming the bad argument.
    """
    _check(kind, n, image_size, seed, information)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    subjects = crop.draw_subjects(kind, n, rng, sigma_bio=crop.INFORMATION_SIGMA[information])
    side_rng = np.random.default_rng([seed, 1])
    sides = list(side_rng.choice(SIDES, n)) if kind == "hip" else ["left"] * n
    ids = [f"{kind}_whole_{i + 1:05d}" for i in range(n)]
    views = []
    for sid, quality in zip(ids, subjects["bone_quality"]):
        view = render_whole(kind, float(quality), image_size, rng)
        crop._write_png(out / "images" / f"{sid}.png", view.image)
        views.append(view)
    height, width = views[0].image.shape
    params = crop._cohort_params(kind, n, seed, image_size, subjects["label"].to_numpy(), "bone", information)
    for key in ("informative_region", "mask"):
        params.pop(key)
    params.update(
        generator="osteo_tf.data.whole.make_whole_cohort",
        view="whole",
        image_shape={"width": width, "height": height},
        landmarks=list(LANDMARKS[kind]),
        roi_rule=roi_from_keypoints.__module__ + ".roi_from_keypoints",
        dental_box_fraction=list(DENTAL_BOX_FRACTION) if kind == "dental" else None,
        side="hip: the DXA side, drawn 50/50 per subject; dental: left (Sukegawa 2022)",
        information_split=crop.information_split(kind, subjects),
    )
    crop._write_text(out / "cohort.json", json.dumps(params, indent=2) + "\n")
    manifest = out / "manifest.csv"
    crop._write_text(manifest, _manifest(kind, subjects, ids, views, sides))
    return manifest
