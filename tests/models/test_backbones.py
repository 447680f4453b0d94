"""The backbone zoo: every CNN of both papers, exact sizes, weights options, training, JAX."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from osteo_tf.cli import main
from osteo_tf.errors import OsteoInputError
from osteo_tf.models import REGISTRY, build_backbone, build_model, get_backbone_spec
from osteo_tf.models.backbones import registry_table
from osteo_tf.vocabulary import IMAGENET_MEAN, IMAGENET_STD

# torchvision's published parameter counts (torchvision.models.*, 1000-class head included).
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet152": 60_192_808,
    "googlenet": 6_624_904,
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704,
    "efficientnet_b7": 66_347_960,
}
# The papers' networks, input sizes and learning rates (Yamamoto 2020, Sukegawa 2022).
PAPERS = {
    "resnet18": (224, 0.001),
    "resnet34": (224, 0.001),
    "resnet50": (224, 0.001),
    "resnet152": (224, 0.001),
    "googlenet": (224, 0.001),
    "efficientnet_b0": (224, 0.01),
    "efficientnet_b3": (300, 0.01),
    "efficientnet_b4": (380, 0.01),
    "efficientnet_b7": (600, 0.01),
}


def test_registry_has_every_network_of_both_papers():
    assert set(REGISTRY) == set(TORCHVISION_PARAMS)
    for name, (size, rate) in PAPERS.items():
        spec = get_backbone_spec(name)
        assert (spec.image_size, spec.learning_rate) == (size, rate), name
        assert spec.imagenet_params == TORCHVISION_PARAMS[name]
    for name in ("resnet18", "resnet50", "googlenet"):
        assert get_backbone_spec(name).normalization == (IMAGENET_MEAN, IMAGENET_STD)
    assert get_backbone_spec("efficientnet_b0").normalization is None  # normalises inside
    # ResNet's default ImageNet weights are torchvision's own (timm's tv_in1k copies), paper-exact.
    assert get_backbone_spec("resnet34").weights_source == "hf://timm/resnet34.tv_in1k"
    assert list(get_backbone_spec("resnet50").weights_sources) == ["torchvision", "keras-hub"]


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_backbone_builds_small_and_counts_exactly_like_torchvision(name):
    spec = get_backbone_spec(name)
    size = spec.min_image_size
    backbone = build_backbone(name, size)
    # Output = the registry's feature layer = the last feature map (Grad-CAM's target).
    assert backbone.output.name == backbone.get_layer(spec.feature_layer).output.name
    features = np.asarray(backbone(np.random.default_rng(0).uniform(0, 1, (1, size, size, 3)).astype("float32")))
    assert features.ndim == 4 and features.shape[-1] == spec.feature_channels
    assert np.all(np.isfinite(features))
    logits = keras.layers.Dense(1000)(keras.layers.GlobalAveragePooling2D()(backbone.output))
    classifier = keras.Model(backbone.input, logits)
    assert sum(int(np.prod(w.shape)) for w in classifier.trainable_weights) == TORCHVISION_PARAMS[name]


def test_googlenet_fusion_model_is_flat_and_round_trips(tmp_path):
    model = build_model("googlenet", "ensemble", image_size=32, covariate_dim=6)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    assert model.get_layer("inception5b").output.shape[1:] == (1, 1, 1024)
    inputs = {"image": np.random.rand(2, 32, 32, 3).astype("float32"), "covariates": np.ones((2, 6), "float32")}
    model.save(tmp_path / "g.keras")
    again = keras.models.load_model(tmp_path / "g.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict(inputs, verbose=0), model.predict(inputs, verbose=0), rtol=1e-5)


def test_weight_source_choice():
    with pytest.raises(OsteoInputError, match="no ImageNet weight source 'keras-hub'.*imagenet:torchvision"):
        build_backbone("resnet34", 32, weights="imagenet:keras-hub")  # keras-hub has no plain ResNet-34
    # Offline (here and in CI) a chosen source fails fast with what to pass instead.
    for name, weights in [("resnet18", "imagenet:keras-hub"), ("googlenet", "imagenet")]:
        try:
            build_backbone(name, 32, weights=weights)
        except OsteoInputError as error:
            assert "weights=none" in str(error) and name in str(error)
            assert get_backbone_spec(name).weights_sources[weights.partition(":")[2] or "torchvision"] in str(error)
        else:  # pragma: no cover - only where the weights can be downloaded
            pytest.skip("ImageNet weights were reachable")


def test_weights_file_mismatch_names_the_layer_and_shapes(tmp_path):
    build_backbone("resnet18", 32).save_weights(tmp_path / "r18.weights.h5")
    with pytest.raises(OsteoInputError) as error:
        build_backbone("resnet34", 32, weights=tmp_path / "r18.weights.h5")
    message = str(error.value)
    assert "r18.weights.h5" in message and "resnet34" in message
    assert "the first is 'stack0_block2_1_conv'" in message
    assert "(3, 3, 64, 64)" in message and "(3, 3, 64, 128)" in message
    assert len(message) < 500  # not Keras' dump of the variable's values
    (tmp_path / "junk.weights.h5").write_text("not hdf5")
    with pytest.raises(OsteoInputError, match="junk.weights.h5 is truncated or not an HDF5 file"):
        build_backbone("resnet18", 32, weights=tmp_path / "junk.weights.h5")


def test_osteo_backbones_prints_the_table(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    for row in registry_table():
        line = next(line for line in out.splitlines() if line.startswith(row["name"] + " "))
        assert f"{row['params']:,}" in line and str(row["size"]) in line, line
    assert "6,624,904" in out and "hf://timm/resnet18.tv_in1k" in out and "inception5b" in out
    assert {row["name"] for row in registry_table()} == set(REGISTRY)


# `osteo train --backbone X`: one epoch on a tiny phantom. Each fit costs 9-85 s here (2 CPU
# cores: resnet18 9 s, googlenet 16 s, efficientnet_b0 22 s, resnet152 58 s, b7 83 s), so
# the paper's other backbones are marked slow: left out by default, run with `pytest -m slow`.
CORE = ("efficientnet_b0", "resnet18", "googlenet")


@pytest.fixture(scope="module")
def tiny_phantom(phantom_cohort):
    return phantom_cohort("hip", 60, image_size=32)


@pytest.mark.parametrize("name", [n if n in CORE else pytest.param(n, marks=pytest.mark.slow) for n in REGISTRY])
def test_train_runs_with_every_backbone(name, tiny_phantom, tmp_path):
    from osteo_tf.training.train import train

    run = train(
        tiny_phantom, tmp_path / name, backbone=name, mode="ensemble", image_size=32, epochs=1, batch_size=16, verbose=0
    )
    config = json.loads(run.config.read_text())["train"]
    assert config["backbone"] == name and config["learning_rate"] == get_backbone_spec(name).learning_rate
    assert 0.0 <= json.loads(run.metrics.read_text())["test"]["auc"] <= 1.0
    model = keras.models.load_model(run.model, safe_mode=True)
    assert model.get_layer(get_backbone_spec(name).feature_layer) is not None


JAX_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from osteo_tf.models import REGISTRY, build_backbone, build_model
    for name in sys.argv[1:]:
        features = build_backbone(name, 32).predict(np.ones((1, 32, 32, 3), "float32"), verbose=0)
        assert features.shape[-1] == REGISTRY[name].feature_channels and np.isfinite(features).all(), name
        print(name, features.shape, flush=True)
        if name == "googlenet":  # the flat fusion model too
            model = build_model(name, "ensemble", 32, 6)
            inputs = {"image": np.ones((2, 32, 32, 3), "float32"), "covariates": np.ones((2, 6), "float32")}
            out = model.predict(inputs, verbose=0)
            assert out.shape == (2, 1), out.shape
""")


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_every_backbone_builds_and_runs_on_jax():
    # JAX compiles each new op shape on first use: ~3 min for all 13 on 2 cores, so two
    # processes share the list (only where jax is installed; it is not a dependency).
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
    names = list(REGISTRY)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", JAX_SCRIPT, *names[i::2]],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    built = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=900)
        assert process.returncode == 0, stderr[-3000:]
        built += [line.split()[0] for line in stdout.splitlines()]
    assert sorted(built) == sorted(names)
