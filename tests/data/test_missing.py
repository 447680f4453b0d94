"""Missing covariates: by default an error listing every row and column; with
``--impute median`` training-row medians plus a missing-indicator feature, recorded in the run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from osteo_tf.cli import main
from osteo_tf.data.covariates import CovariateEncoder
from osteo_tf.data.manifest import ManifestConfig, read_manifest
from osteo_tf.data.synthetic import make_cohort
from osteo_tf.errors import OsteoInputError


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return make_cohort("hip", 40, tmp_path_factory.mktemp("missing"), seed=4, image_size=32)


def _with_gaps(manifest, name="gaps.csv", **gaps):
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    for column, rows in gaps.items():
        table.loc[list(rows), column] = ""
    path = manifest.parent / name
    table.to_csv(path, index=False)
    return path


def test_default_error_lists_every_row_and_column(phantom):
    path = _with_gaps(phantom, age=range(0, 24, 2), bmi=[5])
    with pytest.raises(OsteoInputError) as err:
        read_manifest(path)
    message = str(err.value)
    lines = ", ".join(str(i + 2) for i in range(0, 22, 2)) + " and 24"
    assert "column 'age': value is missing" in message and "more)" not in message
    assert f"lines {', '.join(str(i + 2) for i in range(0, 24, 2))}" in message or lines in message
    assert "line 7, column 'bmi': value is missing" in message
    assert "--impute median" in message and "--allow-exclusions" in message


def test_allow_missing_reads_nan(phantom):
    path = _with_gaps(phantom, age=[1], sex=[2])
    cohort = read_manifest(path, ManifestConfig(allow_missing=True))
    assert np.isnan(cohort["age"][1]) and pd.isna(cohort["sex"][2]) and len(cohort) == 40


def test_encoder_refuses_missing_values_listing_them():
    table = pd.DataFrame({"age": [60.0, np.nan, 70.0, np.nan], "sex": ["F", "M", None, "F"], "line": [2, 3, 4, 5]})
    encoder = CovariateEncoder.for_columns(("age", "sex"), table)
    with pytest.raises(OsteoInputError) as err:
        encoder.fit(table)
    message = str(err.value)
    assert "line 3: 'age'" in message and "line 4: 'sex'" in message and "line 5: 'age'" in message
    assert "--impute median" in message


def test_median_imputation_uses_training_rows_and_adds_indicators():
    cohort = pd.DataFrame(
        {
            "age": [50.0, 60.0, 90.0, np.nan, 30.0, np.nan],
            "bmi": [20.0, 21.0, 22.0, 23.0, 24.0, 25.0],
            "sex": ["F", "F", "M", None, "M", "F"],
            "line": [2, 3, 4, 5, 6, 7],
        }
    )
    train, test = cohort.iloc[:4], cohort.iloc[4:]
    encoder = CovariateEncoder.for_columns(("age", "bmi", "sex"), cohort, impute="median").fit(train)
    assert encoder.imputed == ("age", "sex")  # bmi has no gap anywhere: no indicator
    assert encoder.fill == {"age": 60.0, "sex": "F"}  # median of 50, 60, 90; most frequent training sex
    assert encoder.feature_names == ["age", "bmi", "sex=F", "sex=M", "age_missing", "sex_missing"]
    encoded = encoder.transform(cohort)
    age = encoder.stats["age"]
    assert encoded[3, 0] == pytest.approx((60.0 - age["mean"]) / (age["max"] - age["min"]))
    np.testing.assert_array_equal(encoded[:, 4], [0, 0, 0, 1, 0, 1])
    np.testing.assert_array_equal(encoded[:, 5], [0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(encoded[3, 2:4], [1, 0])
    again = CovariateEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
    np.testing.assert_array_equal(again.transform(test), encoder.transform(test))
    gap_elsewhere = test.assign(bmi=[np.nan, 22.0])
    with pytest.raises(OsteoInputError, match="no missing indicator"):
        encoder.transform(gap_elsewhere)


def test_impute_median_training_run_records_it(phantom, tmp_path, capsys):
    path = _with_gaps(phantom, "gaps_train.csv", age=[0, 3, 8], hip_fracture_history=[5])
    run = tmp_path / "run"
    assert main(["train", "--manifest", str(path), "--out", str(run), "--mode", "covariates_only"]) == 2
    refused = capsys.readouterr().err
    assert "lines 2, 5, 10, column 'age'" in refused and "line 7, column 'hip_fracture_history'" in refused
    assert "--impute median" in refused
    assert not run.exists()
    assert (
        main(
            [
                "train",
                "--manifest",
                str(path),
                "--out",
                str(run),
                "--mode",
                "covariates_only",
                "--impute",
                "median",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    config = json.loads((run / "config.json").read_text())
    encoder = json.loads((run / "covariate_encoder.json").read_text())
    assert config["train"]["impute"] == "median"
    assert encoder["impute"] == "median" and encoder["imputed"] == ["age", "hip_fracture_history"]
    assert {"age_missing", "hip_fracture_history_missing"} <= set(encoder["feature_names"])
    assert main(["evaluate", "--run", str(run)]) == 0
