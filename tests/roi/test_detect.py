"""osteo roi detect / evaluate: boxes against the ground truth, review flags that training refuses, contact sheets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from osteo_tf.cli import main
from osteo_tf.data.landmarks import box_iou, keypoint_columns
from osteo_tf.data.manifest import check_manifest
from osteo_tf.errors import OsteoInputError
from osteo_tf.roi.detect import detect_manifest
from osteo_tf.roi.evaluate import evaluate_roi


@pytest.fixture(scope="module")
def detected(roi_run, whole_hip, tmp_path_factory):
    out = tmp_path_factory.mktemp("detected") / "cropped.csv"
    return detect_manifest(roi_run, whole_hip["heldout"], out)


def test_detected_boxes_match_the_ground_truth_on_held_out_images(detected, whole_hip):
    truth, found = pd.read_csv(whole_hip["heldout"]), pd.read_csv(detected.manifest)
    columns = ["roi_x", "roi_y", "roi_w", "roi_h"]
    iou = box_iou(found[columns].to_numpy(), truth[columns].to_numpy())
    assert np.mean(iou >= 0.5) >= 0.9, iou
    assert list(found["patient_id"]) == list(truth["patient_id"])  # every row, in order
    assert set(found["roi_status"]) <= {"detected", "review"}
    assert found["roi_confidence"].between(0, 1).all()


def test_the_output_reads_as_a_manifest_from_its_own_folder(detected):
    check = check_manifest(detected.manifest)
    flagged = int((pd.read_csv(detected.manifest)["roi_status"] == "review").sum())
    assert check.n_excluded == flagged
    assert len(check.cohort) == 20 - flagged
    assert (check.cohort["roi_w"] > 0).all()


def test_rows_below_the_threshold_are_flagged_and_refused_until_checked(roi_run, whole_hip, tmp_path):
    out = tmp_path / "strict.csv"
    result = detect_manifest(roi_run, whole_hip["heldout"], out, threshold=0.999)
    assert result.n_review == 20
    with pytest.raises(OsteoInputError, match=r"line 2, column 'roi_status'.*ROI awaiting review.*set roi_status"):
        check_manifest(out).raise_if_any()
    table = pd.read_csv(out)
    table.loc[table.index != 0, "roi_status"] = "checked"  # a person looked at all but the first
    table.to_csv(out, index=False)
    check = check_manifest(out)
    assert check.n_excluded == 1 and check.counts == {"ROI to review": 1}


def test_an_image_without_the_anatomy_gets_a_low_confidence(roi_run, whole_hip, tmp_path):
    table = pd.read_csv(whole_hip["heldout"]).iloc[:2].copy()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (128, 128), dtype=np.uint8)).save(tmp_path / "noise.png")
    table["image"] = [str(whole_hip["heldout"].parent / table["image"].iloc[0]), str(tmp_path / "noise.png")]
    table.to_csv(tmp_path / "two.csv", index=False)
    detect_manifest(roi_run, tmp_path / "two.csv", tmp_path / "out.csv")
    found = pd.read_csv(tmp_path / "out.csv")
    assert list(found["roi_status"]) == ["detected", "review"]
    assert found["roi_confidence"].iloc[1] < 0.5 < found["roi_confidence"].iloc[0]


def test_contact_sheets_show_every_row_flagged_first(detected):
    assert detected.sheets and all(p.is_file() for p in detected.sheets)
    sheet = Image.open(detected.sheets[0])
    assert sheet.mode == "RGB" and sheet.width == 6 * 192


def test_evaluate_scores_landmarks_and_boxes_on_a_held_out_manifest(roi_run, whole_hip, tmp_path):
    metrics = evaluate_roi(roi_run, whole_hip["heldout"], out=tmp_path)
    assert metrics["n"] == 20
    assert metrics["error_pct_width_median"] < 5.0
    assert metrics["share_iou_50"] >= 0.9
    assert metrics["error_px_median"] <= metrics["error_px_p95"]
    rows = pd.read_csv(tmp_path / "evaluation_rows.csv")
    assert len(rows) == 20 and rows["iou"].between(0, 1).all()
    assert json.loads((tmp_path / "evaluation.json").read_text())["n"] == 20


def test_evaluate_without_a_manifest_scores_the_runs_validation_split(roi_run):
    metrics = evaluate_roi(roi_run, out=roi_run.parent / "val_eval")
    assert metrics["split"] == "val"
    assert metrics["n"] == int((pd.read_csv(roi_run / "splits.csv")["split"] == "val").sum())


def test_detect_refuses_an_unfinished_run_and_a_missing_image_by_name(roi_run, whole_hip, tmp_path):
    with pytest.raises(OsteoInputError, match="not a finished ROI detector run"):
        detect_manifest(tmp_path, whole_hip["heldout"], tmp_path / "x.csv")
    pd.DataFrame({"image": ["nowhere.png"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(OsteoInputError, match="line 2, column 'image'"):
        detect_manifest(roi_run, tmp_path / "bad.csv", tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_the_cli_detects_and_train_refuses_flagged_rows_with_exit_2(roi_run, whole_hip, tmp_path, capsys):
    out = tmp_path / "cli.csv"
    args = ["roi", "detect", "--run", str(roi_run), "--manifest", str(whole_hip["heldout"]), "--out", str(out)]
    assert main([*args, "--threshold", "0.999"]) == 0
    assert "20 rows flagged for review" in capsys.readouterr().out
    assert main(["data", "check", str(out)]) == 2
    assert "ROI awaiting review" in capsys.readouterr().err
    train = ["train", "--manifest", str(out), "--out", str(tmp_path / "r"), "--weights", "none", "--epochs", "1"]
    assert main([*train, "--image-size", "32"]) == 2
    assert "ROI awaiting review" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_landmark_columns_round_trip_through_coco(whole_hip, tmp_path):
    from osteo_tf.data.annotations import read_annotations

    table = pd.read_csv(whole_hip["annotated"])
    names = [x[: -len("_x")] for x, _ in keypoint_columns("hip")]
    coco = {
        "images": [{"id": i + 1, "file_name": f} for i, f in enumerate(table["image"])],
        "categories": [{"id": 1, "name": "hip", "keypoints": names}],
        "annotations": [
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1,
                "keypoints": [v for x, y in keypoint_columns("hip") for v in (row[x], row[y], 2)],
            }
            for i, row in table.iterrows()
        ],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    bare = table.drop(columns=[c for c in table if c.startswith(("left_", "right_"))])
    bare.to_csv(whole_hip["annotated"].parent / "bare.csv", index=False)
    from_coco = read_annotations(whole_hip["annotated"].parent / "bare.csv", "hip", coco=tmp_path / "coco.json")
    from_columns = read_annotations(whole_hip["annotated"], "hip")
    np.testing.assert_allclose(from_coco.keypoints, from_columns.keypoints)
    assert from_coco.target == "landmarks"
