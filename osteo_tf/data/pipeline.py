"""The tf.data input pipeline: cohort rows → batches of ``({"image", "covariates"}, label)``.

Per image: decode (PNG / TIFF, 8 or 16 bit, DICOM, via :mod:`osteo_tf.data.images`), optional
ROI crop, per-image intensity normalisation to [0, 255] (:func:`normalize_intensity`: min–max
or a percentile window, so 8- and 16-bit files land on one scale, without truncating 16-bit
data to 8 bits first), resize to the backbone's size, grayscale →
3 channels; then cache (decoding happens once per run), and for training batches only the
papers' augmentation; then the backbone's own normalisation, batch, prefetch.

Cache (``cache=``): ``"memory"`` (default) keeps the decoded, resized images in RAM after the
first epoch; ``"disk"`` writes them to a tf.data cache file (``cache_file``, e.g.
``run/cache/train``; see :func:`prepare_disk_cache`) for cohorts too large for RAM;
``"none"`` decodes every epoch. The cache holds one grayscale channel, float32
(image_size² × 4 bytes per image: ~200 KB at 224 px, 1,131 images ~230 MB), repeated to
3 channels after it; all three give bit-identical batches.

Throughput: decoding and augmentation are ``map``s with ``num_parallel_calls=AUTOTUNE``
(deterministic order), and the last step is ``prefetch(AUTOTUNE)`` on the host, so the next
batches are prepared while the model trains. There is no ``prefetch_to_device``: Keras's
``fit`` hands the dataset to the distribution strategy (``experimental_distribute_dataset``),
which with ``MirroredStrategy`` (several GPUs) prefetches each replica's batch to its device;
with one device (CPU, one GPU) the batch is copied to the device inside the training step.
Keras's ``fit`` takes exactly ``cardinality`` batches per epoch and never asks for the end
of the data; the cache is still completed in the first epoch, because the shuffle buffer
(training) and the parallel map and prefetch (validation) read ahead to the end — the
decode counts under ``fit`` in ``tests/data/test_pipeline.py`` check it. Augmentation runs
here, in tf.data, not as Keras preprocessing layers in the model: on the CPU it measured
faster (``bench/pipeline.py``: ~1.3× like for like, ~2.5× with the papers' 0.5 gate, at 224
and 300 px), and it overlaps with the training step; the GPU comparison is still to be run.
On 2 CPU cores the pipeline produced ≥ 49× the images/s that ResNet50 (224 px) and
EfficientNet-B3 (300 px) consume (target ≥ 3×).

Everything after decoding is :func:`preprocess_gray`, one TensorFlow function shared with
the exported serving graph (:mod:`osteo_tf.serving`), whose in-graph decoder
:func:`decode_gray` gives the same grayscale pixels as :func:`~osteo_tf.data.images.read_image`
for PNG files (8 and 16 bit, grayscale, RGB(A), palette), so a served model sees exactly
what the trained one saw.

Augmentation (both papers): each training image, with probability 0.5, is rotated by a
uniform angle in [−25°, +25°] (corners filled with black, as torchvision's default), flipped
horizontally with p = 0.5 and vertically with p = 0.5, and its brightness and contrast are
scaled by uniform factors in [0.95, 1.05] (torchvision ``ColorJitter`` semantics). Random
numbers come from stateless ops seeded by (seed, epoch, item), as does each epoch's
shuffle (:func:`epoch_stream`), so a seeded run augments identically every time, and a
resumed run as one never interrupted.
"""

from __future__ import annotations

import glob
import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from osteo_tf.data.images import Intensity, normalize_pixels, parse_intensity, read_image
from osteo_tf.errors import OsteoInputError
from osteo_tf.vocabulary import CACHE_CHOICES, LUMA, ROI_COLUMNS

__all__ = [
    "AUGMENT_PROBABILITY",
    "CACHE_FORMAT",
    "JITTER",
    "JPEG_SIGNATURE",
    "MAX_ROTATION_DEGREES",
    "PNG_SIGNATURE",
    "augment",
    "cache_key",
    "cached_elements",
    "check_cache",
    "decode_gray",
    "epoch_seed",
    "epoch_stream",
    "is_png_or_jpeg",
    "load_image",
    "make_dataset",
    "normalize_intensity",
    "prepare_disk_cache",
    "preprocess_gray",
    "rois_of",
    "rotate",
]

# Bumped whenever what the cache holds changes, so an old cache file is never read back.
CACHE_FORMAT = 1

AUGMENT_PROBABILITY = 0.5
MAX_ROTATION_DEGREES = 25.0
JITTER = 0.05
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"


def normalize_intensity(pixels: tf.Tensor, intensity: str | Intensity = "minmax") -> tf.Tensor:
    """(h, w) float32 grayscale in its native range → the same shape scaled to [0, 255].

    THE per-image intensity normalisation (training, evaluation, Grad-CAM and the serving
    graph all call it through :func:`preprocess_gray`). ``intensity``
    (:func:`~osteo_tf.data.images.parse_intensity`): ``"minmax"`` maps the image's min to 0
    and max to 255 (a constant image becomes 0); ``"percentile:LOW,HIGH"`` maps the LOW-th
    and HIGH-th percentiles of its pixels (linear interpolation, as ``np.percentile``) to 0
    and 255 and clips outside, falling back to min–max when the two are equal.
    """
    spec = parse_intensity(intensity)
    pixels = tf.convert_to_tensor(pixels, tf.float32)
    low, high = tf.reduce_min(pixels), tf.reduce_max(pixels)
    if spec.method == "percentile":
        p_low, p_high = _percentile(pixels, spec.low), _percentile(pixels, spec.high)
        collapsed = p_high <= p_low
        low, high = tf.where(collapsed, low, p_low), tf.where(collapsed, high, p_high)
    # The factor is computed in float64 and rounded once, as NumPy did before this was shared.
    factor = tf.cast(tf.math.divide_no_nan(tf.constant(255.0, tf.float64), tf.cast(high - low, tf.float64)), tf.float32)
    scaled = (pixels - low) * factor
    return scaled if spec.method == "minmax" else tf.clip_by_value(scaled, 0.0, 255.0)


def _percentile(pixels: tf.Tensor, q: float) -> tf.Tensor:
    """The q-th percentile of all pixels, linear interpolation between order statistics."""
    ordered = tf.cast(tf.sort(tf.reshape(pixels, [-1])), tf.float64)
    last = tf.size(ordered) - 1
    rank = tf.cast(last, tf.float64) * (q / 100.0)
    below = tf.cast(tf.floor(rank), tf.int32)
    above = tf.minimum(below + 1, last)
    a, b = ordered[below], ordered[above]
    return tf.cast(a + (b - a) * (rank - tf.cast(below, tf.float64)), tf.float32)


def preprocess_gray(pixels: tf.Tensor, image_size: int, intensity: str | Intensity = "minmax") -> tf.Tensor:
    """(h, w) float32 grayscale in its native range → (image_size, image_size, 3) float32 in [0, 255].

    Per-image intensity normalisation to [0, 255] (:func:`normalize_intensity`, min–max by
    default), bilinear resize with antialiasing, clip, grayscale repeated to 3 channels.
    Used by the tf.data pipeline and by the serving graph, so both compute exactly the same
    thing.
    """
    return tf.repeat(_preprocess_one_channel(pixels, image_size, intensity), 3, axis=-1)


def _preprocess_one_channel(pixels: tf.Tensor, image_size: int, intensity: str | Intensity = "minmax") -> tf.Tensor:
    """:func:`preprocess_gray` before the repeat to 3 channels: (image_size, image_size, 1)."""
    scaled = normalize_intensity(pixels, intensity)
    resized = tf.image.resize(scaled[:, :, None], (image_size, image_size), antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0)


def decode_gray(encoded: tf.Tensor) -> tf.Tensor:
    """Encoded PNG / JPEG bytes (scalar tf.string) → (h, w) float32 grayscale, native range.

    In-graph twin of :func:`osteo_tf.data.images.read_image`: 16-bit PNGs keep their 16-bit
    values, 8-bit files their 8-bit ones; two channels (gray + alpha) → the gray channel;
    three or four (RGB / RGBA / palette) → BT.601 luma computed in float64. The caller
    checks the signature first (:func:`is_png_or_jpeg`); a corrupt body fails in the decoder.
    """
    is_png = tf.equal(tf.strings.substr(encoded, 0, 8), PNG_SIGNATURE)
    # IHDR bit depth is byte 24 of a PNG file (padded so that a short string cannot fail here).
    depth = tf.io.decode_raw(tf.strings.substr(tf.strings.join([encoded, b"\0" * 25]), 24, 1), tf.uint8)
    sixteen_bit = tf.logical_and(is_png, tf.reduce_any(tf.equal(depth, 16)))
    pixels = tf.cond(
        sixteen_bit,
        lambda: tf.cast(tf.io.decode_png(encoded, dtype=tf.uint16), tf.float32),
        lambda: tf.cast(tf.io.decode_image(encoded, dtype=tf.uint8, expand_animations=False), tf.float32),
    )
    return tf.cond(
        tf.shape(pixels)[-1] >= 3,
        lambda: tf.cast(
            tf.tensordot(tf.cast(pixels[..., :3], tf.float64), tf.constant(LUMA, tf.float64), axes=1), tf.float32
        ),
        lambda: pixels[..., 0],
    )


def is_png_or_jpeg(encoded: tf.Tensor) -> tf.Tensor:
    """Elementwise: does each string start with the PNG or JPEG file signature?"""
    return tf.logical_or(
        tf.equal(tf.strings.substr(encoded, 0, 8), PNG_SIGNATURE),
        tf.equal(tf.strings.substr(encoded, 0, 3), JPEG_SIGNATURE),
    )


def load_image(
    path: str, roi: tuple[int, int, int, int] | None, image_size: int, *, intensity: str | Intensity = "minmax"
) -> np.ndarray:
    """One file → (image_size, image_size, 3) float32 in [0, 255] (what the model's input takes)."""
    return preprocess_gray(read_image(path, roi), image_size, intensity).numpy()


def _decode_op(image_size: int, intensity: str | Intensity = "minmax"):
    def decode(path: bytes, roi: np.ndarray) -> np.ndarray:
        box = None if roi[0] < 0 else tuple(int(v) for v in roi)
        return read_image(path.decode(), box)

    def op(path, roi):
        pixels = tf.numpy_function(decode, [path, roi], tf.float32, stateful=False)
        image = _preprocess_one_channel(tf.ensure_shape(pixels, (None, None)), image_size, intensity)
        return tf.ensure_shape(image, (image_size, image_size, 1))  # repeated to 3 channels after the cache

    return op


def check_cache(cache: str) -> str:
    """``cache`` if it is one of :data:`CACHE_CHOICES`, else an OsteoInputError saying what to pass."""
    if cache not in CACHE_CHOICES:
        raise OsteoInputError(
            f"invalid cache option {cache!r}; choose one of: memory (decoded images in RAM, "
            "the default), disk (a cache file in the run folder, for cohorts larger than RAM), "
            "none (decode every epoch)"
        )
    return cache


def cache_key(cohort: pd.DataFrame, image_size: int, intensity: str | Intensity = "minmax") -> str:
    """16 hex digits naming what a disk cache of these rows holds: every image's path, size and
    modification time, its ROI, the image size, the intensity normalisation and :data:`CACHE_FORMAT`.
    Anything else is a different cache file, never a stale one read back."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{image_size}|{parse_intensity(intensity)}".encode())
    for path, roi in zip(cohort["image"].astype(str), rois_of(cohort).tolist()):
        try:
            stat = os.stat(path)
            stamp = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            stamp = (-1, -1)
        digest.update(f"\n{path}|{roi}|{stamp}".encode())
    return digest.hexdigest()[:16]


def prepare_disk_cache(cache_file: str | Path, key: str, *, elements: int | None = None) -> str:
    """The tf.data cache filename ``<cache_file>-<key>``, after removing what a killed run left.

    tf.data writes a cache ``F`` as ``F_0.data-*`` / ``F_0.index`` plus a lockfile
    ``F_0.lockfile`` while the first epoch runs, then merges them into ``F.index`` and
    ``F.data-*`` and deletes the lockfile. A run killed mid-epoch leaves the partial files and
    the lockfile, and a new iterator then fails ("cache lockfile already exists"). So: a
    complete cache (``F.index`` and no lockfile) of the same ``key`` is kept and read back;
    every other file of this prefix — partial shards, lockfiles, caches of other keys — is
    deleted. One process per cache file (a run folder is trained by one process at a time).

    tf.data also merges the partial files into a "complete" ``F.index`` when the input fails
    during the first epoch (e.g. an unreadable image; seen with TF 2.21: 2 of 6 elements,
    no lockfile). So with ``elements`` a cache is complete only if its index holds exactly
    that many elements; a short one is deleted and written again, never read back.

    Args:
        cache_file: the cache's path prefix, e.g. ``run/cache/train``.
        key: :func:`cache_key` of the rows the cache holds.
        elements: how many elements (images) a complete cache holds; None skips the count.

    Returns:
        The filename to pass to ``tf.data.Dataset.cache``.
    """
    prefix = Path(cache_file)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    name = f"{prefix.name}-{key}"
    target = prefix.parent / name
    complete = (prefix.parent / f"{name}.index").is_file() and not glob.glob(glob.escape(str(target)) + "*.lockfile")
    if complete and elements is not None:
        complete = cached_elements(target) == elements
    for path in glob.glob(glob.escape(str(prefix)) + "-*"):
        base = os.path.basename(path)
        if complete and (base == f"{name}.index" or base.startswith(f"{name}.data-")):
            continue
        if os.path.isdir(path):
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
    return str(target)


def cached_elements(filename: str | Path) -> int | None:
    """How many elements the tf.data cache ``filename`` (its ``.index``) holds, None if unreadable.

    The cache is a tensor bundle whose keys are ``<element>_<component>`` (e.g. ``"     1_0"``);
    only the index is read, not the data.
    """
    try:
        keys = [name for name, _ in tf.train.list_variables(str(filename))]
    except (tf.errors.OpError, ValueError):
        return None
    return len({key.rsplit("_", 1)[0].strip() for key in keys})


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
    return warp(image, transform)


def warp(image: tf.Tensor, transform: tf.Tensor) -> tf.Tensor:
    """A (h, w, c) image resampled bilinearly through ``transform``, outside pixels 0.

    Args:
        image: (h, w, c) float tensor.
        transform: (8,) projective transform mapping output (x, y) to input coordinates,
            as ``ImageProjectiveTransformV3`` takes it (a core op: no tensorflow-addons).

    Returns:
        The (h, w, c) warped image.
    """
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform[None],
        output_shape=tf.shape(image)[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]


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


def epoch_seed(seed: int, epoch: tf.Tensor) -> tf.Tensor:
    """The (2,) int64 stateless seed of one epoch: a function of (seed, epoch) only."""
    return tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])


def epoch_stream(
    dataset: tf.data.Dataset,
    size: int,
    seed: int,
    epoch: tf.Variable | None,
    augment_images: bool,
    *,
    augmentation=None,
) -> tf.data.Dataset:
    """The training order and augmentation of ``dataset``'s ``size`` examples, one epoch per iteration.

    Each new iteration (Keras starts one per epoch) reads ``epoch`` (an int64 variable the
    training loop sets, :class:`osteo_tf.training.callbacks.EpochClock`) and shuffles all
    examples with a seed drawn from (seed, epoch); example i of the table is augmented with
    ``fold_in((seed, epoch), i)``. So an epoch's batches are a function of (seed, epoch, item)
    alone, not of how many epochs this process has iterated: a fit resumed at epoch 3 in a
    new process sees epoch 3's batches (``tf.data``'s own ``reshuffle_each_iteration`` would
    replay epoch 1's). ``epoch`` None: a private counter that starts at 0 and advances by one
    per iteration (for callers outside ``fit``). ``augmentation``: instead of the papers'
    image augmentation, a function ``(example, seed) → example`` of the whole example (the
    landmark pipeline moves its keypoints with its image).
    """
    if epoch is None:
        epoch = tf.Variable(-1, dtype=tf.int64, trainable=False)
        current = lambda: epoch.assign_add(1)  # noqa: E731
    else:
        current = epoch.read_value
    indexed = tf.data.Dataset.zip((tf.data.Dataset.range(size), dataset))

    def one_epoch(_):
        # The order's seed is a tensor; TF's get_seed compares (graph seed, op seed) with (0, 0)
        # in Python, which fails for a tensor when the graph-level seed is 0 (tf.random.set_seed(0)).
        # The graph-level seed adds nothing here (the tensor carries seed and epoch), so unset it.
        tf.compat.v1.get_default_graph().seed = None
        key = epoch_seed(seed, current())
        order_seed = tf.random.stateless_uniform((), key, maxval=2**62, dtype=tf.int64)
        shuffled = indexed.shuffle(size, seed=order_seed, reshuffle_each_iteration=False)
        if not augment_images:
            return shuffled.map(lambda i, example: example)
        if augmentation is not None:
            return shuffled.map(
                lambda i, example: augmentation(example, tf.random.experimental.stateless_fold_in(key, i)),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        return shuffled.map(
            lambda i, example: (
                {**example[0], "image": augment(example[0]["image"], tf.random.experimental.stateless_fold_in(key, i))},
                example[1],
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    stream = tf.data.Dataset.range(1).flat_map(one_epoch)
    return stream.apply(tf.data.experimental.assert_cardinality(size))


def make_dataset(
    cohort: pd.DataFrame,
    covariates: np.ndarray | None = None,
    *,
    image_size: int | None,
    batch_size: int,
    training: bool,
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    seed: int = 0,
    intensity: str | Intensity = "minmax",
    cache: str = "memory",
    cache_file: str | Path | None = None,
    epoch: tf.Variable | None = None,
) -> tf.data.Dataset:
    """Batches of ``(inputs, label)`` for the rows of ``cohort``.

    Args:
        cohort: validated rows (``image``, ``label``, optional ROI columns).
        covariates: the (rows, dim) encoded matrix, or None for an image-only model.
        image_size: the model's input side in pixels, or None for a covariate-only model
            (no images are read).
        batch_size: rows per batch.
        training: shuffle each epoch and augment.
        normalization: the backbone's per-channel (mean, std) in [0, 255] units
            (``BackboneSpec.normalization``, :func:`osteo_tf.data.images.normalize_pixels`),
            or None (the network normalises itself).
        seed: the seed of the shuffle and augmentation.
        intensity: per-image normalisation (:func:`normalize_intensity`).
        cache: where decoded images are kept between epochs, ``"memory"``, ``"disk"`` (needs
            ``cache_file``, a path prefix such as ``run/cache/train``; the file is
            ``<cache_file>-<cache_key>``, see :func:`prepare_disk_cache`) or ``"none"``.
        cache_file: the disk cache's path prefix.
        epoch: training only, the int64 variable holding the epoch a new iteration is for
            (:func:`epoch_stream`: order and augmentation are a function of (seed, epoch, item)).

    Returns:
        A dataset of ``({"image": (batch, size, size, 3) float32, "covariates": (batch, dim)
        float32}, (batch, 1) float32 label)``, 1 = osteoporosis; only the inputs the model has.

    Raises:
        OsteoInputError: an unknown ``cache``, or ``cache="disk"`` without ``cache_file``.
    """
    check_cache(cache)
    reads_images = image_size is not None
    if cache == "disk" and reads_images and cache_file is None:
        raise OsteoInputError(
            "cache='disk' needs cache_file, the path prefix of the cache (e.g. run/cache/train)", parameter="cache_file"
        )
    labels = cohort["label"].to_numpy(dtype=np.float32)[:, None]
    columns: dict[str, tf.data.Dataset] = {}
    if reads_images:
        paths = tf.data.Dataset.from_tensor_slices((cohort["image"].astype(str).to_numpy(), rois_of(cohort)))
        images = paths.map(_decode_op(image_size, intensity), num_parallel_calls=tf.data.AUTOTUNE)
        if cache == "memory":
            images = images.cache()
        elif cache == "disk":
            key = cache_key(cohort, image_size, intensity)
            images = images.cache(prepare_disk_cache(cache_file, key, elements=len(cohort)))
        columns["image"] = images.map(lambda image: tf.repeat(image, 3, axis=-1))
    if covariates is not None:
        columns["covariates"] = tf.data.Dataset.from_tensor_slices(covariates.astype(np.float32))
    if not columns:
        raise ValueError("make_dataset needs images (image_size) or covariates")
    dataset = tf.data.Dataset.zip((columns, tf.data.Dataset.from_tensor_slices(labels)))
    if training:
        dataset = epoch_stream(dataset, len(cohort), seed, epoch, augment_images=reads_images)
    dataset = dataset.batch(batch_size)
    if reads_images and normalization is not None:
        dataset = dataset.map(
            lambda x, y: ({**x, "image": normalize_pixels(x["image"], normalization)}, y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
