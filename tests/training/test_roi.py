"""osteo roi train: refusals before any work, the run folder, and a resumed fit equal to an uninterrupted one."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from osteo_tf.errors import OsteoInputError
from osteo_tf.runs.roi_run import RoiRun
from osteo_tf.training import callbacks
from osteo_tf.training.roi import default_epochs, train_roi

TINY = dict(input_size=(64, 64), batch_size=8, learning_rate=5e-3, log=lambda line: None)


def _weights(run) -> list[np.ndarray]:
    model = keras.saving.load_model(RoiRun(run).model, compile=False)
    return [np.asarray(w) for w in model.get_weights()]


def test_the_run_folder_holds_settings_splits_history_metrics_and_the_detector(roi_run, whole_hip):
    run = RoiRun(roi_run)
    settings = run.settings()
    assert (settings.kind, settings.target, settings.input_hw) == ("hip", "landmarks", (64, 64))
    assert settings.keypoints[0] == "left_head_top" and len(settings.keypoints) == 8
    splits = pd.read_csv(run.splits)
    assert len(splits) == 40 and set(splits["split"]) == {"train", "val"}
    assert not set(splits.loc[splits["split"] == "val", "patient_id"]) & set(
        splits.loc[splits["split"] == "train", "patient_id"]
    )
    history = pd.read_csv(run.history)
    assert list(history["epoch"]) == list(range(80))
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    metrics = json.loads(run.val_metrics.read_text())
    assert metrics["n"] == int((splits["split"] == "val").sum())
    assert metrics["error_pct_width_median"] < 5.0 and metrics["share_iou_50"] >= 0.85


def test_a_resumed_fit_ends_with_the_weights_of_one_never_interrupted(whole_hip, tmp_path, monkeypatch):
    train_roi(whole_hip["annotated"], "hip", tmp_path / "whole", epochs=3, **TINY)
    saved = callbacks.EpochBackup.on_epoch_end

    def killed_after_second_epoch(self, epoch, logs=None):
        saved(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.EpochBackup, "on_epoch_end", killed_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_roi(whole_hip["annotated"], "hip", tmp_path / "resumed", epochs=3, **TINY)
    assert not RoiRun(tmp_path / "resumed").is_complete
    monkeypatch.setattr(callbacks.EpochBackup, "on_epoch_end", saved)
    train_roi(whole_hip["annotated"], "hip", tmp_path / "resumed", epochs=3, **TINY)
    for a, b in zip(_weights(tmp_path / "whole"), _weights(tmp_path / "resumed")):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    history = pd.read_csv(RoiRun(tmp_path / "resumed").history)
    assert list(history["epoch"]) == [0, 1, 2]


def test_default_epochs_give_small_annotation_sets_as_many_steps_as_large_ones():
    # 600 steps at batch 8: 20 images x 240 epochs, 32 x 150; bounded to 60..240 epochs
    assert [default_epochs(n, 8) for n in (5, 20, 32, 80, 160, 1000)] == [240, 240, 150, 60, 60, 60]
    assert default_epochs(32, 16) == 240


def test_a_finished_run_is_not_replaced_without_force(roi_run, whole_hip):
    with pytest.raises(OsteoInputError, match="already complete"):
        train_roi(whole_hip["annotated"], "hip", roi_run, epochs=1, **TINY)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"input_size": (64, 70)}, "multiples of 32"),
        ({"val_fraction": 0.6}, "val_fraction"),
        ({"confidence_threshold": 1.5}, "confidence_threshold"),
        ({"target": "boxes"}, "target must be one of"),
    ],
)
def test_bad_options_are_refused_by_name_before_the_run_folder_exists(whole_hip, tmp_path, change, message):
    options = {**TINY, "epochs": 1, **change}
    with pytest.raises(OsteoInputError, match=message):
        train_roi(whole_hip["annotated"], "hip", tmp_path / "run", **options)
    assert not (tmp_path / "run").exists()


def _edited(whole_hip, tmp_path, edit) -> str:
    table = pd.read_csv(whole_hip["annotated"])
    edit(table)
    path = whole_hip["annotated"].parent / f"edited_{tmp_path.name}.csv"
    table.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.__setitem__("left_head_top_x", t["left_head_top_x"].astype(object).where(t.index != 3, "")),
            "line 5, column 'left_head_top_x': empty or not a number",
        ),
        (
            lambda t: t.__setitem__("right_shaft_lower_y", t["right_shaft_lower_y"].where(t.index != 0, 900.0)),
            r"line 2, column 'right_shaft_lower_y': point .* lies outside the 128×128 px image",
        ),
        (
            lambda t: t.__setitem__("image", t["image"].where(t.index != 7, "images/missing.png")),
            "line 9, column 'image'.*missing.png",
        ),
        (
            lambda t: t.__setitem__("side", t["side"].where(t.index != 2, "both")),
            "line 4, column 'side': 'both' is not one of",
        ),
        (
            lambda t: t.drop(columns=[c for c in t if c.startswith(("left_", "right_"))], inplace=True),
            "no hip annotations: missing column",
        ),
    ],
)
def test_bad_annotations_are_refused_naming_line_and_column(whole_hip, tmp_path, edit, message):
    manifest = _edited(whole_hip, tmp_path, edit)
    with pytest.raises(OsteoInputError, match=message):
        train_roi(manifest, "hip", tmp_path / "run", epochs=1, **TINY)
    assert not (tmp_path / "run").exists()


def test_box_annotations_train_a_corner_detector(whole_hip, tmp_path):
    def boxes_only(table):
        table.drop(columns=[c for c in table if c.startswith(("left_", "right_")) and "_roi_" not in c], inplace=True)

    manifest = _edited(whole_hip, tmp_path, boxes_only)
    train_roi(manifest, "hip", tmp_path / "run", epochs=1, **TINY)
    settings = RoiRun(tmp_path / "run").settings()
    assert settings.target == "box"
    assert settings.keypoints == (
        "left_box_top_left",
        "left_box_bottom_right",
        "right_box_top_left",
        "right_box_bottom_right",
    )
