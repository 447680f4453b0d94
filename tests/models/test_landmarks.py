"""Tests of osteo_tf.models.landmarks: the heatmap detector, its decoder and loss."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from osteo_tf.data import landmark_pipeline
from osteo_tf.models.landmarks import (
    CONFIDENCE_RADIUS,
    DECODE_RADIUS,
    STRIDE,
    TARGET_SIGMA,
    HeatmapDecoder,
    build_landmark_detector,
    heatmap_loss,
    inference_model,
)


@pytest.fixture(scope="module")
def detector():
    keras.utils.set_random_seed(0)
    return build_landmark_detector(3, (64, 96))


def _decode(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keypoints, confidence = HeatmapDecoder()(keras.ops.convert_to_tensor(logits.astype(np.float32)))
    return keras.ops.convert_to_numpy(keypoints), keras.ops.convert_to_numpy(confidence)


def _cells_within(radius: float, row: int, col: int, h: int, w: int) -> int:
    gy, gx = np.mgrid[0:h, 0:w]
    return int(np.sum((gy - row) ** 2 + (gx - col) ** 2 <= radius**2))


def test_constants_match_the_pipeline():
    assert STRIDE == landmark_pipeline.STRIDE == 4
    assert TARGET_SIGMA == landmark_pipeline.TARGET_SIGMA
    assert DECODE_RADIUS == CONFIDENCE_RADIUS == 2.0


# --------------------------------------------------------------------------- network


def test_output_shape(detector):
    x = np.random.default_rng(0).uniform(0, 1, (2, 64, 96, 1)).astype(np.float32)
    out = keras.ops.convert_to_numpy(detector(x, training=False))
    assert out.shape == (2, 64 // STRIDE, 96 // STRIDE, 3)
    assert tuple(detector.output.shape) == (None, 16, 24, 3)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("shape", [(64, 80), (48, 96), (65, 96)])
def test_input_not_multiple_of_32_raises(shape):
    with pytest.raises(ValueError, match="multiples of 32"):
        build_landmark_detector(2, shape)


def test_widths_must_be_four():
    with pytest.raises(ValueError, match="widths"):
        build_landmark_detector(2, (64, 64), widths=(8, 16, 32))


def test_save_and_load_identical(detector, tmp_path):
    x = np.random.default_rng(1).uniform(0, 1, (2, 64, 96, 1)).astype(np.float32)
    path = tmp_path / "d.keras"
    detector.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x, training=False)), keras.ops.convert_to_numpy(detector(x, training=False))
    )


def test_inference_model_save_and_load(detector, tmp_path):
    model = inference_model(detector)
    x = np.random.default_rng(2).uniform(0, 1, (1, 64, 96, 1)).astype(np.float32)
    before = {k: keras.ops.convert_to_numpy(v) for k, v in model(x).items()}
    assert before["keypoints"].shape == (1, 3, 2) and before["confidence"].shape == (1, 3)
    assert ((before["keypoints"] >= 0) & (before["keypoints"] <= 1)).all()
    model.save(tmp_path / "i.keras")
    loaded = keras.saving.load_model(tmp_path / "i.keras", compile=False)
    after = {k: keras.ops.convert_to_numpy(v) for k, v in loaded(x).items()}
    for key in ("keypoints", "confidence"):
        np.testing.assert_array_equal(after[key], before[key])


# --------------------------------------------------------------------------- decoder


def test_sharp_peak_decodes_to_the_cell_centre():
    h, w = 16, 24
    peaks = [(3, 5), (0, 0), (15, 23), (8, 12)]
    logits = np.zeros((2, h, w, len(peaks)))
    for k, (r, c) in enumerate(peaks):
        logits[0, r, c, k] = 60.0
        logits[1, h - 1 - r, w - 1 - c, k] = 60.0
    keypoints, confidence = _decode(logits)
    assert keypoints.shape == (2, 4, 2) and confidence.shape == (2, 4)
    for k, (r, c) in enumerate(peaks):
        np.testing.assert_allclose(keypoints[0, k], ((c + 0.5) / w, (r + 0.5) / h), atol=1e-6)
        np.testing.assert_allclose(keypoints[1, k], ((w - 0.5 - c) / w, (h - 0.5 - r) / h), atol=1e-6)
    np.testing.assert_allclose(confidence, 1.0, atol=1e-5)


def test_peak_split_between_two_cells_decodes_to_the_midpoint():
    h, w = 8, 12
    logits = np.zeros((1, h, w, 2))
    logits[0, 3, 4, 0] = logits[0, 3, 5, 0] = 40.0  # horizontal neighbours
    logits[0, 2, 7, 1] = logits[0, 3, 7, 1] = 40.0  # vertical neighbours
    keypoints, confidence = _decode(logits)
    np.testing.assert_allclose(keypoints[0, 0], (5.0 / w, 3.5 / h), atol=1e-6)
    np.testing.assert_allclose(keypoints[0, 1], (7.5 / w, 3.0 / h), atol=1e-6)
    np.testing.assert_allclose(confidence, 1.0, atol=1e-5)


def test_subcell_position_from_unequal_neighbours():
    """Mass 3:1 on two neighbouring cells → a quarter of the way from the heavier one."""
    h, w = 8, 8
    logits = np.full((1, h, w, 1), -60.0)
    logits[0, 4, 2, 0] = np.log(3.0)
    logits[0, 4, 3, 0] = 0.0
    keypoints, _ = _decode(logits)
    np.testing.assert_allclose(keypoints[0, 0], ((2.25 + 0.5) / w, 4.5 / h), atol=1e-6)


def test_far_mass_does_not_bias_the_position():
    """Mass beyond DECODE_RADIUS of the peak is ignored for the position but lowers the confidence."""
    h, w = 16, 16
    logits = np.full((1, h, w, 1), -60.0)
    logits[0, 4, 4, 0] = np.log(0.7)
    logits[0, 12, 12, 0] = np.log(0.3)
    keypoints, confidence = _decode(logits)
    np.testing.assert_allclose(keypoints[0, 0], (4.5 / w, 4.5 / h), atol=1e-6)
    np.testing.assert_allclose(confidence[0, 0], 0.7, atol=1e-5)


def test_uniform_logits_low_confidence():
    h, w = 16, 24
    _, confidence = _decode(np.zeros((1, h, w, 2)))
    # the peak is one of the tied cells: the confidence is (cells within 2 of it) / (h w)
    cells = confidence[0] * h * w
    np.testing.assert_allclose(cells, np.round(cells), atol=1e-3)
    assert (cells >= _cells_within(2.0, 0, 0, h, w)).all()  # 6: a corner cell
    assert (cells <= _cells_within(2.0, 8, 12, h, w)).all()  # 13: an interior cell
    assert (confidence < 0.05).all()


# --------------------------------------------------------------------------- loss


def _numpy_loss(target: np.ndarray, logits: np.ndarray) -> np.ndarray:
    b, h, w, k = logits.shape
    flat = logits.reshape(b, h * w, k).astype(np.float64)
    log_p = flat - flat.max(axis=1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    return (-(target.reshape(b, h * w, k) * log_p).sum(axis=1)).mean(axis=-1)


def _target(rng: np.random.Generator, shape) -> np.ndarray:
    b, h, w, k = shape
    t = rng.gamma(1.0, size=(b, h * w, k))
    return (t / t.sum(axis=1, keepdims=True)).reshape(shape)


def test_heatmap_loss_equals_numpy_cross_entropy():
    rng = np.random.default_rng(0)
    shape = (3, 4, 6, 2)
    target, logits = _target(rng, shape), rng.normal(0, 2, shape)
    loss = keras.ops.convert_to_numpy(heatmap_loss(target.astype(np.float32), logits.astype(np.float32)))
    assert loss.shape == (3,)
    np.testing.assert_allclose(loss, _numpy_loss(target, logits), rtol=1e-5)
    shifted = keras.ops.convert_to_numpy(heatmap_loss(target.astype(np.float32), (logits + 7.0).astype(np.float32)))
    np.testing.assert_allclose(shifted, loss, rtol=1e-5)  # invariant to a constant per map


def test_heatmap_loss_minimal_at_log_target():
    rng = np.random.default_rng(1)
    shape = (2, 4, 6, 2)
    target = _target(rng, shape)
    best = keras.ops.convert_to_numpy(heatmap_loss(target, np.log(target)))
    entropy = -(target * np.log(target)).sum(axis=(1, 2)).mean(axis=-1)
    np.testing.assert_allclose(best, entropy, rtol=1e-5)
    for _ in range(5):
        worse = keras.ops.convert_to_numpy(heatmap_loss(target, np.log(target) + rng.normal(0, 0.5, shape)))
        assert (worse > best).all()
