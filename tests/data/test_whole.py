"""Tests of osteo_tf.data.whole: the whole-radiograph phantoms, their landmarks and ROI boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from osteo_tf.data.landmarks import (
    SIDES,
    box_columns,
    clip_box,
    keypoint_columns,
    keypoint_names,
    landmark_columns,
    roi_from_keypoints,
)
from osteo_tf.data.synthetic import make_cohort
from osteo_tf.data.whole import make_whole_cohort, render_whole, whole_shape
from osteo_tf.errors import OsteoInputError

N = 12
WIDTH = 128
SUBJECT_COLUMNS = ["patient_id", "age", "sex", "bmi", "t_score", "label"]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """{kind: (manifest path, manifest frame of strings, images float64)} for hip and dental, n=12, 128 px."""
    out = {}
    for kind in ("hip", "dental"):
        manifest = make_whole_cohort(kind, N, tmp_path_factory.mktemp(f"whole_{kind}"), seed=0, image_size=WIDTH)
        frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
        images = [np.asarray(Image.open(manifest.parent / p), dtype=np.float64) for p in frame["image"]]
        out[kind] = (manifest, frame, images)
    return out


def _keypoints(row: pd.Series, kind: str) -> np.ndarray:
    return np.array([[float(row[cx]), float(row[cy])] for cx, cy in keypoint_columns(kind)])


def _patch(image: np.ndarray, x: float, y: float, dx: float = 0.0, dy: float = 0.0) -> float:
    """Mean of the 2 × 2 pixels whose centres surround the point (x + dx, y + dy) (pixel coordinates)."""
    r0, c0 = int(round(y + dy)) - 1, int(round(x + dx)) - 1
    return float(image[r0 : r0 + 2, c0 : c0 + 2].mean())


# --------------------------------------------------------------------------- files and columns


@pytest.mark.parametrize("kind", ["hip", "dental"])
def test_files_and_columns(cohorts, kind):
    manifest, frame, images = cohorts[kind]
    root = manifest.parent
    assert len(frame) == N
    expected = ["image", *SUBJECT_COLUMNS, "side", "roi_x", "roi_y", "roi_w", "roi_h", *landmark_columns(kind)]
    expected += [c for side in SIDES for c in box_columns(side)]
    if kind == "hip":
        expected.append("hip_fracture_history")
    assert set(expected) <= set(frame.columns)
    assert "mask" not in frame.columns
    assert frame["patient_id"].is_unique and frame["image"].is_unique
    shape = whole_shape(kind, WIDTH)
    assert shape == ((128, 128) if kind == "hip" else (64, 128))
    for rel, image in zip(frame["image"], images):
        assert (root / rel).is_file()
        assert image.shape == shape
        assert np.ptp(image) > 100  # a real picture, not a blank
    with Image.open(root / frame["image"][0]) as first:
        assert first.mode == "L"
    params = json.loads((root / "cohort.json").read_text())
    assert params["image_shape"] == {"width": WIDTH, "height": shape[0]}
    assert sorted(p.name for p in (root / "images").iterdir()) == sorted(Path(p).name for p in frame["image"])


@pytest.mark.parametrize("kind", ["hip", "dental"])
def test_same_arguments_same_bytes(cohorts, kind, tmp_path):
    manifest, _, _ = cohorts[kind]
    again = make_whole_cohort(kind, N, tmp_path, seed=0, image_size=WIDTH)
    assert _files(again.parent) == _files(manifest.parent)


def test_another_seed_other_images(cohorts, tmp_path):
    manifest, _, _ = cohorts["dental"]
    other = make_whole_cohort("dental", N, tmp_path, seed=1, image_size=WIDTH)
    first = next(iter(sorted((manifest.parent / "images").iterdir())))
    assert (other.parent / "images" / first.name).read_bytes() != first.read_bytes()


@pytest.mark.parametrize("kind", ["hip", "dental"])
def test_subjects_equal_the_crop_phantoms(cohorts, kind, tmp_path):
    _, frame, _ = cohorts[kind]
    crop = pd.read_csv(make_cohort(kind, N, tmp_path, seed=0, image_size=32), dtype=str, keep_default_na=False)
    columns = SUBJECT_COLUMNS + (["hip_fracture_history"] if kind == "hip" else [])
    pd.testing.assert_frame_equal(frame[columns].reset_index(drop=True), crop[columns].reset_index(drop=True))
    # the data contract: label == (t_score <= -2.5)
    assert ((frame["t_score"].astype(float) <= -2.5).astype(int) == frame["label"].astype(int)).all()


# --------------------------------------------------------------------------- boxes and sides


@pytest.mark.parametrize("kind", ["hip", "dental"])
def test_roi_columns_follow_the_rule(cohorts, kind):
    _, frame, images = cohorts[kind]
    height, width = whole_shape(kind, WIDTH)
    for (_, row), image in zip(frame.iterrows(), images):
        points = _keypoints(row, kind)
        roi = tuple(int(row[c]) for c in ("roi_x", "roi_y", "roi_w", "roi_h"))
        assert roi == tuple(int(row[c]) for c in box_columns(row["side"]))
        for side in SIDES:
            box = tuple(int(row[c]) for c in box_columns(side))
            recomputed, inside = clip_box(roi_from_keypoints(kind, points, side, width), (width, height))
            assert box == recomputed, (row["image"], side)
            assert inside
            x, y, w, h = box
            assert 0 <= x and 0 <= y and w >= 4 and h >= 4 and x + w <= width and y + h <= height
            if kind == "hip":
                assert abs(w - h) <= 1  # square up to rounding


def test_hip_sides_mixed_dental_left(cohorts):
    hip_sides = cohorts["hip"][1]["side"].tolist()
    assert set(hip_sides) == {"left", "right"}  # seed 0, n = 12: 5 left, 7 right
    assert hip_sides.count("left") == 5
    assert cohorts["dental"][1]["side"].tolist() == ["left"] * N


@pytest.mark.parametrize("kind", ["hip", "dental"])
def test_patients_left_on_the_images_right(cohorts, kind):
    _, frame, _ = cohorts[kind]
    landmark = keypoint_names(kind)[0].removeprefix("left_")
    left = frame[f"left_{landmark}_x"].astype(float)
    right = frame[f"right_{landmark}_x"].astype(float)
    assert (left > WIDTH / 2).all() and (right < WIDTH / 2).all()


# --------------------------------------------------------------------------- landmarks on the anatomy


def test_hip_head_top_is_the_heads_upper_edge(cohorts):
    _, frame, images = cohorts["hip"]
    below, above = [], []
    for (_, row), image in zip(frame.iterrows(), images):
        for side in SIDES:
            x, y = float(row[f"{side}_head_top_x"]), float(row[f"{side}_head_top_y"])
            below.append(_patch(image, x, y, dy=1.5))  # just inside the femoral head
            above.append(_patch(image, x, y, dy=-6.0))  # the joint space / soft tissue above it
    assert np.mean(below) > np.mean(above) + 60, (np.mean(below), np.mean(above))


def test_hip_shaft_points_are_on_the_shafts_axis(cohorts):
    """Across the shaft at its axis points: medullary bone at the axis, bright cortices ~6 px either
    side, soft tissue beyond 12 px, symmetric about the point."""
    _, frame, images = cohorts["hip"]
    for name in ("shaft_upper", "shaft_lower"):
        profiles = []
        for (_, row), image in zip(frame.iterrows(), images):
            for side in SIDES:
                x, y = float(row[f"{side}_{name}_x"]), float(row[f"{side}_{name}_y"])
                profiles.append([_patch(image, x, y, dx=d) for d in range(-13, 14)])
        mean = np.mean(profiles, axis=0)  # offsets -13 … 13
        centre, outer_left, outer_right = mean[13], mean[0], mean[-1]
        assert centre > outer_left + 40 and centre > outer_right + 40, (name, mean.round())
        left_peak, right_peak = 13 - int(np.argmax(mean[:13])), int(np.argmax(mean[14:])) + 1
        assert 3 <= left_peak <= 9 and 3 <= right_peak <= 9, (name, mean.round())
        assert abs(left_peak - right_peak) <= 2, (name, mean.round())
        assert mean[13 - left_peak] > centre + 20 and mean[13 + right_peak] > centre + 20


def test_dental_foramen_is_a_dark_oval(cohorts):
    _, frame, images = cohorts["dental"]
    centre, left, right = [], [], []
    for (_, row), image in zip(frame.iterrows(), images):
        for side in SIDES:
            x, y = float(row[f"{side}_mental_foramen_x"]), float(row[f"{side}_mental_foramen_y"])
            centre.append(_patch(image, x, y))
            left.append(_patch(image, x, y, dx=-3.0))
            right.append(_patch(image, x, y, dx=3.0))
    assert np.mean(centre) < np.mean(left) - 15, (np.mean(centre), np.mean(left))
    assert np.mean(centre) < np.mean(right) - 15, (np.mean(centre), np.mean(right))


# --------------------------------------------------------------------------- bone physics


@pytest.mark.parametrize("kind", ["hip", "dental"])
def test_roi_brighter_for_better_bone(kind):
    """Same seeds (same pose, exposure, noise) → the ROI is brighter for the high bone quality."""
    height, width = whole_shape(kind, WIDTH)

    def roi_means(quality: float) -> np.ndarray:
        out = []
        for seed in range(6):
            view = render_whole(kind, quality, WIDTH, np.random.default_rng(seed))
            assert view.image.shape == (height, width) and view.image.dtype == np.uint8
            assert view.keypoints.shape == (len(keypoint_names(kind)), 2)
            values = []
            for side in SIDES:
                (x, y, w, h), inside = clip_box(roi_from_keypoints(kind, view.keypoints, side, width), (width, height))
                assert inside
                values.append(view.image[y : y + h, x : x + w].astype(np.float64).mean())
            out.append(np.mean(values))
        return np.array(out)

    low, high = roi_means(-4.0), roi_means(1.0)
    difference = high - low
    assert (difference > 5).all(), difference
    assert difference.mean() > 15, difference


def test_render_whole_is_deterministic_given_the_generator():
    a = render_whole("hip", -1.0, 64, np.random.default_rng(7))
    b = render_whole("hip", -1.0, 64, np.random.default_rng(7))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "kwargs,word",
    [
        ({"kind": "knee"}, "kind"),
        ({"n": 9}, "n must"),
        ({"n": 12.0}, "n must"),
        ({"image_size": 63}, "image_size"),
        ({"image_size": 130.0}, "image_size"),
        ({"kind": "dental", "image_size": 129}, "image_size must be even"),
        ({"information": "lots"}, "information"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments(kwargs, word, tmp_path):
    arguments = {"kind": "hip", "n": 12, "image_size": 64, **kwargs}
    kind, n = arguments.pop("kind"), arguments.pop("n")
    with pytest.raises(OsteoInputError, match=word) as caught:
        make_whole_cohort(kind, n, tmp_path / "out", **arguments)
    if word.startswith("image_size"):
        assert caught.value.parameter == "image_size"
    assert not (tmp_path / "out" / "manifest.csv").exists()
