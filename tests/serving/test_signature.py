"""The serving graph's parts without a trained run: decoding, covariate encoding, inputs per mode."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from osteo_tf.data.covariates import CovariateEncoder
from osteo_tf.data.images import read_image
from osteo_tf.data.pipeline import decode_gray, load_image, preprocess_gray
from osteo_tf.models import build_model, get_backbone_spec, normalize_images
from osteo_tf.serving.signature import ServingGraph
from osteo_tf.serving.spec import ServingSpec

RNG = np.random.default_rng(0)
IMAGES = {
    "gray8": Image.fromarray(RNG.integers(0, 256, (37, 53), dtype=np.uint8)),
    "gray16": Image.fromarray(RNG.integers(0, 65536, (37, 53), dtype=np.uint16)),
    "rgb": Image.fromarray(RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)),
    "rgba": Image.fromarray(RNG.integers(0, 256, (37, 53, 4), dtype=np.uint8)),
    "gray_alpha": Image.fromarray(RNG.integers(0, 256, (37, 53, 2), dtype=np.uint8), mode="LA"),
    "palette": Image.fromarray(RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)).convert("P"),
}


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_in_graph_decoding_equals_the_training_pipeline(kind, tmp_path):
    path = tmp_path / f"{kind}.png"
    IMAGES[kind].save(path)
    gray = decode_gray(tf.constant(path.read_bytes())).numpy()
    np.testing.assert_array_equal(gray, read_image(path))  # same pixels, 16-bit kept
    np.testing.assert_array_equal(preprocess_gray(gray, 32).numpy(), load_image(str(path), None, 32))


def hip_encoder(sex_codes=None) -> tuple[CovariateEncoder, pd.DataFrame]:
    train = pd.DataFrame(
        {
            "age": [60.0, 70.0, 85.5, 77.0],
            "bmi": [19.0, 24.5, 31.0, 22.0],
            "sex": ["F", "M", "F", "F"],
            "hip_fracture_history": [0, 1, 0, 1],
            "site": ["A", "B", "A", "A"],
        }
    )
    encoder = CovariateEncoder.for_columns(["age", "bmi", "sex", "hip_fracture_history", "site"], train).fit(train)
    return encoder, train


def test_covariates_are_encoded_in_graph_exactly_as_in_training():
    encoder, table = hip_encoder()
    spec = ServingSpec(
        "resnet18",
        "covariates_only",
        32,
        0.5,
        encoder=encoder.to_dict(),
        sex_codes={"f": "F", "m": "M", "female": "F", "male": "M", "0": "F", "1": "M"},
    )
    assert spec.inputs == {
        "age": "float32",
        "bmi": "float32",
        "sex": "string",
        "hip_fracture_history": "string",
        "site": "string",
    }
    raw = {
        "age": tf.constant(table["age"], tf.float32),
        "bmi": tf.constant(table["bmi"], tf.float32),
        "sex": tf.constant(["0", " male", "Female", "f"]),  # codes as a record may hold them
        "hip_fracture_history": tf.constant(["no", "YES", "0", "true"]),
        "site": tf.constant(["A", "B", "A", "A"]),
    }
    encoded = ServingGraph(None, spec).covariates(raw).numpy()
    np.testing.assert_allclose(encoded, encoder.transform(table), atol=1e-6)


def test_each_mode_takes_only_its_inputs():
    encoder, table = hip_encoder()
    assert ServingSpec("resnet18", "image_only", 32, 0.5).inputs == {"image_bytes": "string"}
    ensemble = ServingSpec("resnet18", "ensemble", 32, 0.5, encoder=encoder.to_dict()).inputs
    assert list(ensemble) == ["image_bytes", "age", "bmi", "sex", "hip_fracture_history", "site"]


def test_image_only_graph_runs_on_bytes_alone(tmp_path):
    spec = ServingSpec("resnet18", "image_only", 32, 0.5)
    graph = ServingGraph(build_model("resnet18", "image_only", 32), spec)
    IMAGES["gray16"].save(tmp_path / "x.png")
    serve = tf.function(graph.serve, input_signature=[graph.raw_signature()])
    out = serve({"image_bytes": tf.constant([(tmp_path / "x.png").read_bytes()] * 2)})
    assert out["probability"].shape == (2,) and out["label"].dtype == tf.int64
    assert set(graph.tensor_signature()) == {"image"}


def test_imputed_covariates_are_filled_and_flagged_in_graph():
    train = pd.DataFrame(
        {
            "age": [60.0, 70.0, 85.5, 77.0],
            "bmi": [19.0, np.nan, 31.0, 22.0],
            "sex": ["F", "M", None, "F"],
            "hip_fracture_history": [0, 1, 0, 1],
        }
    )
    encoder = CovariateEncoder.for_columns(["age", "bmi", "sex", "hip_fracture_history"], train, impute="median").fit(
        train
    )
    assert encoder.imputed == ("bmi", "sex")
    spec = ServingSpec("resnet18", "covariates_only", 32, 0.5, encoder=encoder.to_dict())
    raw = {
        "age": tf.constant(train["age"], tf.float32),
        "bmi": tf.constant(train["bmi"], tf.float32),
        "sex": tf.constant(["F", "M", "", "f"]),
        "hip_fracture_history": tf.constant(["no", "yes", "no", "yes"]),
    }
    graph = ServingGraph(None, spec)
    np.testing.assert_allclose(graph.covariates(raw).numpy(), encoder.transform(train), atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="input age: value missing"):  # not imputed: refused
        graph.serve({**raw, "age": tf.constant([np.nan, 1.0, 2.0, 3.0])})


def test_the_runs_intensity_normalisation_is_used(tmp_path):
    IMAGES["gray16"].save(tmp_path / "x.png")
    spec = ServingSpec("resnet18", "image_only", 32, 0.5, intensity="percentile:1,99")
    served = ServingGraph(None, spec).images(tf.constant([(tmp_path / "x.png").read_bytes()])).numpy()[0]
    trained = normalize_images(
        load_image(str(tmp_path / "x.png"), None, 32, intensity="percentile:1,99"), get_backbone_spec("resnet18")
    )
    np.testing.assert_array_equal(served, trained)


@pytest.mark.parametrize("method", ["logistic", "temperature", "isotonic"])
def test_serving_recalibration_equals_numpy_apply(method):
    from osteo_tf.evaluation.calibration import fit_recalibration
    from osteo_tf.serving.signature import recalibrated

    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 400)
    raw = 1 / (1 + np.exp(-(3 * (label - 0.5) + rng.normal(0, 1.5, 400))))  # over-confident
    recalibration = fit_recalibration(label, raw, method)
    probe = np.concatenate([[0.0, 1.0, 1e-9, 0.5], rng.uniform(0, 1, 200), raw[:50]])
    if method == "isotonic":
        probe = np.concatenate([probe, recalibration.parameters["x"]])  # exactly on the knots
    served = recalibrated(tf.constant(probe, tf.float64), recalibration.to_dict()).numpy()
    np.testing.assert_allclose(served, recalibration.apply(probe), rtol=0, atol=1e-12)


def test_serve_tensors_outputs_the_recalibrated_probability_and_label():
    from osteo_tf.evaluation.calibration import Recalibration

    recalibration = Recalibration("logistic", {"intercept": -0.4, "slope": 0.5})
    spec = ServingSpec("resnet18", "image_only", 32, 0.45, recalibration=recalibration.to_dict())
    model = build_model("resnet18", "image_only", 32)
    image = tf.random.stateless_uniform((3, 32, 32, 3), (1, 2))
    raw = model({"image": image}, training=False).numpy().reshape(-1)
    out = ServingGraph(model, spec).serve_tensors({"image": image})
    expected = recalibration.apply(raw)
    np.testing.assert_allclose(out["probability"].numpy(), expected, atol=1e-6)
    assert out["label"].numpy().tolist() == (expected >= 0.45).astype(int).tolist()
