"""The ROI landmark detector: a small U-Net that predicts one heatmap per keypoint, pure Keras 3.

Why a heatmap model and not keras-hub's object detectors (``RetinaNetObjectDetector``,
``DFineObjectDetector``): the papers define the ROI by anatomical landmarks (femoral head,
lesser trochanter; mental foramen), and a heatmap model predicts exactly those points, with
a confidence read off each heatmap, from a few dozen annotations; a box detector regresses
boxes from anchors/queries, needs far more boxes per image than the two ROIs a radiograph
holds, and its published presets are ImageNet/COCO-pretrained colour networks (not loadable
offline here). ``bench/roi_detectors.py`` measures both on the same phantom images and
annotation budget: on the 2-core CPU, hip, 100 annotated images, both from random
initialisation, this model put 100 % of 100 held-out boxes at IoU ≥ 0.75 (median 0.966) after
76 s; RetinaNet (7.4 M parameters, keras-hub's default losses and decoder) none at IoU ≥ 0.5
after 306 s (README, "Automatic ROI").

Network: input (H, W, 1) grayscale in [0, 1] (:func:`osteo_tf.data.landmark_pipeline.detector_input`);
encoder of four stages (two 3×3 conv + BN + ReLU each, 2× max-pool between; widths
``widths``), decoder back to stride 4 joining the encoder's stride-8 and stride-4 maps, a 1×1 conv to ``K`` heatmap
logits of shape (H/4, W/4, K). H and W must be multiples of 32.

Decoding (:class:`HeatmapDecoder`, used in inference and in the serving graph): a spatial
softmax per keypoint; the keypoint is the probability-weighted mean position within
:data:`DECODE_RADIUS` cells of the most probable cell (sub-cell precision without the bias
a whole-map mean has when some mass lies far away), in normalised coordinates (x / W, y / H)
of the input; its confidence is the probability mass within :data:`CONFIDENCE_RADIUS` cells
of that cell (1 = all the mass at the peak, ~0 = no idea where).

Training loss (:func:`heatmap_loss`): cross-entropy between each keypoint's spatial softmax
and a normalised Gaussian around the true position (σ = :data:`TARGET_SIGMA` cells).
"""

from __future__ import annotations

import keras
from keras import layers, ops

__all__ = [
    "CONFIDENCE_RADIUS",
    "DECODE_RADIUS",
    "STRIDE",
    "TARGET_SIGMA",
    "HeatmapDecoder",
    "build_landmark_detector",
    "heatmap_loss",
    "inference_model",
]

STRIDE = 4  # input pixels per heatmap cell
TARGET_SIGMA = 1.0  # cells
DECODE_RADIUS = 2.0  # cells
CONFIDENCE_RADIUS = 2.0  # cells


def _block(x, width: int, name: str):
    for i in range(2):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


def build_landmark_detector(
    num_keypoints: int, input_shape: tuple[int, int], *, widths: tuple[int, ...] = (8, 16, 32, 64)
) -> keras.Model:
    """The heatmap network (module docstring).

    Args:
        num_keypoints: K, heatmap channels.
        input_shape: (H, W) of the input in pixels, each a multiple of 32.
        widths: channels of the four encoder stages (strides 1, 2, 4, 8; a bottleneck at 16).

    Returns:
        A Keras model: (batch, H, W, 1) float32 → (batch, H/4, W/4, K) heatmap logits.
    """
    height, width = input_shape
    if height % 32 or width % 32 or len(widths) != 4:
        raise ValueError(f"input_shape must be multiples of 32 and widths four numbers, got {input_shape}, {widths}")
    inputs = keras.Input((height, width, 1), name="image")
    skips, x = [], inputs
    for stage, channels in enumerate(widths):
        x = _block(x, channels, f"down{stage}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    x = _block(x, widths[-1], "bottleneck")
    for stage in (3, 2):  # stride 16 → 8 → 4, joining the encoder's maps of those strides
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"up{stage}")(x)
        x = layers.Concatenate(name=f"skip{stage}")([x, skips[stage]])
        x = _block(x, widths[stage], f"dec{stage}")
    logits = layers.Conv2D(num_keypoints, 1, name="heatmaps")(x)
    return keras.Model(inputs, logits, name="landmark_detector")


@keras.saving.register_keras_serializable(package="osteo_tf")
def heatmap_loss(target, logits):
    """Cross-entropy between each keypoint's spatial softmax and its target distribution.

    Args:
        target: (batch, h, w, K) non-negative, each (h, w) map summing to 1.
        logits: (batch, h, w, K) heatmap logits.

    Returns:
        (batch,) mean over keypoints of the cross-entropy (nats).
    """
    shape = ops.shape(logits)
    flat_logits = ops.reshape(logits, (shape[0], -1, shape[3]))
    flat_target = ops.reshape(ops.cast(target, flat_logits.dtype), (shape[0], -1, shape[3]))
    log_p = flat_logits - ops.logsumexp(flat_logits, axis=1, keepdims=True)
    return ops.mean(-ops.sum(flat_target * log_p, axis=1), axis=-1)


@keras.saving.register_keras_serializable(package="osteo_tf")
class HeatmapDecoder(layers.Layer):
    """Heatmap logits (batch, h, w, K) → keypoints (batch, K, 2) in [0, 1] and confidence (batch, K)."""

    def call(self, logits):
        shape = ops.shape(logits)
        h, w, k = shape[1], shape[2], shape[3]
        flat = ops.reshape(logits, (shape[0], -1, k))
        p = ops.softmax(flat, axis=1)  # (batch, h*w, K)
        cells = ops.arange(h * w)
        gy = ops.cast(cells // w, "float32")
        gx = ops.cast(cells % w, "float32")
        peak = ops.argmax(p, axis=1)  # (batch, K)
        py = ops.cast(peak // w, "float32")[:, None, :]
        px = ops.cast(peak % w, "float32")[:, None, :]
        d2 = (gx[None, :, None] - px) ** 2 + (gy[None, :, None] - py) ** 2
        near = ops.cast(d2 <= DECODE_RADIUS**2, p.dtype) * p
        mass = ops.sum(near, axis=1) + 1e-12
        x = (ops.sum(near * gx[None, :, None], axis=1) / mass + 0.5) / ops.cast(w, "float32")
        y = (ops.sum(near * gy[None, :, None], axis=1) / mass + 0.5) / ops.cast(h, "float32")
        confidence = ops.sum(ops.cast(d2 <= CONFIDENCE_RADIUS**2, p.dtype) * p, axis=1)
        return ops.stack([x, y], axis=-1), confidence

    def compute_output_spec(self, logits):
        batch, k = logits.shape[0], logits.shape[3]
        return (keras.KerasTensor((batch, k, 2)), keras.KerasTensor((batch, k)))


def inference_model(detector: keras.Model) -> keras.Model:
    """``detector`` with :class:`HeatmapDecoder` on top: image → {"keypoints", "confidence"}."""
    keypoints, confidence = HeatmapDecoder(name="decode")(detector.output)
    return keras.Model(detector.input, {"keypoints": keypoints, "confidence": confidence}, name="landmark_inference")
