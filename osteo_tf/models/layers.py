"""Custom layers of the study models (registered, so ``model.keras`` files load them by name).

:class:`CovariateWithholding` is "covariate dropout": during training each covariate is
withheld from a subject with probability ``rate`` — its features replaced by the encoding of
its training fill value and its missing indicator set — exactly what the encoder and the
serving graph produce for a value that is really missing. One model then predicts from any
subset of the covariates. No library layer does this: ``keras.layers.Dropout`` zeroes single
features (a one-hot half, not a covariate) and sets no indicator.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

__all__ = ["CovariateWithholding", "GradientScale"]


@keras.saving.register_keras_serializable(package="osteo_tf")
class CovariateWithholding(keras.layers.Layer):
    """(batch, dim) encoded covariates → the same, each covariate withheld with probability ``rate``.

    Args:
        groups: one dict per covariate: ``features`` (its indices in the vector, the missing
            indicator included), ``values`` (what those features hold when it is missing:
            the fill value's encoding and 1.0 for the indicator).
        rate: probability in [0, 1) of withholding each covariate of each subject.
        seed: seed of the layer's random draws.

    Identity when not training.
    """

    def __init__(self, groups: list[dict], rate: float, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.groups = [
            {"features": [int(i) for i in g["features"]], "values": [float(v) for v in g["values"]]} for g in groups
        ]
        self.rate, self.seed = float(rate), int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        membership, values = np.zeros((len(self.groups), dim), "float32"), np.zeros((dim,), "float32")
        for row, group in enumerate(self.groups):
            membership[row, group["features"]] = 1.0
            values[group["features"]] = group["values"]
        self._membership, self._values = membership, values

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        batch = ops.shape(inputs)[0]
        draws = keras.random.uniform((batch, len(self.groups)), seed=self.seed_generator)
        withheld = ops.cast(draws < self.rate, inputs.dtype)
        mask = ops.matmul(withheld, ops.cast(self._membership, inputs.dtype))
        return inputs * (1.0 - mask) + ops.cast(self._values, inputs.dtype) * mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "groups": self.groups, "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="osteo_tf")
class GradientScale(keras.layers.Layer):
    """Identity forward; multiplies the gradient flowing back through it by ``multiplier``.

    Placed at a branch's output, it scales the gradient of every weight of that branch, so
    SGD (with momentum, without weight decay) moves the branch exactly as if its learning rate
    were ``multiplier`` × the optimiser's — a per-branch learning rate, which Keras 3's
    optimisers do not offer. Inference is unchanged.
    """

    def __init__(self, multiplier: float, **kwargs):
        super().__init__(**kwargs)
        self.multiplier = float(multiplier)

    def call(self, inputs):
        k = self.multiplier
        return inputs * k - ops.stop_gradient(inputs * (k - 1.0))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "multiplier": self.multiplier}
