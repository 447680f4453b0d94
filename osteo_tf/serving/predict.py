"""Batch prediction over a manifest, with an exported SavedModel or a TF Serving server.

``predict_manifest(manifest, out, model="saved_models/osteo/1")`` runs the SavedModel's
``serving_default`` signature in this process; ``predict_manifest(manifest, out,
server="http://host:8501", model_name="osteo")`` sends the same requests to TF Serving
(:mod:`.client`). Either way it writes the same CSV: ``image`` (as written in the manifest),
``patient_id`` (when present), ``probability``, ``label``.

The manifest is read by the project's manifest reader (:mod:`osteo_tf.data.manifest`: its CSV
decoding and its cell and image checks), with the training run's manifest config (column
names, sex codes, ROI box size) from a local model's card, or ``manifest_config``. Every
problem is reported at once, by file, line and column, before any prediction request is sent:
a binary, empty or header-only file, another encoding than UTF-8, rows with the wrong number
of values, a column the model takes that is missing, a number that is not one or is
implausible, an unknown sex or fracture-history code, a missing, unreadable or corrupt image,
a ROI outside its image; with a local model (its card known) also a category the model was
never trained on, and an empty cell of a covariate the model does not impute. Labels and
T-scores are not needed; BMI may come from ``height_cm`` and ``weight_kg``. An empty cell is
otherwise sent as missing (NaN / empty string) for the model to judge: it refuses it unless it
was trained to impute that covariate (``--impute median``). The client fills nothing in.

Images: each is decoded here by :func:`osteo_tf.data.images.read_image`, the training path
(PNG / TIFF 8 / 16 bit and float, DICOM with its modality / VOI LUT and MONOCHROME1, the
manifest's ROI crop), and sent as a lossless (8- or) 16-bit grayscale PNG (:func:`encode_png`).
A refusal by the model names its instances, which the message turns into manifest lines.
"""

from __future__ import annotations

import dataclasses
import io
import numbers
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from osteo_tf.data.images import read_image
from osteo_tf.data.manifest import ManifestConfig
from osteo_tf.data.manifest.cells import _build_covariates, _build_roi, _Rows
from osteo_tf.data.manifest.checks import _build_images
from osteo_tf.data.manifest.config import _INVALID, _NUMBER, ManifestColumns
from osteo_tf.data.manifest.problems import _Problems, _show
from osteo_tf.data.manifest.table import _read_table, _Table, check_roi_columns
from osteo_tf.errors import OsteoInputError
from osteo_tf.io import read_json, write_csv
from osteo_tf.serving.client import RestClient, encode_instance
from osteo_tf.serving.spec import IMAGE_INPUT
from osteo_tf.vocabulary import ROI_COLUMNS, ROI_POINT_COLUMNS

__all__ = ["CARD", "encode_png", "LocalModel", "predict_manifest", "read_requests"]

CARD = Path("assets") / "model_card.json"
_CANONICAL = frozenset(ManifestColumns().as_dict())
_INSTANCE = re.compile(r"\binstance (\d+)")
_UINT16_MAX = 65535


class LocalModel:
    """An exported SavedModel's ``serving_default`` signature, run in this process.

    The SavedModel is loaded on first use; its inputs and model card (``assets/model_card.json``)
    are read at once, so that a manifest is checked before TensorFlow loads anything.
    """

    def __init__(self, path: str | Path):
        path = Path(path)
        if not (path / "saved_model.pb").is_file():
            raise OsteoInputError(
                f"{path} is not a SavedModel version folder (no saved_model.pb); "
                "point model= at saved_models/NAME/VERSION"
            )
        self.path = path
        self.card: dict = _read_card(path / CARD)
        self._loaded = None

    @property
    def signature(self):
        if self._loaded is None:
            import tensorflow as tf

            self._loaded = tf.saved_model.load(str(self.path))  # keep a reference: the signature needs it
        return self._loaded.signatures["serving_default"]

    def inputs(self) -> dict[str, str]:
        """The signature's inputs, name → "string" / "float32", in signature order."""
        described = (self.card.get("signatures") or {}).get("serving_default", {}).get("inputs")
        if described:
            return {name: entry["dtype"] for name, entry in described.items()}
        import tensorflow as tf

        specs = self.signature.structured_input_signature[1]
        return {name: "string" if spec.dtype == tf.string else "float32" for name, spec in specs.items()}

    def predict(self, instances: list[dict]) -> tuple[list[float], list[int]]:
        import tensorflow as tf

        signature, inputs = self.signature, self.inputs()
        columns = {
            name: tf.constant([i[name] for i in instances], tf.string if dtype == "string" else tf.float32)
            for name, dtype in inputs.items()
        }
        try:
            out = signature(**columns)
        except tf.errors.InvalidArgumentError as error:
            raise OsteoInputError(f"the model refused the request: {_assertion(error.message)}") from None
        return out["probability"].numpy().astype(float).tolist(), out["label"].numpy().astype(int).tolist()


def encode_png(pixels: np.ndarray) -> bytes:
    """A decoded image → a lossless grayscale PNG that the serving graph normalises as training did.

    The graph decodes the PNG and applies the run's per-image normalisation (min–max, or a
    percentile window), and both commute with any increasing affine map of the pixel values.
    So an image of whole numbers within 0–65535 (8- and 16-bit PNG / TIFF, most DICOM) is
    stored as it is, bit for bit (as an 8-bit PNG when it fits in 0–255, to keep requests
    small); any other (negative Hounsfield units, float TIFF, the luma of colour, a VOI LUT's
    fractions) is mapped linearly from its own min–max onto 0–65535 and stored as a 16-bit
    PNG, rounded: at most half a step in 65,535 of its range, ≤ 0.002 on the network's 0–255
    scale after min–max (a percentile window magnifies it by (max − min) / (P_high − P_low)).

    Args:
        pixels: (height, width) grayscale in its native range, as :func:`read_image` gives it.

    Returns:
        The PNG file's bytes.
    """
    values = np.asarray(pixels, np.float64)
    low, high = float(values.min()), float(values.max())
    whole = low >= 0 and high <= _UINT16_MAX and np.array_equal(values, np.round(values))
    if not whole:
        values = (values - low) * (_UINT16_MAX / (high - low)) if high > low else np.zeros_like(values)
    dtype = np.uint8 if whole and high <= 255 else np.uint16
    buffer = io.BytesIO()
    Image.fromarray(np.round(values).astype(dtype)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def read_requests(
    manifest: str | Path,
    inputs: Mapping[str, str],
    config: ManifestConfig | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    card: Mapping | None = None,
) -> pd.DataFrame:
    """The manifest's rows as the values to send, checked as training checks a manifest.

    Args:
        manifest: the CSV file; image paths in it are relative to its folder.
        inputs: the signature's inputs, name → "string" / "float32".
        config: how to read it (column names, sex codes, ROI box size); default: the defaults.
        columns: more column names, canonical or input name → the manifest's column.
        card: the model card, when known: categories the model was trained on, and the
            covariates it does not impute, are then checked here too.

    Returns:
        One row per manifest row, in file order: ``line`` (the CSV line), ``image`` (the cell
        as written) and ``patient_id`` where the columns exist; ``path`` (absolute) and ``roi``
        (``(x, y, w, h)`` pixels or None) when the model takes images; then one column per
        covariate input with the value to send (float, NaN when empty; str, "" when empty).

    Raises:
        OsteoInputError: every problem found, each with its file, line and column.
    """
    config, others = _with_columns(config or ManifestConfig(), columns or {})
    table = _read_table(Path(manifest).absolute())
    present = _present_columns(table, config, inputs, others)
    rows = _Rows(table, present, dataclasses.replace(config, required=(), check_images=True))
    values = _build_covariates(rows)
    for name, dtype in inputs.items():
        if name != IMAGE_INPUT and name not in values:
            values[name] = rows.parse(name, _parse_number if dtype == "float32" else str, False)
    data: dict[str, Any] = {"line": np.asarray(table.lines, dtype=np.int64)}
    if "image" in present:
        data["image"] = rows.cells("image")
    if "patient_id" in present:
        data["patient_id"] = rows.parse("patient_id", str, False)
    if IMAGE_INPUT in inputs:
        data.update(_images(rows))
        if (card or {}).get("roi"):  # a two-stage model finds the ROI itself: it gets the whole image
            data["roi"] = [None] * len(table.lines)
    _check_against_card(rows, values, inputs, card or {})
    _raise_if_any(rows.problems)
    for name, dtype in inputs.items():
        if name != IMAGE_INPUT:
            data[name] = [_to_send(dtype, v) for v in values[name]]
    return pd.DataFrame(data)


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
    manifest_config: ManifestConfig | None = None,
) -> pd.DataFrame:
    """Predicts every row of ``manifest`` with ``model`` (a SavedModel folder) or ``server``; writes ``out``.

    manifest_config: how to read the manifest; default: the one in the local model's card
    (the training run's), else the defaults (with ``server``: pass the run's own if it
    mapped columns or added sex codes). Returns the table written.
    """
    if (model is None) == (server is None):
        raise OsteoInputError("give either a SavedModel folder (model=) or a TF Serving URL (server=)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise OsteoInputError(f"batch_size must be a whole number ≥ 1, got {batch_size!r}", parameter="batch_size")
    batch_size = int(batch_size)
    if Path(out).is_dir():
        raise OsteoInputError(f"out {out} is a folder; give the path of the CSV file to write", parameter="out")
    predictor = LocalModel(model) if model is not None else RestClient(server, model_name, version)
    card = getattr(predictor, "card", {})
    config = manifest_config or ManifestConfig.from_dict(card.get("manifest_config"))
    inputs = predictor.inputs()
    requests = read_requests(manifest, inputs, config, columns=columns, card=card)
    probabilities: list[float] = []
    labels: list[int] = []
    for start in range(0, len(requests), batch_size):
        chunk = requests.iloc[start : start + batch_size]
        rows = _with_images(chunk, inputs, manifest)
        batch = [encode_instance(r, inputs) for r in rows] if server is not None else rows
        try:
            p, lab = predictor.predict(batch)
        except OsteoInputError as error:
            raise type(error)(f"{_where(manifest, chunk, str(error))}: {error}") from None
        probabilities += p
        labels += lab
    result = pd.DataFrame({c: requests[c] for c in ("image", "patient_id") if c in requests})
    result["probability"] = np.round(probabilities, 6)
    result["label"] = np.asarray(labels, dtype=np.int64)
    write_csv(out, result)
    return result


# --------------------------------------------------------------------------- internals


def _read_card(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        card = read_json(path)
    except ValueError as error:
        raise OsteoInputError(f"model card {path} is not valid JSON ({error}); re-export the model") from None
    return card if isinstance(card, dict) else {}


def _with_columns(config: ManifestConfig, columns: Mapping[str, str]) -> tuple[ManifestConfig, dict[str, str]]:
    """``config`` with the canonical names of ``columns`` mapped; the other (input) names apart."""
    canonical = {k: v for k, v in columns.items() if k in _CANONICAL}
    if canonical:
        config = dataclasses.replace(config, columns=dataclasses.replace(config.columns, **canonical))
    return config, {k: v for k, v in columns.items() if k not in _CANONICAL}


def _present_columns(
    table: _Table, config: ManifestConfig, inputs: Mapping[str, str], others: Mapping[str, str]
) -> dict[str, str]:
    """Canonical or input name → the manifest's column, for what the model needs; header problems raise."""
    wanted, header, problems = config.columns.as_dict(), table.header, table.problems
    needed = {"image", "patient_id"} | {n for n in inputs if n in _CANONICAL}
    if IMAGE_INPUT in inputs:
        needed |= {*ROI_COLUMNS, *ROI_POINT_COLUMNS}
    if "bmi" in inputs:
        needed |= {"height_cm", "weight_kg"}
    present = {c: wanted[c] for c in needed if wanted[c] in header}
    present.update(
        {n: others.get(n, n) for n in inputs if n not in _CANONICAL and n != IMAGE_INPUT and others.get(n, n) in header}
    )
    for name in inputs:
        key = "image" if name == IMAGE_INPUT else name
        derivable = key == "bmi" and {"height_cm", "weight_kg"} <= present.keys()
        if key not in present and not derivable:
            column = wanted.get(key, others.get(key, key))
            also = f" (or both {wanted['height_cm']!r} and {wanted['weight_kg']!r})" if key == "bmi" else ""
            problems.add_header(
                f"column {column!r}{also} not found: the model takes '{name}'; columns in the file: "
                f"{', '.join(map(repr, header))}"
            )
    check_roi_columns(present, wanted, problems)
    if problems.header_bad:
        problems.raise_if_any()
    return present


def _images(rows: _Rows) -> dict[str, list]:
    """``path``: each image resolved and decoded once (the training checks); ``roi``: its box or None."""
    roi = _build_roi(rows)
    paths = _build_images(rows, roi)
    boxes = [
        tuple(roi[c][i] for c in ROI_COLUMNS) if roi and roi["roi_x"][i] is not None else None
        for i in range(len(rows.lines))
    ]
    return {"path": paths, "roi": boxes}


def _parse_number(raw: str) -> float:
    if not _NUMBER.fullmatch(raw):
        raise ValueError(f"{_show(raw)} is not a number")
    return float(raw)


def _check_against_card(rows: _Rows, values: Mapping[str, list], inputs: Mapping[str, str], card: Mapping) -> None:
    """What only the model knows: the categories it was trained on, the covariates it does not impute."""
    categories = (card.get("covariates") or {}).get("categories") or {}
    required = set((card.get("missing_covariates") or {}).get("required") or ())
    for name in inputs:
        if name == IMAGE_INPUT:
            continue
        column = rows.present.get(name) or f"{rows.present.get('height_cm')}/{rows.present.get('weight_kg')}"
        empty = [line for line, v in zip(rows.lines, values[name]) if v is None]
        if empty and name in required:
            rows.problems.add(
                f"value is missing (empty) and the model was not trained to impute '{name}' "
                "(--impute median); fill it in",
                lines=empty,
                column=column,
                reason=f"missing {name}",
            )
        unknown: dict[str, list[int]] = {}
        for line, v in zip(rows.lines, values[name]):
            if name in categories and v is not None and v is not _INVALID and _category(v) not in categories[name]:
                unknown.setdefault(_category(v), []).append(line)
        for category, lines in unknown.items():
            rows.problems.add(
                f"{_show(category)} is not a category the model was trained on (its categories: "
                f"{', '.join(categories[name])})",
                lines=lines,
                column=column,
                reason=f"unknown {name}",
            )


def _category(value: object) -> str:
    """As the covariate encoder keys a category: sex "F"/"M", fracture history "0"/"1", others as written."""
    return str(int(value)) if isinstance(value, (int, np.integer)) else str(value)


def _raise_if_any(problems: _Problems) -> None:
    # An empty image cell is collected as a missing value, whose hint speaks of training options.
    for column, lines in problems.missing.items():
        problems.add("image path is missing (empty)", lines=lines, column=column, reason=f"missing {column}")
    problems.missing.clear()
    problems.raise_if_any()


def _to_send(dtype: str, value: object) -> float | str:
    """The value sent for one cell: a float (NaN when empty) or a string ("" when empty)."""
    if dtype == "float32":
        return np.nan if value is None else float(value)
    return "" if value is None else _category(value)


def _with_images(chunk: pd.DataFrame, inputs: Mapping[str, str], manifest: str | Path) -> list[dict]:
    """The chunk's rows as instances, each image decoded as training reads it and encoded as PNG."""
    records = chunk.to_dict("records")
    if IMAGE_INPUT in inputs:
        for record in records:
            try:
                record[IMAGE_INPUT] = encode_png(read_image(record["path"], record["roi"]))
            except OsteoInputError as error:  # the file changed since it was checked
                raise OsteoInputError(f"manifest {manifest}, line {record['line']}: {error}") from None
    return records


def _where(manifest: str | Path, chunk: pd.DataFrame, message: str) -> str:
    """The manifest lines of the instances a refusal names (else of the whole request)."""
    lines = chunk["line"].tolist()
    named = sorted({int(i) for i in _INSTANCE.findall(message) if int(i) < len(lines)})
    if not named:
        return f"manifest {manifest}, lines {lines[0]}–{lines[-1]} (one request; instance 0 = line {lines[0]})"
    images = chunk["image"].tolist() if "image" in chunk else None
    return f"manifest {manifest}, " + ", ".join(
        f"line {lines[i]}" + (f" ({images[i]})" if images else "") + f" = instance {i}" for i in named
    )


def _assertion(message: str) -> str:
    """A TensorFlow error's own text: from ``assertion failed:`` when present, without graph node details."""
    start = message.find("assertion failed:")
    text = message[start:] if start >= 0 else message
    return text.split("\n\t [[")[0].strip()
