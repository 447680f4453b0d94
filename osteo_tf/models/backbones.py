"""The backbone registry: name → builder, default image size, learning rate, feature layer.

Every builder returns a functional ``keras.Model`` whose input takes (batch, size, size, 3)
images and whose output is the last feature map (batch, h, w, channels); the fusion heads
are built flat on those two tensors (DESIGN.md's shape rule).

Image scale: the pipeline hands images as float32 in [0, 255]. EfficientNet
(``keras.applications``) rescales and normalises inside the network; keras-hub's ResNet
does not, so :func:`normalize_images` applies the torchvision ImageNet mean/std first. The
same function is used by the tf.data pipeline and by the exported serving graph.

Pure Keras 3: no TensorFlow here, so the registry also builds on the JAX backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from osteo_tf.errors import OsteoInputError

# torchvision's ImageNet statistics, in [0, 255] pixel units.
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


@dataclass(frozen=True)
class BackboneSpec:
    """Everything the rest of the code needs to know about one backbone.

    image_size: the paper's input size in pixels (square). learning_rate: the papers' SGD
    rate for this family. feature_layer: name of the layer whose output is the last feature
    map (Grad-CAM target). normalization: (mean, std) per channel in [0, 255] units applied
    before the network, or None when the network normalises itself. weights_source: where
    ``weights="imagenet"`` comes from.
    """

    name: str
    family: str
    build: Callable[[int], keras.Model]
    image_size: int
    learning_rate: float
    feature_layer: str
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None
    weights_source: str


def _efficientnet(variant: str) -> Callable[[int], keras.Model]:
    def build(image_size: int, weights: str | None = None) -> keras.Model:
        constructor = getattr(keras.applications, f"EfficientNet{variant}")
        return constructor(include_top=False, weights=weights, input_shape=(image_size, image_size, 3))

    return build


def _resnet(depth: int) -> Callable[[int], keras.Model]:
    blocks = RESNET_BLOCKS[depth]
    block_type = "basic_block" if depth < 50 else "bottleneck_block"

    def build(image_size: int, preset: str | None = None) -> keras.Model:
        import keras_hub  # ~3 s to import; only when a ResNet is built

        if preset is not None:
            return keras_hub.models.ResNetBackbone.from_preset(preset)
        # torchvision's shape: 7×7 stem, no conv bias, BatchNorm eps 1e-5, post-activation.
        return keras_hub.models.ResNetBackbone(
            input_conv_filters=[64], input_conv_kernel_sizes=[7],
            stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=blocks,
            stackwise_num_strides=[1, 2, 2, 2], block_type=block_type,
            use_pre_activation=False, image_shape=(image_size, image_size, 3),
        )

    return build


RESNET_BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 152: [3, 8, 36, 3]}
EFFICIENTNET_SIZES = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "b4": 380, "b5": 456, "b6": 528, "b7": 600}

REGISTRY: dict[str, BackboneSpec] = {}
for _variant, _size in EFFICIENTNET_SIZES.items():
    REGISTRY[f"efficientnet_{_variant}"] = BackboneSpec(
        name=f"efficientnet_{_variant}", family="efficientnet", build=_efficientnet(_variant.upper()),
        image_size=_size, learning_rate=0.01, feature_layer="top_activation", normalization=None,
        weights_source=f"keras.applications EfficientNet{_variant.upper()} (ImageNet)",
    )
for _depth in (18, 34, 50, 152):
    REGISTRY[f"resnet{_depth}"] = BackboneSpec(
        name=f"resnet{_depth}", family="resnet", build=_resnet(_depth), image_size=224,
        learning_rate=0.001, feature_layer=f"stack3_block{RESNET_BLOCKS[_depth][-1] - 1}_out",
        normalization=(IMAGENET_MEAN, IMAGENET_STD), weights_source=f"hf://timm/resnet{_depth}.tv_in1k",
    )


def get_backbone_spec(name: str) -> BackboneSpec:
    """Looks a backbone up by name; an unknown name is an error listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise OsteoInputError(f"unknown backbone '{name}'; choose one of: {', '.join(sorted(REGISTRY))}") from None


def build_backbone(name: str, image_size: int | None = None, weights: str | Path | None = None) -> keras.Model:
    """Builds backbone ``name`` for (size, size, 3) inputs.

    weights: None / "none" → random initialisation; "imagenet" → the registry's ImageNet
    weights (needs the network; offline this fails with a message saying what to pass
    instead); a path → a ``.weights.h5`` file saved from the same backbone architecture.
    """
    spec = get_backbone_spec(name)
    size = image_size or spec.image_size
    if weights is None or str(weights).lower() == "none":
        return spec.build(size)
    if str(weights).lower() == "imagenet":
        return _build_imagenet(spec, size)
    path = Path(weights)
    if not path.is_file():
        raise OsteoInputError(f"weights file {path} does not exist; pass --weights none, imagenet or an existing .weights.h5 file")
    backbone = spec.build(size)
    try:
        backbone.load_weights(str(path))
    except Exception as error:  # Keras raises several types for a mismatched or corrupt file
        raise OsteoInputError(f"cannot load weights file {path} into {name}: {error}") from None
    return backbone


def _build_imagenet(spec: BackboneSpec, size: int) -> keras.Model:
    try:
        if spec.family == "efficientnet":
            return spec.build(size, "imagenet")
        return spec.build(size, spec.weights_source)
    except Exception as error:  # download errors come as URLError, ValueError, OSError, …
        raise OsteoInputError(
            f"ImageNet weights for {spec.name} could not be loaded from {spec.weights_source} "
            f"({type(error).__name__}: {str(error)[:200]}). Without network access pass "
            "--weights none (random initialisation) or --weights PATH to a .weights.h5 file."
        ) from None


def normalize_images(images, spec: BackboneSpec):
    """Maps [0, 255] images (…, 3) to what the backbone expects (plain arithmetic: any backend)."""
    if spec.normalization is None:
        return images
    mean, std = (np.asarray(v, dtype=np.float32) for v in spec.normalization)
    return (images - mean) / std
