"""Model building: backbones (registry) + heads → the three study models.

Pure Keras 3 (``keras.layers``, ``keras.ops``): importing this package does not import
TensorFlow, and the models build on the JAX backend too.
"""

from __future__ import annotations

from pathlib import Path

import keras

from osteo_tf.errors import OsteoInputError
from osteo_tf.models.backbones import (
    REGISTRY,
    BackboneSpec,
    build_backbone,
    check_weights,
    get_backbone_spec,
    normalize_images,
)
from osteo_tf.models.heads import (
    balanced_covariates,
    balanced_image,
    covariate_encoder,
    covariate_input,
    fusion_head,
    image_features,
    single_head,
)
from osteo_tf.models.layers import CovariateWithholding
from osteo_tf.vocabulary import (
    DEFAULT_FUSION,
    FUSIONS,
    MODES,
    OUTPUTS_WITH_AUX,
    model_label,
    uses_covariates,
    uses_images,
)

__all__ = [
    "OUTPUTS_WITH_AUX",
    "FUSIONS",
    "MODES",
    "REGISTRY",
    "BackboneSpec",
    "build_backbone",
    "check_weights",
    "build_model",
    "get_backbone_spec",
    "inference_model",
    "normalize_images",
    "uses_images",
    "uses_covariates",
]


def build_model(
    backbone: str = "resnet18",
    mode: str = "ensemble",
    image_size: int | None = None,
    *,
    covariate_dim: int = 6,
    weights: str | Path | None = None,
    fusion: str = DEFAULT_FUSION,
    aux_outputs: bool = False,
    covariate_withholding: dict | None = None,
) -> keras.Model:
    """Builds one of the study models.

    Args:
        backbone: a registry name (unused for ``covariates_only``).
        mode: ``image_only``, ``ensemble`` or ``covariates_only``.
        image_size: input side in pixels (None: the backbone's paper size).
        covariate_dim: length of the encoded covariate vector.
        weights: backbone weights ("none", "imagenet[:SOURCE]" or a file).
        fusion: how the ensemble joins its branches, one of ``FUSIONS`` (see
            :mod:`osteo_tf.models.heads`); only for ``ensemble``.
        aux_outputs: also output each branch's own probability (``aux_image``,
            ``aux_covariates``; ensemble only) for an auxiliary loss; the model then returns a
            dict. :func:`inference_model` gives the single-output model that shares its layers.
        covariate_withholding: ``{"groups": [...], "rate": p, "seed": s}`` — train with
            covariate dropout (:class:`osteo_tf.models.layers.CovariateWithholding`).

    Returns:
        A flat functional model. Inputs: a dict, ``"image"`` (batch, size, size, 3) float32
        already passed through :func:`normalize_images` and/or ``"covariates"``
        (batch, covariate_dim) float32 from the covariate encoder. Output: (batch, 1)
        probability of osteoporosis (a dict with ``aux_outputs``). The backbone's own layers
        are the model's: Grad-CAM reaches the last feature map by name
        (``get_backbone_spec(backbone).feature_layer``).

    Raises:
        OsteoInputError: an unknown backbone, mode or fusion, covariates without a
            dimension, auxiliary outputs for a single-input model, a weights file that does
            not fit.

    Example::

        >>> import numpy as np
        >>> model = build_model("resnet18", "ensemble", 32, covariate_dim=6)
        >>> sorted(model.input)
        ['covariates', 'image']
        >>> inputs = {"image": np.zeros((2, 32, 32, 3), "float32"), "covariates": np.zeros((2, 6), "float32")}
        >>> tuple(model(inputs).shape)
        (2, 1)
    """
    if mode not in MODES:
        raise OsteoInputError(f"unknown mode '{mode}'; choose one of: {', '.join(MODES)}")
    if fusion not in FUSIONS:
        raise OsteoInputError(f"unknown fusion '{fusion}'; choose one of: {', '.join(FUSIONS)}")
    if uses_covariates(mode) and covariate_dim < 1:
        raise OsteoInputError(f"mode '{mode}' needs at least one covariate (covariate_dim={covariate_dim})")
    if aux_outputs and mode != "ensemble":
        raise OsteoInputError(f"auxiliary branch outputs need two branches (mode 'ensemble'), not mode '{mode}'")
    inputs, image, covariates = {}, None, None
    if uses_images(mode):
        image_net = build_backbone(backbone, image_size, weights)
        inputs["image"] = _named_input(image_net, "image")
        image = image_features(image_net.output)
        if mode == "ensemble":  # created before the covariate layers: the seeded initialisation depends on the order
            image = balanced_image(image)
    if uses_covariates(mode):
        inputs["covariates"] = covariate_input(covariate_dim)
        x = inputs["covariates"]
        if covariate_withholding and covariate_withholding.get("rate", 0) > 0:
            x = CovariateWithholding(**covariate_withholding, name="covariate_withholding")(x)
        covariates = covariate_encoder(x)
        if mode == "ensemble":
            covariates = balanced_covariates(covariates)
    if mode == "ensemble":
        outputs = fusion_head(image, covariates, fusion, aux=aux_outputs)
        outputs = outputs if aux_outputs else outputs["probability"]
    else:
        outputs = single_head(image if image is not None else covariates)
    name = f"{backbone}_{model_label(mode, fusion)}" if uses_images(mode) else mode
    return keras.Model(inputs=inputs, outputs=outputs, name=name)


def inference_model(model: keras.Model) -> keras.Model:
    """The single-output model (the probability) of a model built with ``aux_outputs``;
    a single-output model is returned as it is. The layers (and weights) are shared."""
    if not isinstance(model.output, dict):
        return model
    return keras.Model(inputs=model.input, outputs=model.get_layer("probability").output, name=model.name)


def _named_input(network: keras.Model, name: str) -> keras.KerasTensor:
    """The network's input tensor, renamed so a dict-input model maps ``name`` to it.

    Keras matches dict inputs by tensor name, and a reloaded model names the tensor after
    its InputLayer, so both are renamed (before the outer model is built).
    """
    tensor = network.input
    tensor._keras_history.operation.name = name
    tensor.name = name
    return tensor
