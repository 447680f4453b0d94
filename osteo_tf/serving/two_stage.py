"""The two-stage serving graph: a whole radiograph → ROI detector → the paper's crop → the classifier.

``osteo export --run RUN --roi-run ROI_RUN`` wraps both models in one SavedModel whose
``serving_default`` takes the whole radiograph (``image_bytes``, PNG / JPEG), the ``side``
whose ROI is used (``left`` / ``right``, the patient's: hip the DXA side, dental the paper's
left) and the classifier's covariates, and returns ``probability``, ``label``, ``roi`` (the box
used, (batch, 4) int64 (x, y, w, h) in pixels of the whole image) and ``roi_confidence``
(batch,) — the same lowest-keypoint confidence ``osteo roi detect`` flags on; a client should
treat a request whose confidence is below the model card's ``roi.confidence_threshold`` as
one for a person to check.

Per instance: decode (:func:`osteo_tf.data.pipeline.decode_gray`), the detector's input
(:func:`osteo_tf.data.landmark_pipeline.detector_input`), the detector and its decoder, the
box by the kind's rule (:meth:`RoiServingGraph.boxes`, the TensorFlow twin of
:func:`osteo_tf.data.landmarks.roi_from_keypoints` and :func:`~osteo_tf.data.landmarks.clip_box`,
tested against them), the crop of the decoded pixels, then the classifier's own preprocessing
(:func:`osteo_tf.data.pipeline.preprocess_gray`) — exactly what ``osteo roi detect`` followed by
``osteo predict`` computes. Core TensorFlow ops only (decode, resize, conv, slice), so TF
Serving runs it as it is.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from osteo_tf.data.landmark_pipeline import detector_input
from osteo_tf.data.landmarks import SIDES
from osteo_tf.data.pipeline import decode_gray, preprocess_gray
from osteo_tf.models import get_backbone_spec, normalize_images
from osteo_tf.runs.roi_run import RoiSettings
from osteo_tf.serving.signature import ServingGraph, _assert, _instances, _same_batch_length
from osteo_tf.serving.spec import IMAGE_INPUT, ServingSpec

__all__ = ["SIDE_INPUT", "RoiServingGraph"]

SIDE_INPUT = "side"


class RoiServingGraph(ServingGraph):
    """:class:`~osteo_tf.serving.signature.ServingGraph` with the ROI detector in front (module docstring)."""

    def __init__(self, model: keras.Model, spec: ServingSpec, detector: keras.Model, roi: RoiSettings):
        super().__init__(model, spec)
        self.detector, self.roi = detector, roi

    def raw_signature(self) -> dict[str, tf.TensorSpec]:
        return {**super().raw_signature(), SIDE_INPUT: tf.TensorSpec((None,), tf.string, name=SIDE_INPUT)}

    def serve(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Raw inputs with the whole image and the side → probability, label, roi, roi_confidence."""
        with tf.control_dependencies([_same_batch_length(inputs)]):
            side = tf.strings.lower(tf.strings.strip(inputs[SIDE_INPUT]))
            right = tf.equal(side, "right")
            known = tf.logical_or(right, tf.equal(side, "left"))
            checks = [_assert(known, f"input {SIDE_INPUT}: not one of {', '.join(SIDES)} in ", _instances(~known))]
            checks += [c for name, value in inputs.items() if name != SIDE_INPUT for c in self._checks(name, value)]
        with tf.control_dependencies(checks):
            roi, confidence, crops = self.crops(inputs[IMAGE_INPUT], right)
            model_inputs = {"image": crops}
            if self.spec.covariate_dim:
                model_inputs["covariates"] = self.covariates(inputs)
            out = self.serve_tensors(model_inputs)
        return {**out, "roi": tf.cast(roi, tf.int64), "roi_confidence": confidence}

    def crops(self, encoded: tf.Tensor, right: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(batch,) whole images → the ROI boxes (batch, 4), their confidence (batch,) and the
        classifier's input (batch, size, size, 3), normalised for the backbone."""
        checked = self.images(encoded)  # decodes every instance; a refusal names the bad ones
        count = tf.shape(encoded, out_type=tf.int64)[0]
        input_hw = self.roi.input_hw
        with tf.control_dependencies([checked]):
            whole = tf.data.Dataset.from_tensor_slices(encoded).map(
                lambda data: (detector_input(decode_gray(data), input_hw), _width_height(decode_gray(data))),
            )
            detector_images, sizes = whole.batch(count).get_single_element()
        out = self.detector(detector_images, training=False)
        roi, confidence = self.boxes(out["keypoints"], out["confidence"], tf.cast(sizes, tf.float32), right)
        size, intensity = self.spec.image_size, self.spec.intensity

        def crop(data: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
            pixels = tf.slice(decode_gray(data), tf.stack([box[1], box[0]]), tf.stack([box[3], box[2]]))
            return preprocess_gray(pixels, size, intensity)

        cropped = tf.data.Dataset.from_tensor_slices((encoded, roi)).map(crop)
        images = cropped.batch(count).get_single_element()
        return roi, confidence, normalize_images(images, get_backbone_spec(self.spec.backbone))

    def boxes(
        self, keypoints: tf.Tensor, confidence: tf.Tensor, sizes: tf.Tensor, right: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """The kind's box rule in TensorFlow.

        Args:
            keypoints: (batch, K, 2) normalised (x / width, y / height).
            confidence: (batch, K).
            sizes: (batch, 2) float (width, height) in pixels.
            right: (batch,) bool, the right side's box.

        Returns:
            ``(boxes, confidence)``: (batch, 4) int32 whole-pixel (x, y, w, h) clipped into the
            image (as :func:`osteo_tf.data.landmarks.clip_box`), and (batch,) the side's lowest
            keypoint confidence.
        """
        batch = tf.shape(keypoints)[0]
        half = len(self.roi.keypoints) // len(SIDES)
        pixels = keypoints * sizes[:, None, :]
        index = tf.cast(right, tf.int32)
        points = tf.gather(tf.reshape(pixels, (batch, len(SIDES), half, 2)), index, axis=1, batch_dims=1)
        side_confidence = tf.gather(tf.reshape(confidence, (batch, len(SIDES), half)), index, axis=1, batch_dims=1)
        width, height = sizes[:, 0], sizes[:, 1]
        if self.roi.target == "box":
            x0, y0 = points[:, 0, 0], points[:, 0, 1]
            w, h = points[:, 1, 0] - x0, points[:, 1, 1] - y0
        elif self.roi.kind == "hip":
            head, trochanter, shaft = points[:, 0], points[:, 1], points[:, 2]
            h = trochanter[:, 1] - head[:, 1]
            w, y0 = h, head[:, 1]
            x0 = (head[:, 0] + shaft[:, 0]) / 2.0 - h / 2.0
        else:
            w, h = self.roi.dental_box[0] * width, self.roi.dental_box[1] * width
            x0, y0 = points[:, 0, 0] - w / 2.0, points[:, 0, 1]
        left = tf.clip_by_value(tf.round(x0), 0.0, width - 1.0)
        top = tf.clip_by_value(tf.round(y0), 0.0, height - 1.0)
        right_edge = tf.clip_by_value(tf.round(x0 + w), left + 1.0, width)
        bottom = tf.clip_by_value(tf.round(y0 + h), top + 1.0, height)
        degenerate = tf.logical_or(w < 1.0, h < 1.0)
        boxes = tf.stack([left, top, right_edge - left, bottom - top], axis=1)
        whole = tf.stack([tf.zeros_like(width), tf.zeros_like(width), width, height], axis=1)
        boxes = tf.where(degenerate[:, None], whole, boxes)
        return tf.cast(boxes, tf.int32), tf.reduce_min(side_confidence, axis=1)


def _width_height(pixels: tf.Tensor) -> tf.Tensor:
    """(2,) int32 (width, height) of an (h, w) image."""
    shape = tf.shape(pixels)
    return tf.stack([shape[1], shape[0]])
