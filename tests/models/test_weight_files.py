"""Weights in each source's published layout load into the network the online path builds."""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pytest
from helpers import backbone_outputs

from osteo_tf.errors import OsteoInputError
from osteo_tf.models import build_backbone

SIZE = 32


def _served_from(monkeypatch, path):
    """keras.applications' ``weights="imagenet"`` download, served from ``path`` (no network)."""
    from keras.src.utils import file_utils

    asked = []

    def get_file(fname, *args, **kwargs):
        asked.append(fname)
        return str(path)

    monkeypatch.setattr(file_utils, "get_file", get_file)
    return asked


@pytest.mark.parametrize("given", ["folder", "safetensors"])
def test_timm_snapshot_equals_keras_hub_from_preset(published_weights, given):
    import keras_hub

    folder = published_weights("timm", "resnet18")
    reference = keras_hub.models.ResNetBackbone.from_preset(str(folder), image_shape=(SIZE, SIZE, 3))
    path = folder if given == "folder" else folder / "model.safetensors"
    ours = build_backbone("resnet18", SIZE, weights=path)
    assert [layer.name for layer in ours.layers[1:]] == [layer.name for layer in reference.layers[1:]]
    np.testing.assert_allclose(backbone_outputs(ours, SIZE), backbone_outputs(reference, SIZE), atol=1e-5, rtol=0)
    random_init = backbone_outputs(build_backbone("resnet18", SIZE), SIZE)
    assert np.abs(backbone_outputs(ours, SIZE) - random_init).max() > 1e-2


def test_keras_hub_preset_folder_equals_from_preset(published_weights):
    import keras_hub

    folder = published_weights("keras-hub", "resnet18")
    assert (folder / "config.json").is_file() and (folder / "model.weights.h5").is_file()
    reference = keras_hub.models.ResNetBackbone.from_preset(str(folder), image_shape=(SIZE, SIZE, 3))
    np.testing.assert_allclose(
        backbone_outputs(build_backbone("resnet18", SIZE, weights=folder), SIZE),
        backbone_outputs(reference, SIZE),
        atol=1e-5,
        rtol=0,
    )


def test_keras_applications_notop_equals_the_imagenet_network(published_weights, monkeypatch):
    path = published_weights("keras-applications", "efficientnet_b0")
    ours = build_backbone("efficientnet_b0", SIZE, weights=path)  # before the patch: no download served
    asked = _served_from(monkeypatch, path)
    reference = keras.applications.EfficientNetB0(include_top=False, weights="imagenet", input_shape=(SIZE, SIZE, 3))
    assert asked == ["efficientnetb0_notop.h5"]
    # the ImageNet network has keras.applications' extra Rescaling(1/sqrt(std)) after Normalization
    assert [type(layer).__name__ for layer in ours.layers] == [type(layer).__name__ for layer in reference.layers]
    assert [type(layer).__name__ for layer in ours.layers][1:4] == ["Rescaling", "Normalization", "Rescaling"]
    np.testing.assert_allclose(backbone_outputs(ours, SIZE), backbone_outputs(reference, SIZE), atol=1e-5, rtol=0)


def test_keras_applications_file_with_top_loads_without_its_classifier(published_weights, monkeypatch):
    path = published_weights("keras-applications-top", "efficientnet_b0")
    ours = build_backbone("efficientnet_b0", 224, weights=path)
    _served_from(monkeypatch, path)
    full = keras.applications.EfficientNetB0(include_top=True, weights="imagenet")  # 224 px: keras' rule for the top
    reference = keras.Model(full.input, full.get_layer("top_activation").output)
    np.testing.assert_allclose(backbone_outputs(ours, 224), backbone_outputs(reference, 224), atol=1e-5, rtol=0)


def test_keras_applications_file_of_another_variant_is_refused(published_weights):
    path = published_weights("keras-applications", "efficientnet_b0")
    with pytest.raises(OsteoInputError, match=r"cannot load .*efficientnetb0_notop\.h5 into efficientnet_b1.*expected"):
        build_backbone("efficientnet_b1", SIZE, weights=path)


def test_timm_folder_of_another_architecture_is_refused(published_weights, tmp_path):
    import json

    folder = tmp_path / "resnet50.tv_in1k"
    shutil.copytree(published_weights("timm", "resnet18"), folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architecture": "resnet50"}))
    with pytest.raises(OsteoInputError, match=r"config\.json describes timm architecture 'resnet50', not resnet18"):
        build_backbone("resnet18", SIZE, weights=folder)


def test_truncated_files_are_refused_by_name(published_weights, tmp_path):
    folder = tmp_path / "snapshot"
    shutil.copytree(published_weights("timm", "resnet18"), folder)
    tensors = folder / "model.safetensors"
    tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])
    with pytest.raises(OsteoInputError, match=r"model\.safetensors is truncated or not a safetensors file"):
        build_backbone("resnet18", SIZE, weights=folder)
    h5 = tmp_path / "efficientnetb0_notop.h5"
    source = published_weights("keras-applications", "efficientnet_b0").read_bytes()
    h5.write_bytes(source[: len(source) // 2])
    with pytest.raises(OsteoInputError, match=r"efficientnetb0_notop\.h5 is truncated or not an HDF5 file"):
        build_backbone("efficientnet_b0", SIZE, weights=h5)


def test_folders_and_formats_it_cannot_use_are_refused(published_weights, tmp_path):
    (tmp_path / "README.md").write_text("not weights")
    with pytest.raises(OsteoInputError, match=r"has no config\.json .* and no manifest\.json"):
        build_backbone("resnet18", SIZE, weights=tmp_path)
    with pytest.raises(OsteoInputError, match=r"keras-applications' efficientnetbN_notop\.h5.*which resnet18 does not"):
        build_backbone("resnet18", SIZE, weights=published_weights("keras-applications", "efficientnet_b0"))
    with pytest.raises(OsteoInputError, match=r"timm / Hugging Face snapshot.*which efficientnet_b0 does not load"):
        build_backbone("efficientnet_b0", SIZE, weights=published_weights("timm", "resnet18"))
    with pytest.raises(OsteoInputError, match=r"does not exist; pass weights=none, imagenet, or a path"):
        build_backbone("resnet18", SIZE, weights=tmp_path / "missing")
    lone = tmp_path / "lone" / "model.safetensors"
    lone.parent.mkdir()
    shutil.copy(published_weights("timm", "resnet18") / "model.safetensors", lone)
    with pytest.raises(OsteoInputError, match=r"no config\.json beside it"):
        build_backbone("resnet18", SIZE, weights=lone)


def test_torchvision_pth_equals_the_timm_snapshot_of_the_same_state_dict(published_weights, tmp_path):
    torch = pytest.importorskip("torch", reason="torch not installed (optional: pip install 'osteo_tf[torch]')")
    from safetensors.numpy import load_file

    folder = published_weights("timm", "resnet18")
    state = {k: torch.from_numpy(v) for k, v in load_file(str(folder / "model.safetensors")).items()}
    torch.save(state, tmp_path / "resnet18-f37072fd.pth")
    np.testing.assert_allclose(
        backbone_outputs(build_backbone("resnet18", SIZE, weights=tmp_path / "resnet18-f37072fd.pth"), SIZE),
        backbone_outputs(build_backbone("resnet18", SIZE, weights=folder), SIZE),
        atol=1e-5,
        rtol=0,
    )
