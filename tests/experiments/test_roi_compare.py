"""osteo roi compare: the same study on hand and detected crops, paired fit by fit."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from osteo_tf.cli import main
from osteo_tf.errors import OsteoInputError
from osteo_tf.experiments.config import parse_experiment
from osteo_tf.experiments.roi_compare import compare_crops, paired_difference
from osteo_tf.roi.detect import detect_manifest

TINY = {
    "name": "roi_tiny",
    "cohort": {},
    "backbones": ["resnet18"],
    "modes": ["image_only"],
    "split": {"kind": "kfold", "folds": 2, "val_ratio": [3, 1]},
    "train": {"weights": "none", "epochs": 1, "image_size": 32, "batch_size": 16},
}


def test_paired_difference_is_the_corrected_resampled_t_interval():
    hand = np.array([0.80, 0.82, 0.78, 0.85, 0.81])
    detected = np.array([0.79, 0.83, 0.76, 0.84, 0.80])
    d = detected - hand
    result = paired_difference(hand, detected, test_fraction=0.25)
    scale = np.sqrt((1 / 5 + 0.25) * d.var(ddof=1))
    assert result["mean"] == pytest.approx(d.mean())
    assert result["ci_high"] - result["mean"] == pytest.approx(stats.t.ppf(0.975, 4) * scale)
    assert result["p"] == pytest.approx(2 * stats.t.sf(abs(d.mean()) / scale, 4))
    assert result["fits"] == 5


@pytest.fixture(scope="module")
def detected_whole(roi_run, whole_hip, tmp_path_factory):
    out = whole_hip["manifest"].parent / "detected_all.csv"  # beside the images: the output's paths are relative
    if not out.is_file():
        detect_manifest(roi_run, whole_hip["manifest"], out, sheets=tmp_path_factory.mktemp("sheets"))
    return out


def test_both_arms_run_on_the_same_folds_and_are_paired(whole_hip, detected_whole, tmp_path):
    table = pd.read_csv(detected_whole)
    table["roi_status"] = "checked"  # the review step: every flagged box looked at
    table.to_csv(detected_whole.with_name("detected_checked.csv"), index=False)
    result = compare_crops(
        parse_experiment(TINY), whole_hip["manifest"], detected_whole.with_name("detected_checked.csv"), tmp_path
    )
    (row,) = result["results"]
    assert row["difference"]["fits"] == 2
    paired = pd.read_csv(tmp_path / "comparison.csv")
    assert len(paired) == 2 and set(paired["fold"]) == {0, 1}
    for fold in (0, 1):  # the same test patients in both arms
        records = [
            json.loads(next((tmp_path / arm / "results").glob(f"*f{fold:02d}*.json")).read_text())
            for arm in ("hand", "detected")
        ]
        ids = [sorted(p["patient_id"] for p in r["test_predictions"]) for r in records]
        assert ids[0] == ids[1]
    assert json.loads((tmp_path / "comparison.json").read_text())["subjects"] == 60


def test_manifests_of_other_subjects_or_with_rows_to_review_are_refused(whole_hip, detected_whole, tmp_path):
    table = pd.read_csv(detected_whole)
    table.loc[3, "roi_status"] = "review"
    table.to_csv(detected_whole.with_name("one_review.csv"), index=False)
    with pytest.raises(OsteoInputError, match="line 5.*ROI awaiting review"):
        compare_crops(
            parse_experiment(TINY), whole_hip["manifest"], detected_whole.with_name("one_review.csv"), tmp_path
        )
    table["roi_status"] = "checked"
    table.iloc[:50].to_csv(detected_whole.with_name("fewer.csv"), index=False)
    with pytest.raises(OsteoInputError, match="has 60 rows and .* 50"):
        compare_crops(parse_experiment(TINY), whole_hip["manifest"], detected_whole.with_name("fewer.csv"), tmp_path)
    assert not (tmp_path / "hand").exists()


def test_the_cli_writes_whole_views_and_refuses_a_bad_width(tmp_path, capsys):
    out = tmp_path / "whole"
    assert (
        main(["data", "synth", "--whole", "--kind", "dental", "--n", "10", "--image-size", "128", "--out", str(out)])
        == 0
    )
    table = pd.read_csv(out / "manifest.csv")
    assert {"side", "roi_x", "left_mental_foramen_x", "right_roi_h"} <= set(table.columns)
    assert set(table["side"]) == {"left"}
    assert (
        main(["data", "synth", "--whole", "--kind", "dental", "--n", "10", "--image-size", "127", "--out", str(out)])
        == 2
    )
    assert "--image-size must be even" in capsys.readouterr().err
