"""Pretrained weights from files, in the layout each source publishes them (offline machines).

``build_backbone(name, size, weights=PATH)`` hands every ``PATH`` here first: :func:`identify`
tells its layout (see :data:`osteo_tf.vocabulary.WEIGHT_FORMATS` for which family takes
which) from the files themselves, refusing a folder or file it does not recognise, one of
another architecture, or a truncated one before any network is built. The loaders then
build exactly the network the online ``weights="imagenet"`` path builds from the same file:

- ``timm`` / ``keras-hub``: ``keras_hub.models.ResNetBackbone.from_preset(folder)``, the call
  the online path makes on ``hf://timm/resnetN.tv_in1k`` (whose download is that folder).
- ``keras-applications``: ``keras.applications.EfficientNetBN(weights="imagenet")`` with its
  download served from the file. Only that branch of keras.applications adds the
  ``Rescaling(1/sqrt(std))`` after its ``Normalization`` layer that the published weights
  expect; loading the file into a ``weights=None`` network (what this project did before)
  leaves it out and mis-normalises every input without a message. keras.applications has no
  public way to build that network from a local file, so its ``get_file`` is pointed at the
  file for the duration of the call (and the file name it asks for is checked).
- ``bundle``: a folder written by :mod:`osteo_tf.models.weight_fetch` — one ``.weights.h5``
  per backbone and ``manifest.json`` with their SHA-256, verified here before loading.

No library covers this: keras-hub loads presets but not keras.applications files, and
neither knows this project's bundle. Pure Keras (h5py, safetensors, json); no TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import keras

from osteo_tf.errors import OsteoInputError
from osteo_tf.vocabulary import RESNET_BLOCKS, WEIGHT_FORMAT_NAMES, WEIGHT_FORMATS, BackboneSpec

__all__ = [
    "INPUT_SCALING_ATTRIBUTE",
    "KERAS_APPLICATIONS_SCALING",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "WeightsFile",
    "bundle_entry",
    "efficientnet_imagenet",
    "file_sha256",
    "identify",
    "read_manifest",
    "resnet_from_preset",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "osteo_tf-weights/1"
#: Attribute of a ``.weights.h5`` saved from keras.applications' ImageNet EfficientNet: the file
#: must be loaded into that network (with the extra input Rescaling), not a ``weights=None`` one.
INPUT_SCALING_ATTRIBUTE = "osteo_tf_input_scaling"
KERAS_APPLICATIONS_SCALING = "keras-applications-imagenet"
_TORCH_SUFFIXES = (".pth", ".pt")


@dataclass(frozen=True)
class WeightsFile:
    """A recognised weights path: ``kind`` (a key of WEIGHT_FORMAT_NAMES) and the path to load."""

    kind: str
    path: Path


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file as 64 hex digits (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _accepted(spec: BackboneSpec) -> str:
    return "; ".join(WEIGHT_FORMAT_NAMES[kind] for kind in WEIGHT_FORMATS[spec.family])


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise OsteoInputError(f"{path} is not readable JSON ({error})") from None
    if not isinstance(value, dict):
        raise OsteoInputError(f"{path} holds {type(value).__name__}, not a JSON object")
    return value


def _folder_kind(folder: Path) -> tuple[str, Path]:
    if (folder / MANIFEST_NAME).is_file():
        return "bundle", folder
    config = folder / "config.json"
    if not config.is_file():
        raise OsteoInputError(
            f"weights folder {folder} has no config.json (a timm / Hugging Face snapshot or a keras-hub "
            f"preset) and no {MANIFEST_NAME} (a folder written by osteo weights fetch)",
            parameter="weights",
        )
    content = _read_json(config)
    if "architecture" in content:
        return "timm", folder
    if "class_name" in content or "registered_name" in content:
        return "keras-hub", folder
    raise OsteoInputError(
        f"{config} is neither a timm config (no 'architecture' key) nor a keras-hub preset config "
        "(no 'class_name' key)",
        parameter="weights",
    )


def _h5_kind(path: Path) -> str:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            legacy = "layer_names" in handle.attrs
    except OSError as error:
        raise OsteoInputError(
            f"weights file {path} is truncated or not an HDF5 file ({str(error)[:160]})", parameter="weights"
        ) from None
    return "keras-applications" if legacy and not path.name.endswith(".weights.h5") else "keras"


def _path_kind(path: Path) -> tuple[str, Path]:
    if path.is_dir():
        return _folder_kind(path)
    if path.suffix == ".safetensors":
        if not (path.parent / "config.json").is_file():
            raise OsteoInputError(
                f"{path} has no config.json beside it: keep the snapshot folder as downloaded "
                "(config.json + model.safetensors) and pass the folder",
                parameter="weights",
            )
        return _folder_kind(path.parent)
    if path.suffix in _TORCH_SUFFIXES:
        return "torchvision", path
    if path.suffix in (".h5", ".hdf5"):
        return _h5_kind(path), path
    raise OsteoInputError(
        f"weights file {path} has an unknown type (expected a folder, .safetensors, .pth, .h5 or .weights.h5)",
        parameter="weights",
    )


def identify(spec: BackboneSpec, weights: str | Path) -> WeightsFile:
    """What ``weights`` is, checked against backbone ``spec`` without building anything.

    Args:
        spec: the backbone the weights are for.
        weights: a folder or file (see :data:`osteo_tf.vocabulary.WEIGHT_FORMATS`).

    Returns:
        The layout and the path its loader takes (a snapshot folder for its model.safetensors).

    Raises:
        OsteoInputError: the path does not exist; a layout this family does not load; a config
            of another architecture; a truncated or unreadable file; for a bundle, a missing
            backbone or a checksum mismatch.
    """
    path = Path(weights)
    if not path.exists():
        raise OsteoInputError(
            f"weights {path} does not exist; pass weights=none, imagenet, or a path to "
            f"{spec.name} weights: {_accepted(spec)}",
            parameter="weights",
        )
    kind, target = _path_kind(path)
    if kind not in WEIGHT_FORMATS[spec.family]:
        raise OsteoInputError(
            f"{path} is {WEIGHT_FORMAT_NAMES[kind]}, which {spec.name} does not load; it takes {_accepted(spec)}",
            parameter="weights",
        )
    if kind == "timm":
        _check_timm(spec, target)
    elif kind == "keras-hub":
        _check_keras_hub(spec, target)
    elif kind == "bundle":
        return WeightsFile("keras", bundle_entry(target, spec.name))
    return WeightsFile(kind, target)


def _check_timm(spec: BackboneSpec, folder: Path) -> None:
    architecture = _read_json(folder / "config.json")["architecture"]
    if architecture != spec.name:
        raise OsteoInputError(
            f"{folder / 'config.json'} describes timm architecture '{architecture}', not {spec.name}; "
            f"pass the snapshot of timm/{spec.name}.tv_in1k or use backbone={architecture}",
            parameter="weights",
        )
    tensors = folder / "model.safetensors"
    if not tensors.is_file():
        raise OsteoInputError(f"snapshot folder {folder} has no model.safetensors", parameter="weights")
    import safetensors

    try:
        with safetensors.safe_open(str(tensors), framework="np") as handle:
            keys = list(handle.keys())
    except Exception as error:  # SafetensorError (a Rust error type), OSError
        raise OsteoInputError(
            f"{tensors} is truncated or not a safetensors file ({str(error)[:160]})", parameter="weights"
        ) from None
    if "conv1.weight" not in keys:
        raise OsteoInputError(
            f"{tensors} has no tensor 'conv1.weight': not the weights of a timm ResNet", parameter="weights"
        )


def _check_keras_hub(spec: BackboneSpec, folder: Path) -> None:
    content = _read_json(folder / "config.json")
    kind = str(content.get("registered_name") or content.get("class_name"))
    config = content.get("config", {})
    depth = int(spec.name.removeprefix("resnet"))
    expected_blocks = list(RESNET_BLOCKS[depth])
    block_type = "basic_block" if depth < 50 else "bottleneck_block"
    found = (config.get("stackwise_num_blocks"), config.get("block_type"), config.get("use_pre_activation"))
    if not kind.endswith("ResNetBackbone") or found != (expected_blocks, block_type, False):
        raise OsteoInputError(
            f"{folder / 'config.json'} is a keras-hub {kind} with blocks {found[0]}, {found[1]}, "
            f"pre-activation {found[2]}; {spec.name} is a ResNetBackbone with blocks {expected_blocks}, "
            f"{block_type}, no pre-activation",
            parameter="weights",
        )
    if not (folder / "model.weights.h5").is_file():
        raise OsteoInputError(f"keras-hub preset folder {folder} has no model.weights.h5", parameter="weights")


def read_manifest(folder: str | Path) -> dict:
    """The ``manifest.json`` of a folder of ``osteo weights fetch``; an empty one when there is none yet.

    Raises:
        OsteoInputError: the file is not readable JSON, or not this project's manifest.
    """
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return {"format": MANIFEST_FORMAT, "backbones": {}}
    manifest = _read_json(path)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise OsteoInputError(
            f"{path} is not a manifest of osteo weights fetch (format {manifest.get('format')!r}, "
            f"expected {MANIFEST_FORMAT!r})",
            parameter="weights",
        )
    return manifest


def bundle_entry(folder: str | Path, name: str) -> Path:
    """The checked ``.weights.h5`` of backbone ``name`` in a folder of ``osteo weights fetch``.

    Raises:
        OsteoInputError: the manifest is not this project's, it does not hold ``name``, the file
            is missing, or its SHA-256 differs from the manifest's.
    """
    folder = Path(folder)
    entries = read_manifest(folder).get("backbones", {})
    if name not in entries:
        held = ", ".join(sorted(entries)) or "none"
        raise OsteoInputError(
            f"{folder} holds no {name} weights (it holds: {held}); run osteo weights fetch for {name} "
            "on a machine with internet access and copy the folder",
            parameter="weights",
        )
    entry = entries[name]
    path = folder / entry["file"]
    if not path.is_file():
        raise OsteoInputError(f"{path} is listed in {folder / MANIFEST_NAME} but missing", parameter="weights")
    digest = file_sha256(path)
    if digest != entry["sha256"]:
        raise OsteoInputError(
            f"{path} does not match its checksum in {folder / MANIFEST_NAME} (SHA-256 {digest[:12]}…, "
            f"expected {entry['sha256'][:12]}…): the copy is damaged or the file was changed; copy it again",
            parameter="weights",
        )
    return path


def resnet_from_preset(spec: BackboneSpec, image_size: int, folder: Path) -> keras.Model:
    """keras-hub's ResNetBackbone from a timm snapshot or keras-hub preset folder (the online path's call)."""
    import keras_hub

    try:
        return keras_hub.models.ResNetBackbone.from_preset(str(folder), image_shape=(image_size, image_size, 3))
    except Exception as error:  # shape mismatches come as ValueError, missing tensors as KeyError, …
        raise OsteoInputError(
            f"cannot load {folder} into {spec.name}: {type(error).__name__}: {str(error)[:240]}", parameter="weights"
        ) from None


def _drop_classifier(source: Path, folder: Path) -> Path:
    """A copy of a with-top keras-applications file without its ``predictions`` layer (legacy layout)."""
    import h5py

    out = folder / "notop.h5"
    with h5py.File(source, "r") as inp, h5py.File(out, "w") as dst:
        for key, value in inp.attrs.items():
            dst.attrs[key] = value
        names = [n for n in inp.attrs["layer_names"] if (n.decode() if isinstance(n, bytes) else n) != "predictions"]
        dst.attrs["layer_names"] = names
        for key in inp:
            if key != "predictions":
                inp.copy(inp[key], dst, name=key)
    return out


def efficientnet_imagenet(spec: BackboneSpec, image_size: int, path: Path) -> keras.Model:
    """keras.applications' ImageNet EfficientNet (with its input Rescaling), weights from ``path``.

    ``path``: keras-applications' ``efficientnetbN_notop.h5``, its with-top ``efficientnetbN.h5``
    (the classifier dropped), or a ``.weights.h5`` saved from that network.
    """
    from keras.src.utils import file_utils

    variant = spec.name.rpartition("_")[2]
    constructor = getattr(keras.applications, f"EfficientNet{variant.upper()}")
    expected = f"efficientnet{variant}_notop.h5"
    with tempfile.TemporaryDirectory() as scratch:
        source = path
        if path.suffix == ".h5" and not path.name.endswith(".weights.h5") and _has_classifier(path):
            source = _drop_classifier(path, Path(scratch))

        def served(fname, *args, **kwargs):
            if fname != expected:
                raise OsteoInputError(f"keras.applications asked for {fname}, not {expected}")
            return str(source)

        try:
            with mock.patch.object(file_utils, "get_file", served):
                return constructor(include_top=False, weights="imagenet", input_shape=(image_size, image_size, 3))
        except OsteoInputError:
            raise
        except Exception as error:  # ValueError: layer count or shape mismatch
            first = str(error).strip().splitlines()[0][:240] if str(error).strip() else type(error).__name__
            raise OsteoInputError(
                f"cannot load {path} into {spec.name}: {first}; expected keras-applications' {expected} "
                f"(or efficientnet{variant}.h5)",
                parameter="weights",
            ) from None


def _has_classifier(path: Path) -> bool:
    import h5py

    with h5py.File(path, "r") as handle:
        names = [n.decode() if isinstance(n, bytes) else n for n in handle.attrs.get("layer_names", [])]
    return "predictions" in names
