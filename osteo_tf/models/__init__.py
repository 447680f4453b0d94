"""Model building: backbones (registry) + heads → the three study models.

Pure Keras 3 (``keras.layers``, ``keras.ops``): importing this package does not import
TensorFlow, and the models build on the JAX backend too.
"""

from __future__ import annotations

from pathlib import Path

import keras

from osteo_tf.errors import OsteoInputError
from osteo_tf.models.backbones import REGISTRY, BackboneSpec, build_backbone, get_backbone_spec, normalize_images
from osteo_tf.models.heads import covariate_encoder, covariate_input, image_features, probability_head

MODES = ("image_only", "ensemble", "covariates_only")

__all__ = [
    "MODES", "REGISTRY", "BackboneSpec", "build_backbone", "build_model", "get_backbone_spec",
    "normalize_images", "uses_images", "uses_covariates",
]


def uses_images(mode: str) -> bool:
    return mode in ("image_only", "ensemble")


def uses_covariates(mode: str) -> bool:
    return mode in ("ensemble", "covariates_only")


def build_model(
    backbone: str = "resnet18",
    mode: str = "ensemble",
    image_size: int | None = None,
    covariate_dim: int = 6,
    weights: str | Path | None = None,
) -> keras.Model:
    """Builds one of the study models.

    Inputs are a dict: ``"image"`` (batch, size, size, 3) float32 already passed through
    :func:`normalize_images`, and/or ``"covariates"`` (batch, covariate_dim) float32 from the
    covariate encoder. Output: (batch, 1) probability of osteoporosis.

    - ``image_only``: backbone → pooled features → head.
    - ``ensemble``: backbone features and the covariate perceptron, concatenated → head.
    - ``covariates_only``: the covariate perceptron → head (no image; ``backbone`` unused).

    The model is flat: the backbone's own input and layers are the model's (Grad-CAM can
    reach its last feature map by name, ``get_backbone_spec(backbone).feature_layer``).
    """
    if mode not in MODES:
        raise OsteoInputError(f"unknown mode '{mode}'; choose one of: {', '.join(MODES)}")
    if uses_covariates(mode) and covariate_dim < 1:
        raise OsteoInputError(f"mode '{mode}' needs at least one covariate (covariate_dim={covariate_dim})")
    inputs, features = {}, []
    if uses_images(mode):
        image_net = build_backbone(backbone, image_size, weights)
        inputs["image"] = _named_input(image_net, "image")
        features.append(image_features(image_net.output))
    if uses_covariates(mode):
        inputs["covariates"] = covariate_input(covariate_dim)
        features.append(covariate_encoder(inputs["covariates"]))
    name = f"{backbone}_{mode}" if uses_images(mode) else mode
    return keras.Model(inputs=inputs, outputs=probability_head(features), name=name)


def _named_input(network: keras.Model, name: str) -> keras.KerasTensor:
    """The network's input tensor, renamed so a dict-input model maps ``name`` to it.

    Keras matches dict inputs by tensor name, and a reloaded model names the tensor after
    its InputLayer, so both are renamed (before the outer model is built).
    """
    tensor = network.input
    tensor._keras_history.operation.name = name
    tensor.name = name
    return tensor
