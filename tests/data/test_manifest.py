"""Tests for osteo_tf.data.manifest: the CSV data contract and its error messages."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from osteo_tf.data.manifest import ManifestConfig, ManifestConfigError, check_manifest, read_manifest
from osteo_tf.errors import OsteoInputError

HEADER = ["image", "patient_id", "age", "sex", "bmi", "t_score"]
ROWS = [
    ["a.png", "P1", "70", "F", "22.5", "-3.0"],
    ["b.png", "P2", "55", "M", "27", "-1.0"],
    ["c.png", "P3", "63", "female", "24.1", "-2.5"],
]


def _images(folder: Path) -> None:
    for name in ("a.png", "b.png", "c.png"):  # 50×40 px: above the default min_image_size (32)
        Image.fromarray(np.full((40, 50), 100, np.uint8)).save(folder / name)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    _images(tmp_path)
    return tmp_path


def write_csv(folder: Path, header: list[str], rows: list[list[str]], name: str = "cohort.csv") -> Path:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    path = folder / name
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def with_cell(
    row: int, column: str, value: str, header: list[str] = HEADER, rows: list[list[str]] = ROWS
) -> list[list[str]]:
    """A copy of rows with one cell replaced."""
    out = [list(r) for r in rows]
    out[row][header.index(column)] = value
    return out


def error(path: Path, config: ManifestConfig | None = None) -> str:
    with pytest.raises(OsteoInputError) as err:
        read_manifest(path, config)
    return str(err.value)


def assert_names(msg: str, *parts: str) -> None:
    for part in parts:
        assert part in msg, f"{part!r} not in:\n{msg}"


# ------------------------------------------------------------------------- good paths


def test_defaults(folder: Path) -> None:
    df = read_manifest(write_csv(folder, HEADER, ROWS))
    assert list(df.index) == [0, 1, 2]
    assert df["image"].tolist() == [str(folder / n) for n in ("a.png", "b.png", "c.png")]
    assert df["patient_id"].tolist() == ["P1", "P2", "P3"]
    assert df["sex"].tolist() == ["F", "M", "F"]
    assert df["age"].dtype == np.float64 and df["age"].tolist() == [70.0, 55.0, 63.0]
    assert df["bmi"].tolist() == [22.5, 27.0, 24.1]
    assert df["line"].tolist() == [2, 3, 4]
    assert "hip_fracture_history" not in df and "roi_x" not in df


def test_label_from_t_score_threshold_inclusive(folder: Path) -> None:
    df = read_manifest(write_csv(folder, HEADER, ROWS))
    assert df["label"].dtype == np.int64
    assert df["label"].tolist() == [1, 0, 1]  # -3.0, -1.0, -2.5 (≤ -2.5 counts)
    assert df["t_score"].tolist() == [-3.0, -1.0, -2.5]
    cfg = ManifestConfig(t_score_threshold=-3.0)
    assert read_manifest(folder / "cohort.csv", cfg)["label"].tolist() == [1, 0, 0]


def test_label_from_label_column(folder: Path) -> None:
    header = HEADER[:-1] + ["label"]
    rows = [r[:-1] + [lab] for r, lab in zip(ROWS, ["1", "0", "1"])]
    df = read_manifest(write_csv(folder, header, rows))
    assert df["label"].tolist() == [1, 0, 1]
    assert df["t_score"].isna().all()


def test_label_and_t_score_that_agree(folder: Path) -> None:
    header = HEADER + ["label"]
    rows = [r + [lab] for r, lab in zip(ROWS, ["1", "0", ""])]
    rows[1][5] = ""  # no T-score: the label column decides
    df = read_manifest(write_csv(folder, header, rows))
    assert df["label"].tolist() == [1, 0, 1]
    assert np.isnan(df["t_score"][1])


def test_bmi_derived_from_height_and_weight(folder: Path) -> None:
    header = ["image", "patient_id", "age", "sex", "height_cm", "weight_kg", "t_score"]
    rows = [r[:4] + ["160", "64", r[5]] for r in ROWS]
    df = read_manifest(write_csv(folder, header, rows))
    assert df["bmi"].tolist() == pytest.approx([25.0] * 3)
    assert df["height_cm"].tolist() == [160.0] * 3


def test_configurable_columns_and_sex_codes(folder: Path) -> None:
    header = ["File", "Subject", "Age_y", "Gender", "BMI", "T", "Fx"]
    rows = [
        [r[0], r[1], r[2], code, r[4], r[5], fx] for r, code, fx in zip(ROWS, ["0", "1", " 0 "], ["Yes", "no", "TRUE"])
    ]
    cfg = ManifestConfig.from_dict(
        {
            "columns": {
                "image": "File",
                "patient_id": "Subject",
                "age": "Age_y",
                "sex": "Gender",
                "bmi": "BMI",
                "t_score": "T",
                "hip_fracture_history": "Fx",
            },
            "sex_codes": {0: "F", "1": "m"},  # YAML may give int keys
            "required": ["age", "sex", "bmi", "hip_fracture_history"],
        }
    )
    df = read_manifest(write_csv(folder, header, rows), cfg)
    assert df["sex"].tolist() == ["F", "M", "F"]
    assert df["hip_fracture_history"].dtype == np.int64
    assert df["hip_fracture_history"].tolist() == [1, 0, 1]
    assert "File" not in df and "Gender" not in df
    assert cfg.sex_codes["female"] == "F"  # the defaults stay accepted


def test_extra_columns_kept_unchanged(folder: Path) -> None:
    header = HEADER + ["site", "smoker"]
    rows = [r + [site, sm] for r, site, sm in zip(ROWS, ["Kyoto", " Osaka ", ""], "101")]
    df = read_manifest(write_csv(folder, header, rows))
    assert df["site"].tolist() == ["Kyoto", " Osaka ", ""]
    assert df["smoker"].tolist() == ["1", "0", "1"]
    assert list(df.columns)[-2:] == ["site", "smoker"]


def test_absolute_and_parent_paths(folder: Path) -> None:
    sub = folder / "manifests"
    sub.mkdir()
    rows = with_cell(0, "image", str(folder / "a.png"))
    rows = with_cell(1, "image", "../b.png", rows=rows)
    rows = with_cell(2, "image", "./../manifests/../c.png", rows=rows)
    df = read_manifest(write_csv(sub, HEADER, rows))
    assert df["image"].tolist() == [str((folder / n).resolve()) for n in ("a.png", "b.png", "c.png")]


def test_roi_columns_nullable(folder: Path) -> None:
    header = HEADER + ["roi_x", "roi_y", "roi_w", "roi_h"]
    rows = [ROWS[0] + ["1", "2", "40", "36"], ROWS[1] + ["", "", "", ""], ROWS[2] + ["0", "0", "50", "40"]]
    df = read_manifest(write_csv(folder, header, rows))
    assert str(df["roi_x"].dtype) == "Int64"
    assert df["roi_w"].tolist()[0] == 40 and pd.isna(df["roi_w"][1])


def test_line_numbers_skip_blank_lines_and_quoted_newlines(folder: Path) -> None:
    text = (
        "\ufeffimage,patient_id,age,sex,bmi,t_score,note\n"
        'a.png,P1,70,F,22.5,-3,"two\nlines"\n'
        "\n"
        "b.png,P2,55,M,27,-1,\n"
        ",,,,,,\n"
        "c.png,P3,63,F,24,-2,x\n"
    )
    path = folder / "cohort.csv"
    path.write_text(text, encoding="utf-8")
    df = read_manifest(path)
    assert df["line"].tolist() == [2, 5, 7]
    assert df["note"][0] == "two\nlines"


def test_non_required_covariate_may_be_empty(folder: Path) -> None:
    header = HEADER + ["hip_fracture_history"]
    rows = [r + [v] for r, v in zip(ROWS, ["yes", "", "n"])]
    rows = with_cell(1, "age", "", header, rows)
    df = read_manifest(write_csv(folder, header, rows), ManifestConfig(required=("sex",)))
    assert np.isnan(df["age"][1])
    assert str(df["hip_fracture_history"].dtype) == "Int64"
    assert pd.isna(df["hip_fracture_history"][1])


def test_check_images_false_reads_headers_only(folder: Path) -> None:
    big = folder / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(big)
    big.write_bytes(big.read_bytes()[:200])  # header fine, pixel data truncated
    path = write_csv(folder, HEADER, with_cell(0, "image", "big.png"))
    assert len(read_manifest(path, ManifestConfig(check_images=False))) == 3
    assert_names(error(path), "cohort.csv, line 2, column 'image'", "truncated")


# -------------------------------------------------------------------- config errors


def test_config_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(OsteoInputError, match="'colums'"):
        ManifestConfig.from_dict({"colums": {}})
    with pytest.raises(OsteoInputError, match="'agee'"):
        ManifestConfig.from_dict({"columns": {"agee": "Age"}})


@pytest.mark.parametrize(
    "bad",
    [
        {"sex_codes": {"0": "X"}},
        {"required": ["weight"]},
        {"required": "age"},
        {"check_images": "yes"},
        {"t_score_threshold": "low"},
        {"columns": {"age": "x", "bmi": "x"}},
        {"columns": {"age": ""}},
    ],
)
def test_config_bad_values(bad: dict) -> None:
    with pytest.raises(OsteoInputError):
        ManifestConfig.from_dict(bad)


def test_config_errors_name_the_key() -> None:
    for bad, expect in [
        ({"columns": {"age": 5}}, "manifest config: columns.age: must be a non-empty column name, got 5"),
        ({"sex_codes": {"0": "X"}}, "manifest config: sex_codes.0: must be 'F' or 'M', got 'X'"),
        ({"required": {"age": 1}}, "manifest config: required: must be a list of covariate names"),
        ({"columns": {"agee": "Age"}}, "manifest config: columns: unknown option(s) 'agee'"),
    ]:
        with pytest.raises(ManifestConfigError) as err:
            ManifestConfig.from_dict(bad)
        assert str(err.value).startswith(expect), str(err.value)


@pytest.mark.parametrize(
    "text, expect",
    [
        ("columns: {age: 5}\n", "columns.age: must be a non-empty column name, got 5"),
        ("min_image_size: big\n", "min_image_size: must be a whole number of pixels >= 1 (default 32), got 'big'"),
        ("sex_codes: {'0': X}\n", "sex_codes.0: must be 'F' or 'M', got 'X'"),
        ("colums: {}\n", "unknown option(s) 'colums'"),
        ("- columns\n", "must be a mapping of options, got ['columns']"),
    ],
)
def test_manifest_config_yaml_errors_name_the_file_and_key(tmp_path: Path, text: str, expect: str) -> None:
    path = tmp_path / "cohort.yaml"
    path.write_text(text)
    with pytest.raises(OsteoInputError) as err:
        ManifestConfig.from_yaml(path)
    assert str(err.value).startswith(f"{path}: {expect}"), str(err.value)


def test_manifest_config_yaml_file_problems_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cohort.yaml"
    with pytest.raises(OsteoInputError, match="manifest config .*cohort.yaml does not exist"):
        ManifestConfig.from_yaml(path)
    path.write_text("columns: [\n")
    with pytest.raises(OsteoInputError, match="cohort.yaml is not valid YAML"):
        ManifestConfig.from_yaml(path)
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(OsteoInputError, match="cohort.yaml cannot be read as UTF-8 text"):
        ManifestConfig.from_yaml(path)
    path.write_text("")
    assert ManifestConfig.from_yaml(path) == ManifestConfig()
    path.write_text("min_image_size: 16\nroi_size: [250, 400]\n")
    assert ManifestConfig.from_yaml(path).min_image_size == 16


# -------------------------------------------------------------------- image size


def test_image_below_min_image_size_is_a_row_problem_naming_file_and_size(folder: Path) -> None:
    Image.fromarray(np.full((1, 1), 100, np.uint8)).save(folder / "tiny.png")
    path = write_csv(folder, HEADER, with_cell(2, "image", "tiny.png"))
    assert_names(
        error(path),
        "cohort.csv, line 4, column 'image': tiny.png is 1×1 px; images must be at "
        "least 32×32 px (ManifestConfig.min_image_size)",
    )
    check = check_manifest(path)
    assert check.counts == {"image too small": 1} and check.exclusions["line"].tolist() == [4]
    assert check.cohort["patient_id"].tolist() == ["P1", "P2"]
    assert len(read_manifest(path, ManifestConfig(min_image_size=1))) == 3


def test_the_shorter_side_counts_also_when_only_headers_are_read(folder: Path) -> None:
    Image.fromarray(np.full((20, 400), 100, np.uint8)).save(folder / "strip.png")
    path = write_csv(folder, HEADER, with_cell(0, "image", "strip.png"))
    assert_names(error(path, ManifestConfig(check_images=False)), "line 2, column 'image': strip.png is 400×20 px")
    assert len(read_manifest(path, ManifestConfig(min_image_size=20))) == 3


def test_a_roi_crop_below_min_image_size_is_refused_even_in_a_large_image(folder: Path) -> None:
    header = HEADER + ["roi_x", "roi_y", "roi_w", "roi_h"]
    rows = [r + ["0", "0", "50", "40"] for r in ROWS]
    rows[1][6:] = ["2", "3", "40", "8"]
    path = write_csv(folder, header, rows)
    assert_names(
        error(path),
        "cohort.csv, line 3, column 'image': b.png: the ROI box (x=2, y=3, w=40, h=8) is "
        "40×8 px; ROI crops must be at least 32×32 px (ManifestConfig.min_image_size)",
    )
    assert check_manifest(path).counts == {"ROI too small": 1}
    assert len(read_manifest(path, ManifestConfig(min_image_size=8))) == 3


@pytest.mark.parametrize("bad", [0, -1, 2.5, 32.0, True, "32", None])
def test_min_image_size_must_be_a_whole_number_of_pixels(bad: object) -> None:
    with pytest.raises(ManifestConfigError, match=r"^manifest config: min_image_size: must be a whole number"):
        ManifestConfig.from_dict({"min_image_size": bad})


def test_min_image_size_round_trips_and_is_left_out_at_its_default() -> None:
    assert ManifestConfig().min_image_size == 32 and "min_image_size" not in ManifestConfig().to_dict()
    small = ManifestConfig.from_dict({"min_image_size": 16})
    assert small.to_dict()["min_image_size"] == 16 and ManifestConfig.from_dict(small.to_dict()) == small


# ---------------------------------------------------------------- file-level errors


def test_manifest_missing(tmp_path: Path) -> None:
    assert_names(error(tmp_path / "cohort.csv"), "not found", str(tmp_path / "cohort.csv"))


def test_manifest_is_a_folder(tmp_path: Path) -> None:
    assert_names(error(tmp_path), "folder", str(tmp_path))


@pytest.mark.parametrize(
    "content", [b"PK\x03\x04zipdata", b"\x89PNG\r\n\x1a\n\x00\x00", "image,age\n".encode("utf-16")]
)
def test_manifest_not_a_csv(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "cohort.csv"
    path.write_bytes(content)
    assert_names(error(path), str(path), "CSV")


def test_manifest_bad_encoding(tmp_path: Path) -> None:
    path = tmp_path / "cohort.csv"
    path.write_bytes("image,patient_id\na.png,Müller\n".encode("latin-1"))
    assert_names(error(path), str(path), "not UTF-8", "line 2")


@pytest.mark.parametrize("text", ["", "\n\n", "image,patient_id,age,sex,bmi,t_score\n"])
def test_empty_manifest(tmp_path: Path, text: str) -> None:
    path = tmp_path / "cohort.csv"
    path.write_text(text)
    assert_names(error(path), str(path), "empty" if "image" not in text else "no rows")


def test_missing_required_column(folder: Path) -> None:
    header = ["image", "patient_id", "Age", "sex", "bmi", "t_score"]
    msg = error(write_csv(folder, header, ROWS))
    assert_names(msg, "cohort.csv, line 1", "'age'", "'Age'", "'patient_id', 'Age'", "ManifestColumns", "columns:")


def test_missing_label_and_t_score_columns(folder: Path) -> None:
    msg = error(write_csv(folder, HEADER[:-1], [r[:-1] for r in ROWS]))
    assert_names(msg, "cohort.csv, line 1", "'t_score'", "'label'")


def test_hip_protocol_requires_fracture_history(folder: Path) -> None:
    cfg = ManifestConfig(required=("age", "sex", "bmi", "hip_fracture_history"))
    assert_names(error(write_csv(folder, HEADER, ROWS), cfg), "'hip_fracture_history'", "line 1")


def test_bmi_column_or_height_and_weight_required(folder: Path) -> None:
    header = ["image", "patient_id", "age", "sex", "height_cm", "t_score"]
    rows = [r[:4] + ["170", r[5]] for r in ROWS]
    assert_names(error(write_csv(folder, header, rows)), "'bmi'", "'weight_kg'", "line 1")


def test_partial_roi_columns(folder: Path) -> None:
    header = HEADER + ["roi_x", "roi_y"]
    msg = error(write_csv(folder, header, [r + ["0", "0"] for r in ROWS]))
    assert_names(msg, "cohort.csv, line 1", "'roi_w'", "'roi_h'")


def test_duplicate_and_reserved_column_names(folder: Path) -> None:
    header = HEADER + ["age", "line"]
    msg = error(write_csv(folder, header, [r + ["1", "2"] for r in ROWS]))
    assert_names(msg, "line 1", "'age' appears more than once", "'line' is reserved")


def test_wrong_number_of_values(folder: Path) -> None:
    rows = [list(r) for r in ROWS]
    rows[1].append("extra")
    rows[2] = with_cell(2, "age", "abc")[2]
    msg = error(write_csv(folder, HEADER, rows))
    assert_names(
        msg, "cohort.csv, line 3", "7 values", "6 columns", "line 4, column 'age'"
    )  # the other rows are still checked


# -------------------------------------------------------------------- row errors


def test_image_missing(folder: Path) -> None:
    msg = error(write_csv(folder, HEADER, with_cell(1, "image", "scans/nope.png")))
    assert_names(
        msg, "cohort.csv, line 3, column 'image'", "not found", str(folder / "scans" / "nope.png"), "resolved against"
    )


def test_image_corrupt(folder: Path) -> None:
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    msg = error(write_csv(folder, HEADER, with_cell(2, "image", "bad.png")))
    assert_names(msg, "cohort.csv, line 4, column 'image'", str(folder / "bad.png"))


def test_image_dicom_broken(folder: Path) -> None:
    (folder / "x.dcm").write_bytes(b"\x00" * 132)
    msg = error(write_csv(folder, HEADER, with_cell(0, "image", "x.dcm")))
    assert_names(msg, "line 2, column 'image'", "DICOM", "x.dcm")


@pytest.mark.parametrize(
    "column, value, expect",
    [
        ("age", "abc", "'abc' is not a number (expected years, 0–120)"),
        ("age", "130", "'130' is out of range (expected years, 0–120)"),
        ("age", "-1", "'-1' is out of range"),
        ("age", "nan", "'nan' is not a number"),
        ("age", "62,5", "'62,5' is not a number (expected years, 0–120) — use '.' as the decimal separator"),
        ("bmi", "9.9", "'9.9' is out of range (expected kg/m², 10–70)"),
        ("bmi", "kg", "'kg' is not a number"),
        ("t_score", "-11", "'-11' is out of range (expected DXA T-score, -10 to +10)"),
        ("t_score", "low", "'low' is not a number"),
    ],
)
def test_bad_numbers(folder: Path, column: str, value: str, expect: str) -> None:
    msg = error(write_csv(folder, HEADER, with_cell(1, column, value)))
    assert_names(msg, f"cohort.csv, line 3, column '{column}': {expect}")


@pytest.mark.parametrize(
    "height, weight, expect",
    [
        ("0", "60", "column 'height_cm': '0' is out of range"),
        ("170", "-5", "column 'weight_kg': '-5' is out of range"),
        ("400", "60", "column 'height_cm'"),
        ("170", "900", "column 'weight_kg'"),
        ("250", "20", "column 'height_cm/weight_kg': BMI from height 250 cm"),
    ],
)
def test_bad_height_weight(folder: Path, height: str, weight: str, expect: str) -> None:
    header = ["image", "patient_id", "age", "sex", "height_cm", "weight_kg", "t_score"]
    rows = [r[:4] + ["170", "70", r[5]] for r in ROWS]
    rows[2][4:6] = [height, weight]
    assert_names(error(write_csv(folder, header, rows)), "cohort.csv, line 4", expect)


def test_missing_values_grouped_by_column(folder: Path) -> None:
    rows = with_cell(0, "bmi", "")
    rows = with_cell(2, "bmi", "", rows=rows)
    rows = with_cell(1, "sex", " ", rows=rows)
    rows = with_cell(1, "patient_id", "", rows=rows)
    msg = error(write_csv(folder, HEADER, rows))
    assert_names(
        msg,
        "cohort.csv, lines 2 and 4, column 'bmi': value is missing",
        "line 3, column 'sex': value is missing",
        "line 3, column 'patient_id': value is missing",
        "--impute",
    )


def test_unknown_sex_code(folder: Path) -> None:
    msg = error(write_csv(folder, HEADER, with_cell(0, "sex", "X")))
    assert_names(msg, "cohort.csv, line 2, column 'sex': 'X'", "'female'", "'male'", "sex_codes")


def test_bad_label(folder: Path) -> None:
    header = HEADER[:-1] + ["label"]
    rows = [r[:-1] + [lab] for r, lab in zip(ROWS, ["1", "2", "yes"])]
    msg = error(write_csv(folder, header, rows))
    assert_names(msg, "line 3, column 'label': '2' is not a valid label", "line 4, column 'label': 'yes'", "0 or 1")


def test_label_disagrees_with_t_score(folder: Path) -> None:
    header = HEADER + ["label"]
    rows = [r + [lab] for r, lab in zip(ROWS, ["1", "1", "1"])]
    msg = error(write_csv(folder, header, rows))
    assert_names(msg, "cohort.csv, line 3, column 'label': label 1 disagrees", "-1")
    assert "line 2," not in msg and "line 4," not in msg


def test_no_label_in_row(folder: Path) -> None:
    msg = error(write_csv(folder, HEADER, with_cell(2, "t_score", "")))
    assert_names(msg, "cohort.csv, line 4", "'t_score'")


def test_bad_hip_fracture_code(folder: Path) -> None:
    header = HEADER + ["hip_fracture_history"]
    rows = [r + [v] for r, v in zip(ROWS, ["yes", "maybe", "0"])]
    msg = error(write_csv(folder, header, rows))
    assert_names(msg, "cohort.csv, line 3, column 'hip_fracture_history': 'maybe'", "yes/no")


def test_duplicate_image_rows(folder: Path) -> None:
    rows = with_cell(2, "image", "./a.png")
    msg = error(write_csv(folder, HEADER, rows))
    assert_names(msg, "cohort.csv, lines 2 and 4, column 'image'", "listed 2 times")


def test_patient_sex_disagrees(folder: Path) -> None:
    rows = with_cell(1, "patient_id", "P1")  # P1 is F on line 2, M on line 3
    msg = error(write_csv(folder, HEADER, rows))
    assert_names(msg, "cohort.csv, lines 2 and 3, column 'sex'", "patient 'P1'", "F on line 2", "M on line 3")


def test_same_patient_same_sex_is_fine(folder: Path) -> None:
    rows = with_cell(2, "patient_id", "P1")  # P1: F and 'female'
    assert read_manifest(write_csv(folder, HEADER, rows))["patient_id"].tolist()[2] == "P1"


def test_roi_outside_image(folder: Path) -> None:
    header = HEADER + ["roi_x", "roi_y", "roi_w", "roi_h"]
    rows = [r + ["0", "0", "50", "40"] for r in ROWS]
    rows[1][6:] = ["15", "0", "40", "40"]
    msg = error(write_csv(folder, header, rows))
    assert_names(msg, "cohort.csv, line 3, column 'image'", "50×40", "x=15", "w=40")


def test_roi_bad_values_and_partial_rows(folder: Path) -> None:
    header = HEADER + ["roi_x", "roi_y", "roi_w", "roi_h"]
    rows = [ROWS[0] + ["-1", "0", "4", "4"], ROWS[1] + ["1", "", "", ""], ROWS[2] + ["0", "0", "2.5", "4"]]
    msg = error(write_csv(folder, header, rows))
    assert_names(
        msg, "line 2, column 'roi_x': '-1'", "line 3, column 'roi_y': incomplete", "line 4, column 'roi_w': '2.5'"
    )


def test_all_problems_collected_and_capped(folder: Path) -> None:
    rows = [[f"img{i}.png", f"P{i}", "999", "F", "22", "-3"] for i in range(40)]
    msg = error(write_csv(folder, HEADER, rows))
    assert "has 80 problems" in msg  # 40 missing images + 40 bad ages
    assert "... and 50 more" in msg
    assert msg.count("\n  - ") == 30
    assert msg.rstrip().endswith("and run again.")


# ------------------------------------------------------------------------- property

_GARBAGE = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "",
            " ",
            "nan",
            "inf",
            "-inf",
            "1e400",
            "1e-400",
            "1_000",
            "0x1F",
            "٣",
            "1,5",
            "..",
            "/",
            "~",
            "\\x",
            "a.png\x00",
            '"',
            "\n",
            "\r",
            "line",
            "image",
            "age",
            "-2.5",
            "1e300",
            "  ,  ",
        ]
    ),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),
    st.binary(max_size=12).map(lambda b: b.decode("latin-1")),
)
_FULL_HEADER = HEADER + ["label", "hip_fracture_history", "roi_x", "roi_y", "roi_w", "roi_h", "extra"]
_FULL_ROWS = [r + [lab, "no", "0", "0", "40", "32", "x"] for r, lab in zip(ROWS, "101")]


@pytest.fixture(scope="module")
def garbage_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("garbage")
    _images(folder)
    return folder


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_FULL_ROWS)), st.integers(0, len(_FULL_HEADER) - 1), _GARBAGE),
        min_size=1,
        max_size=3,
    ),
    check_images=st.booleans(),
)
def test_garbage_cells_only_raise_osteo_input_error(
    garbage_dir: Path, edits: list[tuple[int, int, str]], check_images: bool
) -> None:
    table = [list(_FULL_HEADER)] + [list(r) for r in _FULL_ROWS]
    for row, col, value in edits:
        table[row][col] = value
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(table)
    path = garbage_dir / "cohort.csv"
    path.write_bytes(buf.getvalue().encode("utf-8", errors="surrogatepass"))
    try:
        df = read_manifest(path, ManifestConfig(check_images=check_images))
    except OsteoInputError as exc:
        assert "cohort.csv" in str(exc)
    else:
        assert len(df) == 3 and set(df["label"]) <= {0, 1}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_garbage_bytes_only_raise_osteo_input_error(garbage_dir: Path, data: bytes) -> None:
    path = garbage_dir / "bytes.csv"
    path.write_bytes(data)
    try:
        read_manifest(path)
    except OsteoInputError as exc:
        assert "bytes.csv" in str(exc)
