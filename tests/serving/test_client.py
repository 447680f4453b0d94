"""The TF Serving REST client against TF Serving's documented request and response JSON (no TensorFlow)."""

import base64
import io
import json

import numpy as np
import pandas as pd
import pytest
from helpers import JSONHandler, http_server
from PIL import Image

from osteo_tf.data.images import read_image
from osteo_tf.errors import OsteoInputError
from osteo_tf.serving.client import (
    RestClient,
    ServingError,
    encode_instance,
    parse_predict_response,
    predict_request,
    signature_inputs,
)
from osteo_tf.serving.predict import encode_png, predict_manifest

INPUTS = {
    "image_bytes": "string",
    "age": "float32",
    "sex": "string",
    "bmi": "float32",
    "hip_fracture_history": "string",
}
# GET /v1/models/osteo/metadata, as TF Serving answers it (GetModelMetadataResponse as JSON).
METADATA = {
    "model_spec": {"name": "osteo", "signature_name": "", "version": "3"},
    "metadata": {
        "signature_def": {
            "signature_def": {
                "serving_default": {
                    "inputs": {
                        name: {
                            "dtype": "DT_STRING" if dtype == "string" else "DT_FLOAT",
                            "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False},
                            "name": f"serving_default_{name}:0",
                        }
                        for name, dtype in INPUTS.items()
                    },
                    "outputs": {"probability": {"dtype": "DT_FLOAT"}, "label": {"dtype": "DT_INT64"}},
                    "method_name": "tensorflow/serving/predict",
                }
            }
        }
    },
}


def test_request_body_is_tf_servings_row_format():
    instance = encode_instance(
        {"image_bytes": b"\x89PNG raw", "age": np.float64(71), "sex": "F", "bmi": "22.4", "hip_fracture_history": "no"},
        INPUTS,
    )
    body = json.loads(json.dumps(predict_request([instance])))
    assert body == {
        "signature_name": "serving_default",
        "instances": [
            {
                "image_bytes": {"b64": base64.b64encode(b"\x89PNG raw").decode()},
                "age": 71.0,
                "sex": "F",
                "bmi": 22.4,
                "hip_fracture_history": "no",
            }
        ],
    }


def test_responses_are_parsed_from_tf_servings_formats():
    body = json.loads('{"predictions": [{"probability": 0.83, "label": 1}, {"probability": 0.1, "label": 0}]}')
    assert parse_predict_response(body, 2) == ([0.83, 0.1], [1, 0])
    assert parse_predict_response({"predictions": [{"probability": [0.5], "label": [1]}]}) == ([0.5], [1])
    with pytest.raises(ServingError, match="unknown value"):
        parse_predict_response({"error": "assertion failed: [input sex: unknown value(s)] [X]"})
    with pytest.raises(ServingError, match="2 predictions for 3"):
        parse_predict_response(body, 3)
    assert signature_inputs(METADATA) == INPUTS


class FakeServer(JSONHandler):
    seen: list = []

    def do_GET(self):
        self.seen.append(("GET", self.path, None))
        self._reply(200, METADATA)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(("POST", self.path, body))
        empty = [k for k, i in enumerate(body["instances"]) if i["hip_fracture_history"] == ""]
        if empty:  # as the serving graph words it (TF Serving passes the text on)
            named = ", ".join(f"instance {k}" for k in empty)
            return self._reply(
                400,
                {"error": f"assertion failed: [input hip_fracture_history: value missing (empty string) in {named}]"},
            )
        self._reply(
            200,
            {
                "predictions": [
                    {"probability": 0.25 * (k % 4), "label": int(k % 4 >= 2)} for k, _ in enumerate(body["instances"])
                ]
            },
        )


@pytest.fixture
def server():
    FakeServer.seen = []
    with http_server(FakeServer) as url:
        yield url


@pytest.fixture
def manifest(tmp_path):
    rows = []
    for i in range(5):
        Image.fromarray(np.full((32, 32), 10 * i, np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(
            {
                "image": f"{i}.png",
                "patient_id": f"P{i}",
                "age": 60 + i,
                "sex": "F",
                "height_cm": 160,
                "weight_kg": 50 + i,
                "hip_fracture_history": "no",
            }
        )
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    return tmp_path / "m.csv"


def test_predict_via_rest(server, manifest, tmp_path):
    result = predict_manifest(manifest, tmp_path / "p.csv", server=server, model_name="osteo", version=3, batch_size=2)
    assert [m for m, _, _ in FakeServer.seen] == ["GET", "POST", "POST", "POST"]
    assert FakeServer.seen[0][1] == "/v1/models/osteo/versions/3/metadata"
    _, path, body = FakeServer.seen[1]
    assert path == "/v1/models/osteo/versions/3:predict" and body["signature_name"] == "serving_default"
    first = body["instances"][0]
    sent = np.asarray(Image.open(io.BytesIO(base64.b64decode(first["image_bytes"]["b64"]))))
    assert np.array_equal(sent, read_image(tmp_path / "0.png"))  # as training reads it (8-bit stays 8-bit)
    assert first["bmi"] == pytest.approx(50 / 1.6**2) and first["age"] == 60.0 and first["sex"] == "F"
    assert list(pd.read_csv(tmp_path / "p.csv").columns) == ["image", "patient_id", "probability", "label"]
    assert result["probability"].tolist() == [0.0, 0.25, 0.0, 0.25, 0.0]


def test_server_refusals_name_the_manifest_line(server, manifest, tmp_path):
    table = pd.read_csv(manifest)
    table.loc[1, "hip_fracture_history"] = None  # the client cannot know whether the model imputes it
    table.to_csv(manifest, index=False)
    with pytest.raises(
        ServingError,
        match=r"m\.csv, line 3 \(1\.png\) = instance 1: .*HTTP 400: .*"
        r"hip_fracture_history: value missing \(empty string\) in instance 1",
    ):
        predict_manifest(manifest, tmp_path / "p.csv", server=server)
    assert RestClient(server, "osteo", label="stable").model_url.endswith("/v1/models/osteo/labels/stable")


def test_manifest_problems_are_reported_by_line_before_any_request(server, manifest, tmp_path):
    table = pd.read_csv(manifest).astype(object)
    table.loc[2, "age"] = "seventy"
    table.loc[1, "sex"] = "X"
    table.loc[3, "sex"] = "X"
    table.to_csv(manifest, index=False)
    with pytest.raises(OsteoInputError) as raised:
        predict_manifest(manifest, tmp_path / "p.csv", server=server)
    message = str(raised.value)
    assert "has 3 problems" in message
    for line in (3, 5):
        assert f"m.csv, line {line}, column 'sex': 'X' is not a valid sex code" in message
    assert "m.csv, line 4, column 'age': 'seventy' is not a number" in message
    assert [m for m, _, _ in FakeServer.seen] == ["GET"]  # metadata only: no prediction request


def test_a_column_the_model_takes_is_required(server, manifest, tmp_path):
    pd.read_csv(manifest).drop(columns=["hip_fracture_history"]).to_csv(manifest, index=False)
    with pytest.raises(
        OsteoInputError,
        match=r"m\.csv, line 1: column 'hip_fracture_history' not found: the model "
        r"takes 'hip_fracture_history'",
    ):
        predict_manifest(manifest, tmp_path / "p.csv", server=server)
    assert [m for m, _, _ in FakeServer.seen] == ["GET"]


def test_empty_cells_are_sent_as_missing_for_the_model_to_judge(server, manifest, tmp_path):
    table = pd.read_csv(manifest)
    table.loc[1, "age"] = None
    table.loc[1, "sex"] = None
    table.to_csv(manifest, index=False)
    predict_manifest(manifest, tmp_path / "p.csv", server=server)
    second = FakeServer.seen[1][2]["instances"][1]
    assert np.isnan(second["age"]) and second["sex"] == ""  # never filled in by the client


def test_unreachable_server(manifest, tmp_path):
    with pytest.raises(ServingError, match="cannot reach TF Serving"):
        predict_manifest(manifest, tmp_path / "p.csv", server="http://127.0.0.1:9")


def test_dicom_is_decoded_by_the_client_and_sent_as_16_bit_png(server, manifest, tmp_path, write_dicom):
    write_dicom(
        tmp_path / "x.dcm",
        np.arange(40 * 36, dtype=np.uint16).reshape(40, 36) * 7,
        "MONOCHROME1",
        RescaleSlope=0.5,
        RescaleIntercept=-1024,
    )
    table = pd.read_csv(manifest)
    table.loc[0, "image"] = "x.dcm"
    table.to_csv(manifest, index=False)
    predict_manifest(manifest, tmp_path / "p.csv", server=server)
    sent = base64.b64decode(FakeServer.seen[1][2]["instances"][0]["image_bytes"]["b64"])
    assert sent == encode_png(read_image(tmp_path / "x.dcm"))
    pixels = np.asarray(Image.open(io.BytesIO(sent)))
    assert pixels.dtype == np.uint16 and pixels.shape == (40, 36) and pixels[0, 0] == 65535  # MONOCHROME1 inverted
