"""The tf.data input pipeline: cohort rows → batches of ``({"image", "covariates"}, label)``.

Per image: decode (PNG / TIFF, 8 or 16 bit, via :mod:`osteo_tf.data.images`), optional ROI
crop, per-image min–max scaling to [0, 255] (so 8- and 16-bit files land on one scale,
without truncating 16-bit data to 8 bits first), resize to the backbone's size, grayscale →
3 channels; then cache (decoding happens once per run), and for training batches only the
papers' augmentation; then the backbone's own normalisation, batch, prefetch.

Augmentation (both papers): each training image, with probability 0.5, is rotated by a
uniform angle in [−25°, +25°] (corners filled with black, as torchvision's default), flipped
horizontally with p = 0.5 and vertically with p = 0.5, and its brightness and contrast are
scaled by uniform factors in [0.95, 1.05] (torchvision ``ColorJitter`` semantics). Random
numbers come from stateless ops seeded by (seed, epoch, element), so a seeded run
augments identically every time.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import tensorflow as tf

from osteo_tf.data.images import read_image
from osteo_tf.models.backbones import BackboneSpec, normalize_images

AUGMENT_PROBABILITY = 0.5
MAX_ROTATION_DEGREES = 25.0
JITTER = 0.05
ROI_COLUMNS = ("roi_x", "roi_y", "roi_w", "roi_h")


def load_image(path: str, roi: tuple[int, int, int, int] | None, image_size: int) -> np.ndarray:
    """One file → (image_size, image_size, 3) float32 in [0, 255] (what the model's input takes)."""
    pixels = read_image(path, roi)
    low, high = float(pixels.min()), float(pixels.max())
    scaled = (pixels - low) * (255.0 / (high - low)) if high > low else np.zeros_like(pixels)
    resized = tf.image.resize(scaled[:, :, None], (image_size, image_size), antialias=True).numpy()
    return np.repeat(np.clip(resized, 0.0, 255.0), 3, axis=-1).astype(np.float32)


def _decode_op(image_size: int):
    def decode(path: bytes, roi: np.ndarray) -> np.ndarray:
        box = None if roi[0] < 0 else tuple(int(v) for v in roi)
        return load_image(path.decode(), box, image_size)

    def op(path, roi):
        image = tf.numpy_function(decode, [path, roi], tf.float32, stateful=False)
        return tf.ensure_shape(image, (image_size, image_size, 3))

    return op


def rois_of(cohort: pd.DataFrame) -> np.ndarray:
    """(rows, 4) int64 crop boxes; rows without a box get −1s (no crop)."""
    if not all(c in cohort for c in ROI_COLUMNS):
        return np.full((len(cohort), 4), -1, dtype=np.int64)
    boxes = cohort[list(ROI_COLUMNS)].astype("Int64").fillna(-1)
    return boxes.to_numpy(dtype=np.int64)


def rotate(image: tf.Tensor, degrees: tf.Tensor) -> tf.Tensor:
    """Rotates a (h, w, c) image about its centre; outside pixels become 0."""
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    angle = degrees * (math.pi / 180.0)
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    # Projective transform maps output (x, y) to input coordinates (inverse rotation).
    transform = tf.stack([cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])
    rotated = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform[None], output_shape=tf.shape(image)[:2],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT",
    )
    return rotated[0]


def augment(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The papers' augmentation on one (h, w, 3) [0, 255] image; ``seed`` is a (2,) int tensor."""
    seeds = tf.random.experimental.stateless_split(seed, num=7)
    uniform = lambda i, low=0.0, high=1.0: tf.random.stateless_uniform((), seeds[i], low, high)  # noqa: E731

    def transformed():
        out = rotate(image, uniform(1, -MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES))
        out = tf.cond(uniform(2) < 0.5, lambda: tf.image.flip_left_right(out), lambda: out)
        out = tf.cond(uniform(3) < 0.5, lambda: tf.image.flip_up_down(out), lambda: out)
        out = out * uniform(4, 1.0 - JITTER, 1.0 + JITTER)
        mean = tf.reduce_mean(out)
        out = mean + (out - mean) * uniform(5, 1.0 - JITTER, 1.0 + JITTER)
        return tf.clip_by_value(out, 0.0, 255.0)

    return tf.cond(uniform(0) < AUGMENT_PROBABILITY, transformed, lambda: image)


def make_dataset(
    cohort: pd.DataFrame,
    covariates: np.ndarray | None,
    spec: BackboneSpec | None,
    image_size: int,
    batch_size: int,
    training: bool,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of ``(inputs, label)`` for the rows of ``cohort``.

    cohort: validated rows (``image``, ``label``, optional ROI columns). covariates: the
    (rows, dim) encoded matrix, or None for an image-only model. spec: the backbone (its
    normalisation), or None for a covariate-only model (no images are read). training:
    shuffle each epoch and augment. Labels are (batch, 1) float32, 1 = osteoporosis.
    """
    labels = cohort["label"].to_numpy(dtype=np.float32)[:, None]
    columns: dict[str, tf.data.Dataset] = {}
    if spec is not None:
        paths = tf.data.Dataset.from_tensor_slices((cohort["image"].astype(str).to_numpy(), rois_of(cohort)))
        columns["image"] = paths.map(_decode_op(image_size), num_parallel_calls=tf.data.AUTOTUNE).cache()
    if covariates is not None:
        columns["covariates"] = tf.data.Dataset.from_tensor_slices(covariates.astype(np.float32))
    if not columns:
        raise ValueError("make_dataset needs images (spec) or covariates")
    dataset = tf.data.Dataset.zip((columns, tf.data.Dataset.from_tensor_slices(labels)))
    if training:
        dataset = dataset.shuffle(len(cohort), seed=seed, reshuffle_each_iteration=True)
        if spec is not None:
            element_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
            dataset = tf.data.Dataset.zip((dataset, element_seeds)).map(
                lambda example, s: ({**example[0], "image": augment(example[0]["image"], s)}, example[1]),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
    dataset = dataset.batch(batch_size)
    if spec is not None:
        dataset = dataset.map(lambda x, y: ({**x, "image": normalize_images(x["image"], spec)}, y))
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
