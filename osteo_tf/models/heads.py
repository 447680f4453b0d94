"""Task heads, built on tensors (not as nested models) so the fusion graph stays flat.

- :func:`covariate_encoder`: the papers' two-layer perceptron over the covariate vector.
- :func:`probability_head`: Concatenate → Dense + ReLU → Dense(1, sigmoid), the
  osteoporosis probability. The image-only and covariate-only models use the same head on
  one input, so the three modes differ only in what reaches the head.

The output layer is float32 even under mixed precision (a float16 sigmoid saturates).
"""

from __future__ import annotations

import keras
from keras import layers

COVARIATE_UNITS = (32, 32)
FUSION_UNITS = 64


def covariate_encoder(covariates, units: tuple[int, int] = COVARIATE_UNITS):
    """(batch, covariate_dim) encoded covariates → (batch, units[-1]) features."""
    x = covariates
    for index, width in enumerate(units, start=1):
        x = layers.Dense(width, activation="relu", name=f"covariate_dense{index}")(x)
    return x


def image_features(feature_map):
    """(batch, h, w, channels) last feature map → (batch, channels), global average pooled."""
    return layers.GlobalAveragePooling2D(name="image_features")(feature_map)


def probability_head(features: list, units: int = FUSION_UNITS):
    """List of (batch, k_i) feature tensors → (batch, 1) osteoporosis probability."""
    x = features[0] if len(features) == 1 else layers.Concatenate(name="fusion")(features)
    x = layers.Dense(units, activation="relu", name="fusion_dense")(x)
    return layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)


def covariate_input(covariate_dim: int) -> keras.KerasTensor:
    return keras.Input(shape=(covariate_dim,), name="covariates")
