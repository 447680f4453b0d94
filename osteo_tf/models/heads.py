"""Task heads and fusion designs, built on tensors (not nested models) so the graph stays flat.

The papers' ensemble (Yamamoto et al. 2020; Sukegawa et al. 2022): CNN features reshaped to 1-D, the covariates
through a
two-layer perceptron, ``Concatenate``, fully connected layer(s), the probability; the
image-only and covariates-only models are the same without the other branch
(:func:`single_head`, exactly the papers'). What the papers leave open about joining the two
branches, and :func:`balanced_image` / :func:`balanced_covariates` fix in every ensemble
(measured, README *Fusion*):

- **Each branch is normalised before it meets the other** (``BatchNormalization`` on the
  pooled image features and on the perceptron's output). Mean-normalised covariates are
  small (|x| ≲ 0.5) and the perceptron's ReLU features smaller still (≈ 0.04 vs ≈ 0.57 for
  the pooled image features in the first wave's trained ensembles): without it the fusion
  layer sees the image and the covariate branch gets almost no gradient.
- **Dropout on the image features** (:data:`IMAGE_DROPOUT`): a CNN fitted from few images
  drives the training loss down through the image alone; dropout keeps the covariate
  branch needed.
- **The covariate branch learns at :data:`COVARIATE_LR_MULTIPLIER` × the learning rate** in
  an ensemble (:class:`osteo_tf.models.layers.GradientScale` at its output). At
  initialisation the image branch's weights move ~34× faster for their size than the
  perceptron's (‖∇w‖/‖w‖, ResNet-18, ``bench/fusion_balance.py``), so a fit that early
  stopping ends after a few epochs leaves the covariate branch half-trained.
- The perceptron is He-initialised (ReLU) and :data:`COVARIATE_UNITS` wide.

Fusion designs (:data:`osteo_tf.vocabulary.FUSIONS`):

- ``concat`` (default, the papers'): [image, covariate features] → Dense + ReLU → Dense(1).
- ``late``: each branch ends in its own logit; a learned weighting (Dense(1) over the two
  logits) gives the probability — the jointly trained form of adding the two models' logits.
- ``film``: the covariate features scale and shift the image feature channels
  (feature-wise linear modulation, as DAFT, Wolf et al. 2022, does on the last block), then
  the image head. It is applied to the pooled features: global average pooling is linear, so
  ``GAP(γ·F + β) = γ·GAP(F) + β`` — the same as modulating the last feature map, and the
  Grad-CAM target layer stays the backbone's own.

Auxiliary outputs (``aux=True``): ``aux_image`` and ``aux_covariates``, each a branch's own
probability (AutoGluon's fusion_mlp "auxiliary losses"); :mod:`osteo_tf.training.train`
adds their losses with weight ``aux_loss_weight`` and saves the single-output model.

The output layers are float32 even under mixed precision (a float16 sigmoid saturates).
"""

from __future__ import annotations

import keras
from keras import layers

from osteo_tf.models.layers import GradientScale
from osteo_tf.vocabulary import COVARIATE_UNITS, FUSION_UNITS, IMAGE_DROPOUT

__all__ = [
    "COVARIATE_LR_MULTIPLIER",
    "FILM_INIT_STDDEV",
    "balanced_covariates",
    "balanced_image",
    "covariate_encoder",
    "covariate_input",
    "fusion_head",
    "image_features",
    "single_head",
]

COVARIATE_LR_MULTIPLIER = 10.0
FILM_INIT_STDDEV = 0.01  # FiLM starts near the identity modulation


def covariate_input(covariate_dim: int) -> keras.KerasTensor:
    return keras.Input(shape=(covariate_dim,), name="covariates")


def image_features(feature_map):
    """(batch, h, w, channels) last feature map → (batch, channels), global average pooled."""
    return layers.GlobalAveragePooling2D(name="image_features")(feature_map)


def covariate_encoder(covariates, units: tuple[int, ...] = COVARIATE_UNITS):
    """(batch, covariate_dim) encoded covariates → (batch, units[-1]): the papers' perceptron."""
    x = covariates
    for index, width in enumerate(units, start=1):
        x = layers.Dense(width, activation="relu", kernel_initializer="he_normal", name=f"covariate_dense{index}")(x)
    return x


def balanced_image(image, dropout: float = IMAGE_DROPOUT):
    """An ensemble's (batch, C) pooled image features, batch-normalised, then dropout."""
    image = layers.BatchNormalization(name="image_norm")(image)
    return layers.Dropout(dropout, name="image_dropout")(image) if dropout else image


def balanced_covariates(covariates):
    """An ensemble's (batch, k) perceptron features, batch-normalised, trained at
    COVARIATE_LR_MULTIPLIER × the learning rate (same shape out)."""
    covariates = layers.BatchNormalization(name="covariate_norm")(covariates)
    return GradientScale(COVARIATE_LR_MULTIPLIER, name="covariate_lr_scale")(covariates)


def _film_init() -> keras.initializers.Initializer:
    """A fresh small-normal initialiser per layer, made at build time: one made at import would
    be seeded before ``keras.utils.set_random_seed``, and one shared by two layers gives both the
    same values."""
    return keras.initializers.RandomNormal(stddev=FILM_INIT_STDDEV)


def _probability(x, name: str = "probability"):
    return layers.Dense(1, activation="sigmoid", dtype="float32", name=name)(x)


def single_head(features, units: int = FUSION_UNITS):
    """One branch's (batch, k) features → (batch, 1) probability (image-only, covariates-only)."""
    return _probability(layers.Dense(units, activation="relu", name="fusion_dense")(features))


def fusion_head(image, covariates, fusion: str = "concat", *, aux: bool = False, units: int = FUSION_UNITS):
    """Joins an ensemble's (batch, C) image and (batch, k) covariate features, as
    :func:`balanced_image` and :func:`balanced_covariates` return them, by ``fusion``.

    Returns a dict of (batch, 1) float32 probabilities: ``"probability"``, and with ``aux``
    also ``"aux_image"`` and ``"aux_covariates"`` (each branch's own).
    """
    outputs = {}
    if fusion == "concat":
        x = layers.Concatenate(name="fusion")([image, covariates])
        outputs["probability"] = _probability(layers.Dense(units, activation="relu", name="fusion_dense")(x))
    elif fusion == "late":
        image_logit = layers.Dense(1, dtype="float32", name="image_logit")(image)
        covariate_logit = layers.Dense(1, dtype="float32", name="covariate_logit")(covariates)
        logits = layers.Concatenate(name="fusion")([image_logit, covariate_logit])
        outputs["probability"] = layers.Dense(
            1, activation="sigmoid", dtype="float32", name="probability", kernel_initializer="ones"
        )(logits)
        if aux:
            outputs["aux_image"] = layers.Activation("sigmoid", dtype="float32", name="aux_image")(image_logit)
            outputs["aux_covariates"] = layers.Activation("sigmoid", dtype="float32", name="aux_covariates")(
                covariate_logit
            )
            return outputs
    elif fusion == "film":
        channels = image.shape[-1]
        scale = layers.Dense(channels, kernel_initializer=_film_init(), bias_initializer="ones", name="film_scale")(
            covariates
        )
        shift = layers.Dense(channels, kernel_initializer=_film_init(), name="film_shift")(covariates)
        x = layers.Add(name="fusion")([layers.Multiply(name="film_modulate")([image, scale]), shift])
        outputs["probability"] = _probability(layers.Dense(units, activation="relu", name="fusion_dense")(x))
    else:
        raise ValueError(f"unknown fusion {fusion!r}")
    if aux:
        outputs["aux_image"] = _probability(image, "aux_image")
        outputs["aux_covariates"] = _probability(covariates, "aux_covariates")
    return outputs
