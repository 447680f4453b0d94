"""Fusion variants and covariate withholding: build, train through train(), save/load,
Grad-CAM and the SavedModel round trip, one tiny run each (32 px, 1 epoch)."""

import json

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from osteo_tf.data.covariates import CovariateEncoder
from osteo_tf.data.manifest import read_manifest
from osteo_tf.data.pipeline import load_image
from osteo_tf.errors import OsteoInputError
from osteo_tf.explain.gradcam import gradcam
from osteo_tf.io import read_json
from osteo_tf.models import OUTPUTS_WITH_AUX, build_model, get_backbone_spec, inference_model, normalize_images
from osteo_tf.models.layers import CovariateWithholding
from osteo_tf.runs.config import TrainConfig
from osteo_tf.serving.archive import export_run
from osteo_tf.training.train import train

SIZE = 32
TINY = dict(backbone="resnet18", image_size=SIZE, epochs=1, batch_size=16, learning_rate=0.01, verbose=0)
VARIANTS = {  # name: TrainConfig options
    "concat": {"fusion": "concat"},
    "late": {"fusion": "late"},
    "film": {"fusion": "film"},
    "concat_aux": {"fusion": "concat", "aux_loss_weight": 0.5},
    "late_aux_withheld": {"fusion": "late", "aux_loss_weight": 0.3, "covariate_dropout": 0.3},
}


@pytest.fixture(scope="module")
def phantom(phantom_cohort):
    return phantom_cohort("hip", 64, seed=3, image_size=SIZE)


@pytest.fixture(scope="module")
def runs(phantom, tmp_path_factory):
    root = tmp_path_factory.mktemp("fusion_runs")
    return {name: train(phantom, root / name, mode="ensemble", **TINY, **options) for name, options in VARIANTS.items()}


def _inputs(run, phantom, n=4):
    cohort = read_manifest(phantom).head(n)
    images = np.stack([load_image(p, None, SIZE) for p in cohort["image"]])
    covariates = CovariateEncoder.from_dict(read_json(run.encoder)).transform(cohort)
    return (
        images,
        covariates,
        {"image": normalize_images(images, get_backbone_spec("resnet18")), "covariates": covariates},
    )


@pytest.mark.parametrize("fusion", ["concat", "late", "film"])
def test_each_fusion_builds_flat_with_its_layers(fusion):
    model = build_model("resnet18", "ensemble", SIZE, covariate_dim=6, fusion=fusion)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    names = {layer.name for layer in model.layers}
    expected = {
        "concat": {"fusion", "fusion_dense"},
        "late": {"image_logit", "covariate_logit", "fusion"},
        "film": {"film_scale", "film_shift", "film_modulate", "fusion_dense"},
    }[fusion]
    assert expected <= names and {"image_norm", "image_dropout", "covariate_norm"} <= names
    out = model.predict(
        {"image": np.random.rand(2, SIZE, SIZE, 3).astype("float32"), "covariates": np.zeros((2, 6), "float32")},
        verbose=0,
    )
    assert out.shape == (2, 1)


def test_the_covariates_reach_the_output_in_every_fusion():
    # A fusion that ignored the covariates would give the same probability for any vector.
    for fusion in ("concat", "late", "film"):
        keras.utils.set_random_seed(0)
        model = build_model("resnet18", "ensemble", SIZE, covariate_dim=6, fusion=fusion)
        image = np.random.rand(1, SIZE, SIZE, 3).astype("float32")
        a = model.predict({"image": image, "covariates": np.zeros((1, 6), "float32")}, verbose=0)
        b = model.predict({"image": image, "covariates": np.full((1, 6), 3.0, "float32")}, verbose=0)
        assert abs(float(a[0, 0] - b[0, 0])) > 1e-4, fusion


def test_aux_outputs_and_the_inference_model_share_weights():
    model = build_model("resnet18", "ensemble", SIZE, covariate_dim=6, fusion="concat", aux_outputs=True)
    assert set(model.output) == set(OUTPUTS_WITH_AUX) == {"probability", "aux_image", "aux_covariates"}
    single = inference_model(model)
    inputs = {"image": np.random.rand(2, SIZE, SIZE, 3).astype("float32"), "covariates": np.ones((2, 6), "float32")}
    np.testing.assert_allclose(
        single.predict(inputs, verbose=0), model.predict(inputs, verbose=0)["probability"], rtol=1e-6
    )
    assert not any(layer.name in ("aux_image", "aux_covariates") for layer in single.layers)
    with pytest.raises(OsteoInputError, match="two branches"):
        build_model("resnet18", "image_only", SIZE, covariate_dim=0, aux_outputs=True)
    with pytest.raises(OsteoInputError, match="unknown fusion 'sum'"):
        build_model("resnet18", "ensemble", SIZE, covariate_dim=6, fusion="sum")


def test_config_validates_fusion_options():
    with pytest.raises(OsteoInputError, match="fusion='sum'"):
        TrainConfig(backbone="resnet18", fusion="sum")
    with pytest.raises(OsteoInputError, match="covariate_dropout=1.0"):
        TrainConfig(backbone="resnet18", covariate_dropout=1.0)
    with pytest.raises(OsteoInputError, match="aux_loss_weight=-0.1"):
        TrainConfig(backbone="resnet18", aux_loss_weight=-0.1)
    assert not TrainConfig(backbone="resnet18", mode="image_only", aux_loss_weight=1.0).uses_aux_loss


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_trains_saves_explains_and_exports(name, runs, phantom, tmp_path):
    run = runs[name]
    config = read_json(run.config)["train"]
    assert config["fusion"] == VARIANTS[name]["fusion"]
    history = pd.read_csv(run.history)
    # With auxiliary outputs early stopping follows the probability's loss; the 1-epoch auxiliary
    # image head may not be finite yet in inference mode (batch-norm statistics of 4 steps).
    monitored = "val_probability_loss" if VARIANTS[name].get("aux_loss_weight") else "val_loss"
    assert len(history) == 1 and np.isfinite(history[monitored]).all()
    model = keras.models.load_model(run.model)
    assert not isinstance(model.output, dict)  # the saved model has one output, aux or not
    images, covariates, inputs = _inputs(run, phantom)
    keras_p = model.predict(inputs, verbose=0)[:, 0]
    written = pd.read_csv(run.predictions)
    assert np.isfinite(written["probability"]).all()
    heat = gradcam(model, images[0], covariates[0])
    assert heat.shape == (SIZE, SIZE) and np.isfinite(heat).all() and heat.max() <= 1.0
    export = export_run(run.path, tmp_path / "saved", name="m", version=1)
    serve = tf.saved_model.load(str(export.path)).signatures["serving_default"]
    rows = pd.read_csv(phantom, dtype=str).head(4)
    request = {
        "image_bytes": tf.constant([(phantom.parent / p).read_bytes() for p in rows["image"]]),
        "age": tf.constant(rows["age"].astype(float).to_numpy(np.float32)),
        "sex": tf.constant(rows["sex"].tolist()),
        "bmi": tf.constant(rows["bmi"].astype(float).to_numpy(np.float32)),
        "hip_fracture_history": tf.constant(rows["hip_fracture_history"].tolist()),
    }
    np.testing.assert_allclose(serve(**request)["probability"].numpy(), keras_p, atol=1e-5)


def test_a_withheld_model_serves_with_covariates_missing(runs, phantom, tmp_path):
    run = runs["late_aux_withheld"]
    encoder = read_json(run.encoder)
    assert encoder["imputed"] == encoder["numeric"] + encoder["categorical"]  # every covariate may be missing
    card_export = export_run(run.path, tmp_path / "saved", name="m", version=1)
    card = json.loads((card_export.path / "assets" / "model_card.json").read_text())
    assert set(card["missing_covariates"]["may_be_missing"]) == {"age", "bmi", "sex", "hip_fracture_history"}
    assert card["missing_covariates"]["required"] == []
    assert card["fusion"] == {"design": "late", "aux_loss_weight": 0.3, "covariate_dropout": 0.3}
    serve = tf.saved_model.load(str(card_export.path)).signatures["serving_default"]
    rows = pd.read_csv(phantom, dtype=str).head(3)
    request = {
        "image_bytes": tf.constant([(phantom.parent / p).read_bytes() for p in rows["image"]]),
        "age": tf.constant([np.nan] * 3, tf.float32),
        "sex": tf.constant(["", "", ""]),
        "bmi": tf.constant([np.nan] * 3, tf.float32),
        "hip_fracture_history": tf.constant(["", "", ""]),
    }
    missing = serve(**request)["probability"].numpy()
    # The same as the Keras model on the encoding of "all missing": fills plus indicators.
    model = keras.models.load_model(run.model)
    blank = pd.DataFrame(
        {"age": [np.nan] * 3, "bmi": [np.nan] * 3, "sex": [None] * 3, "hip_fracture_history": [None] * 3}
    )
    covariates = CovariateEncoder.from_dict(encoder).transform(blank)
    images = np.stack([load_image(p, None, SIZE) for p in read_manifest(phantom).head(3)["image"]])
    expected = model.predict(
        {"image": normalize_images(images, get_backbone_spec("resnet18")), "covariates": covariates}, verbose=0
    )[:, 0]
    np.testing.assert_allclose(missing, expected, atol=1e-5)


def test_withholding_replaces_whole_covariates_with_their_missing_encoding():
    table = pd.DataFrame({"age": [60.0, 70.0, 80.0, 90.0], "sex": ["F", "M", "F", "F"]})
    encoder = CovariateEncoder.for_columns(("age", "sex"), table, impute_all=True).fit(table)
    assert encoder.feature_names == ["age", "sex=F", "sex=M", "age_missing", "sex_missing"]
    groups = encoder.withholding_groups()
    assert groups[0]["features"] == [0, 3] and groups[1]["features"] == [1, 2, 4]
    missing = encoder.transform(pd.DataFrame({"age": [None], "sex": [None]}))[0]
    assert groups[0]["values"] == pytest.approx(missing[[0, 3]].tolist())
    assert groups[1]["values"] == pytest.approx(missing[[1, 2, 4]].tolist())
    encoded = encoder.transform(table)
    layer = CovariateWithholding(groups, rate=0.5, seed=1)
    out = np.asarray(layer(np.repeat(encoded, 500, axis=0), training=True))
    np.testing.assert_array_equal(np.asarray(layer(encoded, training=False)), encoded)
    age_withheld = out[:, 3] == 1.0
    sex_withheld = out[:, 4] == 1.0
    assert 0.4 < age_withheld.mean() < 0.6 and 0.4 < sex_withheld.mean() < 0.6  # rate 0.5, per covariate
    assert 0.15 < (age_withheld & sex_withheld).mean() < 0.35  # independent draws
    np.testing.assert_allclose(out[age_withheld][:, [0, 3]], np.tile(missing[[0, 3]], (age_withheld.sum(), 1)))
    np.testing.assert_allclose(out[sex_withheld][:, [1, 2, 4]], np.tile(missing[[1, 2, 4]], (sex_withheld.sum(), 1)))
    kept = ~age_withheld & ~sex_withheld
    np.testing.assert_allclose(out[kept], np.repeat(encoded, 500, axis=0)[kept])


def test_evaluate_without_a_covariate_needs_a_model_that_can_do_without_it(runs):
    from osteo_tf.evaluation.evaluate import evaluate

    metrics = evaluate(runs["late_aux_withheld"].path, without=("bmi", "hip_fracture_history"))
    assert metrics["n"] > 0 and 0.0 <= metrics["auc"] <= 1.0
    assert (runs["late_aux_withheld"].path / "evaluation_test_without_bmi_hip_fracture_history.json").is_file()
    with pytest.raises(OsteoInputError, match="cannot predict without 'bmi'.*covariate_dropout=P"):
        evaluate(runs["concat"].path, without=("bmi",))
    with pytest.raises(OsteoInputError, match="'smoking' is not a covariate"):
        evaluate(runs["late_aux_withheld"].path, without=("smoking",))


@pytest.mark.parametrize("backbone", ["resnet50", "googlenet", "efficientnet_b0"])
def test_every_fusion_builds_and_predicts_on_each_backbone_family(backbone):
    spec = get_backbone_spec(backbone)
    size = max(SIZE, spec.min_image_size)
    inputs = {
        "image": np.random.rand(2, size, size, 3).astype("float32") * 255,
        "covariates": np.ones((2, 6), "float32"),
    }
    for fusion in ("concat", "late", "film"):
        model = build_model(backbone, "ensemble", size, covariate_dim=6, fusion=fusion)
        assert model.get_layer(spec.feature_layer).output.shape[-1] == spec.feature_channels
        out = model.predict(inputs, verbose=0)
        assert out.shape == (2, 1) and np.isfinite(out).all()
        keras.utils.clear_session()
