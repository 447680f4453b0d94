"""The backbone registry: every CNN of both papers by name, with its defaults.

=================  ==========================  ====  =====  =================  ==================
name               implementation              size  LR     feature layer      ImageNet weights
=================  ==========================  ====  =====  =================  ==================
resnet18/34        keras-hub ResNetBackbone    224   0.001  stack3_block1_out  torchvision (timm
                   (basic blocks)                           / _block2_out      ``tv_in1k``)
resnet50/152       keras-hub ResNetBackbone    224   0.001  stack3_block2_out  same, or keras-hub
                   (bottleneck blocks)                                         presets
googlenet          :mod:`.googlenet` (ours)    224   0.001  inception5b        torchvision .pth,
                                                                               converted
efficientnet_b0…7  keras.applications          224…  0.01   top_activation     keras.applications
                                               600
=================  ==========================  ====  =====  =================  ==================

Every builder returns a functional ``keras.Model`` whose input takes (batch, size, size, 3)
images and whose output is the last feature map (batch, h, w, channels); the fusion heads
are built flat on those two tensors (DESIGN.md's shape rule).

Image scale: the pipeline hands images as float32 in [0, 255]. EfficientNet
(``keras.applications``) rescales and normalises inside the network; ResNet and GoogLeNet
do not, so :func:`normalize_images` applies the torchvision ImageNet mean/std first (as
torchvision's transforms did for the papers). The same function is used by the tf.data
pipeline and by the exported serving graph.

``weights``: None/"none" (random), "imagenet" (the registry's default source: for ResNet
the original torchvision weights, paper-exact), "imagenet:SOURCE" for another source listed
in ``spec.weights_sources`` (e.g. "imagenet:keras-hub"), or a ``.weights.h5`` path.

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
IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class BackboneSpec:
    """Everything the rest of the code needs to know about one backbone.

    build: ``build(image_size, source=None)`` → model; ``source`` is a weights handle from
    ``weights_sources`` (None → random initialisation). image_size: the paper's input size
    in pixels (square). learning_rate: the papers' SGD rate for this family. feature_layer:
    name of the layer whose output is the last feature map (Grad-CAM target).
    normalization: (mean, std) per channel in [0, 255] units applied before the network, or
    None when the network normalises itself. weights_sources: ImageNet weight sources,
    name → handle, the first being the default of ``weights="imagenet"``. imagenet_params:
    trainable parameters with torchvision's 1000-class head (its published count).
    feature_channels: channels of the last feature map. min_image_size: smallest input side
    in pixels the tests build at.
    """

    name: str
    family: str
    build: Callable[..., keras.Model]
    image_size: int
    learning_rate: float
    feature_layer: str
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None
    weights_sources: dict[str, str]
    imagenet_params: int
    feature_channels: int
    min_image_size: int = 32

    @property
    def default_weights(self) -> str:
        """Name of the default ImageNet weight source (the first listed)."""
        return next(iter(self.weights_sources))

    @property
    def weights_source(self) -> str:
        """Handle of the default ImageNet weight source."""
        return self.weights_sources[self.default_weights]

    @property
    def backbone_params(self) -> int:
        """Trainable parameters of the backbone alone (no classifier)."""
        return self.imagenet_params - (self.feature_channels + 1) * IMAGENET_CLASSES


def _efficientnet(variant: str) -> Callable[..., keras.Model]:
    def build(image_size: int, source: str | None = None) -> keras.Model:
        constructor = getattr(keras.applications, f"EfficientNet{variant}")
        return constructor(include_top=False, weights=source, input_shape=(image_size, image_size, 3))

    return build


def _resnet(depth: int) -> Callable[..., keras.Model]:
    blocks = RESNET_BLOCKS[depth]
    block_type = "basic_block" if depth < 50 else "bottleneck_block"

    def build(image_size: int, source: str | None = None) -> keras.Model:
        import keras_hub  # ~3 s to import; only when a ResNet is built

        shape = (image_size, image_size, 3)
        if source is not None:
            return keras_hub.models.ResNetBackbone.from_preset(source, image_shape=shape)
        # torchvision's shape: 7×7 stem, no conv bias, BatchNorm eps 1e-5, post-activation.
        return keras_hub.models.ResNetBackbone(
            input_conv_filters=[64], input_conv_kernel_sizes=[7],
            stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=blocks,
            stackwise_num_strides=[1, 2, 2, 2], block_type=block_type,
            use_pre_activation=False, image_shape=shape,
        )

    return build


def _googlenet(image_size: int, source: str | None = None) -> keras.Model:
    from osteo_tf.models.googlenet import GoogLeNet

    weights = None
    if source is not None:
        from osteo_tf.models.convert import torchvision_imagenet_weights

        weights = torchvision_imagenet_weights("googlenet", source)
    # transform_input: the registry's input is ImageNet-normalised, as for torchvision's
    # pretrained GoogLeNet, whose weights expect the [-1, 1] scale this first layer makes.
    return GoogLeNet(include_top=False, weights=weights, input_shape=(image_size, image_size, 3),
                     transform_input=True)


RESNET_BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 152: [3, 8, 36, 3]}
# torchvision's published parameter counts (1000-class head included).
RESNET_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 152: 60_192_808}
# keras-hub's own ImageNet presets of the same network (it has none for ResNet-34).
KERAS_HUB_RESNET_PRESETS = {18: "resnet_18_imagenet", 50: "resnet_50_imagenet", 152: "resnet_152_imagenet"}
# variant: (paper / keras size in px, torchvision params, feature channels)
EFFICIENTNETS = {
    "b0": (224, 5_288_548, 1280), "b1": (240, 7_794_184, 1280), "b2": (260, 9_109_994, 1408),
    "b3": (300, 12_233_232, 1536), "b4": (380, 19_341_616, 1792), "b5": (456, 30_389_784, 2048),
    "b6": (528, 43_040_704, 2304), "b7": (600, 66_347_960, 2560),
}
GOOGLENET_URL = "https://download.pytorch.org/models/googlenet-1378be20.pth"

REGISTRY: dict[str, BackboneSpec] = {}
for _depth in (18, 34, 50, 152):
    _sources = {"torchvision": f"hf://timm/resnet{_depth}.tv_in1k"}
    if _depth in KERAS_HUB_RESNET_PRESETS:
        _sources["keras-hub"] = KERAS_HUB_RESNET_PRESETS[_depth]
    REGISTRY[f"resnet{_depth}"] = BackboneSpec(
        name=f"resnet{_depth}", family="resnet", build=_resnet(_depth), image_size=224,
        learning_rate=0.001, feature_layer=f"stack3_block{RESNET_BLOCKS[_depth][-1] - 1}_out",
        normalization=(IMAGENET_MEAN, IMAGENET_STD), weights_sources=_sources,
        imagenet_params=RESNET_PARAMS[_depth], feature_channels=512 if _depth < 50 else 2048,
    )
REGISTRY["googlenet"] = BackboneSpec(
    name="googlenet", family="googlenet", build=_googlenet, image_size=224, learning_rate=0.001,
    feature_layer="inception5b", normalization=(IMAGENET_MEAN, IMAGENET_STD),
    weights_sources={"torchvision": GOOGLENET_URL}, imagenet_params=6_624_904, feature_channels=1024,
)
for _variant, (_size, _params, _channels) in EFFICIENTNETS.items():
    REGISTRY[f"efficientnet_{_variant}"] = BackboneSpec(
        name=f"efficientnet_{_variant}", family="efficientnet", build=_efficientnet(_variant.upper()),
        image_size=_size, learning_rate=0.01, feature_layer="top_activation", normalization=None,
        weights_sources={"keras-applications": "imagenet"}, imagenet_params=_params, feature_channels=_channels,
    )


def get_backbone_spec(name: str) -> BackboneSpec:
    """Looks a backbone up by name; an unknown name is an error listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise OsteoInputError(f"unknown backbone '{name}'; choose one of: {', '.join(sorted(REGISTRY))}") from None


def build_backbone(name: str, image_size: int | None = None, weights: str | Path | None = None) -> keras.Model:
    """Builds backbone ``name`` for (size, size, 3) inputs → (batch, h, w, channels) features.

    weights: None / "none" → random initialisation; "imagenet" → the default ImageNet
    source, "imagenet:SOURCE" → the named one of ``spec.weights_sources`` (both need the
    network the first time; offline they fail with a message saying what to pass instead);
    a path → a ``.weights.h5`` file saved from the same backbone (any image size), e.g. by
    ``osteo weights convert``. A file that does not fit names the first mismatching layer.
    """
    spec = get_backbone_spec(name)
    size = image_size or spec.image_size
    if weights is None or str(weights).lower() == "none":
        return spec.build(size)
    text = str(weights)
    if text.lower() == "imagenet" or text.lower().startswith("imagenet:"):
        source = text.partition(":")[2] or spec.default_weights
        if source not in spec.weights_sources:
            raise OsteoInputError(f"{name} has no ImageNet weight source '{source}'; choose one of: "
                                  + ", ".join(f"imagenet:{s}" for s in spec.weights_sources))
        return _build_imagenet(spec, size, source)
    path = Path(weights)
    if not path.is_file():
        raise OsteoInputError(f"weights file {path} does not exist; pass --weights none, imagenet or an existing .weights.h5 file")
    _check_weights_tag(path, name)
    backbone = spec.build(size)
    try:
        backbone.load_weights(str(path))
    except Exception as error:  # Keras raises several types for a mismatched or corrupt file
        raise OsteoInputError(f"cannot load weights file {path} into {name}: {_mismatch(error)}") from None
    return backbone


def _build_imagenet(spec: BackboneSpec, size: int, source: str) -> keras.Model:
    handle = spec.weights_sources[source]
    try:
        return spec.build(size, handle)
    except OsteoInputError:
        raise
    except Exception as error:  # download errors come as URLError, ValueError, OSError, …
        raise OsteoInputError(
            f"ImageNet weights for {spec.name} could not be loaded from {handle} "
            f"({type(error).__name__}: {str(error)[:200]}). Without network access pass "
            "--weights none (random initialisation) or --weights PATH to a .weights.h5 file."
        ) from None


def _check_weights_tag(path: Path, name: str) -> None:
    """A file written by ``osteo weights convert`` records its backbone: check it first."""
    import h5py

    from osteo_tf.models.convert import H5_ARCH_ATTRIBUTE

    try:
        with h5py.File(path, "r") as handle:
            tagged = handle.attrs.get(H5_ARCH_ATTRIBUTE)
    except OSError as error:
        raise OsteoInputError(f"weights file {path} is not a Keras .weights.h5 (HDF5) file: {error}") from None
    if tagged is not None and str(tagged) != name:
        raise OsteoInputError(f"weights file {path} holds {tagged} weights, not {name}; "
                              f"use --backbone {tagged} or a file converted for {name}")


def _mismatch(error: Exception) -> str:
    """Keras' load error, shortened to the count and the first layer that does not fit."""
    import re

    text = str(error)
    count = re.search(r"A total of (\d+) objects could not be loaded", text)
    layer = re.search(r"for object <\w+ name=([^,>]+)", text)
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", text)
    expected = re.search(r"expected (\d+) variables, but received (\d+)", text)
    if not (count and layer):
        return text.splitlines()[0][:300] if text else type(error).__name__
    detail = (f"the model's variable has shape {shapes.group(1)}, the file's {shapes.group(2)}" if shapes else
              f"it has {expected.group(1)} variables, the file {expected.group(2)}" if expected else "")
    return (f"{count.group(1)} layers do not match, the first is '{layer.group(1)}'"
            + (f" ({detail})" if detail else "")
            + "; the file was saved from a different backbone or configuration")


def normalize_images(images, spec: BackboneSpec):
    """Maps [0, 255] images (…, 3) to what the backbone expects (plain arithmetic: any backend)."""
    if spec.normalization is None:
        return images
    mean, std = (np.asarray(v, dtype=np.float32) for v in spec.normalization)
    return (images - mean) / std


def registry_table() -> list[dict[str, object]]:
    """The registry as rows (for ``osteo backbones`` and the README), in registry order.

    Columns: name, params (trainable, torchvision's 1000-class head included), backbone
    params (no head), size (px), lr, feature layer, weights (source names; first = default).
    """
    return [{
        "name": s.name, "params": s.imagenet_params, "backbone_params": s.backbone_params,
        "size": s.image_size, "lr": s.learning_rate, "feature_layer": s.feature_layer,
        "weights": ", ".join(f"{k} ({v})" for k, v in s.weights_sources.items()),
    } for s in REGISTRY.values()]
