"""Tests of osteo_tf.data.landmark_pipeline: keypoint-consistent augmentation, targets, batches."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy import ndimage

from osteo_tf.data.landmark_pipeline import (
    STRIDE,
    augment_keypoints,
    detector_input,
    heatmap_targets,
    landmark_dataset,
    swap_sides,
)

H, W = 64, 96
SEEDS = range(12)


def _dots(points: list[tuple[float, float]], sizes: list[int]) -> np.ndarray:
    """A black (H, W, 1) image with a bright square of ``size`` px centred on each normalised point.

    Each point must sit on a pixel corner (even size) or a pixel centre (odd size) so that the
    square's centroid is exactly the point."""
    image = np.zeros((H, W, 1), np.float32)
    for (x, y), size in zip(points, sizes):
        cx, cy = x * W, y * H
        x0, y0 = cx - size / 2, cy - size / 2
        assert x0 == int(x0) and y0 == int(y0)
        image[int(y0) : int(y0) + size, int(x0) : int(x0) + size] = 1.0
    return image


def _augment(image: np.ndarray, points, seed: int) -> tuple[np.ndarray, np.ndarray]:
    out, moved = augment_keypoints(tf.constant(image), tf.constant(points, tf.float32), tf.constant([seed, 3]))
    return out.numpy()[:, :, 0], moved.numpy()


def _blobs(image: np.ndarray) -> list[tuple[float, float, int]]:
    """(x, y, area) in pixel coordinates of each bright blob (> 0.5) of the warped image."""
    labels, count = ndimage.label(image > 0.5)
    out = []
    for index in range(1, count + 1):
        ys, xs = np.nonzero(labels == index)
        weights = image[ys, xs]
        out.append(
            (float(np.average(xs + 0.5, weights=weights)), float(np.average(ys + 0.5, weights=weights)), len(xs))
        )
    return out


def _brightest_near(image: np.ndarray, x: float, y: float, radius: float = 2.0) -> float:
    ys, xs = np.mgrid[0:H, 0:W]
    return float(image[np.hypot(xs + 0.5 - x, ys + 0.5 - y) <= radius].max())


def test_swap_sides():
    assert swap_sides(2) == [1, 0]
    assert swap_sides(4) == [2, 3, 0, 1]
    assert swap_sides(8) == [4, 5, 6, 7, 0, 1, 2, 3]


def test_augmented_keypoints_sit_on_their_dots():
    """Four keypoints (two per side): after each augmentation every keypoint is on a bright dot, at
    its centroid (sub-pixel), and the left-side keypoints stay in the image's left half."""
    points = [(16 / W, 16 / H), (32 / W, 48 / H), (64 / W, 20 / H), (80 / W, 44 / H)]
    image = _dots(points, [4, 4, 4, 4])
    for seed in SEEDS:
        warped, moved = _augment(image, points, seed)
        assert warped.shape == (H, W) and moved.shape == (4, 2)
        assert 0.0 <= warped.min() and warped.max() <= 1.0
        blobs = _blobs(warped)
        assert len(blobs) == 4, seed
        for k, (x, y) in enumerate(moved * (W, H)):
            assert _brightest_near(warped, x, y) > 0.5, (seed, k)
            nearest = min(np.hypot(bx - x, by - y) for bx, by, _ in blobs)
            assert nearest < 0.45, (seed, k, nearest)  # sub-pixel: a half-pixel slip fails
        assert (moved[:2, 0] < 0.5).all() and (moved[2:, 0] > 0.5).all(), seed


def test_flip_swaps_the_sides():
    """Two keypoints: index 0 (the left side) on a small dot high up in the image's left half, index 1
    on a large dot low in the right half. After a flip the image shows the large dot on the left;
    the keypoints are reordered, so index 0 (still the left side) is on the large dot — the mirror of
    the original index 1 — and index 1 on the small one."""
    points = [(24 / W, 16 / H), (72.5 / W, 48.5 / H)]
    image = _dots(points, [2, 5])
    flips = []
    for seed in SEEDS:
        warped, moved = _augment(image, points, seed)
        blobs = sorted(_blobs(warped), key=lambda blob: blob[2])  # small, large
        assert len(blobs) == 2, seed
        (small_x, small_y, _), (large_x, large_y, _) = blobs
        flipped = large_x < W / 2
        assert flipped == (small_x > W / 2), seed
        flips.append(flipped)
        (x0, y0), (x1, y1) = moved * (W, H)
        on_index0 = (large_x, large_y) if flipped else (small_x, small_y)
        on_index1 = (small_x, small_y) if flipped else (large_x, large_y)
        assert np.hypot(x0 - on_index0[0], y0 - on_index0[1]) < 0.45, (seed, flipped)
        assert np.hypot(x1 - on_index1[0], y1 - on_index1[1]) < 0.45, (seed, flipped)
        assert x0 < W / 2 < x1
        # heights survive the small rotation: index 0 is low (the large dot's row) exactly when flipped
        assert (y0 > H / 2) == flipped and (y1 > H / 2) != flipped
    assert any(flips) and not all(flips)  # both cases exercised


def test_keypoints_move_by_one_similarity_map():
    """Scale, rotation, shift and flip: every distance between keypoints scales by one factor in
    [0.9, 1.1] (after a flip, keypoint i is the original keypoint swap_sides(4)[i])."""
    points = [(16 / W, 16 / H), (32 / W, 48 / H), (64 / W, 20 / H), (80 / W, 44 / H)]
    original = np.array(points) * (W, H)
    for seed in SEEDS:
        _, moved = _augment(_dots(points, [4] * 4), points, seed)
        pixels = moved * (W, H)
        fits = []
        for source in (original, original[swap_sides(4)]):  # not flipped, flipped
            ratio = np.array(
                [
                    np.linalg.norm(pixels[i] - pixels[j]) / np.linalg.norm(source[i] - source[j])
                    for i in range(4)
                    for j in range(i + 1, 4)
                ]
            )
            fits.append((np.ptp(ratio), ratio.mean()))
        spread, factor = min(fits)
        assert spread < 1e-4 and 0.9 - 1e-4 <= factor <= 1.1 + 1e-4, (seed, fits)


def test_same_seed_same_output():
    points = [(16 / W, 16 / H), (72.5 / W, 48.5 / H)]
    image = _dots(points, [4, 5]) * 0.5 + np.linspace(0, 0.5, W, dtype=np.float32)[None, :, None]
    a_image, a_points = _augment(image, points, 5)
    b_image, b_points = _augment(image, points, 5)
    np.testing.assert_array_equal(a_image, b_image)
    np.testing.assert_array_equal(a_points, b_points)
    c_image, c_points = _augment(image, points, 6)
    assert not np.array_equal(a_points, c_points) and not np.array_equal(a_image, c_image)


# --------------------------------------------------------------------------- targets and input


def test_heatmap_targets_sum_to_one_and_peak_at_the_keypoint():
    grid = (16, 24)
    cells = [(3, 5), (8, 12), (0, 0), (15, 23)]  # (row, col), corners included
    offsets = [(0.5, 0.5), (0.3, 0.7), (0.5, 0.5), (0.5, 0.5)]
    points = np.array([((c + oc) / grid[1], (r + orow) / grid[0]) for (r, c), (orow, oc) in zip(cells, offsets)])
    target = heatmap_targets(tf.constant(points, tf.float32), grid).numpy()
    assert target.shape == (16, 24, 4)
    assert (target >= 0).all()
    np.testing.assert_allclose(target.sum(axis=(0, 1)), 1.0, rtol=1e-5)
    for k, (r, c) in enumerate(cells):
        assert np.unravel_index(np.argmax(target[:, :, k]), grid) == (r, c)
    # interior keypoints: the distribution's mean is the keypoint (cell units, centres at i + 0.5)
    gy, gx = np.mgrid[0 : grid[0], 0 : grid[1]] + 0.5
    for k in (0, 1):
        mean = (np.sum(target[:, :, k] * gx), np.sum(target[:, :, k] * gy))
        np.testing.assert_allclose(mean, points[k] * (grid[1], grid[0]), atol=1e-3)
    # σ = 1 cell: the peak cell to its 4-neighbour ratio is exp(1/2) for a centred keypoint
    t0 = target[:, :, 0]
    np.testing.assert_allclose(t0[3, 5] / t0[3, 6], np.exp(0.5), rtol=1e-4)
    np.testing.assert_allclose(t0[3, 5] / t0[4, 5], np.exp(0.5), rtol=1e-4)


def test_detector_input_range_and_shape():
    pixels = np.full((50, 70), 1000.0, np.float32)
    pixels[:, 35:] = 3000.0
    pixels[10:20, 10:20] = 1500.0
    out = detector_input(tf.constant(pixels), (32, 48)).numpy()
    assert out.shape == (32, 48, 1) and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out[:, -5:], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[-5:, :5], 0.0, atol=1e-6)
    inner = out[8:12, 8:12, 0]  # the 1500 square → 0.25 after min–max
    np.testing.assert_allclose(inner, 0.25, atol=1e-3)


def test_detector_input_constant_image_is_zero():
    out = detector_input(tf.constant(np.full((20, 30), 7.0, np.float32)), (32, 32)).numpy()
    assert out.shape == (32, 32, 1) and (out == 0).all()


# --------------------------------------------------------------------------- dataset


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("landmark_pngs")
    rng = np.random.default_rng(0)
    paths, points = [], []
    for i in range(6):
        pixels = rng.integers(0, 256, (40, 56), dtype=np.uint8)
        path = root / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
        points.append(rng.uniform(0.2, 0.8, (2, 2)))
    return paths, np.array(points, np.float32)


def _batches(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def _training(paths, points, epoch_value: int):
    epoch = tf.Variable(epoch_value, dtype=tf.int64, trainable=False)
    return landmark_dataset(paths, points, input_hw=(32, 32), batch_size=4, training=True, seed=11, epoch=epoch)


def test_dataset_same_seed_and_epoch_same_batches(tiny_images):
    paths, points = tiny_images
    first = _batches(_training(paths, points, 2))
    second = _batches(_training(paths, points, 2))
    assert [x.shape for x, _ in first] == [(4, 32, 32, 1), (2, 32, 32, 1)]
    assert [y.shape for _, y in first] == [(4, 8, 8, 2), (2, 8, 8, 2)]
    for (x1, y1), (x2, y2) in zip(first, second):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    other = _batches(_training(paths, points, 3))
    assert not all(np.array_equal(x1, x2) for (x1, _), (x2, _) in zip(first, other))
    assert not all(np.array_equal(y1, y2) for (_, y1), (_, y2) in zip(first, other))
    for _, y in first + other:
        np.testing.assert_allclose(y.sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_dataset_epoch_variable_is_read_per_iteration(tiny_images):
    paths, points = tiny_images
    epoch = tf.Variable(2, dtype=tf.int64, trainable=False)
    dataset = landmark_dataset(paths, points, input_hw=(32, 32), batch_size=4, training=True, seed=11, epoch=epoch)
    at_two = _batches(dataset)
    epoch.assign(3)
    at_three = _batches(dataset)
    for (x1, y1), (x2, y2) in zip(at_three, _batches(_training(paths, points, 3))):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert not all(np.array_equal(x1, x2) for (x1, _), (x2, _) in zip(at_two, at_three))


def test_dataset_inference_keeps_order_and_targets(tiny_images):
    paths, points = tiny_images
    dataset = landmark_dataset(paths, points, input_hw=(32, 32), batch_size=4, training=False)
    images = np.concatenate([x for x, _ in _batches(dataset)])
    targets = np.concatenate([y for _, y in _batches(dataset)])
    for i, path in enumerate(paths):
        pixels = np.asarray(Image.open(path), np.float32)
        np.testing.assert_allclose(images[i], detector_input(tf.constant(pixels), (32, 32)).numpy(), atol=1e-6)
        expected = heatmap_targets(tf.constant(points[i]), (32 // STRIDE, 32 // STRIDE)).numpy()
        np.testing.assert_allclose(targets[i], expected, atol=1e-6)
    only_images = landmark_dataset(paths, None, input_hw=(32, 32), batch_size=4, training=False)
    np.testing.assert_allclose(np.concatenate([x.numpy() for x in only_images]), images, atol=1e-6)
