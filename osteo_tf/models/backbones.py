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
are built flat on those two tensors (no nested models, so Grad-CAM reaches the feature layer
by name in the full model).

Image scale: the pipeline hands images as float32 in [0, 255]. EfficientNet
(``keras.applications``) rescales and normalises inside the network; ResNet and GoogLeNet
do not, so :func:`normalize_images` applies the torchvision ImageNet mean/std first (as
torchvision's transforms did for the papers). The same function is used by the tf.data
pipeline and by the exported serving graph.

``weights``: None/"none" (random), "imagenet" (the registry's default source: for ResNet
the original torchvision weights, paper-exact), "imagenet:SOURCE" for another source listed
in ``spec.weights_sources`` (e.g. "imagenet:keras-hub"), or a path to weights in the layout
a source publishes them, or a folder of ``osteo weights fetch`` (offline machines; see
:mod:`osteo_tf.models.weight_files`).

Pure Keras 3: no TensorFlow here, so the registry also builds on the JAX backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import keras

from osteo_tf.data.images import normalize_pixels
from osteo_tf.errors import OsteoInputError
from osteo_tf.models.weight_files import (
    INPUT_SCALING_ATTRIBUTE,
    KERAS_APPLICATIONS_SCALING,
    efficientnet_imagenet,
    identify,
    resnet_from_preset,
)
from osteo_tf.vocabulary import BACKBONES, GOOGLENET_SHA256_PREFIX, RESNET_BLOCKS, BackboneSpec, get_backbone_spec

__all__ = [
    "REGISTRY",
    "BackboneSpec",
    "build_backbone",
    "check_weights",
    "convert_torchvision",
    "get_backbone_spec",
    "normalize_images",
    "registry_lines",
    "registry_table",
]

#: The backbone table (:data:`osteo_tf.vocabulary.BACKBONES`) under the name the model code uses.
REGISTRY = BACKBONES


def _efficientnet(spec: BackboneSpec, image_size: int, source: str | None = None) -> keras.Model:
    constructor = getattr(keras.applications, f"EfficientNet{spec.name.rpartition('_')[2].upper()}")
    return constructor(include_top=False, weights=source, input_shape=(image_size, image_size, 3))


def _resnet(spec: BackboneSpec, image_size: int, source: str | None = None) -> keras.Model:
    import keras_hub  # ~3 s to import; only when a ResNet is built

    depth = int(spec.name.removeprefix("resnet"))
    shape = (image_size, image_size, 3)
    if source is not None:
        return keras_hub.models.ResNetBackbone.from_preset(source, image_shape=shape)
    # torchvision's shape: 7×7 stem, no conv bias, BatchNorm eps 1e-5, post-activation.
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=list(RESNET_BLOCKS[depth]),
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block" if depth < 50 else "bottleneck_block",
        use_pre_activation=False,
        image_shape=shape,
    )


def _googlenet(spec: BackboneSpec, image_size: int, source: str | None = None) -> keras.Model:
    from osteo_tf.models.googlenet import GoogLeNet

    # transform_input: the registry's input is ImageNet-normalised, as for torchvision's
    # pretrained GoogLeNet, whose weights expect the [-1, 1] scale this first layer makes.
    model = GoogLeNet(include_top=False, weights=None, input_shape=(image_size, image_size, 3), transform_input=True)
    if source is not None:
        model.load_weights(_torchvision_imagenet_weights(spec.name, source))
    return model


#: family → builder ``(spec, image_size, source=None) → keras.Model`` (``source``: a handle
#: from ``spec.weights_sources``; None → random initialisation).
BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "resnet": _resnet,
    "googlenet": _googlenet,
    "efficientnet": _efficientnet,
}


def _build(spec: BackboneSpec, image_size: int, source: str | None = None) -> keras.Model:
    return BUILDERS[spec.family](spec, image_size, source)


def build_backbone(name: str, image_size: int | None = None, weights: str | Path | None = None) -> keras.Model:
    """Builds backbone ``name`` for (size, size, 3) inputs → (batch, h, w, channels) features.

    weights: None / "none" → random initialisation; "imagenet" → the default ImageNet
    source, "imagenet:SOURCE" → the named one of ``spec.weights_sources`` (both need the
    network the first time; offline they fail with a message saying what to pass instead);
    a path → weights in any layout the backbone's sources publish (a timm / Hugging Face snapshot
    folder, a keras-hub preset folder, a torchvision ``.pth``, keras-applications'
    ``efficientnetbN_notop.h5``), a ``.weights.h5`` saved from the same backbone (any image size,
    e.g. by ``osteo weights convert``), or a folder of ``osteo weights fetch``; each builds the
    network the online ``"imagenet"`` path builds from the same file (see
    :mod:`osteo_tf.models.weight_files`). A file that does not fit names the first mismatching layer.
    """
    spec = get_backbone_spec(name)
    size = image_size or spec.image_size
    if weights is None or str(weights).lower() == "none":
        return _build(spec, size)
    source = _imagenet_source(spec, weights)
    if source is not None:
        return _build_imagenet(spec, size, source)
    found = identify(spec, weights)
    if found.kind in ("timm", "keras-hub"):
        return resnet_from_preset(spec, size, found.path)
    if found.kind == "keras-applications":
        return efficientnet_imagenet(spec, size, found.path)
    if found.kind == "torchvision":
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            converted = Path(scratch) / f"{name}.weights.h5"
            convert_torchvision(name, found.path, converted, image_size=size)
            return _load_keras_weights(spec, size, converted)
    return _load_keras_weights(spec, size, found.path)


def _imagenet_source(spec: BackboneSpec, weights: str | Path) -> str | None:
    """The source name of ``"imagenet"`` / ``"imagenet:SOURCE"`` (checked), None for a path."""
    text = str(weights)
    if not (text.lower() == "imagenet" or text.lower().startswith("imagenet:")):
        return None
    source = text.partition(":")[2] or spec.default_weights
    if source not in spec.weights_sources:
        raise OsteoInputError(
            f"{spec.name} has no ImageNet weight source '{source}'; choose one of: "
            + ", ".join(f"imagenet:{s}" for s in spec.weights_sources)
        )
    return source


def check_weights(name: str, weights: str | Path | None) -> None:
    """Refuses what :func:`build_backbone` would refuse about ``weights``, building nothing.

    Run before expensive work (the training command calls it before the run folder exists):
    an unknown source, a missing path, a layout the backbone does not load, a config of another
    architecture, a truncated file, a bundle without the backbone or with a checksum mismatch.

    Raises:
        OsteoInputError: naming the file or option and what was expected.
    """
    spec = get_backbone_spec(name)
    if weights is None or str(weights).lower() == "none" or _imagenet_source(spec, weights) is not None:
        return
    identify(spec, weights)


def _load_keras_weights(spec: BackboneSpec, size: int, path: Path) -> keras.Model:
    """A ``.weights.h5`` of this project's backbone, into the network it was saved from."""
    if _check_weights_tag(path, spec.name) == KERAS_APPLICATIONS_SCALING:
        return efficientnet_imagenet(spec, size, path)
    backbone = _build(spec, size)
    try:
        backbone.load_weights(str(path))
    except Exception as error:  # Keras raises several types for a mismatched or corrupt file
        raise OsteoInputError(f"cannot load weights file {path} into {spec.name}: {_mismatch(error)}") from None
    return backbone


def _build_imagenet(spec: BackboneSpec, size: int, source: str) -> keras.Model:
    handle = spec.weights_sources[source]
    try:
        return _build(spec, size, handle)
    except OsteoInputError:
        raise
    except Exception as error:  # download errors come as URLError, ValueError, OSError, …
        raise OsteoInputError(
            f"ImageNet weights for {spec.name} could not be loaded from {handle} "
            f"({type(error).__name__}: {str(error)[:200]}). Without network access pass "
            "weights=none (random initialisation), or weights=PATH to a folder of osteo weights fetch (run on a "
            "machine with internet access) or to the weights as their source publishes them (README: Offline machines)."
        ) from None


def _check_weights_tag(path: Path, name: str) -> str | None:
    """A file written by ``osteo weights convert`` / ``fetch`` records its backbone: check it first.

    Returns:
        The file's input-scaling tag (:data:`KERAS_APPLICATIONS_SCALING` for an EfficientNet saved
        from keras.applications' ImageNet network), or None.
    """
    import h5py

    from osteo_tf.models.convert import H5_ARCH_ATTRIBUTE

    try:
        with h5py.File(path, "r") as handle:
            tagged = handle.attrs.get(H5_ARCH_ATTRIBUTE)
            scaling = handle.attrs.get(INPUT_SCALING_ATTRIBUTE)
    except OSError as error:
        raise OsteoInputError(f"weights file {path} is not a Keras .weights.h5 (HDF5) file: {error}") from None
    if tagged is not None and str(tagged) != name:
        raise OsteoInputError(
            f"weights file {path} holds {tagged} weights, not {name}; "
            f"use backbone={tagged} or a file converted for {name}"
        )
    return None if scaling is None else str(scaling)


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
    detail = (
        f"the model's variable has shape {shapes.group(1)}, the file's {shapes.group(2)}"
        if shapes
        else f"it has {expected.group(1)} variables, the file {expected.group(2)}"
        if expected
        else ""
    )
    return (
        f"{count.group(1)} layers do not match, the first is '{layer.group(1)}'"
        + (f" ({detail})" if detail else "")
        + "; the file was saved from a different backbone or configuration"
    )


def normalize_images(images, spec: BackboneSpec):
    """Maps [0, 255] images (…, 3) to what the backbone expects (plain arithmetic: any backend)."""
    return normalize_pixels(images, spec.normalization)


def convert_torchvision(arch: str, source: str | Path, out: str | Path, *, image_size: int = 224):
    """Converts torchvision checkpoint ``source`` (.pth) of ``arch`` to Keras ``out`` (.weights.h5).

    Builds the registry's backbone (random) and hands it to
    :func:`osteo_tf.models.convert.convert_checkpoint`. The file loads with
    ``build_backbone(arch, any_size, weights=out)``; ``image_size`` only sets the size the
    model is built at during conversion (weights do not depend on it).

    Returns:
        The :class:`osteo_tf.models.convert.ConversionReport`.

    Raises:
        OsteoInputError: ``arch`` not convertible, ``out`` not a ``.weights.h5`` name, or a
            checkpoint that does not fit (the key and both shapes named).
    """
    from osteo_tf.models.convert import check_conversion, convert_checkpoint

    check_conversion(arch, out)
    return convert_checkpoint(build_backbone(arch, image_size), arch, source, out)


def _torchvision_imagenet_weights(arch: str, url: str) -> Path:
    """Downloads torchvision's ImageNet checkpoint ``url`` once and converts it once.

    Both files stay in the Keras cache (``~/.keras/models``); later calls need neither the
    network nor PyTorch. The download's SHA-256 must begin with the 8 hex digits torchvision
    puts in the file name (torchvision's own check; its full hash is not published).
    Returns the ``.weights.h5`` path.
    """
    import hashlib

    checkpoint = Path(keras.utils.get_file(fname=url.rsplit("/", 1)[-1], origin=url, cache_subdir="models"))
    converted = checkpoint.with_suffix(".weights.h5")  # googlenet-1378be20.weights.h5
    if not converted.is_file():
        digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
        if not digest.startswith(GOOGLENET_SHA256_PREFIX):
            checkpoint.unlink()
            raise OsteoInputError(
                f"the download of {url} is corrupt (SHA-256 {digest[:8]}…, expected "
                f"{GOOGLENET_SHA256_PREFIX}…); it was deleted, try again"
            )
        convert_torchvision(arch, checkpoint, converted)
    return converted


def registry_table() -> list[dict[str, object]]:
    """The registry as rows (for ``osteo backbones`` and the README), in registry order.

    Columns: name, params (trainable, torchvision's 1000-class head included), backbone
    params (no head), size (px), lr, feature layer, weights (source names; first = default).
    """
    return [
        {
            "name": s.name,
            "params": s.imagenet_params,
            "backbone_params": s.backbone_params,
            "size": s.image_size,
            "lr": s.learning_rate,
            "feature_layer": s.feature_layer,
            "weights": ", ".join(f"{k} ({v})" for k, v in s.weights_sources.items()),
        }
        for s in REGISTRY.values()
    ]


def registry_lines() -> list[str]:
    """:func:`registry_table` as aligned text columns, a header line first (``osteo backbones``).

    Returns:
        The header line, then one line per backbone; the last column (weights) is not padded.
    """
    header = ("name", "params", "backbone", "size", "LR", "feature layer", "ImageNet weights (first = default)")
    table = [header] + [
        (
            r["name"],
            f"{r['params']:,}",
            f"{r['backbone_params']:,}",
            str(r["size"]),
            f"{r['lr']:g}",
            r["feature_layer"],
            r["weights"],
        )
        for r in registry_table()
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in table]
