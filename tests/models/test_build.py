import ast
from pathlib import Path

import keras
import numpy as np
import pytest

import osteo_tf.models as models
from osteo_tf.errors import OsteoInputError
from osteo_tf.models import build_backbone, build_model, get_backbone_spec

SIZE = 32


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_b0"])
@pytest.mark.parametrize("mode", ["image_only", "ensemble"])
def test_image_models_are_flat_and_predict(backbone, mode):
    model = build_model(backbone, mode, image_size=SIZE, covariate_dim=6)
    # Flat: no nested Model among the layers, and the backbone's last feature map is reachable.
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    feature_map = model.get_layer(get_backbone_spec(backbone).feature_layer).output
    assert len(feature_map.shape) == 4
    inputs = {"image": np.random.rand(2, SIZE, SIZE, 3).astype("float32") * 255}
    if mode == "ensemble":
        inputs["covariates"] = np.zeros((2, 6), "float32")
        assert model.get_layer("fusion") is not None
    probability = model.predict(inputs, verbose=0)
    assert probability.shape == (2, 1) and np.all((probability >= 0) & (probability <= 1))


def test_covariates_only_has_no_image_input():
    model = build_model("resnet18", "covariates_only", covariate_dim=4)
    assert [t.name for t in model.inputs] == ["covariates"]
    assert model.count_params() < 10_000


def test_ensemble_round_trips_through_keras_file(tmp_path):
    model = build_model("efficientnet_b0", "ensemble", image_size=SIZE, covariate_dim=4)
    inputs = {
        "image": np.random.rand(1, SIZE, SIZE, 3).astype("float32") * 255,
        "covariates": np.ones((1, 4), "float32"),
    }
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict(inputs, verbose=0), model.predict(inputs, verbose=0), rtol=1e-5)


def test_weights_from_a_file(tmp_path):
    source = build_backbone("resnet18", SIZE)
    source.save_weights(tmp_path / "r18.weights.h5")
    loaded = build_backbone("resnet18", SIZE, weights=tmp_path / "r18.weights.h5")
    for a, b in zip(source.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_missing_weights_file_and_unknown_names():
    with pytest.raises(OsteoInputError, match="nope.weights.h5 does not exist"):
        build_backbone("resnet18", SIZE, weights="nope.weights.h5")
    with pytest.raises(OsteoInputError, match="unknown backbone 'resnet19'.*resnet18"):
        build_model("resnet19")
    with pytest.raises(OsteoInputError, match="unknown mode"):
        build_model("resnet18", "fusion")


def test_imagenet_offline_says_what_to_pass_instead():
    # No network here or in CI: the download fails, and the message must say what to do.
    try:
        build_backbone("efficientnet_b0", SIZE, weights="imagenet")
    except OsteoInputError as error:
        assert "weights=none" in str(error) and "efficientnet_b0" in str(error)
    else:  # pragma: no cover - only where the weights can be downloaded
        pytest.skip("ImageNet weights were reachable")


def test_model_code_imports_no_tensorflow():
    # osteo_tf.models must build on the JAX backend too: no tf.* in model code.
    package = Path(models.__file__).parent
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            assert not any(n.split(".")[0] == "tensorflow" for n in names), source.name


def test_registry_has_paper_defaults():
    assert get_backbone_spec("efficientnet_b0").learning_rate == 0.01
    assert get_backbone_spec("resnet18").learning_rate == 0.001
    assert get_backbone_spec("efficientnet_b3").image_size == 300
    assert get_backbone_spec("resnet18").feature_layer == "stack3_block1_out"
