"""`osteo predict` with an exported SavedModel: a bad manifest is refused by file and line before the
model loads, and every image type training reads (DICOM, TIFF, 16-bit, ROI crops) predicts as the
trained Keras model does through the training pipeline."""

import io
import shutil

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from osteo_tf.cli import main
from osteo_tf.data.covariates import CovariateEncoder
from osteo_tf.data.manifest import read_manifest
from osteo_tf.data.pipeline import decode_gray, load_image, preprocess_gray
from osteo_tf.io import read_json
from osteo_tf.models import get_backbone_spec, normalize_images
from osteo_tf.serving import predict as predict_module
from osteo_tf.serving.predict import LocalModel, encode_png, predict_manifest

COLUMNS = ["image", "patient_id", "age", "sex", "bmi", "hip_fracture_history"]
TOLERANCE = 1e-5  # |predict − Keras through the training pipeline|; predict writes 6 decimals


@pytest.fixture
def cohort(exported, tmp_path):
    """Five phantom rows (images copied next to the manifest): the manifest path and its rows."""
    rows = pd.read_csv(exported["manifest"], dtype=str).head(5)[COLUMNS]
    for image in rows["image"]:
        shutil.copy(exported["manifest"].parent / image, tmp_path / image.split("/")[-1])
    rows["image"] = rows["image"].str.split("/").str[-1]
    rows.to_csv(tmp_path / "m.csv", index=False)
    return tmp_path / "m.csv", rows


def _write(path, rows):
    rows.to_csv(path, index=False)


def _set(cell, value):
    def change(path, rows):
        rows.loc[cell[0], cell[1]] = value
        _write(path, rows)

    return change


def _truncate_image(row):
    def change(path, rows):
        image = path.parent / rows.loc[row, "image"]
        image.write_bytes(image.read_bytes()[:80])  # PNG signature and header, body cut short
        _write(path, rows)

    return change


CASES = {
    "binary file": (
        lambda path, rows: path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
        ["m.csv is not a CSV text file (it contains NUL bytes)"],
    ),
    "not UTF-8": (
        lambda path, rows: path.write_bytes(b"image,patient_id\n\xe9t\xe9.png,P1\n"),
        ["m.csv is not UTF-8 text (undecodable byte 0xe9 on line 2)"],
    ),
    "empty file": (lambda path, rows: path.write_bytes(b""), ["m.csv is empty"]),
    "header only": (lambda path, rows: path.write_text(",".join(COLUMNS) + "\n"), ["m.csv has a header but no rows"]),
    "ragged row": (
        lambda path, rows: path.write_text(rows.to_csv(index=False) + "x.png,P9,70\n"),
        ["m.csv, line 7: row has 3 values but the header has 6 columns"],
    ),
    "not a number": (_set((2, "age"), "seventy"), ["m.csv, line 4, column 'age': 'seventy' is not a number"]),
    "implausible": (_set((0, "bmi"), "250"), ["m.csv, line 2, column 'bmi': '250' is out of range"]),
    "unknown sex code": (_set((1, "sex"), "X"), ["m.csv, line 3, column 'sex': 'X' is not a valid sex code"]),
    "unknown fracture code": (
        _set((4, "hip_fracture_history"), "maybe"),
        ["m.csv, line 6, column 'hip_fracture_history': 'maybe' is not a valid"],
    ),
    "image not found": (_set((3, "image"), "gone.png"), ["m.csv, line 5, column 'image': image file not found"]),
    "image cell empty": (_set((0, "image"), ""), ["m.csv, line 2, column 'image': image path is missing (empty)"]),
    "corrupt image": (_truncate_image(2), ["m.csv, line 4, column 'image': cannot decode image"]),
    "missing covariate": (
        _set((3, "age"), ""),
        ["m.csv, line 5, column 'age': value is missing (empty) and the model was not trained to impute 'age'"],
    ),
    "missing column": (
        lambda path, rows: _write(path, rows.drop(columns=["bmi"])),
        ["m.csv, line 1: column 'bmi' (or both 'height_cm' and 'weight_kg') not found"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_manifest_is_refused_by_file_and_line_before_the_model_loads(case, cohort, exported, capsys, monkeypatch):
    path, rows = cohort
    change, expected = CASES[case]
    change(path, rows.copy())
    monkeypatch.setattr(LocalModel, "signature", property(lambda self: pytest.fail("the model was loaded")))
    out = path.parent / "preds.csv"
    assert main(["predict", "--model", str(exported["model"]), "--manifest", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("osteo: error: ") and "Traceback" not in err
    for text in expected:
        assert text in err
    assert not out.exists()


def test_every_bad_row_is_reported_at_once(cohort, exported, capsys):
    path, rows = cohort
    rows.loc[1, "sex"] = "X"
    rows.loc[4, "sex"] = "?"
    _write(path, rows)
    _truncate_image(2)(path, rows)
    assert (
        main(
            [
                "predict",
                "--model",
                str(exported["model"]),
                "--manifest",
                str(path),
                "--out",
                str(path.parent / "preds.csv"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "has 3 problems" in err
    for where in ("line 3, column 'sex'", "line 4, column 'image'", "line 6, column 'sex'"):
        assert f"m.csv, {where}" in err


def test_a_refusal_by_the_model_names_the_manifest_line_of_its_instance(cohort, exported, capsys, monkeypatch):
    path, rows = cohort
    rows.loc[3, "age"] = ""
    _write(path, rows)
    real = predict_module._read_card
    # A card without the imputation record: the client cannot tell, so the model judges the empty cell.
    monkeypatch.setattr(
        predict_module, "_read_card", lambda file: {k: v for k, v in real(file).items() if k != "missing_covariates"}
    )
    assert (
        main(
            [
                "predict",
                "--model",
                str(exported["model"]),
                "--manifest",
                str(path),
                "--out",
                str(path.parent / "preds.csv"),
                "--batch-size",
                "2",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("osteo: error: manifest ") and "Traceback" not in err
    assert f"m.csv, line 5 ({rows.loc[3, 'image']}) = instance 1: the model refused the request: " in err
    assert "input age: value missing (NaN) in instance 1]" in err


# ------------------------------------------------------------- every image type training reads


def _variants(gray: list[np.ndarray], folder, write_dicom) -> list[tuple[str, tuple | None]]:
    """The phantom images (8-bit, 32 px) rewritten as the file types training reads, some 48 px with a ROI."""
    big = [np.kron(g, np.ones((3, 3), np.uint8))[8:56, 8:56] for g in gray]  # 48 px: a 40 px ROI stays ≥ 32 px
    raw = [g.astype(np.uint16) * 201 + 500 for g in big]  # 16-bit stored values
    files = [
        ("png16_roi.png", lambda p: Image.fromarray(raw[0]).save(p), (4, 6, 40, 40)),
        ("tiff16.tif", lambda p: Image.fromarray(raw[1]).save(p), None),
        ("tiff_float.tif", lambda p: Image.fromarray((big[2] / 255.0 * 3.7 - 1.2).astype(np.float32)).save(p), None),
        (
            "ct_rescale_roi.dcm",
            lambda p: write_dicom(p, raw[3], RescaleSlope=0.37, RescaleIntercept=-1024),
            (2, 3, 40, 44),
        ),
        (
            "mono1_window.dcm",
            lambda p: write_dicom(p, raw[4], "MONOCHROME1", WindowCenter=30000, WindowWidth=40000),
            None,
        ),
        ("rgb.png", lambda p: Image.fromarray(np.stack([big[5], big[5] // 2, 255 - big[5]], -1)).save(p), None),
    ]
    out = []
    for name, write, roi in files:
        write(folder / name)
        out.append((name, roi))
    return out


def test_dicom_tiff_16_bit_and_roi_predict_as_the_training_pipeline(exported, tmp_path, write_dicom):
    source = pd.read_csv(exported["manifest"], dtype=str).head(6)
    gray = [np.asarray(Image.open(exported["manifest"].parent / p)) for p in source["image"]]
    files = _variants(gray, tmp_path, write_dicom)
    rows = source[COLUMNS + ["t_score"]].copy()
    rows["image"] = [name for name, _ in files]
    for j, c in enumerate(("roi_x", "roi_y", "roi_w", "roi_h")):
        rows[c] = ["" if roi is None else str(roi[j]) for _, roi in files]
    manifest = tmp_path / "m.csv"
    rows.to_csv(manifest, index=False)

    cohort = read_manifest(manifest)  # the training reader and pipeline, then the Keras model
    images = np.stack([load_image(p, roi, 32) for p, (_, roi) in zip(cohort["image"], files)])
    covariates = CovariateEncoder.from_dict(read_json(exported["run"].encoder)).transform(cohort)
    model = keras.models.load_model(exported["run"].model)
    reference = model.predict(
        {"image": normalize_images(images, get_backbone_spec("resnet18")), "covariates": covariates}, verbose=0
    )[:, 0].astype(np.float64)

    result = predict_manifest(manifest, tmp_path / "preds.csv", model=exported["model"], batch_size=4)
    assert result["image"].tolist() == rows["image"].tolist()
    assert np.max(np.abs(result["probability"].to_numpy() - reference)) <= TOLERANCE

    local = LocalModel(exported["model"])  # the same requests, unrounded: compare logits
    inputs = local.inputs()
    instances = predict_module._with_images(
        predict_module.read_requests(manifest, inputs, card=local.card), inputs, manifest
    )
    served = np.asarray(local.predict(instances)[0], np.float64)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    assert np.max(np.abs(logit(served) - logit(reference))) <= 1e-4

    for intensity, bound in (("minmax", 0.0025), ("percentile:1,99", 0.005)):  # the network's 0–255 scale
        for (name, roi), path, sent in zip(files, cohort["image"], instances):
            seen = preprocess_gray(decode_gray(tf.constant(sent["image_bytes"])), 32, intensity).numpy()
            difference = np.max(np.abs(seen - load_image(path, roi, 32, intensity=intensity)))
            assert difference <= (0.0 if name in ("png16_roi.png", "tiff16.tif") else bound), (name, intensity)


def test_the_png_sent_keeps_what_normalisation_sees():
    rng = np.random.default_rng(3)
    integers = rng.integers(0, 65536, (40, 33)).astype(np.float32)
    exact = np.asarray(Image.open(io.BytesIO(encode_png(integers))))
    np.testing.assert_array_equal(exact, integers)  # whole numbers in 0..65535: bit for bit
    floats = (rng.normal(size=(40, 33)) * 300 - 1024).astype(np.float32)  # e.g. Hounsfield units
    sent = np.asarray(Image.open(io.BytesIO(encode_png(floats)))).astype(np.float64)
    wide = floats.astype(np.float64)
    scaled = (wide - wide.min()) / (wide.max() - wide.min())
    assert sent.min() == 0 and sent.max() == 65535
    assert np.max(np.abs(sent / 65535 - scaled)) <= 0.5 / 65535 + 1e-9  # min–max: half a 16-bit step
    small = rng.integers(0, 256, (5, 6)).astype(np.float32)
    eight = Image.open(io.BytesIO(encode_png(small)))
    assert eight.mode == "L" and np.array_equal(np.asarray(eight), small)  # 8-bit values: an 8-bit PNG
    constant = np.asarray(Image.open(io.BytesIO(encode_png(np.full((4, 4), -3.5)))))
    assert (constant == 0).all()  # as the normalisation maps a constant image
