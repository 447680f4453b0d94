"""The serving graph: raw request values → the trained model → probability and label.

Two functions, both batched (a 1-D batch of instances, one value per input):

- :meth:`ServingGraph.serve` (the ``serving_default`` signature): ``image_bytes`` (encoded
  PNG / JPEG) and the covariates as they stand in the record. Decoding, grayscale handling,
  per-image min–max, resize (:func:`osteo_tf.data.pipeline.decode_gray` and
  :func:`~osteo_tf.data.pipeline.preprocess_gray`, the training pipeline's own code), the
  backbone's normalisation and the covariate encoding fitted at training time all run here.
- :meth:`ServingGraph.serve_tensors` (``serving_tensors``): the tensors ``model.keras``
  consumes — ``image`` (batch, size, size, 3) already normalised for the backbone and/or
  ``covariates`` (batch, dim) already encoded.

Outputs: ``probability`` (batch,) float32 and ``label`` (batch,) int64, 1 when
``probability >= threshold`` (the run's threshold, compared in float64 as the metrics do).

Bad requests fail with ``InvalidArgumentError`` whose message names the input and every bad
instance by its index in the batch (``instance 3``, counted from 0; TF Serving passes the text
on to REST clients): bytes that are not PNG/JPEG, or that do not decode (corrupt or truncated
data), an empty or unknown categorical code, a missing (NaN) or implausible numeric value;
and inputs of different batch lengths. Nothing is defaulted, except
that a run trained with ``--impute median`` fills its imputed covariates' missing values
(NaN / empty string) with the training fill and sets their missing indicators, as
:meth:`osteo_tf.data.covariates.CovariateEncoder.transform` does.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from osteo_tf.data.pipeline import decode_gray, is_png_or_jpeg, preprocess_gray
from osteo_tf.evaluation.calibration import PROBABILITY_CLIP
from osteo_tf.models import get_backbone_spec, normalize_images
from osteo_tf.serving.spec import IMAGE_INPUT, RANGES, ServingSpec

__all__ = ["ServingGraph", "recalibrated"]

_DTYPES = {"string": tf.string, "float32": tf.float32}
_LISTED = 20  # bad instances named in one message


class ServingGraph(tf.Module):
    """The trained Keras model wrapped with its preprocessing (see the module docstring)."""

    def __init__(self, model: keras.Model, spec: ServingSpec):
        super().__init__(name="osteo_serving")
        self.model, self.spec = model, spec
        self.tables = {
            name: _lookup_table(spec.accepted_codes(name), spec.encoder["categories"][name])
            for name in spec.categorical
        }

    # ------------------------------------------------------------------ signatures

    def raw_signature(self) -> dict[str, tf.TensorSpec]:
        return {name: tf.TensorSpec((None,), _DTYPES[dtype], name=name) for name, dtype in self.spec.inputs.items()}

    def tensor_signature(self) -> dict[str, tf.TensorSpec]:
        spec, size = self.spec, self.spec.image_size
        signature = (
            {"image": tf.TensorSpec((None, size, size, 3), tf.float32, name="image")} if spec.uses_images else {}
        )
        if spec.covariate_dim:
            signature["covariates"] = tf.TensorSpec((None, spec.covariate_dim), tf.float32, name="covariates")
        return signature

    # ------------------------------------------------------------------- functions

    def serve(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Raw inputs (:meth:`raw_signature`) → outputs."""
        with tf.control_dependencies([_same_batch_length(inputs)]):
            checks = [check for name, value in inputs.items() for check in self._checks(name, value)]
        with tf.control_dependencies(checks):
            model_inputs = {}
            if self.spec.uses_images:
                model_inputs["image"] = self.images(inputs[IMAGE_INPUT])
            if self.spec.covariate_dim:
                model_inputs["covariates"] = self.covariates(inputs)
            return self.serve_tensors(model_inputs)

    def serve_tensors(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The model's own input tensors (:meth:`tensor_signature`) → outputs."""
        probability = recalibrated(
            tf.cast(tf.reshape(self.model(inputs, training=False), (-1,)), tf.float64), self.spec.recalibration
        )
        above = probability >= tf.constant(self.spec.threshold, tf.float64)
        return {"probability": tf.cast(probability, tf.float32), "label": tf.cast(above, tf.int64)}

    def images(self, encoded: tf.Tensor) -> tf.Tensor:
        """(batch,) encoded images → (batch, size, size, 3) normalised for the backbone.

        Each instance is decoded on its own in a ``tf.data`` pipeline whose ``ignore_errors``
        drops the ones the decoder refuses, so that the refusal can name them: a graph has no
        other way to catch a decoder error, which would otherwise fail the whole batch.
        """
        size, intensity = self.spec.image_size, self.spec.intensity
        with tf.name_scope(f"{IMAGE_INPUT}_decode"):
            count = tf.shape(encoded, out_type=tf.int64)[0]
            decoded = (
                tf.data.Dataset.from_tensor_slices(encoded)
                .enumerate()
                .map(
                    lambda index, data: (index, preprocess_gray(decode_gray(data), size, intensity)),
                    num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True,
                )
                .ignore_errors()
            )
            # One sentinel element, so that the single batch exists even when nothing decoded.
            sentinel = tf.data.Dataset.from_tensors((tf.constant(-1, tf.int64), tf.zeros((size, size, 3))))
            kept, images = decoded.concatenate(sentinel).batch(count + 1).get_single_element()
            decodes = tf.reduce_any(tf.equal(tf.range(count)[:, None], kept[None, :-1]), axis=1)
            check = _assert(
                decodes,
                f"input {IMAGE_INPUT}: bytes that do not decode as an image (corrupt or truncated PNG/JPEG data) in ",
                _instances(~decodes),
            )
        with tf.control_dependencies([check]):
            return normalize_images(tf.identity(images[:-1]), get_backbone_spec(self.spec.backbone))

    def covariates(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        """Raw covariates → (batch, dim), exactly :meth:`osteo_tf.data.covariates.CovariateEncoder.transform`.

        An imputed covariate's missing value (NaN, or an empty string) takes the training fill
        value, and its missing indicator (1.0) is appended after the other features.
        """
        encoder, parts = self.spec.encoder, []
        missing = {name: self._missing(name, inputs[name]) for name in self.spec.imputed}
        for name in self.spec.numeric:
            stats = encoder["stats"][name]
            spread = stats["max"] - stats["min"] or 1.0
            values = tf.cast(inputs[name], tf.float64)
            if name in missing:
                values = tf.where(missing[name], tf.constant(float(encoder["fill"][name]), tf.float64), values)
            parts.append(tf.cast((values - stats["mean"]) / spread, tf.float32)[:, None])
        for name in self.spec.categorical:
            categories = encoder["categories"][name]
            index = self._category_index(name, inputs[name])
            if name in missing:
                index = tf.where(missing[name], tf.constant(categories.index(encoder["fill"][name]), tf.int64), index)
            parts.append(tf.one_hot(index, len(categories), dtype=tf.float32))
        parts += [tf.cast(missing[name], tf.float32)[:, None] for name in self.spec.imputed]
        return tf.concat(parts, axis=1)

    # ---------------------------------------------------------------------- checks

    def _checks(self, name: str, value: tf.Tensor) -> list[tf.Operation]:
        if name == IMAGE_INPUT:
            ok = is_png_or_jpeg(value)
            return [
                _assert(ok, f"input {name}: not a PNG or JPEG image (no PNG/JPEG file signature) in ", _instances(~ok))
            ]
        missing = self._missing(name, value)
        checks = (
            []
            if name in self.spec.imputed
            else [
                _assert(
                    ~missing,
                    f"input {name}: value missing ({'empty string' if value.dtype == tf.string else 'NaN'}) in ",
                    _instances(missing),
                )
            ]
        )
        if name in self.spec.categorical:
            unknown = tf.logical_and(~missing, self._category_index(name, value) < 0)
            accepted = sorted(self.spec.accepted_codes(name))
            return checks + [
                _assert(
                    ~unknown,
                    f"input {name}: unknown value in ",
                    _instances(unknown, value),
                    f"; accepted ({'any case' if self.spec.case_insensitive(name) else 'exactly'}): "
                    f"{', '.join(accepted)}",
                ),
            ]
        low, high = RANGES.get(name, (-np.inf, np.inf))
        bad = tf.logical_and(~missing, ~((value >= low) & (value <= high) & tf.math.is_finite(value)))
        return checks + [
            _assert(
                ~bad, f"input {name}: value outside the plausible range {low:g} to {high:g} in ", _instances(bad, value)
            ),
        ]

    @staticmethod
    def _missing(name: str, value: tf.Tensor) -> tf.Tensor:
        """A missing value: NaN for a number, an empty (or blank) string for a code."""
        if value.dtype == tf.string:
            return tf.equal(tf.strings.length(tf.strings.strip(value)), 0)
        return tf.math.is_nan(value)

    def _category_index(self, name: str, value: tf.Tensor) -> tf.Tensor:
        key = value
        if self.spec.case_insensitive(name):  # as the manifest reads them: stripped, any case
            key = tf.strings.lower(tf.strings.strip(value), encoding="utf-8")
        return self.tables[name].lookup(key)


def recalibrated(probability: tf.Tensor, recalibration: dict | None) -> tf.Tensor:
    """The run's recalibration (``osteo calibrate``) in core TF ops, as ``Recalibration.apply`` computes it.

    Args:
        probability: (batch,) float64 model outputs in [0, 1].
        recalibration: ``Recalibration.to_dict()`` or None (returned unchanged).

    Returns:
        (batch,) float64 recalibrated probabilities.
    """
    if recalibration is None:
        return probability
    method, parameters = recalibration["method"], recalibration["parameters"]
    if method in ("logistic", "temperature"):
        p = tf.clip_by_value(probability, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)
        z = tf.math.log(p) - tf.math.log1p(-p)
        if method == "logistic":
            z = parameters["intercept"] + parameters["slope"] * z
        else:
            z = z / parameters["temperature"]
        return tf.sigmoid(z)
    x = tf.constant(parameters["x"], tf.float64)
    y = tf.constant(parameters["y"], tf.float64)
    if len(parameters["x"]) == 1:
        return tf.fill(tf.shape(probability), y[0])
    upper = tf.clip_by_value(tf.searchsorted(x, probability, side="right"), 1, len(parameters["x"]) - 1)
    x0, x1, y0, y1 = (tf.gather(v, i) for v, i in ((x, upper - 1), (x, upper), (y, upper - 1), (y, upper)))
    inside = y0 + (probability - x0) / (x1 - x0) * (y1 - y0)  # np.interp: linear between knots,
    return tf.where(probability <= x[0], y[0], tf.where(probability >= x[-1], y[-1], inside))  # flat outside


def _lookup_table(codes: dict[str, str], categories: list[str]) -> tf.lookup.StaticHashTable:
    """Accepted raw code → index of its category in the one-hot layout; anything else → −1."""
    keys = tf.constant(list(codes), tf.string)
    values = tf.constant([categories.index(codes[k]) for k in codes], tf.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)


def _assert(condition: tf.Tensor, *parts: str | tf.Tensor) -> tf.Operation:
    """Fails unless all of ``condition``; the message is ``parts`` joined into one string."""
    return tf.debugging.Assert(tf.reduce_all(condition), [tf.strings.join(list(parts))])


def _instances(bad: tf.Tensor, values: tf.Tensor | None = None) -> tf.Tensor:
    """Scalar string naming where ``bad`` (batch,) holds: ``"instance 1 (X), instance 4 (Q)"``.

    With ``values`` (batch,), each instance's value follows in brackets (a string's first 40
    bytes). At most :data:`_LISTED` are named, then how many there are in all. Unquoted: the
    assertion message C-escapes quotes and non-ASCII bytes.
    """
    index = tf.where(bad)[:, 0]
    names = tf.strings.join(["instance ", tf.strings.as_string(index)])
    if values is not None:
        shown = tf.boolean_mask(values, bad)
        shown = (
            tf.strings.substr(shown, 0, 40) if shown.dtype == tf.string else tf.strings.as_string(shown, shortest=True)
        )
        names = tf.strings.join([names, " (", shown, ")"])
    text = tf.strings.reduce_join(names[:_LISTED], separator=", ")
    total = tf.size(index)
    return tf.cond(
        total > _LISTED,
        lambda: tf.strings.join([text, ", ... (", tf.strings.as_string(total), " instances in all)"]),
        lambda: text,
    )


def _same_batch_length(inputs: dict[str, tf.Tensor]) -> tf.Operation:
    names = list(inputs)
    lengths = [tf.shape(inputs[name])[0] for name in names]
    same = tf.reduce_all(tf.equal(tf.stack(lengths), lengths[0]))
    data = ["inputs have different batch lengths (one value per instance in each):"]
    for name, length in zip(names, lengths):
        data += [f"{name}=", length]
    return tf.debugging.Assert(same, data)
