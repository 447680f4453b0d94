"""Export → SavedModel → serving signature on raw PNG bytes and raw covariates (conftest.py's ``exported`` run)."""

import base64
import io
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from helpers import JSONHandler, http_server
from PIL import Image

from osteo_tf.cli import main
from osteo_tf.data.covariates import CovariateEncoder
from osteo_tf.data.manifest import read_manifest
from osteo_tf.data.pipeline import load_image
from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.evaluate import evaluate
from osteo_tf.io import read_json
from osteo_tf.models import get_backbone_spec, normalize_images
from osteo_tf.serving.archive import _move_into_place, export_run

N_REQUEST = 8  # manifest rows sent through the signature
FRESH_PROCESS = textwrap.dedent("""
    import csv, json, os, sys
    from pathlib import Path
    import tensorflow as tf
    model_dir, manifest, out = sys.argv[1:4]
    loaded = tf.saved_model.load(model_dir)
    serve = loaded.signatures["serving_default"]
    rows = list(csv.DictReader(open(manifest)))[:int(sys.argv[4])]
    base = Path(manifest).parent
    result = serve(
        image_bytes=tf.constant([(base / r["image"]).read_bytes() for r in rows]),
        age=tf.constant([float(r["age"]) for r in rows]),
        sex=tf.constant([r["sex"] for r in rows]),
        bmi=tf.constant([float(r["bmi"]) for r in rows]),
        hip_fracture_history=tf.constant([r["hip_fracture_history"] for r in rows]),
    )
    json.dump({k: v.numpy().tolist() for k, v in result.items()}, open(out, "w"))
    # then the saved_model_cli entry point in the same fresh process (saves a second TensorFlow start)
    import contextlib
    from tensorflow.python.tools.saved_model_cli import main
    sys.argv = ["saved_model_cli", "show", "--all", "--dir", model_dir]
    with open(out + ".cli", "w") as shown, contextlib.redirect_stdout(shown):
        try:
            main()
        except SystemExit as stop:
            assert not stop.code, stop.code
""")


@pytest.fixture(scope="module")
def fresh_process(exported, tmp_path_factory):
    """Runs FRESH_PROCESS in a new Python: serving outputs and `saved_model_cli show --all` text."""
    folder = tmp_path_factory.mktemp("fresh")
    script, out = folder / "serve.py", folder / "out.json"
    script.write_text(FRESH_PROCESS)
    subprocess.run(
        [sys.executable, str(script), str(exported["model"]), str(exported["manifest"]), str(out), str(N_REQUEST)],
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        cwd=folder,
        capture_output=True,
    )
    return json.loads(out.read_text()), (folder / "out.json.cli").read_text()


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported["model"]))  # keep a reference while signatures are used


@pytest.fixture(scope="module")
def serve(loaded):
    return loaded.signatures["serving_default"]


@pytest.fixture(scope="module")
def raw_requests(exported):
    rows = pd.read_csv(exported["manifest"], dtype=str).head(N_REQUEST)
    base = exported["manifest"].parent
    return {
        "image_bytes": tf.constant([(base / p).read_bytes() for p in rows["image"]]),
        "age": tf.constant(rows["age"].astype(float).to_numpy(np.float32)),
        "sex": tf.constant(rows["sex"].tolist()),
        "bmi": tf.constant(rows["bmi"].astype(float).to_numpy(np.float32)),
        "hip_fracture_history": tf.constant(rows["hip_fracture_history"].tolist()),
    }


def keras_reference(exported) -> np.ndarray:
    """The trained Keras model on inputs preprocessed by the training pipeline's code."""
    run = exported["run"]
    model = keras.models.load_model(run.model)
    cohort = read_manifest(exported["manifest"]).head(N_REQUEST)
    images = np.stack([load_image(p, None, 32) for p in cohort["image"]])
    covariates = CovariateEncoder.from_dict(read_json(run.encoder)).transform(cohort)
    inputs = {"image": normalize_images(images, get_backbone_spec("resnet18")), "covariates": covariates}
    return model.predict(inputs, verbose=0)[:, 0]


def test_layout_and_model_card(exported):
    path = exported["model"]
    assert path == exported["root"] / "saved_models" / "osteo" / "1"
    assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    assert sorted(p.name for p in path.parent.iterdir()) == ["1"]  # no temporary folder left
    card = read_json(path / "assets" / "model_card.json")
    assert card["backbone"] == "resnet18" and card["mode"] == "ensemble"
    assert card["threshold"]["value"] == exported["threshold"] and card["threshold"]["target"] == "youden"
    assert card["covariates"]["feature_names"] == [
        "age",
        "bmi",
        "sex=F",
        "sex=M",
        "hip_fracture_history=0",
        "hip_fracture_history=1",
    ]
    assert card["covariates"]["stats"]["age"]["mean"] > 0
    assert sum(s["images"] for s in card["training_cohort"]["splits"].values()) == 80
    assert set(card["test_metrics"]) >= {"accuracy", "auc", "recall", "specificity"}
    assert card["versions"]["export"]["tensorflow"] == tf.__version__
    assert list(card["signatures"]["serving_default"]["inputs"]) == [
        "image_bytes",
        "age",
        "bmi",
        "sex",
        "hip_fracture_history",
    ]


def test_fresh_process_matches_the_keras_model(exported, fresh_process):
    served = fresh_process[0]
    reference = keras_reference(exported)
    assert np.max(np.abs(np.asarray(served["probability"]) - reference)) <= 1e-5
    expected_labels = np.asarray(served["probability"], np.float32).astype(np.float64) >= exported["threshold"]
    assert served["label"] == expected_labels.astype(int).tolist()


def test_serving_tensors_takes_the_models_own_inputs(exported, loaded, serve, raw_requests):
    tensors = loaded.signatures["serving_tensors"]
    cohort = read_manifest(exported["manifest"]).head(N_REQUEST)
    images = normalize_images(
        np.stack([load_image(p, None, 32) for p in cohort["image"]]), get_backbone_spec("resnet18")
    )
    covariates = CovariateEncoder.from_dict(read_json(exported["run"].encoder)).transform(cohort)
    direct = tensors(image=tf.constant(images, tf.float32), covariates=tf.constant(covariates))
    np.testing.assert_allclose(direct["probability"].numpy(), serve(**raw_requests)["probability"].numpy(), atol=1e-5)


def test_saved_model_cli_lists_the_signature(fresh_process):
    shown = fresh_process[1]
    default = shown.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    for name, dtype in (
        ("image_bytes", "DT_STRING"),
        ("age", "DT_FLOAT"),
        ("sex", "DT_STRING"),
        ("bmi", "DT_FLOAT"),
        ("hip_fracture_history", "DT_STRING"),
    ):
        assert f"inputs['{name}'] tensor_info:\n        dtype: {dtype}" in default
    assert "outputs['probability']" in default and "outputs['label']" in default
    assert "signature_def['serving_tensors']" in shown


@pytest.mark.parametrize(
    "name, bad, message",
    [
        (
            "image_bytes",
            [b"not an image"] * 2 + [None] * (N_REQUEST - 2),
            "input image_bytes: not a PNG or JPEG image (no PNG/JPEG file signature) in instance 0, instance 1]",
        ),
        (
            "sex",
            ["F", "X"] * (N_REQUEST // 2),
            "input sex: unknown value in instance 1 (X), instance 3 (X), "
            "instance 5 (X), instance 7 (X); accepted (any case): f, female, m, male]",
        ),
        (
            "sex",
            ["F", ""] * (N_REQUEST // 2),
            "input sex: value missing (empty string) in instance 1, instance 3, instance 5, instance 7]",
        ),
        (
            "hip_fracture_history",
            ["no"] * (N_REQUEST - 1) + ["maybe"],
            "input hip_fracture_history: unknown value in instance 7 (maybe); accepted",
        ),
        ("age", [np.nan] + [70.0] * (N_REQUEST - 1), "input age: value missing (NaN) in instance 0]"),
        (
            "bmi",
            [22.0] * (N_REQUEST - 1) + [250.5],
            "input bmi: value outside the plausible range 10 to 70 in instance 7 (250.5)]",
        ),
        ("age", [70.0, 71.0], "different batch lengths"),
    ],
)
def test_bad_requests_name_the_input_and_each_bad_instance(serve, raw_requests, name, bad, message):
    if name == "image_bytes":
        bad = [b if b is not None else good for b, good in zip(bad, raw_requests[name].numpy())]
    dtype = tf.string if name in ("image_bytes", "sex", "hip_fracture_history") else tf.float32
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        serve(**{**raw_requests, name: tf.constant(bad, dtype)})
    assert message in raised.value.message


def test_a_corrupt_image_in_a_batch_is_named_by_its_instance(serve, raw_requests):
    encoded = raw_requests["image_bytes"].numpy().tolist()
    encoded[3] = encoded[3][:60]  # the PNG signature and header, then the body cut short
    encoded[5] = encoded[5][:-30] + bytes(30)  # the end (IDAT / IEND chunks) overwritten
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        serve(**{**raw_requests, "image_bytes": tf.constant(encoded)})
    assert (
        "input image_bytes: bytes that do not decode as an image (corrupt or truncated PNG/JPEG data) "
        "in instance 3, instance 5]"
    ) in raised.value.message


def test_a_missing_input_is_refused_by_name(serve, raw_requests):
    with pytest.raises(TypeError, match="age"):
        serve(**{k: v for k, v in raw_requests.items() if k != "age"})


def test_record_codes_rgb_and_jpeg_are_accepted(serve, raw_requests, tmp_path):
    base = serve(**raw_requests)["probability"].numpy()
    codes = serve(
        **{
            **raw_requests,
            "sex": tf.constant([{"F": " female", "M": "m"}[s.decode()] for s in raw_requests["sex"].numpy()]),
            "hip_fracture_history": tf.constant(
                [{"yes": "1", "no": "FALSE"}[h.decode()] for h in raw_requests["hip_fracture_history"].numpy()]
            ),
        }
    )
    np.testing.assert_array_equal(codes["probability"].numpy(), base)
    gray = np.asarray(Image.open(io.BytesIO(raw_requests["image_bytes"].numpy()[0])))
    encoded = {}
    for kind, image, fmt in (
        ("rgb", Image.fromarray(np.stack([gray] * 3, -1)), "PNG"),
        ("jpeg", Image.fromarray(gray), "JPEG"),
    ):
        image.save(tmp_path / kind, format=fmt)
        encoded[kind] = (tmp_path / kind).read_bytes()
    one = {k: v[:1] for k, v in raw_requests.items()}
    rgb = serve(**{**one, "image_bytes": tf.constant([encoded["rgb"]])})["probability"].numpy()
    assert abs(rgb[0] - base[0]) <= 1e-5
    jpeg = serve(**{**one, "image_bytes": tf.constant([encoded["jpeg"]])})["probability"].numpy()
    assert 0.0 <= jpeg[0] <= 1.0


def test_existing_version_needs_force(exported, capsys):
    with pytest.raises(OsteoInputError, match="already exists"):
        export_run(exported["run"].path, exported["root"] / "saved_models", "osteo", version=1)
    assert (
        main(
            [
                "export",
                "--run",
                str(exported["run"].path),
                "--root",
                str(exported["root"] / "saved_models"),
                "--version",
                "1",
            ]
        )
        == 2
    )
    assert "--force" in capsys.readouterr().err


def test_force_swaps_a_version_in_whole(tmp_path):
    old, new = tmp_path / "osteo" / "1", tmp_path / "osteo" / ".1.tmp-1"
    for folder, text in ((old, "old"), (new, "new")):
        folder.mkdir(parents=True)
        (folder / "saved_model.pb").write_text(text)
    _move_into_place(new, old)
    assert (old / "saved_model.pb").read_text() == "new"
    assert [p.name for p in (tmp_path / "osteo").iterdir()] == ["1"]


def test_evaluate_uses_the_recorded_threshold(exported):
    assert evaluate(exported["run"].path)["threshold"] == exported["threshold"]


class FakeTFServing(JSONHandler):
    """TF Serving's REST predict/metadata, backed by the exported SavedModel (row format)."""

    serve = None
    requests: list = []

    def do_GET(self):
        inputs = self.serve.structured_input_signature[1]
        dtypes = {
            name: {"dtype": "DT_STRING" if spec.dtype == tf.string else "DT_FLOAT"} for name, spec in inputs.items()
        }
        self._reply(
            200,
            {
                "model_spec": {"name": "osteo", "signature_name": "", "version": "1"},
                "metadata": {"signature_def": {"signature_def": {"serving_default": {"inputs": dtypes}}}},
            },
        )

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, body))
        instances = body["instances"]
        columns = {name: [i[name] for i in instances] for name in instances[0]}
        columns["image_bytes"] = [base64.b64decode(v["b64"]) for v in columns["image_bytes"]]
        out = self.serve(
            **{
                k: tf.constant(v, tf.string if k in ("image_bytes", "sex", "hip_fracture_history") else tf.float32)
                for k, v in columns.items()
            }
        )
        self._reply(
            200,
            {
                "predictions": [
                    {"probability": float(p), "label": int(lab)}
                    for p, lab in zip(out["probability"].numpy(), out["label"].numpy())
                ]
            },
        )


def test_predict_local_and_via_rest_write_the_same_csv(exported, serve, tmp_path):
    local, remote = tmp_path / "local.csv", tmp_path / "remote.csv"
    model = exported["model"]
    assert main(["predict", "--model", str(model), "--manifest", str(exported["manifest"]), "--out", str(local)]) == 0
    FakeTFServing.serve = serve
    with http_server(FakeTFServing) as url:
        assert (
            main(
                [
                    "predict",
                    "--server",
                    url,
                    "--model-name",
                    "osteo",
                    "--manifest",
                    str(exported["manifest"]),
                    "--out",
                    str(remote),
                    "--batch-size",
                    "50",
                ]
            )
            == 0
        )
    assert local.read_text() == remote.read_text()
    table = pd.read_csv(local)
    assert list(table.columns) == ["image", "patient_id", "probability", "label"] and len(table) == 80
    path, body = FakeTFServing.requests[0]
    assert path == "/v1/models/osteo:predict" and body["signature_name"] == "serving_default"
    assert len(body["instances"]) == 50 and set(body["instances"][0]) == {
        "image_bytes",
        "age",
        "bmi",
        "sex",
        "hip_fracture_history",
    }


def test_a_recalibrated_run_exports_and_predicts_its_recalibrated_probability(exported, tmp_path):
    """osteo calibrate → export → osteo predict gives what osteo evaluate reports (the recalibrated scale)."""
    import shutil
    from pathlib import Path

    from osteo_tf.evaluation.evaluate import evaluate

    run = tmp_path / "run"
    shutil.copytree(exported["run"].path, run)
    assert main(["calibrate", "--run", str(run), "--method", "isotonic"]) == 0
    evaluate(run)
    reported = pd.read_csv(run / "evaluation_test_predictions.csv")
    reported = reported.set_index(reported["image"].map(lambda p: Path(p).name))["probability"]
    assert main(["export", "--run", str(run), "--root", str(tmp_path / "models"), "--version", "1"]) == 0
    card = json.loads((tmp_path / "models" / "osteo" / "1" / "assets" / "model_card.json").read_text())
    assert card["recalibration"]["method"] == "isotonic" and card["recalibration"]["fitted_on"] == "val"
    out = tmp_path / "predicted.csv"
    model = str(tmp_path / "models" / "osteo" / "1")
    assert main(["predict", "--model", model, "--manifest", str(exported["manifest"]), "--out", str(out)]) == 0
    predicted = pd.read_csv(out)
    predicted = predicted.set_index(predicted["image"].map(lambda p: Path(p).name)).loc[reported.index]
    np.testing.assert_allclose(predicted["probability"], reported.to_numpy(), atol=2e-5)
    threshold = json.loads((run / "threshold.json").read_text())["threshold"]
    assert predicted["label"].tolist() == (reported.to_numpy() >= threshold).astype(int).tolist()
