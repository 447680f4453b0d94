"""How much of a heat map falls inside a known region: the phantom's localisation check.

The phantom generator (:mod:`osteo_tf.data.synthetic`) writes, per image, a mask of the
informative region (the only place where the label shows; with ``informative_region=
"head_neck"`` a part of the femur that is no brighter than the rest). A model that learned
the task should put its Grad-CAM mass there: the mean fraction inside the mask should be
well above the mask's share of the image, which is what a map unrelated to the region
scores on average (README "Explainability" has the measured figures).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from osteo_tf.data.pipeline import load_image, rois_of


def mass_inside(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Fraction of each map's mass inside its mask; (n, h, w) maps ≥ 0 and boolean masks → (n,).

    An all-zero map (no positive evidence anywhere) localises nothing: it scores the mask's
    share of the image, as a uniform map would.
    """
    maps = np.asarray(maps, np.float64)
    masks = np.asarray(masks, bool)
    total = maps.sum(axis=(1, 2))
    inside = (maps * masks).sum(axis=(1, 2))
    share = masks.mean(axis=(1, 2))
    return np.where(total > 0, inside / np.where(total > 0, total, 1.0), share)


def load_masks(rows: pd.DataFrame, manifest: str | Path, image_size: int, column: str = "mask") -> np.ndarray:
    """(n, size, size) boolean masks of the rows, read and cropped/resized like their images.

    ``column`` holds each mask's path relative to the manifest's folder (the phantom's
    ``mask`` column).
    """
    folder = Path(manifest).parent
    boxes = rois_of(rows)
    masks = []
    for path, box in zip(rows[column].astype(str), boxes):
        roi = None if box[0] < 0 else tuple(int(v) for v in box)
        masks.append(load_image(str(folder / path), roi, image_size)[..., 0] > 127.5)
    return np.stack(masks)
