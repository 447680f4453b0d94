"""osteo calibrate: fitted on val only, recorded in the run, used by threshold / evaluate / report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.calibrate import calibrate_run, calibration_lines
from osteo_tf.evaluation.calibration import Recalibration, calibration_metrics, fit_recalibration
from osteo_tf.evaluation.metrics import binary_metrics
from osteo_tf.evaluation.recalibration import reported_probability
from osteo_tf.evaluation.threshold import (
    choose_threshold,
    run_threshold,
    select_threshold,
    split_predictions,
    threshold_table,
)

RNG = np.random.default_rng(11)
N = 300
LABEL = RNG.integers(0, 2, 2 * N)
RAW = np.round(1 / (1 + np.exp(-(3.0 * (LABEL - 0.5) + RNG.normal(0, 2.0, 2 * N)))), 12)  # over-confident; exact in CSV


@pytest.fixture
def run(tmp_path):
    """A finished run folder with predictions only (calibration needs no model)."""
    pd.DataFrame(
        {
            "image": [f"{i}.png" for i in range(2 * N)],
            "patient_id": [f"p{i // 2}" for i in range(2 * N)],  # two images per patient
            "label": LABEL,
            "probability": RAW,
            "split": ["val"] * N + ["test"] * N,
        }
    ).to_csv(tmp_path / "predictions.csv", index=False)
    (tmp_path / "config.json").write_text(json.dumps({"train": {"threshold": 0.5, "seed": 3}}))
    (tmp_path / "COMPLETE").write_text("{}")
    return tmp_path


def test_logistic_recalibration_is_fitted_on_val_and_applied_to_the_reported_probability(run):
    record = calibrate_run(run, "logistic")
    expected = fit_recalibration(LABEL[:N], RAW[:N], "logistic")
    assert Recalibration.from_dict(record["recalibration"]) == expected
    np.testing.assert_allclose(reported_probability(run, RAW), expected.apply(RAW))
    splits = split_predictions(run)
    np.testing.assert_allclose(splits["test"]["probability"], expected.apply(RAW[N:]))
    assert record["after"]["test"] == calibration_metrics(LABEL[N:], expected.apply(RAW[N:]))
    assert abs(record["after"]["test"]["slope"] - 1) < abs(record["before"]["test"]["slope"] - 1)
    assert record["after"]["test"]["brier"] < record["before"]["test"]["brier"]
    assert "logistic recalibration fitted on the validation split (n=300)" in calibration_lines(run, record)[0]
    # changing the test rows does not change the fit
    table = pd.read_csv(run / "predictions.csv")
    table.loc[table["split"] == "test", "probability"] = 0.5
    table.to_csv(run / "predictions.csv", index=False)
    assert calibrate_run(run, "logistic")["recalibration"] == record["recalibration"]


def test_a_chosen_threshold_is_chosen_again_on_the_recalibrated_scale_and_removal_restores_it(run):
    before = select_threshold(run, "sensitivity=0.9")["threshold"]
    assert before == choose_threshold(LABEL[:N], RAW[:N], "sensitivity=0.9")
    calibrate_run(run, "isotonic")
    recalibrated = reported_probability(run, RAW[:N])
    threshold = run_threshold(run)
    assert threshold == choose_threshold(LABEL[:N], recalibrated, "sensitivity=0.9")
    saved = json.loads((run / "threshold.json").read_text())
    assert saved["calibrated"] and saved["before_calibration"]["threshold"] == before
    assert binary_metrics(LABEL[:N], recalibrated, threshold)["recall"] >= 0.9
    calibrate_run(run, "none")
    assert not (run / "calibration.json").exists() and run_threshold(run) == before


def test_threshold_table_lists_metrics_with_cis_at_each_candidate(run):
    record = select_threshold(run, "youden")
    table = pd.read_csv(run / "threshold_table.csv")
    assert table["chosen"].sum() == 2  # val and test rows at the chosen threshold
    row = table[(table["split"] == "test") & (table["threshold"] == 0.3)].iloc[0]
    expected = binary_metrics(LABEL[N:], RAW[N:], 0.3)
    assert row["recall"] == pytest.approx(expected["recall"]) and row["tp"] == expected["tp"]
    assert row["recall_low"] <= row["recall"] <= row["recall_high"]
    assert record["test"]["ci"]["unit"] == "patient" and record["test"]["ci"]["n_patients"] == N // 2
    assert len(threshold_table(run, (0.2, 0.8))) == 4


def test_bad_method_and_one_class_validation_are_refused(run):
    with pytest.raises(OsteoInputError, match="method='platt' is not a recalibration"):
        calibrate_run(run, "platt")
    table = pd.read_csv(run / "predictions.csv")
    table.loc[table["split"] == "val", "label"] = 1
    table.to_csv(run / "predictions.csv", index=False)
    with pytest.raises(OsteoInputError, match="needs both classes"):
        calibrate_run(run, "temperature")
