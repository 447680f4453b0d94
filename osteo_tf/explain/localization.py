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
import tensorflow as tf

from osteo_tf.data.images import image_size as image_size_of
from osteo_tf.data.images import read_image
from osteo_tf.data.pipeline import rois_of
from osteo_tf.errors import OsteoInputError

__all__ = ["load_masks", "mass_inside"]


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


def load_masks(rows: pd.DataFrame, manifest: str | Path, image_size: int, *, column: str = "mask") -> np.ndarray:
    """(n, size, size) boolean masks of the rows, read and cropped/resized like their images.

    ``column`` holds each mask's path, relative to the manifest's folder unless absolute (the
    phantom's ``mask`` column, or a user's region annotations): an image file of the same
    pixel size as the row's image, nonzero inside the region. Raises OsteoInputError naming
    the manifest line and column of a missing column, an empty cell, a missing or unreadable
    file, a size mismatch, or a mask with no region.
    """
    folder = Path(manifest).parent
    if column not in rows:
        raise OsteoInputError(
            f"manifest {manifest} has no column '{column}' (the region masks to score the maps against)"
        )
    masks = []
    for (_, row), box in zip(rows.iterrows(), rois_of(rows)):
        where = (
            f"manifest {manifest}, line {row['line']}"
            if "line" in row and not pd.isna(row["line"])
            else f"image {row['image']}"
        )
        cell = row[column]
        if pd.isna(cell) or not str(cell).strip():
            raise OsteoInputError(f"{where}: column '{column}' is empty; every explained image needs its mask")
        path = Path(str(cell).strip())
        path = path if path.is_absolute() else folder / path
        try:
            mask_size, image_size_px = image_size_of(path), image_size_of(row["image"])
        except OsteoInputError as error:
            raise OsteoInputError(f"{where}, column '{column}': {error}") from None
        if mask_size != image_size_px:
            raise OsteoInputError(
                f"{where}, column '{column}': mask {path} is {mask_size[0]}×{mask_size[1]} px but its "
                f"image is {image_size_px[0]}×{image_size_px[1]}; a mask must match its image"
            )
        roi = None if box[0] < 0 else tuple(int(v) for v in box)
        mask = read_image(path, roi) > 0
        if not mask.any():
            raise OsteoInputError(f"{where}, column '{column}': mask {path} marks no region (all zero)")
        # The images' own geometry (preprocess_gray: ROI crop, antialiased bilinear resize), no intensity scaling.
        resized = tf.image.resize(mask[..., None].astype(np.float32), (image_size, image_size), antialias=True)
        masks.append(resized.numpy()[..., 0] >= 0.5)
    return np.stack(masks)
