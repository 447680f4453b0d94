"""Batch prediction over a manifest, with an exported SavedModel or a TF Serving server.

``predict_manifest(manifest, out, model="saved_models/osteo/1")`` runs the SavedModel's
``serving_default`` signature in this process; ``predict_manifest(manifest, out,
server="http://host:8501", model_name="osteo")`` sends the same requests to TF Serving
(:mod:`.client`). Either way the client does no preprocessing: it reads each image file's
bytes and passes the covariates as they stand in the manifest, and writes the same CSV:
``image`` (as written in the manifest), ``patient_id`` (when present), ``probability``,
``label``.

The manifest needs the columns the model's signature takes (``image`` for the image; the
covariates by their canonical names, or mapped with ``columns={canonical: yours}``); labels
and T-scores are not needed. BMI may come from ``height_cm`` and ``weight_kg``. A text that is
not a number in a numeric column is reported with its line. An empty cell is sent as missing
(NaN / empty string): the model refuses it, naming the input, unless it was trained to impute
that covariate (``--impute median``) — the client never fills anything in.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from osteo_tf.errors import OsteoInputError
from osteo_tf.io import write_csv
from osteo_tf.serving.client import RestClient, encode_instance
from osteo_tf.serving.spec import IMAGE_INPUT

_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


class LocalModel:
    """An exported SavedModel's ``serving_default`` signature, run in this process."""

    def __init__(self, path: str | Path):
        import tensorflow as tf

        path = Path(path)
        if not (path / "saved_model.pb").is_file():
            raise OsteoInputError(f"{path} is not a SavedModel version folder (no saved_model.pb); "
                                  "point --model at saved_models/NAME/VERSION")
        self._tf = tf
        self.loaded = tf.saved_model.load(str(path))  # keep a reference: the signature needs it
        self.signature = self.loaded.signatures["serving_default"]

    def inputs(self) -> dict[str, str]:
        specs = self.signature.structured_input_signature[1]
        return {name: "string" if spec.dtype == self._tf.string else "float32" for name, spec in specs.items()}

    def predict(self, instances: list[dict]) -> tuple[list[float], list[int]]:
        tf, inputs = self._tf, self.inputs()
        columns = {name: tf.constant([i[name] for i in instances],
                                     tf.string if dtype == "string" else tf.float32) for name, dtype in inputs.items()}
        try:
            out = self.signature(**columns)
        except tf.errors.InvalidArgumentError as error:
            raise OsteoInputError(f"the model refused the request: {error.message.strip()}") from None
        return out["probability"].numpy().astype(float).tolist(), out["label"].numpy().astype(int).tolist()


def read_requests(manifest: str | Path, inputs: Mapping[str, str], columns: Mapping[str, str] | None = None
                  ) -> pd.DataFrame:
    """The manifest's rows as raw values per signature input (plus ``image`` / ``patient_id``).

    ``image_bytes`` holds each file's bytes; covariates stay as written (numbers parsed).
    """
    path = Path(manifest)
    if not path.is_file():
        raise OsteoInputError(f"manifest {path} does not exist")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    names = {"image": "image", "patient_id": "patient_id", **{c: c for c in inputs},
             "height_cm": "height_cm", "weight_kg": "weight_kg", **(columns or {})}
    lines = np.arange(len(table)) + 2  # header = line 1
    out = pd.DataFrame(index=table.index)
    problems: list[str] = []

    def cells(canonical: str) -> pd.Series | None:
        column = names.get(canonical, canonical)
        return table[column].str.strip() if column in table else None

    for canonical in ("image", "patient_id"):
        if cells(canonical) is not None:
            out[canonical] = cells(canonical)
    for name, dtype in inputs.items():
        if name == IMAGE_INPUT:
            continue
        values = cells(name)
        if values is None and name == "bmi" and cells("height_cm") is not None and cells("weight_kg") is not None:
            values = _derived_bmi(cells("height_cm"), cells("weight_kg"))
        if values is None:
            problems.append(f"column {names.get(name, name)!r} is missing (the model takes '{name}')")
            continue
        if dtype == "float32":
            numbers = pd.to_numeric(values.replace("", np.nan), errors="coerce")
            text = (numbers.isna() & (values.astype(str).str.len() > 0)).to_numpy()
            if text.any():
                problems.append(f"column {names.get(name, name)!r}: not a number on line(s) "
                                f"{', '.join(map(str, lines[text][:10]))}")
            values = numbers
        out[name] = values
    if IMAGE_INPUT in inputs:
        if "image" not in out:
            problems.append(f"column {names['image']!r} (image paths) is missing")
        else:
            out[IMAGE_INPUT] = [_image_bytes(path.parent, p, line, problems) for p, line in zip(out["image"], lines)]
    if problems:
        raise OsteoInputError(f"manifest {path}:\n  - " + "\n  - ".join(problems))
    return out


def predict_manifest(
    manifest: str | Path,
    out: str | Path,
    *,
    model: str | Path | None = None,
    server: str | None = None,
    model_name: str = "osteo",
    version: int | None = None,
    batch_size: int = 32,
    columns: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Predicts every row of ``manifest`` with ``model`` (a SavedModel folder) or ``server``; writes ``out``."""
    if (model is None) == (server is None):
        raise OsteoInputError("give either a SavedModel folder (--model) or a TF Serving URL (--server)")
    predictor = LocalModel(model) if model is not None else RestClient(server, model_name, version)
    inputs = predictor.inputs()
    requests = read_requests(manifest, inputs, columns)
    probabilities: list[float] = []
    labels: list[int] = []
    batch_size = max(1, int(batch_size))
    for start in range(0, len(requests), batch_size):
        rows = requests.iloc[start:start + batch_size].to_dict("records")
        batch = [encode_instance(r, inputs) for r in rows] if server is not None else rows
        try:
            p, lab = predictor.predict(batch)
        except OsteoInputError as error:
            raise type(error)(f"manifest {manifest}, lines {start + 2}–{start + len(rows) + 1} "
                              f"(instance 0 = line {start + 2}): {error}") from None
        probabilities += p
        labels += lab
    result = pd.DataFrame({c: requests[c] for c in ("image", "patient_id") if c in requests})
    result["probability"] = np.round(probabilities, 6)
    result["label"] = np.asarray(labels, dtype=np.int64)
    write_csv(out, result)
    return result


def _image_bytes(base: Path, raw: str, line: int, problems: list[str]) -> bytes:
    file = base / raw
    if not raw or not file.is_file():
        problems.append(f"line {line}: image file {file} not found")
        return b""
    data = file.read_bytes()
    if not data.startswith(_SIGNATURES):
        problems.append(f"line {line}: {file} is not a PNG or JPEG file (the served model decodes only those); "
                        "convert it to PNG")
    return data


def _derived_bmi(height_cm: pd.Series, weight_kg: pd.Series) -> pd.Series:
    height = pd.to_numeric(height_cm.replace("", np.nan), errors="coerce")
    weight = pd.to_numeric(weight_kg.replace("", np.nan), errors="coerce")
    return weight / (height / 100.0) ** 2
