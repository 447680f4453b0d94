"""The two-stage export: whole radiograph → detector → crop → classifier, equal to detect followed by predict."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from osteo_tf.data.landmarks import DENTAL_BOX_FRACTION, SIDES, clip_box, keypoint_names, roi_from_keypoints
from osteo_tf.errors import OsteoInputError
from osteo_tf.roi.detect import detect_manifest
from osteo_tf.runs.roi_run import RoiSettings
from osteo_tf.serving.archive import export_run
from osteo_tf.serving.predict import predict_manifest
from osteo_tf.serving.two_stage import RoiServingGraph
from osteo_tf.training.train import train


@pytest.fixture(scope="module")
def exports(roi_run, whole_hip, tmp_path_factory):
    root = tmp_path_factory.mktemp("two_stage")
    run = train(
        whole_hip["annotated"], root / "clf", backbone="resnet18", weights="none", image_size=32, epochs=1, verbose=0
    )
    one = export_run(run.path, root / "models", "one")
    two = export_run(run.path, root / "models", "two", roi_run=roi_run)
    detected = detect_manifest(roi_run, whole_hip["heldout"], root / "detected.csv")
    return SimpleNamespace(one=one, two=two, detected=detected, root=root, heldout=whole_hip["heldout"])


def _serve(export, table: pd.DataFrame, folder: Path, side=None) -> dict:
    signature = tf.saved_model.load(str(export.path)).signatures["serving_default"]
    images = [(folder / p).read_bytes() for p in table["image"]]
    out = signature(
        image_bytes=tf.constant(images),
        side=tf.constant(list(table["side"]) if side is None else side),
        age=tf.constant(table["age"].to_numpy(np.float32)),
        bmi=tf.constant(table["bmi"].to_numpy(np.float32)),
        sex=tf.constant(list(table["sex"])),
        hip_fracture_history=tf.constant(list(table["hip_fracture_history"])),
    )
    return {k: v.numpy() for k, v in out.items()}


def test_the_served_box_and_probability_equal_detect_then_predict(exports):
    table = pd.read_csv(exports.heldout)
    out = _serve(exports.two, table, exports.heldout.parent)
    found = pd.read_csv(exports.detected.manifest)
    np.testing.assert_array_equal(out["roi"], found[["roi_x", "roi_y", "roi_w", "roi_h"]].to_numpy())
    np.testing.assert_allclose(out["roi_confidence"], found["roi_confidence"], atol=6e-4)
    predicted = predict_manifest(exports.detected.manifest, exports.root / "p.csv", model=exports.one.path)
    np.testing.assert_allclose(out["probability"], predicted["probability"], atol=1e-5)
    np.testing.assert_array_equal(out["label"], predicted["label"])


def test_osteo_predict_sends_whole_images_to_a_two_stage_model(exports):
    whole = predict_manifest(exports.heldout, exports.root / "w.csv", model=exports.two.path)
    cropped = pd.read_csv(exports.root / "p.csv") if (exports.root / "p.csv").is_file() else None
    if cropped is None:
        cropped = predict_manifest(exports.detected.manifest, exports.root / "p.csv", model=exports.one.path)
    np.testing.assert_allclose(whole["probability"], cropped["probability"], atol=1e-5)


def test_a_bad_side_is_refused_naming_the_instance(exports):
    table = pd.read_csv(exports.heldout).iloc[:3]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"input side: not one of left, right in instance 1"):
        _serve(exports.two, table, exports.heldout.parent, side=["left", "both", "right"])


def test_the_model_card_describes_the_roi_stage(exports):
    card = json.loads((exports.two.path / "assets" / "model_card.json").read_text())
    assert card["roi"]["kind"] == "hip" and card["roi"]["confidence_threshold"] == 0.5
    assert set(card["signatures"]["serving_default"]["outputs"]) == {"probability", "label", "roi", "roi_confidence"}
    assert "side" in card["signatures"]["serving_default"]["inputs"]


def test_export_refuses_an_unfinished_roi_run_by_name(exports, tmp_path):
    with pytest.raises(OsteoInputError, match="not a finished ROI detector run"):
        export_run(exports.one.card["run"], tmp_path, "x", roi_run=tmp_path)


@pytest.mark.parametrize(("kind", "target"), [("hip", "landmarks"), ("dental", "landmarks"), ("hip", "box")])
def test_the_graphs_box_rule_equals_the_reference(kind, target):
    settings = RoiSettings(kind=kind, target=target, input_height=64, input_width=64, dental_box=DENTAL_BOX_FRACTION)
    rng = np.random.default_rng(0)
    k, n = len(keypoint_names(kind, target)), 64
    sizes = np.stack([rng.integers(100, 400, n), rng.integers(80, 300, n)], axis=1).astype(np.float32)
    keypoints = rng.uniform(0.05, 0.95, (n, k, 2)).astype(np.float32)
    if target == "box":  # corners in order, top-left then bottom-right
        keypoints = keypoints.reshape(n, 2, 2, 2)
        keypoints = np.stack([keypoints.min(axis=2), keypoints.max(axis=2)], axis=2).reshape(n, k, 2)
    confidence = rng.uniform(0, 1, (n, k)).astype(np.float32)
    right = rng.random(n) < 0.5
    graph = SimpleNamespace(roi=settings)
    boxes, lowest = RoiServingGraph.boxes(graph, tf.constant(keypoints), tf.constant(confidence), sizes, right)
    for i in range(n):
        side = SIDES[int(right[i])]
        points = keypoints[i].astype(np.float64) * sizes[i].astype(np.float64)
        box = roi_from_keypoints(kind, points, side, float(sizes[i, 0]), target=target, dental_box=DENTAL_BOX_FRACTION)
        expected, _ = clip_box(box, (int(sizes[i, 0]), int(sizes[i, 1])))
        assert tuple(boxes.numpy()[i]) == expected, (i, box)
        half = k // 2
        assert lowest.numpy()[i] == pytest.approx(
            confidence[i, half * int(right[i]) : half * (int(right[i]) + 1)].min()
        )
