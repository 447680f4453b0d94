"""Grad-CAM, Grad-CAM++ and Guided Grad-CAM for the study models (image-only and ensemble).

``gradcam(model, image, covariates=None, method=...)`` returns one heat map at the input
resolution in [0, 1]; :class:`Explainer` computes all three maps of a batch at once and is
what the figures and ``osteo explain`` use.

What is computed, and how:

- **Target.** The model's one output, the osteoporosis probability. Gradients are taken of
  its *logit* (the sigmoid removed with tf-keras-vis' ``ReplaceToLinear`` on a clone), the
  pre-activation score the Grad-CAM paper uses. For Grad-CAM this gives the same map as the
  probability (d p = p (1 − p) d logit, a positive factor per image that the normalisation
  removes) without vanishing for saturated predictions; Grad-CAM++'s formula assumes
  exp(score) with score the logit. ``target="non_osteoporosis"`` uses −logit,
  ``"predicted"`` the predicted class's (|logit|).
- **Covariates** (ensemble) are the patient's own, fed unchanged; only the image path is
  differentiated, so the map answers "where in *this* image, given *these* covariates".
- **Grad-CAM / Grad-CAM++**: tf-keras-vis' ``Gradcam`` / ``GradcamPlusPlus`` on the
  registry's ``feature_layer`` (last feature map), with ``expand_cam=False`` (its own
  upsampling assumes one input) and ``seek_penultimate_conv_layer=False`` (the feature layer
  is an activation / concatenation, not a Conv). The map, ReLU'd, is upsampled bilinearly
  to the input size and divided by its maximum: [0, 1], 0 where there is no positive
  evidence (an all-zero map stays zero).
- **Guided backpropagation**: tf-keras-vis' ``Saliency`` (signed gradients, no
  normalisation) on a clone modified by :class:`~osteo_tf.explain.guided.GuidedBackprop`.
  The gradient reaches the normalised 3-channel input; it is carried back to the grayscale
  [0, 255] pixel by the chain rule through the backbone's normalisation and the channel
  repetition (Σ_c g_c / std_c), then its magnitude is taken.
- **Guided Grad-CAM** = |guided backprop| × upsampled Grad-CAM (or Grad-CAM++), divided by
  its maximum.

tf-keras-vis works on these models because they are built flat (the backbone's layers are the
model's own, never a nested model; :mod:`osteo_tf.models.backbones`): the feature layer is a
layer of the model itself. Pure TensorFlow is fine here; the model
code stays pure Keras.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.saliency import Saliency
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

from osteo_tf.errors import OsteoInputError
from osteo_tf.explain.guided import GuidedBackprop
from osteo_tf.models.backbones import REGISTRY, BackboneSpec, get_backbone_spec, normalize_images
from osteo_tf.vocabulary import CAM_METHODS, CAM_TARGETS

__all__ = ["CAM_METHODS", "METHODS", "TARGETS", "backbone_of", "Explainer", "explainer_for", "Explanation", "gradcam"]

METHODS = (*CAM_METHODS, "guided_gradcam")
TARGETS = CAM_TARGETS


@dataclass(frozen=True)
class Explanation:
    """Maps of a batch, each (n, h, w) float32 in [0, 1] at the input resolution.

    probability: (n,) the model's osteoporosis probability. cam: Grad-CAM or Grad-CAM++
    (``cam_method``). guided: |guided backpropagation|. guided_gradcam: guided × cam.
    """

    probability: np.ndarray
    cam: np.ndarray
    guided: np.ndarray
    guided_gradcam: np.ndarray
    cam_method: str

    def map(self, method: str) -> np.ndarray:
        """The (n, h, w) map of ``method`` ("gradcam"/"gradcam++" → cam, "guided_gradcam")."""
        return self.guided_gradcam if method == "guided_gradcam" else self.cam


class Explainer:
    """Grad-CAM family for one study model; build once, explain many images.

    model: a model from :func:`osteo_tf.models.build_model` (or loaded from a run) that takes
    images. backbone: its registry name; None → read from the model's name
    (``build_model`` names it ``<backbone>_<mode>``). layer: the feature map to explain;
    None → the registry's ``feature_layer``. Two clones of the model are made (linear
    output; linear output + guided gradients), taking a list of inputs in ``model.inputs``
    order; the model itself is not changed.
    """

    def __init__(self, model: keras.Model, backbone: str | None = None, layer: str | None = None) -> None:
        names = {t.name for t in model.inputs}
        if "image" not in names:
            raise OsteoInputError(
                f"model {model.name} takes no image (inputs {sorted(names)}); "
                "Grad-CAM needs an image-only or ensemble model"
            )
        self.model = model
        self.spec: BackboneSpec = get_backbone_spec(backbone or backbone_of(model))
        self.layer = layer or self.spec.feature_layer
        try:
            model.get_layer(self.layer)
        except ValueError:
            raise OsteoInputError(
                f"model {model.name} has no layer '{self.layer}'; is it a {self.spec.name} "
                "model built flat by build_model?"
            ) from None
        self.covariate_dim = next((t.shape[-1] for t in model.inputs if t.name == "covariates"), None)
        # The same layers, taking a list in ``model.inputs`` order: tf-keras-vis calls its
        # models with a list, which a dict-input Keras 3 model refuses.
        listed = keras.Model(inputs=list(model.inputs), outputs=list(model.outputs), name=model.name)
        linear = keras.models.clone_model(listed)
        linear.set_weights(listed.get_weights())
        ReplaceToLinear()(linear)
        self._cams = {"gradcam": Gradcam(linear, clone=False), "gradcam++": GradcamPlusPlus(linear, clone=False)}
        self._linear = linear
        self._guided = Saliency(listed, model_modifier=[GuidedBackprop(), ReplaceToLinear()], clone=True)

    def explain(
        self,
        images: np.ndarray,
        covariates: np.ndarray | None = None,
        cam_method: str = "gradcam",
        *,
        target: str = "osteoporosis",
    ) -> Explanation:
        """All maps for a batch: images (n, h, w, 3) or (n, h, w) in [0, 255], as
        :func:`osteo_tf.data.pipeline.load_image` returns them (normalisation is applied
        here); covariates (n, k) encoded by the run's encoder (ensemble only)."""
        if cam_method not in CAM_METHODS:
            raise OsteoInputError(f"unknown CAM method '{cam_method}'; choose one of: {', '.join(CAM_METHODS)}")
        if target not in TARGETS:
            raise OsteoInputError(f"unknown target '{target}'; choose one of: {', '.join(TARGETS)}")
        seeds = self._seed_inputs(images, covariates)
        size = seeds[self._image_index].shape[1:3]
        logit = self._linear(seeds, training=False)[:, 0]
        score = _score(target)
        cam = self._cams[cam_method](
            score,
            seeds,
            penultimate_layer=self.layer,
            seek_penultimate_conv_layer=False,
            expand_cam=False,
            normalize_cam=False,
        )
        cam = _unit_max(
            tf.image.resize(np.asarray(cam, np.float32)[..., None], size, method="bilinear")[..., 0].numpy()
        )
        gradients = self._guided(score, seeds, keepdims=True, gradient_modifier=None, normalize_map=False)
        guided = np.abs(self._to_pixels(np.asarray(gradients[self._image_index], np.float32)))
        return Explanation(
            probability=tf.sigmoid(logit).numpy().astype(np.float64),
            cam=cam,
            guided=_unit_max(guided),
            guided_gradcam=_unit_max(guided * cam),
            cam_method=cam_method,
        )

    @property
    def _image_index(self) -> int:
        return [t.name for t in self.model.inputs].index("image")

    def _seed_inputs(self, images: np.ndarray, covariates: np.ndarray | None) -> list[tf.Tensor]:
        """The model's inputs as a list in ``model.inputs`` order (what tf-keras-vis takes)."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3 and images.shape[-1] != 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise OsteoInputError(f"images must be (n, h, w, 3) or (n, h, w); got shape {images.shape}")
        images = np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images
        expected = tuple(self.model.inputs[self._image_index].shape[1:3])
        if None not in expected and images.shape[1:3] != expected:
            raise OsteoInputError(
                f"images are {images.shape[1]}×{images.shape[2]} px but the model takes "
                f"{expected[0]}×{expected[1]}; load them with the run's image size"
            )
        values = {"image": np.asarray(normalize_images(images, self.spec), np.float32)}
        if self.covariate_dim is not None:
            if covariates is None:
                raise OsteoInputError(f"model {self.model.name} is an ensemble: pass the patient's encoded covariates")
            covariates = np.asarray(covariates, dtype=np.float32).reshape(len(images), -1)
            if covariates.shape[1] != self.covariate_dim:
                raise OsteoInputError(
                    f"covariates have {covariates.shape[1]} values; the model takes {self.covariate_dim}"
                )
            values["covariates"] = covariates
        return [tf.constant(values[t.name]) for t in self.model.inputs]

    def _to_pixels(self, gradients: np.ndarray) -> np.ndarray:
        """d score / d normalised input (n, h, w, 3) → d score / d grayscale [0, 255] pixel (n, h, w)."""
        std = (
            np.ones(3, np.float32)
            if self.spec.normalization is None
            else np.asarray(self.spec.normalization[1], np.float32)
        )
        return (gradients / std).sum(axis=-1)


def _score(target: str):
    """tf-keras-vis score function on the (n, 1) logit output."""
    if target == "osteoporosis":
        return lambda output: output[:, 0]
    if target == "non_osteoporosis":
        return lambda output: -output[:, 0]
    return lambda output: tf.abs(output[:, 0])


def _unit_max(maps: np.ndarray) -> np.ndarray:
    """Each (h, w) map of (n, h, w) divided by its maximum; negative → 0; all-zero stays 0."""
    maps = np.maximum(np.nan_to_num(np.asarray(maps, np.float32)), 0.0)
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1.0), 0.0).astype(np.float32)


def backbone_of(model: keras.Model) -> str:
    """The registry name a ``build_model`` model was built with (its name's prefix)."""
    for name in sorted(REGISTRY, key=len, reverse=True):
        if model.name.startswith(f"{name}_"):
            return name
    raise OsteoInputError(f"cannot tell the backbone of model '{model.name}'; pass backbone=")


_cache: tuple[weakref.ref, Explainer] | None = None


def explainer_for(model: keras.Model, backbone: str | None = None) -> Explainer:
    """An :class:`Explainer` for ``model``, reused while the same model is passed again."""
    global _cache
    if _cache is None or _cache[0]() is not model or (backbone and _cache[1].spec.name != backbone):
        _cache = (weakref.ref(model), Explainer(model, backbone))
    return _cache[1]


def gradcam(
    model: keras.Model,
    image: np.ndarray,
    covariates: np.ndarray | None = None,
    *,
    method: str = "gradcam",
    backbone: str | None = None,
    target: str = "osteoporosis",
) -> np.ndarray:
    """One heat map, (h, w) float32 in [0, 1] at the input resolution.

    image: (h, w, 3) or (h, w) in [0, 255] at the model's input size, as
    :func:`osteo_tf.data.pipeline.load_image` returns it. covariates: the patient's encoded
    vector (k,) for an ensemble model, held fixed. method: "gradcam", "gradcam++" or
    "guided_gradcam" (guided backpropagation × Grad-CAM). target: the class whose score is
    explained (default the osteoporosis probability).
    """
    if method not in METHODS:
        raise OsteoInputError(f"unknown method '{method}'; choose one of: {', '.join(METHODS)}")
    explanation = explainer_for(model, backbone).explain(
        np.asarray(image)[None],
        None if covariates is None else np.asarray(covariates)[None],
        cam_method="gradcam" if method == "guided_gradcam" else method,
        target=target,
    )
    return explanation.map(method)[0]
