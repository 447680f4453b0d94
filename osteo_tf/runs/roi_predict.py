"""Running a trained ROI detector: whole images → keypoints, confidences and the ROI box of each row's side.

Shared by ``osteo roi train`` (its validation figures), ``osteo roi detect``, ``osteo roi
evaluate`` and the experiment that compares detected with hand crops.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from osteo_tf.data.landmark_pipeline import landmark_dataset
from osteo_tf.data.landmarks import clip_box, roi_from_keypoints, side_keypoints
from osteo_tf.models.landmarks import HeatmapDecoder, heatmap_loss, inference_model
from osteo_tf.runs.roi_run import RoiRun, RoiSettings
from osteo_tf.runs.run_dir import load_keras_model

__all__ = ["Detections", "detect_boxes", "load_detector", "predict_keypoints", "reference_boxes"]


@dataclass(frozen=True)
class Detections:
    """What the detector found on N images.

    Attributes:
        keypoints: (N, K, 2) pixels of each whole image.
        keypoint_confidence: (N, K) in [0, 1].
        boxes: (N, 4) int, the ROI (x, y, w, h) of each row's side, clipped into the image.
        confidence: (N,) the lowest confidence among the side's keypoints.
        inside: (N,) bool, False where the rule's box reached outside the image (clipped).
    """

    keypoints: np.ndarray
    keypoint_confidence: np.ndarray
    boxes: np.ndarray
    confidence: np.ndarray
    inside: np.ndarray


def load_detector(run: str | Path | RoiRun) -> tuple[keras.Model, RoiSettings]:
    """The finished run's detector with its decoder on top, and the run's settings."""
    run = run if isinstance(run, RoiRun) else RoiRun(run)
    settings = run.settings()
    network = load_keras_model(
        Path(run.model), custom_objects={"heatmap_loss": heatmap_loss, "HeatmapDecoder": HeatmapDecoder}
    )
    return inference_model(network), settings


def predict_keypoints(
    model: keras.Model, settings: RoiSettings, paths: list[str], *, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised keypoints (N, K, 2) (x / width, y / height) and their confidence (N, K)."""
    data = landmark_dataset(paths, None, input_hw=settings.input_hw, batch_size=batch_size, training=False)
    points, confidence = [], []
    for images in data:
        out = model(images, training=False)
        points.append(keras.ops.convert_to_numpy(out["keypoints"]))
        confidence.append(keras.ops.convert_to_numpy(out["confidence"]))
    return np.concatenate(points).astype(np.float64), np.concatenate(confidence).astype(np.float64)


def detect_boxes(
    settings: RoiSettings, keypoints: np.ndarray, confidence: np.ndarray, sizes: np.ndarray, sides: list[str]
) -> Detections:
    """Each row's ROI by the kind's rule from its side's keypoints.

    Args:
        settings: the run's settings (kind, target, dental box).
        keypoints: (N, K, 2) normalised, from :func:`predict_keypoints`.
        confidence: (N, K).
        sizes: (N, 2) (width, height) of each whole image in pixels.
        sides: each row's side.

    Returns:
        The :class:`Detections`.
    """
    pixels = keypoints * sizes[:, None, :].astype(np.float64)
    boxes, inside, lowest = [], [], []
    for points, conf, (width, height), side in zip(pixels, confidence, sizes, sides):
        box = roi_from_keypoints(
            settings.kind, points, side, float(width), target=settings.target, dental_box=settings.dental_box
        )
        whole, fits = clip_box(box, (int(width), int(height)))
        boxes.append(whole)
        inside.append(fits)
        lowest.append(float(conf[side_keypoints(settings.kind, side, settings.target)].min()))
    return Detections(pixels, confidence, np.asarray(boxes, np.int64), np.asarray(lowest), np.asarray(inside))


def reference_boxes(settings: RoiSettings, keypoints: np.ndarray, sides: list[str], sizes: np.ndarray) -> np.ndarray:
    """(N, 4) int: the ROI boxes the annotated ``keypoints`` (N, K, 2) pixels give by the run's rule."""
    return np.asarray(
        [
            clip_box(
                roi_from_keypoints(
                    settings.kind, p, s, float(w), target=settings.target, dental_box=settings.dental_box
                ),
                (int(w), int(h)),
            )[0]
            for p, s, (w, h) in zip(keypoints, sides, sizes)
        ],
        dtype=np.int64,
    ).reshape(-1, 4)
