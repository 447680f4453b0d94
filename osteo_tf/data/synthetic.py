"""Synthetic "phantom" cohorts: radiograph-like images, masks and a manifest.

A phantom cohort stands in for the clinical data of the two papers in tests, demos and
benchmarks. :func:`make_cohort` writes, under ``out_dir``::

    images/<id>.png   grayscale 8-bit, image_size x image_size
    masks/<id>.png    8-bit, 255 inside the informative region, 0 elsewhere
    cohort.json       the generation parameters
    manifest.csv      written last: its presence means the cohort is complete

Generative model, per subject:

1. The class (osteoporosis or not) is assigned with the paper's prevalence as *exact
   proportions*: ``round(n * prevalence)`` osteoporotic subjects, order shuffled. Exact
   proportions keep small cohorts stratifiable and their class balance seed-independent.
2. Covariates are drawn given the class from the papers' cohort tables (hip: Yamamoto 2020
   Table 1; dental: Sukegawa 2022 Table 3): truncated normals for age and BMI (the paper's
   mean/SD are those of the parent normal, truncated to the paper's range), Bernoulli for sex
   and hip-fracture history. See :data:`COHORT_TABLES`.
3. The DXA T-score is drawn given the class from truncated normals, so that
   ``label == (t_score <= -2.5)`` always holds (after rounding to 2 decimals).
4. ``bone_quality = t_score + N(0, SIGMA_BIO)``: a per-subject biological deviation, so the
   image alone is not a perfect classifier. The image's look depends on bone_quality only;
   covariates and image are independent given the class, so combining them helps.
5. Rendering: hip = cropped proximal femur (head, neck, trochanters, shaft) whose cortical
   walls thicken and whose trabecular interior becomes denser and more contrasted as
   bone_quality rises; dental = a mandibular band above the lower border whose inferior
   cortex widens as bone_quality rises and erodes (porosity, irregular endosteal margin)
   as it falls. Nuisances on every image: rotation (+-7 deg), shift, scale, soft-tissue
   gradient + blob, exposure offset, contrast gain, Gaussian noise.

Informative region (``informative_region``, the masks' meaning): by default ("bone") the
whole bone encodes the T-score, as above. The hip phantom's "head_neck" variant confines it
to the femoral head and neck, for checking *where* a model looks (Grad-CAM localisation):
there the trabecular strands follow the Singh index (along the neck in osteoporosis, across
it as bone quality rises; the pattern's mean, contrast and spacing do not change), while the
trochanters and shaft hold trabecular bone of the same mean, contrast and spacing without a
preferred direction, and the cortical thickness is drawn independently of the subject. The
region's look is unlike anything elsewhere but no brighter or more contrasted, so a network
that did not learn the task has no reason to favour it (``tests/explain/test_gradcam.py``).
The variant renders the T-score itself, without the SIGMA_BIO deviation: it tests where a
model looks, not how well it does.

Calibration measured with this module (seed 0, 2,000 subjects written at 64 px and read
back, 5-fold cross-validated logistic regression; image features = a 6-number
intensity-by-depth-from-mask-edge profile, see ``tests/data/test_synthetic.py``; seeds 1-2
agree within +-0.01). SIGMA_BIO = 1.2 leaves the image a clear but partial signal, so the
ensemble has room to improve on it (~+0.04 AUC), as the papers found:

=========  ==========  ===========  ==================  ===========================
kind       covariates  image feats  image + covariates  bone_quality alone (bound)
=========  ==========  ===========  ==================  ===========================
hip        0.801       0.877        0.921               0.882
dental     0.798       0.855        0.913               —
=========  ==========  ===========  ==================  ===========================

``make_cohort`` with 2,000 subjects at 64 px (render + write PNGs) takes ~2.8 s on one CPU
core, ~2× the cost of writing the same PNGs alone; 500 subjects at 96 px ~1.2 s
(``bench/phantom.py``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.special import expit, ndtr, ndtri

from osteo_tf.errors import OsteoInputError
from osteo_tf.vocabulary import DEFAULT_INFORMATION, INFORMATIVE_REGIONS, MIN_IMAGE_SIZE, PHANTOM_INFORMATION

__all__ = [
    "COHORT_TABLES",
    "HEAD",
    "INFORMATION_SIGMA",
    "INFORMATIVE_REGIONS",
    "KINDS",
    "MASK_SEMANTICS",
    "NECK_AXIS",
    "NECK_RADIUS",
    "NUISANCE_RANGES",
    "RENDERERS",
    "SIGMA_BIO",
    "STRAND_CONTRAST",
    "STRAND_PERIOD",
    "T_SCORE_THRESHOLD",
    "draw_labels",
    "draw_nuisance",
    "draw_subjects",
    "information_split",
    "make_cohort",
    "Nuisance",
    "quality_to_unit",
    "render_dental",
    "render_hip",
    "render_hip_head_neck",
    "render_images",
    "truncated_normal",
]

KINDS = ("hip", "dental")
T_SCORE_THRESHOLD = -2.5
SIGMA_BIO = 1.2  # SD of the bone_quality deviation from the T-score (T-score units)
# ``information``: how much of the label the image carries against the covariates, as SIGMA_BIO.
# "image_led" (default): the image is the stronger input, as in both papers. "balanced": the
# image's latent alone reaches about what the covariates reach (logistic AUC ~0.79 vs ~0.80 on
# the hip phantom), and both together ~0.88 — fusion has something clear to find.
INFORMATION_SIGMA = dict(zip(PHANTOM_INFORMATION, (SIGMA_BIO, 2.0)))

# Class-wise distributions. "normal": (mean, sd, min, max) of a truncated normal;
# "female" / "hip_fracture_history": Bernoulli probabilities.
COHORT_TABLES: dict[str, dict] = {
    "hip": {
        "source": "Yamamoto et al., Biomolecules 2020, 10:1534, Table 1",
        "counts": {"osteoporosis": 598, "non_osteoporosis": 535},
        "osteoporosis": {
            "female": 0.846,
            "age": (82.7, 8.3, 60.0, 100.0),
            "bmi": (20.1, 3.1, 13.3, 29.0),
            "hip_fracture_history": 0.418,
            "t_score": (-3.2, 0.6, -5.0, -2.5),
        },
        "non_osteoporosis": {
            "female": 0.693,
            "age": (77.7, 9.0, 60.0, 98.0),
            # The paper prints SD 9.0, which its range 14.1-39.2 contradicts; 3.5 is used.
            "bmi": (23.3, 3.5, 14.1, 39.2),
            "hip_fracture_history": 0.293,
            "t_score": (-1.2, 1.0, -2.5, 2.0),
        },
    },
    "dental": {
        "source": "Sukegawa et al., Sci Rep 2022, 12:6088, Table 3",
        "counts": {"osteoporosis": 237, "non_osteoporosis": 541},
        "osteoporosis": {
            "female": 223 / 237,
            "age": (76.9, 7.2, 20.0, 100.0),
            "bmi": (21.2, 3.4, 13.0, 40.0),
            "t_score": (-3.2, 0.6, -5.0, -2.5),
        },
        "non_osteoporosis": {
            "female": 346 / 541,
            "age": (68.5, 13.7, 20.0, 100.0),
            "bmi": (22.5, 3.7, 13.0, 40.0),
            "t_score": (-1.2, 1.0, -2.5, 2.0),
        },
    },
}

NUISANCE_RANGES = {
    "rotation_deg": (-7.0, 7.0),
    "shift_fraction_of_half_width": (-0.07, 0.07),
    "scale": (0.92, 1.08),
    "contrast_gain": (0.8, 1.2),
    "exposure_offset": (-0.08, 0.08),
    "noise_sd": (0.015, 0.035),
    "soft_tissue_gradient": (-0.08, 0.08),
    "soft_tissue_blob": (0.0, 0.15),
}

MASK_SEMANTICS = {
    "bone": "255 = informative bone region (cortex + trabecular bone) whose look encodes the "
    "T-score, in the same geometry as the image (rotation/shift/scale included); 0 elsewhere",
    "head_neck": "255 = femoral head and neck (cortex + trabecular bone), the only region whose look "
    "(the trabecular pattern) encodes the T-score, in the same geometry as the image; 0 elsewhere",
}


# --------------------------------------------------------------------------- arguments


def _check_args(kind: object, n: object, image_size: object, seed: object, region: object = "bone") -> None:
    """Raise OsteoInputError naming the first bad argument of make_cohort."""
    if kind not in KINDS:
        raise OsteoInputError(f"kind must be one of {KINDS}, got {kind!r}")
    if region not in INFORMATIVE_REGIONS[kind]:
        raise OsteoInputError(
            f"informative_region must be one of {INFORMATIVE_REGIONS[kind]} for a {kind} phantom, got {region!r}"
        )
    if not _is_int(n) or n < 10:
        raise OsteoInputError(f"n must be an integer >= 10 (subjects), got {n!r}")
    if not _is_int(image_size) or image_size < MIN_IMAGE_SIZE:
        raise OsteoInputError(
            f"image_size must be an integer >= {MIN_IMAGE_SIZE} (pixels), got {image_size!r}", parameter="image_size"
        )
    if not _is_int(seed) or seed < 0:
        raise OsteoInputError(f"seed must be a non-negative integer, got {seed!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


# --------------------------------------------------------------------------- subjects


def truncated_normal(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float, size: int) -> np.ndarray:
    """Draw ``size`` values of N(mean, sd) truncated to [lo, hi] by inverse CDF; shape (size,)."""
    u = rng.uniform(ndtr((lo - mean) / sd), ndtr((hi - mean) / sd), size)
    return np.clip(mean + sd * ndtri(u), lo, hi)


def draw_labels(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Labels with the paper's prevalence as exact proportions, shuffled; int shape (n,)."""
    counts = COHORT_TABLES[kind]["counts"]
    prevalence = counts["osteoporosis"] / (counts["osteoporosis"] + counts["non_osteoporosis"])
    n_pos = int(round(n * prevalence))
    labels = np.zeros(n, dtype=np.int64)
    labels[:n_pos] = 1
    return rng.permutation(labels)


def _draw_class(kind: str, label: int, size: int, rng: np.random.Generator, sigma_bio: float = SIGMA_BIO) -> dict:
    """Covariates, T-score and bone_quality of ``size`` subjects of one class."""
    table = COHORT_TABLES[kind]["osteoporosis" if label else "non_osteoporosis"]
    cols = {
        "age": np.round(truncated_normal(rng, *table["age"], size), 1),
        "sex": np.where(rng.random(size) < table["female"], "F", "M"),
        "bmi": np.round(truncated_normal(rng, *table["bmi"], size), 1),
    }
    if "hip_fracture_history" in table:
        cols["hip_fracture_history"] = np.where(rng.random(size) < table["hip_fracture_history"], "yes", "no")
    t = np.round(truncated_normal(rng, *table["t_score"], size), 2)
    # Rounding may put a non-osteoporotic -2.4999 onto -2.50: keep label and T-score consistent.
    t = np.minimum(t, T_SCORE_THRESHOLD) if label else np.maximum(t, T_SCORE_THRESHOLD + 0.01)
    cols["t_score"] = t
    cols["bone_quality"] = t + rng.normal(0.0, sigma_bio, size)
    return cols


def draw_subjects(kind: str, n: int, rng: np.random.Generator, *, sigma_bio: float = SIGMA_BIO) -> pd.DataFrame:
    """Draw n subjects' covariates, T-scores and hidden bone quality.

    Returns a DataFrame of n rows with columns ``patient_id``, ``age`` (years, 1 decimal),
    ``sex`` (F/M), ``bmi`` (kg/m^2, 1 decimal), ``hip_fracture_history`` (yes/no; hip only),
    ``t_score`` (2 decimals), ``label`` (1 iff t_score <= -2.5) and ``bone_quality``
    (T-score units, ``t_score + N(0, sigma_bio)``; drives the rendering, not written to the
    manifest).
    """
    if kind not in KINDS:
        raise OsteoInputError(f"kind must be one of {KINDS}, got {kind!r}")
    labels = draw_labels(kind, n, rng)
    parts = []
    for lab in (1, 0):
        idx = np.flatnonzero(labels == lab)
        parts.append(pd.DataFrame(_draw_class(kind, lab, idx.size, rng, sigma_bio), index=idx))
    frame = pd.concat(parts).sort_index()
    frame.insert(0, "patient_id", [f"P{i + 1:05d}" for i in range(n)])
    frame["label"] = (frame["t_score"] <= T_SCORE_THRESHOLD).astype(np.int64)
    order = ["patient_id", "age", "sex", "bmi"]
    order += ["hip_fracture_history"] if kind == "hip" else []
    return frame[order + ["t_score", "label", "bone_quality"]]


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Nuisance:
    """Per-image acquisition nuisances. Lengths are in half-widths of the image ([-1, 1])."""

    angle: float  # radians
    shift_x: float
    shift_y: float
    scale: float
    gain: float
    offset: float
    noise_sd: float  # in [0, 1] intensity units


def draw_nuisance(rng: np.random.Generator) -> Nuisance:
    """Draw one image's nuisance parameters from :data:`NUISANCE_RANGES`."""
    r = NUISANCE_RANGES
    shift = r["shift_fraction_of_half_width"]
    return Nuisance(
        angle=float(np.deg2rad(rng.uniform(*r["rotation_deg"]))),
        shift_x=float(rng.uniform(*shift)),
        shift_y=float(rng.uniform(*shift)),
        scale=float(rng.uniform(*r["scale"])),
        gain=float(rng.uniform(*r["contrast_gain"])),
        offset=float(rng.uniform(*r["exposure_offset"])),
        noise_sd=float(rng.uniform(*r["noise_sd"])),
    )


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1]: x (columns, rightwards), y (rows, downwards); (H, W)."""
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    return np.meshgrid(c, c)


def _to_bone_frame(x: np.ndarray, y: np.ndarray, nu: Nuisance) -> tuple[np.ndarray, np.ndarray]:
    """Map image coordinates to the anatomy's own frame (inverse of shift, scale, rotation)."""
    xs, ys = (x - nu.shift_x) / nu.scale, (y - nu.shift_y) / nu.scale
    cos, sin = np.cos(nu.angle), np.sin(nu.angle)
    return cos * xs + sin * ys, -sin * xs + cos * ys


def _soft_tissue(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth background (linear gradient + one Gaussian blob), intensity ~0.1-0.45; (H, W)."""
    r = NUISANCE_RANGES
    phi = rng.uniform(0.0, 2.0 * np.pi)
    grad = rng.uniform(*r["soft_tissue_gradient"]) * (x * np.cos(phi) + y * np.sin(phi))
    cx, cy = rng.uniform(-1.0, 1.0, 2)
    width = rng.uniform(0.4, 0.9)
    blob = rng.uniform(*r["soft_tissue_blob"]) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2.0 * width**2))
    return 0.22 + grad + blob


def _band_noise(size: int | tuple[int, int], rng: np.random.Generator, sigma_px: float) -> np.ndarray:
    """Unit-SD band-pass (difference of Gaussians) white noise; (size, size), or ``size`` = (H, W)."""
    white = rng.standard_normal((size, size) if isinstance(size, (int, np.integer)) else size)
    band = gaussian_filter(white, sigma_px) - gaussian_filter(white, 2.5 * sigma_px)
    return band / band.std()


def _trabecular(
    size: int | tuple[int, int], q: float, rng: np.random.Generator, field_px: float | None = None
) -> np.ndarray:
    """Trabecular bone intensity (~0.3-0.6); strut fraction and contrast grow with q; (H, W).

    ``field_px``: the crop's width in pixels (default ``size``); the whole-view phantoms pass
    the ROI's width so the texture has the crop's spacing.
    """
    # Trabecular spacing is anatomical, hence a constant fraction of the field of view.
    field = size if field_px is None else field_px
    texture = _band_noise(size, rng, sigma_px=max(0.6, 0.0125 * field))
    fraction = 0.2 + 0.4 * q
    struts = expit((texture - ndtri(1.0 - fraction)) / 0.35)
    return 0.28 + 0.10 * q + (0.06 + 0.18 * q) * struts


def quality_to_unit(bone_quality: float) -> float:
    """Map bone_quality (T-score units) smoothly to q in (0, 1); q(-2.5) ~ 0.4."""
    return float(expit((bone_quality + 2.0) / 1.2))


def _finish(raw: np.ndarray, nu: Nuisance, rng: np.random.Generator) -> np.ndarray:
    """Apply contrast gain, exposure offset and noise; quantise to uint8 (H, W)."""
    img = 0.5 + nu.offset + nu.gain * (raw - 0.5) + rng.normal(0.0, nu.noise_sd, raw.shape)
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def _circle(x: np.ndarray, y: np.ndarray, c: tuple[float, float], r: float) -> np.ndarray:
    """Signed distance to a disc (negative inside)."""
    return np.hypot(x - c[0], y - c[1]) - r


def _capsule(x: np.ndarray, y: np.ndarray, a: tuple[float, float], b: tuple[float, float], r: float) -> np.ndarray:
    """Signed distance to a segment a-b thickened by radius r (negative inside)."""
    ax, ay = x - a[0], y - a[1]
    bx, by = b[0] - a[0], b[1] - a[1]
    h = np.clip((ax * bx + ay * by) / (bx * bx + by * by), 0.0, 1.0)
    return np.hypot(ax - h * bx, ay - h * by) - r


def _smooth_union(dists: list[np.ndarray], k: float) -> np.ndarray:
    """Polynomial smooth minimum of signed distances (fillets of size ~k at junctions)."""
    out = dists[0]
    for d in dists[1:]:
        h = np.maximum(k - np.abs(out - d), 0.0) / k
        out = np.minimum(out, d) - 0.25 * k * h * h
    return out


#: The femoral shaft's axis in the bone frame: from its upper end, downwards (half-widths).
SHAFT_AXIS = ((0.22, 0.15), (0.16, 1.8))


def _femur_sdf(xb: np.ndarray, yb: np.ndarray, shaft_length: float = 1.0) -> np.ndarray:
    """Signed distance to a proximal femur (head upper left, shaft down) in the bone frame.

    ``shaft_length``: the shaft's length as a multiple of the crop's (the whole view's femur
    runs on along the same axis to the image's lower edge).
    """
    (top, end) = SHAFT_AXIS
    bottom = (top[0] + shaft_length * (end[0] - top[0]), top[1] + shaft_length * (end[1] - top[1]))
    parts = [
        _capsule(xb, yb, top, bottom, 0.30),  # shaft, leaves the crop
        _capsule(xb, yb, (0.12, -0.02), (-0.45, -0.45), 0.19),  # neck
        _circle(xb, yb, (-0.50, -0.52), 0.33),  # head
        _circle(xb, yb, (0.42, -0.12), 0.24),  # greater trochanter
        _circle(xb, yb, (-0.08, 0.62), 0.11),  # lesser trochanter
    ]
    return _smooth_union(parts, k=0.08)


def render_hip(bone_quality: float, image_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render one hip crop (proximal femur, femoral head to lesser trochanter).

    Cortical thickness (~0.05-0.22 half-widths, i.e. ~1.5-7 px at 64 px) and trabecular
    density/contrast grow with ``bone_quality`` (T-score units). Returns ``(image, mask)``,
    both uint8 of shape (image_size, image_size); mask is 255 on the femur, 0 elsewhere.
    """
    q = quality_to_unit(bone_quality)
    nu = draw_nuisance(rng)
    x, y = _grid(image_size)
    xb, yb = _to_bone_frame(x, y, nu)
    depth = -_femur_sdf(xb, yb) * nu.scale  # distance inside the bone, image half-widths
    edge = 1.0 / image_size  # half a pixel, in half-widths: anti-aliased edges
    # The shaft's cortex is thicker than the head's, as in a real femur.
    thickness = (0.03 + 0.20 * q) * (0.7 + 0.5 * expit(3.0 * yb))
    cortex_w = expit((thickness - depth) / edge)
    bone = cortex_w * (0.78 + 0.12 * q) + (1.0 - cortex_w) * _trabecular(image_size, q, rng)
    inside = expit(depth / edge)
    raw = _soft_tissue(x, y, rng) + 0.7 * inside * bone
    mask = np.where(depth > 0.0, 255, 0).astype(np.uint8)
    return _finish(raw, nu, rng), mask


# The Singh-index variant's head-and-neck region and trabecular pattern (bone frame, half-widths).
NECK_AXIS = ((0.06, -0.06), (-0.45, -0.45))  # from the trochanteric end into the head
NECK_RADIUS = 0.19
HEAD = ((-0.50, -0.52), 0.33)
STRAND_PERIOD = 0.22  # spacing of the trabecular strands, half-widths (~7 px at 64 px)
STRAND_CONTRAST = 0.15  # SD of the pattern, intensity units before the 0.7 bone weight


def _strands(xb: np.ndarray, yb: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-SD parallel strands running at ``angle`` (radians, bone frame), gently meandering; (H, W)."""
    size = xb.shape[0]
    across = -xb * np.sin(angle) + yb * np.cos(angle)
    wobble = gaussian_filter(rng.standard_normal((size, size)), 0.08 * size)
    phase = 1.2 * wobble / wobble.std() + rng.uniform(0.0, 2.0 * np.pi)
    return np.sqrt(2.0) * np.sin(2.0 * np.pi * across / STRAND_PERIOD + phase)


@lru_cache(maxsize=8)
def _strand_ring(size: int) -> np.ndarray:
    """(size, size) FFT-domain filter passing the strands' spacing in every direction (one per image size)."""
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size)))  # cycles per pixel
    peak = 2.0 / (STRAND_PERIOD * size)  # the strands' frequency; a half-width is size / 2 pixels
    return np.exp(-0.5 * ((freq - peak) / (0.25 * peak)) ** 2)


def _isotropic_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-SD texture with the strands' spacing but no preferred direction (ring-filtered noise); (size, size)."""
    texture = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * _strand_ring(size)))
    return texture / texture.std()


def render_hip_head_neck(
    bone_quality: float, image_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Render a hip crop whose T-score shows only in the femoral head and neck (Singh index).

    In the head and neck the trabecular pattern is strands along the neck plus strands across
    it whose share grows with ``bone_quality`` (T-score units; :func:`make_cohort` passes the
    T-score): mostly along below T ~ -3, mostly across above T ~ -1.5; its mean, SD and spacing
    are fixed. Elsewhere the trabecular bone has the same spacing and SD without a preferred
    direction, and its mean level and the cortical thickness are drawn independently of
    ``bone_quality``. Returns ``(image, mask)``, both uint8 (image_size, image_size); mask is
    255 on the head and neck, 0 elsewhere.
    """
    q = quality_to_unit(bone_quality)
    level_elsewhere, q_cortex = rng.uniform(0.36, 0.44), rng.uniform(0.0, 1.0)
    nu = draw_nuisance(rng)
    x, y = _grid(image_size)
    xb, yb = _to_bone_frame(x, y, nu)
    depth = -_femur_sdf(xb, yb) * nu.scale
    edge = 1.0 / image_size
    thickness = (0.03 + 0.12 * q_cortex) * (0.7 + 0.5 * expit(3.0 * yb))
    cortex_w = expit((thickness - depth) / edge)
    (start, end), (centre, radius) = NECK_AXIS, HEAD
    region = -np.minimum(_capsule(xb, yb, start, end, NECK_RADIUS), _circle(xb, yb, centre, radius)) * nu.scale
    region_w = expit(region / (2.0 * edge))
    axis = float(np.arctan2(end[1] - start[1], end[0] - start[0]))
    cross_share = (q / (1.0 - q)) ** 2  # ~0.1 at T = -3.2, 0.44 at q(-2.5), ~4 at T = -1.2
    along, cross = _strands(xb, yb, axis, rng), _strands(xb, yb, axis + np.pi / 2, rng)
    pattern = (along + cross_share * cross) / np.hypot(1.0, cross_share)
    elsewhere = level_elsewhere + STRAND_CONTRAST * _isotropic_texture(image_size, rng)
    trabecular = region_w * (0.40 + STRAND_CONTRAST * pattern) + (1.0 - region_w) * elsewhere
    bone = cortex_w * (0.78 + 0.12 * q_cortex) + (1.0 - cortex_w) * trabecular
    raw = _soft_tissue(x, y, rng) + 0.7 * expit(depth / edge) * bone
    mask = np.where((depth > 0.0) & (region > 0.0), 255, 0).astype(np.uint8)
    return _finish(raw, nu, rng), mask


def _smooth_profile(x: np.ndarray, rng: np.random.Generator, knots: int = 48, span: float = 2.0) -> np.ndarray:
    """Unit-SD smooth 1-D random function of x in [-span, span], evaluated at x (any shape)."""
    grid = np.linspace(-span, span, knots)
    values = gaussian_filter(rng.standard_normal(knots), 1.5, mode="wrap")
    return np.interp(x, grid, values / values.std())


def _eroded_cortex(
    depth: np.ndarray,
    xb: np.ndarray,
    q: float,
    image_size: int,
    rng: np.random.Generator,
    *,
    edge: float | None = None,
    profile: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cortex weight and pore weight of the mandibular lower border; each (H, W) in [0, 1].

    Width ~0.04-0.24 half-widths grows with q; as q falls the endosteal margin becomes
    irregular and resorption lacunae appear, mostly near that inner margin. The whole view
    passes its half-pixel ``edge`` (crop half-widths) and its own unit-SD margin ``profile``;
    ``image_size`` is then the crop's size in pixels (the lacunae's spacing).
    """
    width = 0.04 + 0.20 * q
    irregular = 1.0 + 0.45 * (1.0 - q) * (_smooth_profile(xb, rng) if profile is None else profile)
    local_width = width * np.clip(irregular, 0.3, 2.0)
    edge = 1.0 / image_size if edge is None else edge
    cortex_w = expit((local_width - depth) / edge) * expit(depth / edge)
    pore_fraction = 0.45 * (1.0 - q) ** 2
    lacunae = _band_noise(depth.shape, rng, sigma_px=max(0.5, 0.01 * image_size))
    pores = expit((lacunae - ndtri(1.0 - pore_fraction)) / 0.3)
    near_inner = np.clip(0.3 + 0.7 * depth / local_width, 0.0, 1.0)
    return cortex_w, pores * near_inner


def render_dental(bone_quality: float, image_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render one dental panoramic crop below the mental foramen.

    The mandible is a horizontal band (upper edge ~0.3 of the height, lower border ~0.65,
    gently curved) with soft tissue below and above it. Its inferior cortex widens with
    ``bone_quality`` and erodes as it falls (see :func:`_eroded_cortex`). Returns
    ``(image, mask)``, both uint8 (image_size, image_size); mask is 255 on the band.
    """
    q = quality_to_unit(bone_quality)
    nu = draw_nuisance(rng)
    x, y = _grid(image_size)
    xb, yb = _to_bone_frame(x, y, nu)
    depth = (0.30 - 0.06 * xb**2 - yb) * nu.scale  # above the lower border, half-widths
    top = (yb + 0.42) * nu.scale  # below the band's upper edge
    edge = 1.0 / image_size
    trab = _trabecular(image_size, q, rng)
    cortex_w, pore_w = _eroded_cortex(depth, xb, q, image_size, rng)
    cortex = (0.82 + 0.08 * q) * (1.0 - pore_w) + trab * pore_w
    bone = cortex_w * cortex + (1.0 - cortex_w) * trab
    inside = expit(depth / edge) * expit(top / (3.0 * edge))
    raw = _soft_tissue(x, y, rng) + 0.7 * inside * bone
    mask = np.where((depth > 0.0) & (top > 0.0), 255, 0).astype(np.uint8)
    return _finish(raw, nu, rng), mask


RENDERERS = {
    ("hip", "bone"): render_hip,
    ("hip", "head_neck"): render_hip_head_neck,
    ("dental", "bone"): render_dental,
}


def render_images(
    kind: str,
    bone_quality: np.ndarray,
    image_size: int,
    rng: np.random.Generator,
    *,
    informative_region: str = "bone",
) -> tuple[np.ndarray, np.ndarray]:
    """Render a batch in memory: images and masks, each uint8 (n, image_size, image_size)."""
    render = RENDERERS[kind, informative_region]
    pairs = [render(float(b), image_size, rng) for b in bone_quality]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


# --------------------------------------------------------------------------- writing


def _replace_atomically(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_png(path: Path, array: np.ndarray) -> None:
    """Write a uint8 (H, W) array as an 8-bit grayscale PNG without metadata."""
    _replace_atomically(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def _write_text(path: Path, text: str) -> None:
    _replace_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline="\n"))


def _manifest(kind: str, subjects: pd.DataFrame, ids: list[str]) -> str:
    """Manifest CSV text, columns in the documented order, fixed float formatting."""
    return subject_table(kind, subjects, ids, masks=True).to_csv(index=False, lineterminator="\n")


def subject_table(kind: str, subjects: pd.DataFrame, ids: list[str], *, masks: bool) -> pd.DataFrame:
    """The phantom manifest's columns up to ``label`` (image, [mask,] patient, covariates, T-score), as text.

    Args:
        kind: ``"hip"`` or ``"dental"`` (hip adds ``hip_fracture_history``).
        subjects: one row per subject, as :func:`draw_subjects` draws them.
        ids: the image stems, one per subject.
        masks: whether the images have masks (crop phantoms) or not (whole views).

    Returns:
        A DataFrame of strings and integers in the documented column order.
    """
    out = pd.DataFrame(
        {
            "image": [f"images/{i}.png" for i in ids],
            **({"mask": [f"masks/{i}.png" for i in ids]} if masks else {}),
            "patient_id": subjects["patient_id"].to_numpy(),
            "age": [f"{v:.1f}" for v in subjects["age"]],
            "sex": subjects["sex"].to_numpy(),
            "bmi": [f"{v:.1f}" for v in subjects["bmi"]],
        }
    )
    if kind == "hip":
        out["hip_fracture_history"] = subjects["hip_fracture_history"].to_numpy()
    out["t_score"] = [f"{v:.2f}" for v in subjects["t_score"]]
    out["label"] = subjects["label"].to_numpy()
    return out


def information_split(kind: str, subjects: pd.DataFrame, driver: str = "bone_quality") -> dict:
    """What a logistic regression reaches (5-fold cross-validated ROC AUC, stratified, seed 0;
    fewer folds when a class has fewer than 5 subjects)
    on the cohort's covariates, on the image's own latent signal (``driver``: the value the
    renderer draws from), and on both — the known truth a fusion model is measured against.

    Covariates as the study models get them: age and BMI standardised, sex and fracture
    history as indicators. A CNN reaches less than the latent's figure (it must read the
    latent back from a noisy image).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    columns = [c for c in ("age", "bmi", "sex", "hip_fracture_history") if c in subjects]
    covariates = pd.get_dummies(subjects[columns], drop_first=True).astype(float).to_numpy()
    covariates = (covariates - covariates.mean(0)) / (covariates.std(0) + 1e-12)
    latent = subjects[[driver]].to_numpy(dtype=float)
    labels = subjects["label"].to_numpy()
    smallest = int(min(labels.sum(), len(labels) - labels.sum()))
    if smallest < 2:
        return {
            "method": "too few subjects of one class to cross-validate",
            "latent": driver,
            "covariates": None,
            "image_latent": None,
            "both": None,
        }
    folds = StratifiedKFold(min(5, smallest), shuffle=True, random_state=0)

    def auc(features: np.ndarray) -> float:
        scores = cross_val_predict(
            LogisticRegression(max_iter=1000), features, labels, cv=folds, method="decision_function"
        )
        return round(float(roc_auc_score(labels, scores)), 3)

    return {
        "method": f"{folds.n_splits}-fold cross-validated logistic regression on this cohort's subjects, ROC AUC",
        "latent": driver,
        "covariates": auc(covariates),
        "image_latent": auc(latent),
        "both": auc(np.hstack([covariates, latent])),
    }


def _cohort_params(
    kind: str,
    n: int,
    seed: int,
    image_size: int,
    labels: np.ndarray,
    region: str,
    information: str = DEFAULT_INFORMATION,
) -> dict:
    """Everything needed to describe (and regenerate) the cohort, JSON-serialisable."""
    table = COHORT_TABLES[kind]
    dists = {
        cls: {
            name: (
                {"dist": "truncated_normal", **dict(zip(("mean", "sd", "min", "max"), v))}
                if isinstance(v, tuple)
                else {"dist": "bernoulli", "p": v}
            )
            for name, v in table[cls].items()
        }
        for cls in ("osteoporosis", "non_osteoporosis")
    }
    return {
        "generator": "osteo_tf.data.synthetic.make_cohort",
        "kind": kind,
        "n": n,
        "seed": seed,
        "image_size": image_size,
        "source": table["source"],
        "paper_counts": table["counts"],
        "label_assignment": "exact proportions: round(n * paper prevalence) osteoporotic, shuffled",
        "n_osteoporosis": int(labels.sum()),
        "n_non_osteoporosis": int(n - labels.sum()),
        "label_rule": "label = 1 iff t_score <= -2.5",
        "distributions": dists,
        "information": information,
        "sigma_bio": INFORMATION_SIGMA[information],
        "bone_quality": "t_score + N(0, sigma_bio); drives the image's look",
        "nuisance_ranges": NUISANCE_RANGES,
        "informative_region": region,
        "mask": MASK_SEMANTICS[region],
    }


def make_cohort(
    kind: str,
    n: int,
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = 128,
    informative_region: str = "bone",
    information: str = DEFAULT_INFORMATION,
) -> Path:
    """Write a synthetic phantom cohort under ``out_dir``; return the manifest's path.

    ``kind`` is "hip" or "dental"; ``n`` >= 10 subjects (one image each); ``image_size`` >= 32
    pixels (square); ``informative_region`` where the T-score shows, and what the masks mark:
    "bone" (the whole bone) or, for hip, "head_neck" (see the module docstring);
    ``information`` how the label's information is split between image and covariates, a key
    of :data:`INFORMATION_SIGMA` ("image_led", default; "balanced"). cohort.json records the
    split a logistic regression measures on the subjects (:func:`information_split`). Same
    arguments give byte-identical files. Existing files of the same names are replaced;
    other files in ``out_dir`` are left alone. Raises OsteoInputError naming the bad argument.
    """
    _check_args(kind, n, image_size, seed, informative_region)
    if information not in INFORMATION_SIGMA:
        raise OsteoInputError(f"information must be one of {tuple(INFORMATION_SIGMA)}, got {information!r}")
    if informative_region == "head_neck" and information != DEFAULT_INFORMATION:
        raise OsteoInputError(
            "information applies to the 'bone' phantom; the head_neck variant renders the "
            "T-score itself (no sigma_bio): leave information at image_led"
        )
    render = RENDERERS[kind, informative_region]
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    subjects = draw_subjects(kind, n, rng, sigma_bio=INFORMATION_SIGMA[information])
    ids = [f"{kind}_{i + 1:05d}" for i in range(n)]
    # The localisation variant shows the T-score itself (see the module docstring).
    drivers = subjects["t_score"] if informative_region == "head_neck" else subjects["bone_quality"]
    for sid, quality in zip(ids, drivers):
        image, mask = render(float(quality), image_size, rng)
        _write_png(out / "images" / f"{sid}.png", image)
        _write_png(out / "masks" / f"{sid}.png", mask)
    params = _cohort_params(kind, n, seed, image_size, subjects["label"].to_numpy(), informative_region, information)
    params["information_split"] = information_split(
        kind, subjects, "t_score" if informative_region == "head_neck" else "bone_quality"
    )
    _write_text(out / "cohort.json", json.dumps(params, indent=2) + "\n")
    manifest = out / "manifest.csv"
    _write_text(manifest, _manifest(kind, subjects, ids))
    return manifest
