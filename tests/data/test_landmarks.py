"""Tests of osteo_tf.data.landmarks: keypoint order, the papers' box rules, clipping, IoU, metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from osteo_tf.data.landmarks import (
    BOX_CORNERS,
    DENTAL_BOX_FRACTION,
    LANDMARKS,
    SIDES,
    box_columns,
    box_iou,
    clip_box,
    keypoint_columns,
    keypoint_names,
    landmark_columns,
    roi_from_keypoints,
    roi_metrics,
    side_keypoints,
)
from osteo_tf.errors import OsteoInputError

# --------------------------------------------------------------------------- names and columns


def test_keypoint_names_are_side_major():
    assert keypoint_names("hip") == (
        "left_head_top",
        "left_lesser_trochanter",
        "left_shaft_upper",
        "left_shaft_lower",
        "right_head_top",
        "right_lesser_trochanter",
        "right_shaft_upper",
        "right_shaft_lower",
    )
    assert keypoint_names("dental") == ("left_mental_foramen", "right_mental_foramen")
    assert keypoint_names("hip", "box") == (
        "left_box_top_left",
        "left_box_bottom_right",
        "right_box_top_left",
        "right_box_bottom_right",
    )
    assert keypoint_names("dental", "box") == keypoint_names("hip", "box")


def test_columns_follow_keypoint_order():
    for kind in LANDMARKS:
        names = keypoint_names(kind)
        assert keypoint_columns(kind) == tuple((f"{n}_x", f"{n}_y") for n in names)
        flat = landmark_columns(kind)
        assert flat[0::2] == tuple(f"{n}_x" for n in names)
        assert flat[1::2] == tuple(f"{n}_y" for n in names)
        assert len(set(flat)) == 4 * len(LANDMARKS[kind])
    assert landmark_columns("dental") == (
        "left_mental_foramen_x",
        "left_mental_foramen_y",
        "right_mental_foramen_x",
        "right_mental_foramen_y",
    )
    assert box_columns("left") == ("left_roi_x", "left_roi_y", "left_roi_w", "left_roi_h")
    assert box_columns("right") == ("right_roi_x", "right_roi_y", "right_roi_w", "right_roi_h")


@pytest.mark.parametrize("kind,target", [("hip", "landmarks"), ("dental", "landmarks"), ("hip", "box")])
def test_side_keypoints_selects_that_sides_names(kind, target):
    names = keypoint_names(kind, target)
    per_side = LANDMARKS[kind] if target == "landmarks" else BOX_CORNERS
    for side in SIDES:
        assert names[side_keypoints(kind, side, target)] == tuple(f"{side}_{n}" for n in per_side)


@pytest.mark.parametrize(
    "call,word",
    [
        (lambda: keypoint_names("knee"), "kind"),
        (lambda: keypoint_names("hip", "mask"), "target"),
        (lambda: box_columns("middle"), "side"),
        (lambda: side_keypoints("hip", "middle"), "side"),
        (lambda: roi_from_keypoints("hip", np.zeros((8, 2)), "up", 100), "side"),
    ],
)
def test_bad_names_raise_input_error(call, word):
    with pytest.raises(OsteoInputError, match=word):
        call()


# --------------------------------------------------------------------------- box rules


def _hip_points(left, right):
    """(8, 2) hip keypoints from per-side dicts of the four landmarks."""
    return np.array([side[name] for side in (left, right) for name in LANDMARKS["hip"]], dtype=np.float64)


HIP_LEFT = {"head_top": (80.0, 30.0), "lesser_trochanter": (70.0, 70.0), "shaft_upper": (100.0, 50.0),
            "shaft_lower": (98.0, 110.0)}  # fmt: skip
HIP_RIGHT = {"head_top": (40.0, 26.0), "lesser_trochanter": (52.0, 76.0), "shaft_upper": (20.0, 48.0),
             "shaft_lower": (22.0, 115.0)}  # fmt: skip


def test_hip_rule_per_side():
    points = _hip_points(HIP_LEFT, HIP_RIGHT)
    # left: height 70 - 30 = 40, centre (80 + 100) / 2 = 90 → x 70
    assert roi_from_keypoints("hip", points, "left", 128) == pytest.approx((70.0, 30.0, 40.0, 40.0))
    # right: height 76 - 26 = 50, centre (40 + 20) / 2 = 30 → x 5
    assert roi_from_keypoints("hip", points, "right", 128) == pytest.approx((5.0, 26.0, 50.0, 50.0))


def test_hip_rule_ignores_the_other_landmarks_and_the_width():
    points = _hip_points(HIP_LEFT, HIP_RIGHT)
    box = roi_from_keypoints("hip", points, "left", 128)
    moved = points.copy()
    moved[0 + 1, 0] += 17.0  # lesser trochanter's x
    moved[0 + 2, 1] += 9.0  # shaft upper's y
    moved[0 + 3] += (5.0, -4.0)  # shaft lower
    moved[4:] += 13.0  # the other side
    assert roi_from_keypoints("hip", moved, "left", 999) == pytest.approx(box)


def test_hip_rule_geometry_random():
    rng = np.random.default_rng(3)
    for _ in range(20):
        points = rng.uniform(0, 200, (8, 2))
        for side in SIDES:
            head, trochanter, shaft = points[side_keypoints("hip", side)][:3]
            x, y, w, h = roi_from_keypoints("hip", points, side, 200)
            assert y == pytest.approx(head[1])  # top edge on the head's top
            assert y + h == pytest.approx(trochanter[1])  # bottom edge on the trochanter
            assert w == pytest.approx(h)  # square
            assert x + w / 2 == pytest.approx((head[0] + shaft[0]) / 2)  # centred midway


def test_dental_rule_per_side():
    points = np.array([[90.0, 30.0], [38.0, 33.0]])
    width = 128
    bw, bh = DENTAL_BOX_FRACTION[0] * width, DENTAL_BOX_FRACTION[1] * width
    assert (bw, bh) == pytest.approx((12.8, 20.48))
    assert roi_from_keypoints("dental", points, "left", width) == pytest.approx((90.0 - bw / 2, 30.0, bw, bh))
    assert roi_from_keypoints("dental", points, "right", width) == pytest.approx((38.0 - bw / 2, 33.0, bw, bh))
    # the box scales with the image width, and with dental_box
    x, y, w, h = roi_from_keypoints("dental", points, "left", 1000, dental_box=(0.25, 0.4))
    assert (x + w / 2, y, w, h) == pytest.approx((90.0, 30.0, 250.0, 400.0))


def test_box_target_spans_the_corners():
    points = np.array([[10.0, 20.0], [50.0, 80.0], [60.0, 5.0], [100.0, 45.0]])
    for kind in LANDMARKS:
        assert roi_from_keypoints(kind, points, "left", 128, target="box") == pytest.approx((10.0, 20.0, 40.0, 60.0))
        assert roi_from_keypoints(kind, points, "right", 128, target="box") == pytest.approx((60.0, 5.0, 40.0, 40.0))


# --------------------------------------------------------------------------- clip_box


def test_clip_box_rounds_inside():
    assert clip_box((10.4, 20.6, 30.2, 40.3), (128, 128)) == ((10, 21, 31, 40), True)
    # x1 = 40.6 → 41, y1 = 60.9 → 61
    assert clip_box((10.4, 20.6, 30.2, 40.3), (128, 128))[0] == (10, 21, 41 - 10, 61 - 21)
    assert clip_box((0.0, 0.0, 64.0, 32.0), (64, 32)) == ((0, 0, 64, 32), True)


def test_clip_box_tolerates_half_a_pixel():
    assert clip_box((-0.4, -0.5, 64.8, 32.9), (64, 32)) == ((0, 0, 64, 32), True)
    assert clip_box((-0.6, 0.0, 10.0, 10.0), (64, 32))[1] is False
    assert clip_box((0.0, 0.0, 64.6, 10.0), (64, 32))[1] is False


@pytest.mark.parametrize(
    "box,expected",
    [
        ((-10.0, 5.0, 30.0, 10.0), (0, 5, 20, 10)),  # off the left edge
        ((50.0, 20.0, 30.0, 30.0), (50, 20, 14, 12)),  # off the right and bottom
        ((70.0, 40.0, 10.0, 10.0), (63, 31, 1, 1)),  # wholly outside: one pixel in the corner
    ],
)
def test_clip_box_clips_and_flags_outside(box, expected):
    clipped, inside = clip_box(box, (64, 32))
    assert clipped == expected
    assert inside is False
    x, y, w, h = clipped
    assert 0 <= x and 0 <= y and w >= 1 and h >= 1 and x + w <= 64 and y + h <= 32


@pytest.mark.parametrize(
    "box", [(5.0, 5.0, 0.5, 10.0), (5.0, 5.0, 10.0, 0.0), (5.0, 5.0, -4.0, 10.0), (math.nan, 1.0, 5.0, 5.0),
            (1.0, 1.0, math.inf, 5.0)],
)  # fmt: skip
def test_clip_box_degenerate_is_the_whole_image_and_not_inside(box):
    assert clip_box(box, (64, 32)) == ((0, 0, 64, 32), False)


# --------------------------------------------------------------------------- IoU and metrics


def test_box_iou_hand_computed():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 4, 4]])
    b = np.array([[0, 0, 10, 10], [20, 20, 5, 5], [5, 0, 10, 10], [0, 0, 10, 5], [10, 0, 10, 10], [1, 1, 2, 2]])
    expected = [1.0, 0.0, 50 / 150, 0.5, 0.0, 4 / 16]
    np.testing.assert_allclose(box_iou(a, b), expected, rtol=1e-12)
    np.testing.assert_allclose(box_iou(b, a), expected, rtol=1e-12)  # symmetric


def test_box_iou_empty_boxes_are_zero():
    a = np.array([[0.0, 0.0, 0.0, 0.0]])
    assert box_iou(a, a).tolist() == [0.0]


def test_roi_metrics_known_errors():
    truth = np.random.default_rng(0).uniform(0, 100, (4, 8, 2))
    predicted = truth + np.array([3.0, 4.0])  # every keypoint 5 px off
    widths = np.array([100.0, 200.0, 250.0, 500.0])
    true_boxes = np.array([[0, 0, 10, 10]] * 4, dtype=float)
    boxes = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [0, 0, 10, 5], [20, 20, 5, 5]], dtype=float)
    m = roi_metrics(predicted, truth, widths, boxes, true_boxes)
    assert m["n"] == 4
    for stat in ("mean", "median", "p95"):
        assert m[f"error_px_{stat}"] == pytest.approx(5.0)
    pct = 500.0 / widths  # 5 px in % of each width: 5, 2.5, 2, 1
    assert m["error_pct_width_mean"] == pytest.approx(pct.mean())
    assert m["error_pct_width_median"] == pytest.approx(np.median(pct))
    assert m["error_pct_width_p95"] == pytest.approx(np.percentile(np.repeat(pct, 8), 95))
    ious = np.array([1.0, 1 / 3, 0.5, 0.0])
    assert m["iou_mean"] == pytest.approx(ious.mean())
    assert m["iou_median"] == pytest.approx(np.median(ious))
    assert m["share_iou_50"] == pytest.approx(0.5)  # 1 and 0.5
    assert m["share_iou_75"] == pytest.approx(0.25)


def test_roi_metrics_mixed_errors():
    truth = np.zeros((1, 4, 2))
    predicted = np.array([[[0.0, 0.0], [6.0, 8.0], [0.0, 2.0], [0.0, 4.0]]])  # errors 0, 10, 2, 4
    box = np.array([[0.0, 0.0, 10.0, 10.0]])
    m = roi_metrics(predicted, truth, np.array([200.0]), box, box)
    assert m["error_px_mean"] == pytest.approx(4.0)
    assert m["error_px_median"] == pytest.approx(3.0)
    assert m["error_px_p95"] == pytest.approx(np.percentile([0, 10, 2, 4], 95))
    assert m["error_pct_width_mean"] == pytest.approx(2.0)
    assert m["iou_mean"] == 1.0 and m["share_iou_75"] == 1.0
