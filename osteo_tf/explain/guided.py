"""Guided backpropagation for every backbone of the registry.

tf-keras-vis' :class:`~tf_keras_vis.utils.model_modifiers.GuidedBackpropagation` replaces
the gradient of each layer whose ``activation`` attribute is ReLU by the guided rule
(Springenberg et al. 2015): the gradient passes only where the layer's input is positive
*and* the incoming gradient is positive. That covers keras-hub's ResNet (``Activation("relu")``
layers) and the fusion head's ``Dense(..., activation="relu")``. Two cases of the registry
are outside it, and :class:`GuidedBackprop` (a subclass) adds them:

- **GoogLeNet** (our port) uses ``keras.layers.ReLU`` layers, which have no ``activation``
  attribute; their ``call`` is wrapped with the same guided rule.
- **EfficientNet**'s swish (``silu``) activations. Swish is not a rectifier: its derivative
  is ≈ 0.5 at 0, up to ≈ 1.1 for x > 0, and small but non-zero (and partly negative) for
  x < 0. The rule used here is *guided swish*: swish's own local derivative, gated exactly
  as guided ReLU gates, ``dx = swish'(x) · dy · [x > 0] · [dy > 0]``. On ReLU the same
  formula is guided ReLU (ReLU'(x) = 1 for x > 0), so one rule covers both. The sigmoid
  gates of the squeeze-and-excitation blocks are left alone: they scale channels, they do
  not rectify.

The modifier changes the model it is given in place; tf-keras-vis calls it on a clone.
"""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf
from tf_keras_vis.utils.model_modifiers import GuidedBackpropagation

__all__ = ["guided_relu_call", "guided_swish", "GuidedBackprop"]


def _gate(x: tf.Tensor, dy: tf.Tensor) -> tf.Tensor:
    """The guided mask: 1 where the input and the incoming gradient are both positive."""
    return tf.cast(dy > 0, dy.dtype) * tf.cast(x > 0, dy.dtype)


def guided_relu_call(call: Callable) -> Callable:
    """Wraps a ReLU layer's ``call`` (x → relu(x)) so its gradient follows the guided rule."""

    @tf.custom_gradient
    def guided(x):
        def grad(dy):
            return _gate(x, dy) * dy

        return call(x), grad

    return guided


@tf.custom_gradient
def guided_swish(x):
    """swish(x) = x·σ(x) with the guided-swish gradient ``swish'(x)·dy·[x > 0]·[dy > 0]``."""
    sigmoid = tf.sigmoid(x)

    def grad(dy):
        derivative = sigmoid * (1.0 + x * (1.0 - sigmoid))
        return _gate(x, dy) * derivative * dy

    return x * sigmoid, grad


class GuidedBackprop(GuidedBackpropagation):
    """tf-keras-vis' guided-backpropagation modifier, plus ``ReLU`` layers and swish.

    Returns nothing: it edits the (cloned) model in place, as tf-keras-vis' modifiers do.
    """

    def __init__(self) -> None:
        super().__init__(target_activations=[keras.activations.relu])

    def __call__(self, model: keras.Model) -> None:
        super().__call__(model)  # every layer whose ``activation`` is ReLU
        for layer in model.layers:
            if isinstance(layer, keras.layers.ReLU):
                layer.call = guided_relu_call(layer.call)
            elif getattr(layer, "activation", None) is keras.activations.silu:
                layer.activation = guided_swish
