"""A TF Serving REST client for the exported model (standard library only: urllib + json).

Follows TF Serving's documented REST API (``tensorflow_serving/g3doc/api_rest.md``):

- predict: ``POST {server}/v1/models/{name}[/versions/{v}|/labels/{l}]:predict`` with the
  row ("instances") format, binary values as ``{"b64": "<base64>"}``::

      {"signature_name": "serving_default",
       "instances": [{"image_bytes": {"b64": "iVBORw0KGgo..."}, "age": 71.0, "sex": "F",
                      "bmi": 22.4, "hip_fracture_history": "no"}]}

  answered, for a model with several named outputs, by one object per instance::

      {"predictions": [{"probability": 0.83, "label": 1}]}

- metadata: ``GET …/metadata`` → ``{"model_spec": …, "metadata": {"signature_def":
  {"signature_def": {"serving_default": {"inputs": {name: {"dtype": "DT_STRING", …}}}}}}}``;
- errors: any status, body ``{"error": "<message>"}``.
"""

from __future__ import annotations

import base64
import json
import math
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

from osteo_tf.errors import OsteoInputError

__all__ = [
    "SIGNATURE",
    "encode_instance",
    "parse_predict_response",
    "predict_request",
    "RestClient",
    "ServingError",
    "signature_inputs",
]

SIGNATURE = "serving_default"
_DTYPES = {"DT_STRING": "string", "DT_FLOAT": "float32", "DT_DOUBLE": "float32"}


class ServingError(OsteoInputError):
    """The server refused a request or could not be reached (its message is passed on)."""


def encode_instance(values: Mapping[str, object], inputs: Mapping[str, str]) -> dict:
    """One instance for the row format: ``*_bytes`` inputs base64 in ``{"b64": …}``, floats, strings."""
    instance = {}
    for name, dtype in inputs.items():
        value = values[name]
        if name.endswith("_bytes"):
            instance[name] = {"b64": base64.b64encode(bytes(value)).decode("ascii")}
        elif dtype == "float32":
            instance[name] = float(value)
        else:
            instance[name] = str(value)
    return instance


def predict_request(instances: Sequence[Mapping], signature_name: str = SIGNATURE) -> dict:
    """The JSON body of a row-format ``:predict`` request."""
    return {"signature_name": signature_name, "instances": list(instances)}


def parse_predict_response(body: Mapping, expected: int | None = None) -> tuple[list[float], list[int]]:
    """``{"predictions": [{"probability": p, "label": l}, …]}`` → (probabilities, labels)."""
    if "error" in body:
        raise ServingError(f"TF Serving refused the request: {body['error']}")
    predictions = body.get("predictions")
    if not isinstance(predictions, list) or not all(isinstance(p, Mapping) for p in predictions):
        raise ServingError(f"unexpected TF Serving response (no 'predictions' list of objects): {str(body)[:300]}")
    if expected is not None and len(predictions) != expected:
        raise ServingError(f"TF Serving returned {len(predictions)} predictions for {expected} instances")
    probabilities = [float(_scalar(p["probability"])) for p in predictions]
    labels = [int(_scalar(p["label"])) for p in predictions]
    if not all(math.isfinite(p) for p in probabilities):
        raise ServingError("TF Serving returned a non-finite probability")
    return probabilities, labels


def signature_inputs(metadata: Mapping, signature_name: str = SIGNATURE) -> dict[str, str]:
    """A metadata response → the signature's inputs, name → "string" / "float32"."""
    try:
        signature = metadata["metadata"]["signature_def"]["signature_def"][signature_name]
        inputs = signature["inputs"]
    except (KeyError, TypeError):
        raise ServingError(f"TF Serving metadata has no signature {signature_name!r}: {str(metadata)[:300]}") from None
    return {name: _DTYPES.get(info.get("dtype"), "float32") for name, info in inputs.items()}


class RestClient:
    """Talks to one model on a TF Serving REST endpoint (e.g. ``http://host:8501``)."""

    def __init__(
        self, server: str, model_name: str, version: int | None = None, label: str | None = None, timeout: float = 60.0
    ):
        if version is not None and label is not None:
            raise OsteoInputError("give a model version or a version label, not both")
        self.server, self.model_name = server.rstrip("/"), model_name
        self.version, self.label, self.timeout = version, label, timeout

    @property
    def model_url(self) -> str:
        url = f"{self.server}/v1/models/{self.model_name}"
        if self.version is not None:
            url += f"/versions/{int(self.version)}"
        elif self.label is not None:
            url += f"/labels/{self.label}"
        return url

    def inputs(self) -> dict[str, str]:
        return signature_inputs(self._call(f"{self.model_url}/metadata"))

    def predict(self, instances: Sequence[Mapping]) -> tuple[list[float], list[int]]:
        body = self._call(f"{self.model_url}:predict", predict_request(instances))
        return parse_predict_response(body, len(instances))

    def _call(self, url: str, payload: Mapping | None = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(
            url, data=data, method="GET" if data is None else "POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            raise ServingError(f"{url}: HTTP {error.code}: {_error_message(error)}") from None
        except (urllib.error.URLError, OSError) as error:
            raise ServingError(f"cannot reach TF Serving at {url}: {getattr(error, 'reason', error)}") from None


def _error_message(error: urllib.error.HTTPError) -> str:
    text = error.read().decode("utf-8", "replace")
    try:
        return str(json.loads(text).get("error", text))
    except (ValueError, AttributeError):
        return text[:500]


def _scalar(value: object) -> object:
    """An output of shape (batch,) arrives as a scalar; tolerate a one-element list too."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value
