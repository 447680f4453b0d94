"""GoogLeNet (Inception v1) in pure Keras 3, shaped layer for layer like torchvision's ``googlenet``.

No library ships this network for Keras (not keras.applications, keras-hub or timm), and
torchvision's version is not the 2014 Caffe one, so this is a port of torchvision's:

- every convolution is ``Conv2D(use_bias=False)`` + ``BatchNormalization(epsilon=1e-3)``
  + ReLU (torchvision's ``BasicConv2d``);
- the "5×5" branch of each Inception block uses a 3×3 kernel (torchvision's known quirk,
  pytorch/vision#906, kept so its ImageNet weights convert);
- the stride-2 max-pools use ``ceil_mode=True``, reproduced by zero-padding one row and
  one column at the bottom/right before a "valid" pool (exact, because every pooled tensor
  follows a ReLU and so is ≥ 0, and the padded cells never form a window of their own);
- ``transform_input=True`` re-maps ImageNet-normalised input to the [-1, 1] scale the
  pretrained weights were trained on (torchvision sets it with its pretrained weights);
- the two auxiliary classifiers (after inception4a and inception4d) are optional, off by
  default; they only matter for training from scratch with their extra losses.

Layer names follow torchvision's module paths with "." → "_" (``inception3a.branch2.1.conv``
→ ``inception3a_branch2_1_conv``), which is what :mod:`osteo_tf.models.convert` relies on.
Each Inception block's output (the concatenation) is named after the block, so the last
feature map (batch, h, w, 1024) is layer ``inception5b`` (7×7 at 224 px).

Parameters: 5,599,904 trainable without the classifier, 6,624,904 with the 1000-class
``fc`` (torchvision's count), 13,004,888 with the auxiliary classifiers too.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
from keras import layers, ops

from osteo_tf.vocabulary import IMAGENET_MEAN_UNIT as _MEAN
from osteo_tf.vocabulary import IMAGENET_STD_UNIT as _STD

__all__ = [
    "BN_EPSILON",
    "BN_MOMENTUM",
    "FEATURE_LAYER",
    "INCEPTION_BLOCKS",
    "AdaptiveAveragePooling2D",
    "conv_bn_relu",
    "GoogLeNet",
    "inception_aux",
    "inception_block",
    "max_pool_ceil",
]

# (name, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj), as in torchvision.
INCEPTION_BLOCKS = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}
FEATURE_LAYER = "inception5b"
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.9  # torch momentum 0.1


def GoogLeNet(
    include_top: bool = True,
    weights: str | Path | None = None,
    input_shape: tuple[int | None, int | None, int] | None = None,
    *,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    transform_input: bool = False,
    aux_logits: bool = False,
    dropout: float = 0.2,
    dropout_aux: float = 0.7,
    name: str = "googlenet",
) -> keras.Model:
    """Builds torchvision's GoogLeNet as a functional Keras model (channels last).

    Args:
        include_top: add global average pooling, dropout and the ``fc`` classifier.
        weights: None (random initialisation, torchvision's: truncated normal, std 0.01)
            or the path of a ``.weights.h5`` file saved from the same configuration (e.g.
            written by ``osteo weights convert``).
        input_shape: (height, width, 3); default (None, None, 3). With ``aux_logits`` the
            size must be static (the auxiliary pooling is adaptive). Smallest: 15 px.
        pooling: without the top, None → the (batch, h, w, 1024) feature map, "avg"/"max" →
            (batch, 1024) pooled features.
        classes, classifier_activation: the classifier (None → logits).
        transform_input: map ImageNet-normalised input to the [-1, 1] scale of
            torchvision's pretrained weights (a fixed per-channel affine map).
        aux_logits: add the two auxiliary classifiers (needs ``include_top``); the model
            then returns ``[logits, aux1, aux2]`` each (batch, classes).
        dropout, dropout_aux: dropout rates before ``fc`` and inside the aux classifiers.

    Returns:
        Model from (batch, h, w, 3) images to the output described above.
    """
    if aux_logits and not include_top:
        raise ValueError("aux_logits=True needs include_top=True (the auxiliary classifiers predict classes)")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', not {pooling!r}")
    inputs = keras.Input(shape=input_shape or (None, None, 3), name="image")
    x = inputs
    if transform_input:
        # torchvision: x_c * (std_c / 0.5) + (mean_c - 0.5) / 0.5
        x = layers.Rescaling(
            scale=[s / 0.5 for s in _STD], offset=[(m - 0.5) / 0.5 for m in _MEAN], name="transform_input"
        )(x)
    x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = conv_bn_relu(x, 64, 7, strides=2, padding="valid", name="conv1")
    x = max_pool_ceil(x, 3, name="maxpool1")
    x = conv_bn_relu(x, 64, 1, name="conv2")
    x = conv_bn_relu(x, 192, 3, name="conv3")
    x = max_pool_ceil(x, 3, name="maxpool2")
    x = inception_block(x, "inception3a")
    x = inception_block(x, "inception3b")
    x = max_pool_ceil(x, 3, name="maxpool3")
    x = inception_block(x, "inception4a")
    aux = [inception_aux(x, classes, dropout_aux, classifier_activation, "aux1")] if aux_logits else []
    for block in ("inception4b", "inception4c", "inception4d"):
        x = inception_block(x, block)
    if aux_logits:
        aux.append(inception_aux(x, classes, dropout_aux, classifier_activation, "aux2"))
    x = inception_block(x, "inception4e")
    x = max_pool_ceil(x, 2, name="maxpool4")
    x = inception_block(x, "inception5a")
    x = inception_block(x, "inception5b")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avgpool")(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        x = _dense(x, classes, classifier_activation, "fc")
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avgpool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="maxpool")(x)
    model = keras.Model(inputs, [x, *aux] if aux else x, name=name)
    if weights is not None:
        model.load_weights(str(weights))
    return model


def conv_bn_relu(x, filters: int, kernel_size: int, *, strides: int = 1, padding: str = "same", name: str = ""):
    """torchvision's ``BasicConv2d``: (batch, h, w, c) → (batch, h', w', filters).

    ``padding="same"`` equals torch's ``padding=kernel_size // 2`` only at stride 1; the
    stride-2 stem pads explicitly and passes "valid".
    """
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=_init(),
        name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def max_pool_ceil(x, pool_size: int, name: str):
    """torch ``MaxPool2d(pool_size, stride=2, ceil_mode=True)`` on a tensor ≥ 0.

    Output side = ceil((n - pool_size) / 2) + 1. One zero row/column at the bottom/right,
    then a "valid" pool, gives exactly that for pool sizes 2 and 3 and any n ≥ pool_size − 1.
    """
    x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(x)
    return layers.MaxPooling2D(pool_size, strides=2, padding="valid", name=name)(x)


def inception_block(x, name: str):
    """One Inception block (widths from :data:`INCEPTION_BLOCKS`): four branches, concatenated.

    (batch, h, w, c) → (batch, h, w, ch1x1 + ch3x3 + ch5x5 + pool_proj); the output layer
    is the Concatenate named ``name``.
    """
    ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj = INCEPTION_BLOCKS[name]
    branch1 = conv_bn_relu(x, ch1x1, 1, name=f"{name}_branch1")
    branch2 = conv_bn_relu(x, ch3x3red, 1, name=f"{name}_branch2_0")
    branch2 = conv_bn_relu(branch2, ch3x3, 3, name=f"{name}_branch2_1")
    branch3 = conv_bn_relu(x, ch5x5red, 1, name=f"{name}_branch3_0")
    branch3 = conv_bn_relu(branch3, ch5x5, 3, name=f"{name}_branch3_1")  # 3×3, as torchvision
    # torch MaxPool2d(3, stride=1, padding=1) pads with -inf: the same as Keras "same".
    branch4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_branch4_0")(x)
    branch4 = conv_bn_relu(branch4, pool_proj, 1, name=f"{name}_branch4_1")
    return layers.Concatenate(name=name)([branch1, branch2, branch3, branch4])


def inception_aux(x, classes: int, dropout: float, activation: str | None, name: str):
    """torchvision's ``InceptionAux``: (batch, h, w, c) → (batch, classes).

    Adaptive average pool to 4×4 → BasicConv2d 1×1 (128) → flatten (2048) → Dense 1024 +
    ReLU → dropout → Dense classes. Flattening is channels-last here; the converter
    permutes ``fc1`` accordingly.
    """
    x = AdaptiveAveragePooling2D((4, 4), name=f"{name}_pool")(x)
    x = conv_bn_relu(x, 128, 1, name=f"{name}_conv")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = _dense(x, 1024, "relu", f"{name}_fc1")
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return _dense(x, classes, activation, f"{name}_fc2")


@keras.saving.register_keras_serializable(package="osteo_tf")
class AdaptiveAveragePooling2D(layers.Layer):
    """torch ``adaptive_avg_pool2d`` (channels last, static input size).

    Output cell (i, j) averages input rows floor(i·H/h) … ceil((i+1)·H/h) − 1 and the same
    for columns: (batch, H, W, c) → (batch, h, w, c).
    """

    def __init__(self, output_size: tuple[int, int], **kwargs):
        super().__init__(**kwargs)
        self.output_size = tuple(int(v) for v in output_size)

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:
            raise ValueError(f"{self.name} needs a static input size; build the model with input_shape=(h, w, 3)")
        rows = self._cells(inputs, axis=1, size=height, count=self.output_size[0])
        return self._cells(rows, axis=2, size=width, count=self.output_size[1])

    @staticmethod
    def _cells(x, axis: int, size: int, count: int):
        pieces = []
        for i in range(count):
            start, stop = (i * size) // count, math.ceil((i + 1) * size / count)
            piece = x[:, start:stop] if axis == 1 else x[:, :, start:stop]
            pieces.append(ops.mean(piece, axis=axis, keepdims=True))
        return ops.concatenate(pieces, axis=axis)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


def _dense(x, units: int, activation: str | None, name: str):
    return layers.Dense(units, activation=activation, kernel_initializer=_init(), name=name)(x)


def _init() -> keras.initializers.Initializer:
    """torchvision's GoogLeNet initialisation (truncated normal, std 0.01), a fresh one per layer."""
    return keras.initializers.TruncatedNormal(stddev=0.01)
