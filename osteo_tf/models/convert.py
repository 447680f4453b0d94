"""torchvision ``state_dict`` → Keras ``.weights.h5`` for GoogLeNet and ResNet-18/34/50/152.

The papers fine-tuned torchvision's ImageNet networks; this module moves such weights (or
any checkpoint of the same architecture, e.g. one fine-tuned in PyTorch) into the registry's
Keras backbone, so ``build_backbone(arch, weights="FILE.weights.h5")`` starts from them.

Layout changes, torch → Keras: conv kernel (out, in, kh, kw) → (kh, kw, in, out); dense
kernel (out, in) → (in, out) (GoogLeNet's auxiliary ``fc1`` also re-orders its 2048 inputs
from channels-first to channels-last flattening); BatchNorm weight, bias, running_mean,
running_var → gamma, beta, moving_mean, moving_variance. The classifier (``fc``) has no
place in a backbone and is left out, as are GoogLeNet's auxiliary classifiers when the
model has none, and ``num_batches_tracked``.

Every Keras weight must find its tensor with the right shape and every other tensor must be
one of those left out; otherwise :class:`OsteoInputError` names the key, the Keras layer
and both shapes. PyTorch is needed only to read the ``.pth`` file (imported lazily here;
``pip install "osteo_tf[torch]"``); :func:`assign_state_dict` and
:func:`export_state_dict` work on plain numpy dicts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from osteo_tf.errors import OsteoInputError
from osteo_tf.optional import optional_import
from osteo_tf.vocabulary import CONVERTIBLE_BACKBONES

__all__ = [
    "ARCHITECTURES",
    "H5_ARCH_ATTRIBUTE",
    "assign_state_dict",
    "check_conversion",
    "ConversionReport",
    "convert_checkpoint",
    "export_state_dict",
    "read_torch_checkpoint",
    "save_weights",
    "torch_module",
    "weight_slots",
]

ARCHITECTURES = CONVERTIBLE_BACKBONES  # GoogLeNet and the ResNets (osteo_tf.vocabulary)
H5_ARCH_ATTRIBUTE = "osteo_tf_backbone"  # written into converted files, checked on loading
_LEFT_OUT = re.compile(r"^(fc|aux[12])\.|\.num_batches_tracked$")


@dataclass
class ConversionReport:
    """What a conversion did: ``tensors`` copied, ``left_out`` keys (head, aux, counters)."""

    arch: str
    source: str
    out: str | None = None
    tensors: int = 0
    left_out: list[str] = field(default_factory=list)

    def summary(self) -> str:
        heads = sorted({key.split(".")[0] for key in self.left_out if not key.endswith("num_batches_tracked")})
        return (
            f"{self.arch}: {self.tensors} tensors from {self.source}"
            + (f" → {self.out}" if self.out else "")
            + (f"; left out: {', '.join(heads)}" if heads else "")
        )


@dataclass(frozen=True)
class _Slot:
    """One Keras variable and its torchvision tensor, with the layout maps both ways."""

    key: str
    layer: str
    variable: keras.Variable
    to_keras: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]

    @property
    def torch_shape(self) -> tuple[int, ...]:
        return self.to_torch(np.zeros(self.variable.shape, np.float32)).shape


def _same(a: np.ndarray) -> np.ndarray:
    return a


def _conv_to_keras(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))


def _conv_to_torch(k: np.ndarray) -> np.ndarray:
    return np.transpose(k, (3, 2, 0, 1))


def _aux_fc1_to_keras(w: np.ndarray) -> np.ndarray:
    # torch flattens (128, 4, 4) channels-first; Keras flattens (4, 4, 128).
    out_units = w.shape[0]
    return w.reshape(out_units, 128, 4, 4).transpose(2, 3, 1, 0).reshape(-1, out_units)


def _aux_fc1_to_torch(k: np.ndarray) -> np.ndarray:
    out_units = k.shape[1]
    return k.reshape(4, 4, 128, out_units).transpose(3, 2, 0, 1).reshape(out_units, -1)


def torch_module(arch: str, layer_name: str) -> str:
    """torchvision module path of the Keras layer ``layer_name`` (a Conv2D, BN or Dense)."""
    if arch == "googlenet":
        return layer_name.replace("_", ".")  # googlenet.py names layers after torch paths
    match = re.fullmatch(r"stack(\d+)_block(\d+)_(\d)_(conv|bn)", layer_name)
    if match:
        stack, block, index, kind = match.groups()
        prefix = f"layer{int(stack) + 1}.{block}"
        if index == "0":  # the projection shortcut
            return f"{prefix}.downsample.{0 if kind == 'conv' else 1}"
        return f"{prefix}.{kind}{index}"
    stem = {"conv1_conv": "conv1", "conv1_bn": "bn1"}
    if layer_name in stem:
        return stem[layer_name]
    raise ValueError(f"no torchvision counterpart known for Keras layer '{layer_name}' of {arch}")


def weight_slots(arch: str, model: keras.Model) -> list[_Slot]:
    """Every weight of ``model`` with its torchvision key, in layer order."""
    slots = []
    for layer in model.layers:
        if not layer.weights:
            continue
        module = torch_module(arch, layer.name)
        if isinstance(layer, keras.layers.BatchNormalization):
            pairs = [
                ("weight", layer.gamma),
                ("bias", layer.beta),
                ("running_mean", layer.moving_mean),
                ("running_var", layer.moving_variance),
            ]
            slots += [_Slot(f"{module}.{n}", layer.name, v, _same, _same) for n, v in pairs]
        elif isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D):
            slots.append(_Slot(f"{module}.weight", layer.name, layer.kernel, _conv_to_keras, _conv_to_torch))
            if layer.use_bias:
                slots.append(_Slot(f"{module}.bias", layer.name, layer.bias, _same, _same))
        elif isinstance(layer, keras.layers.Dense):
            aux_fc1 = re.fullmatch(r"aux\d_fc1", layer.name) is not None
            slots.append(
                _Slot(
                    f"{module}.weight",
                    layer.name,
                    layer.kernel,
                    _aux_fc1_to_keras if aux_fc1 else np.transpose,
                    _aux_fc1_to_torch if aux_fc1 else np.transpose,
                )
            )
            slots.append(_Slot(f"{module}.bias", layer.name, layer.bias, _same, _same))
        else:
            raise ValueError(f"layer '{layer.name}' ({type(layer).__name__}) has weights but no torchvision mapping")
    return slots


def assign_state_dict(
    arch: str, model: keras.Model, state_dict: dict[str, np.ndarray], *, source: str = "state_dict"
) -> ConversionReport:
    """Copies a torchvision state_dict (numpy arrays, torch layout) into ``model``.

    Checks everything before assigning anything: a missing key, a wrong shape or an
    unexpected key raises :class:`OsteoInputError` naming key, Keras layer and shapes.
    """
    slots = weight_slots(arch, model)
    problems: dict[str, str] = {}  # Keras layer → its first problem
    for slot in slots:
        if slot.layer in problems:
            continue
        if slot.key not in state_dict:
            problems[slot.layer] = (
                f"key '{slot.key}' for Keras layer '{slot.layer}' (shape {slot.torch_shape}) is missing"
            )
        elif tuple(np.shape(state_dict[slot.key])) != slot.torch_shape:
            problems[slot.layer] = (
                f"key '{slot.key}' has shape {tuple(np.shape(state_dict[slot.key]))}, but Keras "
                f"layer '{slot.layer}' needs {slot.torch_shape} (torch layout)"
            )
    messages = list(problems.values())
    wanted = {slot.key for slot in slots}
    unexpected = [k for k in state_dict if k not in wanted and not _LEFT_OUT.search(k)]
    if unexpected:
        messages.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(repr(k) for k in unexpected[:3])}")
    if messages:
        shown = "; ".join(messages[:3]) + (f"; and {len(messages) - 3} more" if len(messages) > 3 else "")
        raise OsteoInputError(
            f"{source} does not match torchvision's {arch}: {shown}. "
            f"Is it a {arch} checkpoint? (arch is one of {', '.join(ARCHITECTURES)})",
            parameter="arch",
        )
    for slot in slots:
        slot.variable.assign(slot.to_keras(np.asarray(state_dict[slot.key], dtype=np.float32)))
    left_out = sorted(k for k in state_dict if k not in wanted)
    return ConversionReport(arch, source, tensors=len(slots), left_out=left_out)


def export_state_dict(arch: str, model: keras.Model) -> dict[str, np.ndarray]:
    """The inverse of :func:`assign_state_dict`: ``model``'s weights as a torchvision state_dict."""
    return {slot.key: slot.to_torch(keras.ops.convert_to_numpy(slot.variable)) for slot in weight_slots(arch, model)}


def read_torch_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a ``.pth`` state_dict (or a checkpoint dict holding one) as float32 numpy arrays.

    Accepts ``{"state_dict": …}`` / ``{"model": …}`` wrappers and strips DataParallel's
    ``module.`` prefix. Needs PyTorch.
    """
    path = Path(path)
    if not path.is_file():
        raise OsteoInputError(f"checkpoint {path} does not exist")
    torch = optional_import(
        "torch", purpose=f"reading {path}", hint=" — or convert on a machine that has it and copy the .weights.h5 file"
    )
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and weights_only errors
        raise OsteoInputError(
            f"cannot read {path} as a PyTorch state_dict ({type(error).__name__}: "
            f"{str(error)[:200]}); save one with torch.save(model.state_dict(), path)"
        ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
    if not isinstance(checkpoint, dict) or not any(torch.is_tensor(v) for v in checkpoint.values()):
        raise OsteoInputError(
            f"{path} holds no state_dict of tensors; save one with torch.save(model.state_dict(), path)"
        )
    return {
        key.removeprefix("module."): (value.detach().float() if value.is_floating_point() else value).cpu().numpy()
        for key, value in checkpoint.items()
        if torch.is_tensor(value)
    }


def check_conversion(arch: str, out: str | Path) -> None:
    """Refuses an ``arch`` this module cannot convert, or an ``out`` that is not a ``.weights.h5`` name."""
    if arch not in ARCHITECTURES:
        raise OsteoInputError(
            f"cannot convert '{arch}' from torchvision; arch is one of {', '.join(ARCHITECTURES)}", parameter="arch"
        )
    if not Path(out).name.endswith(".weights.h5"):
        raise OsteoInputError(f"out {out} must end in .weights.h5 (the Keras weights format)", parameter="out")


def convert_checkpoint(model: keras.Model, arch: str, source: str | Path, out: str | Path) -> ConversionReport:
    """Loads torchvision checkpoint ``source`` (.pth) of ``arch`` into the built backbone ``model``
    and saves it as Keras ``out`` (.weights.h5), tagged with ``arch``.

    Args:
        model: the registry's backbone of ``arch``, built (e.g. by
            :func:`osteo_tf.models.backbones.build_backbone`); its weights are overwritten.
        arch: one of :data:`ARCHITECTURES`.
        source: the ``.pth`` file.
        out: the ``.weights.h5`` file to write.

    Returns:
        What was copied and left out.

    Raises:
        OsteoInputError: as :func:`check_conversion`, :func:`read_torch_checkpoint` and
            :func:`assign_state_dict`.
    """
    check_conversion(arch, out)
    state_dict = read_torch_checkpoint(source)
    report = assign_state_dict(arch, model, state_dict, source=str(source))
    save_weights(model, arch, out, source=f"torchvision:{Path(source).name}")
    report.out = str(out)
    return report


def save_weights(model: keras.Model, arch: str, out: str | Path, *, source: str = "") -> Path:
    """Saves ``model``'s weights to ``out`` (.weights.h5), tagged with the backbone name."""
    import h5py

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(out))
    with h5py.File(out, "a") as handle:
        handle.attrs[H5_ARCH_ATTRIBUTE] = arch
        handle.attrs["osteo_tf_source"] = source
    return out
