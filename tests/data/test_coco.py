"""COCO JSON import (CVAT / Label Studio): the three accepted forms, every user mistake, and the merge."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from osteo_tf.data.coco import merge_annotations, read_coco
from osteo_tf.data.landmarks import LANDMARKS, box_columns, keypoint_names, landmark_columns
from osteo_tf.errors import OsteoInputError


def _write(tmp_path: Path, images: list[str], categories: list[dict], annotations: list[dict]) -> Path:
    doc = {
        "images": [{"id": i + 1, "file_name": name, "width": 100, "height": 80} for i, name in enumerate(images)],
        "categories": categories,
        "annotations": [{"id": i + 1, **a} for i, a in enumerate(annotations)],
    }
    path = tmp_path / "export.json"
    path.write_text(json.dumps(doc))
    return path


def _flat(points: list[tuple[float, float]], v: int = 2) -> list[float]:
    return [c for x, y in points for c in (x, y, v)]


def _point(k: int, image: int) -> tuple[float, float]:
    """A distinct (x, y) for keypoint ``k`` of image ``image``."""
    return (10.0 * k + 0.25 + image, 5.0 * k + 0.5 + image)


def _per_side(kind: str, image_id: int, spell=str) -> tuple[list[dict], list[dict]]:
    """Categories 'Left femur' (names reversed, as ``spell`` writes them) and 'femur_right' (names with the
    side prefix), and one annotation of each on ``image_id``."""
    full = keypoint_names(kind)
    left = list(LANDMARKS[kind])[::-1]
    right = [f"right_{n}" for n in LANDMARKS[kind]]
    categories = [
        {"id": 1, "name": "Left femur", "keypoints": [spell(n) for n in left]},
        {"id": 2, "name": "femur_right", "keypoints": right},
    ]
    left_values = _flat([_point(full.index(f"left_{n}"), 0) for n in left])
    right_values = _flat([_point(full.index(n), 0) for n in right])
    annotations = [
        {"image_id": image_id, "category_id": 1, "keypoints": left_values},
        {"image_id": image_id, "category_id": 2, "keypoints": right_values},
    ]
    return categories, annotations


def _raises(path: Path, kind: str, *fragments: str) -> str:
    with pytest.raises(OsteoInputError) as info:
        read_coco(path, kind)
    message = str(info.value)
    for fragment in (str(path), *fragments):
        assert fragment in message, (fragment, message)
    return message


@pytest.mark.parametrize("kind", ["hip", "dental"])
def test_one_keypoint_annotation_per_image(tmp_path, kind):
    full = list(keypoint_names(kind))
    order = full[::-1]  # the category's own order, not keypoint_names'
    categories = [{"id": 7, "name": "bones", "keypoints": order}]
    annotations = [
        {"image_id": image, "category_id": 7, "keypoints": _flat([_point(full.index(n), image) for n in order])}
        for image in (1, 3)
    ]
    path = _write(tmp_path, ["a/one.png", "two.png", "three.png"], categories, annotations)
    table, target = read_coco(path, kind)
    assert target == "landmarks"
    assert list(table.columns) == ["image", "coco_image_id", *landmark_columns(kind)]
    assert table["image"].tolist() == ["a/one.png", "three.png"]  # two.png has no annotation: skipped
    assert table["coco_image_id"].tolist() == [1, 3] and table["coco_image_id"].dtype == "int64"
    for row, image in enumerate((1, 3)):
        for k, name in enumerate(full):
            assert (table.loc[row, f"{name}_x"], table.loc[row, f"{name}_y"]) == _point(k, image)
    assert all(table[c].dtype == "float64" for c in landmark_columns(kind))


@pytest.mark.parametrize("kind", ["hip", "dental"])
def test_one_keypoint_annotation_per_side(tmp_path, kind):
    categories, annotations = _per_side(kind, 2, spell=lambda n: n.replace("_", " ").title())
    path = _write(tmp_path, ["x.png", "y.png"], categories, annotations)
    table, target = read_coco(path, kind)
    assert target == "landmarks" and table["image"].tolist() == ["y.png"] and table["coco_image_id"].tolist() == [2]
    for k, name in enumerate(keypoint_names(kind)):
        assert (table.loc[0, f"{name}_x"], table.loc[0, f"{name}_y"]) == _point(k, 0)


def test_boxes_one_or_both_sides(tmp_path):
    categories = [{"id": 1, "name": "LEFT roi"}, {"id": 2, "name": "roi-right"}]
    annotations = [
        {"image_id": 1, "category_id": 2, "bbox": [1.5, 2, 30, 40]},
        {"image_id": 1, "category_id": 1, "bbox": [50, 6, 25.5, 26]},
        {"image_id": 3, "category_id": 1, "bbox": [7, 8, 9, 10], "keypoints": []},
    ]
    path = _write(tmp_path, ["a.png", "b.png", "c.png"], categories, annotations)
    table, target = read_coco(path, "hip")
    assert target == "box"
    assert list(table.columns) == ["image", "coco_image_id", *box_columns("left"), *box_columns("right")]
    assert table["image"].tolist() == ["a.png", "c.png"]
    assert table.loc[0, list(box_columns("left"))].tolist() == [50, 6, 25.5, 26]
    assert table.loc[0, list(box_columns("right"))].tolist() == [1.5, 2, 30, 40]
    assert table.loc[1, list(box_columns("left"))].tolist() == [7, 8, 9, 10]
    assert all(math.isnan(v) for v in table.loc[1, list(box_columns("right"))])


def test_boxes_of_one_side_only(tmp_path):
    path = _write(
        tmp_path, ["a.png"], [{"id": 1, "name": "left"}], [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}]
    )
    table, target = read_coco(path, "dental")
    assert target == "box" and list(table.columns) == ["image", "coco_image_id", *box_columns("left")]


def test_not_json_and_missing_sections(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("<xml/>")
    _raises(bad, "hip", "not JSON")
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"images": []}))
    _raises(partial, "hip", "'annotations'", "'categories'")
    _raises(tmp_path / "absent.json", "hip", "not found")


def test_unknown_image_and_category_ids(tmp_path):
    categories = [{"id": 1, "name": "left"}]
    path = _write(tmp_path, ["a.png"], categories, [{"image_id": 9, "category_id": 1, "bbox": [1, 2, 3, 4]}])
    _raises(path, "hip", "image id 9")
    path = _write(tmp_path, ["a.png"], categories, [{"image_id": 1, "category_id": 5, "bbox": [1, 2, 3, 4]}])
    _raises(path, "hip", "'a.png' (id 1)", "category id 5")


def test_keypoint_names_not_landmarks(tmp_path):
    names = ["head_top", "lesser_trochanter", "shaft_upper", "knee"]
    categories = [{"id": 1, "name": "left femur", "keypoints": names}]
    path = _write(
        tmp_path, ["a.png"], categories, [{"image_id": 1, "category_id": 1, "keypoints": _flat([(1, 2)] * 4)}]
    )
    _raises(path, "hip", "'a.png' (id 1)", "'knee'", "head_top, lesser_trochanter, shaft_upper, shaft_lower")
    # per-side names in a category without a side in its name
    categories = [{"id": 1, "name": "femur", "keypoints": list(LANDMARKS["hip"])}]
    path = _write(
        tmp_path, ["a.png"], categories, [{"image_id": 1, "category_id": 1, "keypoints": _flat([(1, 2)] * 4)}]
    )
    _raises(path, "hip", "'head_top'", "left_head_top", "'left' or 'right'")
    # the other side's prefix in a side's category
    categories = [{"id": 1, "name": "left jaw", "keypoints": ["right_mental_foramen"]}]
    path = _write(tmp_path, ["a.png"], categories, [{"image_id": 1, "category_id": 1, "keypoints": [1, 2, 2]}])
    _raises(path, "dental", "'right_mental_foramen'", "mental_foramen")


def test_landmark_missing_from_category(tmp_path):
    names = list(LANDMARKS["hip"])[:3]
    categories = [{"id": 1, "name": "left femur", "keypoints": names}]
    path = _write(
        tmp_path, ["a.png"], categories, [{"image_id": 1, "category_id": 1, "keypoints": _flat([(1, 2)] * 3)}]
    )
    _raises(path, "hip", "'a.png' (id 1)", "left_shaft_lower")


def test_unlabelled_landmark(tmp_path):
    full = list(keypoint_names("hip"))
    values = _flat([(1.0, 2.0)] * len(full))
    values[3 * full.index("right_shaft_upper") + 2] = 0
    path = _write(
        tmp_path,
        ["a.png"],
        [{"id": 1, "name": "hip", "keypoints": full}],
        [{"image_id": 1, "category_id": 1, "keypoints": values}],
    )
    _raises(path, "hip", "'a.png' (id 1)", "landmark right_shaft_upper not labelled (v=0)")


def test_a_side_not_annotated(tmp_path):
    categories, annotations = _per_side("hip", 1)
    path = _write(tmp_path, ["a.png"], categories, annotations[:1])
    _raises(path, "hip", "'a.png' (id 1)", "right_head_top", "right_shaft_lower")


def test_keypoint_given_twice(tmp_path):
    categories, annotations = _per_side("dental", 1)
    path = _write(tmp_path, ["a.png"], categories, [*annotations, annotations[0]])
    _raises(path, "dental", "'a.png' (id 1)", "left_mental_foramen given twice", "annotation 1", "annotation 3")


def test_wrong_number_of_keypoint_values(tmp_path):
    categories, annotations = _per_side("dental", 1)
    annotations[1]["keypoints"] = [1, 2]
    path = _write(tmp_path, ["a.png"], categories, annotations)
    _raises(path, "dental", "'a.png' (id 1)", "'femur_right'", "expected 3")


def test_box_errors(tmp_path):
    categories = [{"id": 1, "name": "left roi"}, {"id": 2, "name": "roi"}]
    path = _write(tmp_path, ["a.png"], categories, [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 0, 4]}])
    _raises(path, "hip", "'a.png' (id 1)", "'left roi'", "w or h <= 0")
    boxes = [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}] * 2
    path = _write(tmp_path, ["a.png"], categories, boxes)
    _raises(path, "hip", "'a.png' (id 1)", "two left boxes")
    path = _write(tmp_path, ["a.png"], categories, [{"image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4]}])
    _raises(path, "hip", "'a.png' (id 1)", "'roi'", "'left' or 'right'")


def test_mixed_keypoints_and_boxes(tmp_path):
    categories, annotations = _per_side("dental", 1)
    categories.append({"id": 3, "name": "left roi"})
    annotations.append({"image_id": 2, "category_id": 3, "bbox": [1, 2, 3, 4]})
    path = _write(tmp_path, ["a.png", "b.png"], categories, annotations)
    _raises(path, "dental", "mixes", "'a.png' (id 1)", "'b.png' (id 2)", "'left roi'")


def _annotated(*images: str) -> pd.DataFrame:
    return pd.DataFrame({"image": list(images), "coco_image_id": range(1, len(images) + 1), "left_roi_x": 5.0})


def test_merge_by_exact_path_and_by_file_name(tmp_path):
    manifest = pd.DataFrame(
        {"image": ["cohort/a.png", "cohort/b.png", "other/c.png", "d.png"], "age": [60, 61, 62, 63], "left_roi_x": 1}
    )
    merged = merge_annotations(
        manifest, _annotated("c.png", "cohort/a.png"), coco_path="export.json", manifest_path="m.csv"
    )
    assert merged["image"].tolist() == ["cohort/a.png", "other/c.png"]  # manifest order; b.png, d.png absent
    assert merged["age"].tolist() == [60, 62]
    assert merged["coco_image_id"].tolist() == [2, 1]
    assert merged["left_roi_x"].tolist() == [5.0, 5.0]  # the manifest's column replaced
    assert list(merged.columns) == ["image", "age", "left_roi_x", "coco_image_id"]


def test_merge_exact_match_wins_over_a_repeated_file_name(tmp_path):
    manifest = pd.DataFrame({"image": ["x/a.png", "y/a.png"]})
    merged = merge_annotations(manifest, _annotated("y/a.png"), coco_path="export.json", manifest_path="m.csv")
    assert merged["image"].tolist() == ["y/a.png"] and merged["coco_image_id"].tolist() == [1]


def test_merge_ambiguous_file_name(tmp_path):
    manifest = pd.DataFrame({"image": ["x/a.png", "y/a.png", "b.png"]})
    with pytest.raises(OsteoInputError, match=r"export\.json.*'z/a\.png'.*m\.csv"):
        merge_annotations(manifest, _annotated("z/a.png", "b.png"), coco_path="export.json", manifest_path="m.csv")
    with pytest.raises(OsteoInputError, match=r"export\.json.*'p/b\.png', 'q/b\.png'"):
        merge_annotations(manifest, _annotated("p/b.png", "q/b.png"), coco_path="export.json", manifest_path="m.csv")


def test_merge_unmatched_annotated_images(tmp_path):
    manifest = pd.DataFrame({"image": ["a.png"]})
    names = [f"n{i}.png" for i in range(7)]
    with pytest.raises(OsteoInputError) as info:
        merge_annotations(manifest, _annotated("a.png", *names), coco_path="export.json", manifest_path="m.csv")
    message = str(info.value)
    assert "export.json" in message and "m.csv" in message and "7 annotated image(s)" in message
    assert all(f"'{n}'" in message for n in names[:5]) and "'n5.png'" not in message and "2 more" in message


def test_read_then_merge(tmp_path):
    categories, annotations = _per_side("dental", 1)
    path = _write(tmp_path, ["scans\\p1.png"], categories, annotations)
    table, _ = read_coco(path, "dental")
    manifest = pd.DataFrame({"image": ["p0.png", "images/p1.png"], "t_score": [-1.0, -3.0]})
    merged = merge_annotations(manifest, table, coco_path=path, manifest_path=tmp_path / "m.csv")
    assert merged["image"].tolist() == ["images/p1.png"]
    assert merged.loc[1, ["left_mental_foramen_x", "right_mental_foramen_y"]].tolist() == [
        _point(0, 0)[0],
        _point(1, 0)[1],
    ]
