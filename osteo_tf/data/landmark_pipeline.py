"""tf.data input of the ROI landmark detector: whole images and keypoints → (image, target heatmaps).

Per image: decode (:func:`osteo_tf.data.images.read_image`: PNG / TIFF / DICOM, 8 or 16 bit),
:func:`detector_input` (per-image min–max to [0, 1], antialiased resize to the detector's
(H, W); the serving graph calls the same function), cache in memory. Keypoints travel in
normalised coordinates (x / width, y / height of the whole image), so the resize does not
move them.

Training augmentation keeps image and keypoints consistent: one affine map per image
(scale ×[0.9, 1.1], rotation ±8°, shift ±6 % of each side, about the centre) warps the
image (bilinear, black outside) and moves the keypoints by the same map; a horizontal flip
(p = 0.5) mirrors both and swaps the left and right keypoints (a flipped left hip is a right
hip); then gamma ×[0.8, 1.25] and contrast ×[0.9, 1.1]. Its random numbers come from
(seed, epoch, item) (:func:`osteo_tf.data.pipeline.epoch_stream`), so a resumed fit sees
the batches an uninterrupted one does.

Targets: per keypoint a Gaussian (σ = :data:`osteo_tf.models.landmarks.TARGET_SIGMA` cells)
around its position on the (H/4, W/4) heatmap grid, normalised to sum 1.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from osteo_tf.data.images import read_image
from osteo_tf.data.landmarks import SIDES
from osteo_tf.data.pipeline import epoch_stream, normalize_intensity, warp

__all__ = ["augment_keypoints", "detector_input", "heatmap_targets", "landmark_dataset", "swap_sides"]

STRIDE = 4  # input pixels per heatmap cell; equal to osteo_tf.models.landmarks.STRIDE (tested)
TARGET_SIGMA = 1.0  # cells; equal to osteo_tf.models.landmarks.TARGET_SIGMA (tested)
SCALE, ROTATION_DEGREES, SHIFT = (0.9, 1.1), 8.0, 0.06
GAMMA, CONTRAST = (0.8, 1.25), (0.9, 1.1)


def detector_input(pixels: tf.Tensor, input_hw: tuple[int, int]) -> tf.Tensor:
    """(h, w) grayscale in its native range → (H, W, 1) float32 in [0, 1] (min–max, antialiased resize)."""
    scaled = normalize_intensity(pixels, "minmax") / 255.0
    resized = tf.image.resize(scaled[:, :, None], input_hw, antialias=True)
    return tf.clip_by_value(resized, 0.0, 1.0)


def swap_sides(num_keypoints: int) -> list[int]:
    """The keypoint order after a horizontal flip: left and right halves exchanged."""
    half = num_keypoints // len(SIDES)
    return list(range(half, num_keypoints)) + list(range(half))


def augment_keypoints(image: tf.Tensor, keypoints: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Warp one (H, W, 1) image and its (K, 2) normalised keypoints by one random affine map and flip.

    Args:
        image: (H, W, 1) float32 in [0, 1].
        keypoints: (K, 2) float32, (x / W, y / H).
        seed: (2,) int stateless seed.

    Returns:
        ``(image, keypoints)`` of the same shapes.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=7)
    uniform = lambda i, low, high: tf.random.stateless_uniform((), seeds[i], low, high)  # noqa: E731
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    scale = uniform(0, *SCALE)
    angle = uniform(1, -ROTATION_DEGREES, ROTATION_DEGREES) * (math.pi / 180.0)
    tx, ty = uniform(2, -SHIFT, SHIFT) * width, uniform(3, -SHIFT, SHIFT) * height
    cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
    cx, cy = width / 2.0, height / 2.0
    # Forward map in pixels (origin at the top-left corner): p' = A (p - c) + c + t.
    xy = keypoints * tf.stack([width, height])
    dx, dy = xy[:, 0] - cx, xy[:, 1] - cy
    moved = tf.stack([cos * dx - sin * dy + cx + tx, sin * dx + cos * dy + cy + ty], axis=1)
    # The projective transform maps each output pixel centre to its input point: p = A⁻¹ (p' - c - t) + c.
    det = cos * cos + sin * sin
    ia, ib, ic, id_ = cos / det, sin / det, -sin / det, cos / det
    ox, oy = cx + tx - 0.5, cy + ty - 0.5  # pixel centres: index i sits at i + 0.5
    transform = tf.stack([ia, ib, cx - 0.5 - ia * ox - ib * oy, ic, id_, cy - 0.5 - ic * ox - id_ * oy, 0.0, 0.0])
    warped = warp(image, transform)
    normalised = moved / tf.stack([width, height])
    flip = uniform(4, 0.0, 1.0) < 0.5
    order = swap_sides(int(keypoints.shape[0]))
    warped = tf.cond(flip, lambda: tf.image.flip_left_right(warped), lambda: warped)
    normalised = tf.cond(
        flip, lambda: tf.gather(tf.stack([1.0 - normalised[:, 0], normalised[:, 1]], 1), order), lambda: normalised
    )
    out = tf.pow(tf.clip_by_value(warped, 0.0, 1.0), uniform(5, *GAMMA))
    mean = tf.reduce_mean(out)
    out = tf.clip_by_value(mean + (out - mean) * uniform(6, *CONTRAST), 0.0, 1.0)
    return tf.ensure_shape(out, image.shape), tf.ensure_shape(normalised, keypoints.shape)


def heatmap_targets(keypoints: tf.Tensor, grid_hw: tuple[int, int]) -> tf.Tensor:
    """(K, 2) normalised keypoints → (h, w, K) Gaussian target distributions, each summing to 1."""
    h, w = grid_hw
    gy, gx = tf.meshgrid(tf.range(h, dtype=tf.float32) + 0.5, tf.range(w, dtype=tf.float32) + 0.5, indexing="ij")
    kx = keypoints[:, 0] * w
    ky = keypoints[:, 1] * h
    d2 = (gx[:, :, None] - kx[None, None, :]) ** 2 + (gy[:, :, None] - ky[None, None, :]) ** 2
    g = tf.exp(-d2 / (2.0 * TARGET_SIGMA**2))
    return g / (tf.reduce_sum(g, axis=(0, 1), keepdims=True) + 1e-12)


def landmark_dataset(
    paths: list[str],
    keypoints: np.ndarray | None,
    *,
    input_hw: tuple[int, int],
    batch_size: int,
    training: bool,
    seed: int = 0,
    epoch: tf.Variable | None = None,
) -> tf.data.Dataset:
    """Batches for the detector.

    Args:
        paths: whole-image files.
        keypoints: (N, K, 2) normalised keypoints (x / width, y / height), or None (inference).
        input_hw: the detector's input (H, W) in pixels.
        batch_size: images per batch.
        training: shuffle and augment each epoch (needs ``keypoints``).
        seed: the shuffle's and augmentation's seed.
        epoch: the int64 variable of the epoch a new iteration is for (training).

    Returns:
        ``(image (B, H, W, 1), target (B, H/4, W/4, K))`` batches, or images alone without keypoints.
    """
    grid = (input_hw[0] // STRIDE, input_hw[1] // STRIDE)

    def decode(path: bytes) -> np.ndarray:
        return read_image(path.decode())

    def load(path):
        pixels = tf.numpy_function(decode, [path], tf.float32, stateful=False)
        return tf.ensure_shape(detector_input(tf.ensure_shape(pixels, (None, None)), input_hw), (*input_hw, 1))

    images = tf.data.Dataset.from_tensor_slices(np.asarray(paths, dtype=str))
    images = images.map(load, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if keypoints is None:
        dataset = images
    else:
        points = tf.data.Dataset.from_tensor_slices(np.asarray(keypoints, dtype=np.float32))
        dataset = tf.data.Dataset.zip((images, points))
        if training:
            dataset = epoch_stream(
                dataset,
                len(paths),
                seed,
                epoch,
                True,
                augmentation=lambda example, key: augment_keypoints(example[0], example[1], key),
            )
        dataset = dataset.map(lambda image, points: (image, heatmap_targets(points, grid)))
    options = tf.data.Options()
    options.deterministic = True
    return dataset.batch(batch_size).with_options(options).prefetch(tf.data.AUTOTUNE)
