"""ROI crops: a box from roi_x/y/w/h, or a fixed-size box placed at a point (roi_cx, roi_cy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from osteo_tf.data.images import read_image
from osteo_tf.data.manifest import ManifestConfig, check_manifest, read_manifest
from osteo_tf.data.pipeline import rois_of
from osteo_tf.errors import OsteoInputError

HEAD = "image,patient_id,age,sex,bmi,t_score"
# The images and boxes here are a few pixels wide: min_image_size=1 where they must be accepted.


def _folder(tmp_path: Path, width: int = 20, height: int = 16) -> Path:
    pixels = (np.arange(width * height) % 251).reshape(height, width).astype(np.uint8)
    for name in ("a.png", "b.png"):
        Image.fromarray(pixels).save(tmp_path / name)
    return tmp_path


def _manifest(folder: Path, extra_head: str, *cells: str) -> Path:
    rows = [f"{name},P{i},60,F,22,-3,{c}" for i, (name, c) in enumerate(zip(("a.png", "b.png"), cells))]
    path = folder / "m.csv"
    path.write_text("\n".join([f"{HEAD},{extra_head}", *rows]) + "\n")
    return path


def test_point_plus_size_below_the_point(tmp_path):
    path = _manifest(_folder(tmp_path), "roi_cx,roi_cy", "10,3", ",")
    cohort = read_manifest(path, ManifestConfig(roi_size=(6, 8), min_image_size=1))
    assert cohort.loc[0, ["roi_x", "roi_y", "roi_w", "roi_h"]].tolist() == [7, 3, 6, 8]
    assert cohort.loc[0, ["roi_cx", "roi_cy"]].tolist() == [10, 3]
    assert cohort["roi_x"].isna()[1] and str(cohort["roi_cx"].dtype) == "Int64"
    boxes = rois_of(cohort)
    assert boxes[1].tolist() == [-1, -1, -1, -1]  # no crop for the row without a point
    full = read_image(cohort["image"][0])
    np.testing.assert_array_equal(read_image(cohort["image"][0], tuple(boxes[0])), full[3:11, 7:13])


def test_point_centred(tmp_path):
    path = _manifest(_folder(tmp_path), "roi_cx,roi_cy", "10,8", "5,5")
    cohort = read_manifest(path, ManifestConfig(roi_size=(6, 8), roi_anchor="center", min_image_size=1))
    assert cohort.loc[0, ["roi_x", "roi_y", "roi_w", "roi_h"]].tolist() == [7, 4, 6, 8]


def test_default_size_is_the_dental_papers_250_by_400(tmp_path):
    Image.fromarray(np.zeros((600, 400), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((600, 400), np.uint8)).save(tmp_path / "b.png")
    cohort = read_manifest(_manifest(tmp_path, "roi_cx,roi_cy", "200,150", "125,0"))
    assert ManifestConfig().roi_size == (250, 400)
    assert cohort.loc[0, ["roi_x", "roi_y", "roi_w", "roi_h"]].tolist() == [75, 150, 250, 400]


def test_box_from_point_outside_the_image_names_the_row(tmp_path):
    path = _manifest(_folder(tmp_path), "roi_cx,roi_cy", "10,3", "18,12")
    with pytest.raises(OsteoInputError) as err:
        read_manifest(path, ManifestConfig(roi_size=(6, 8), min_image_size=1))
    message = str(err.value)
    assert "m.csv, line 3" in message and "does not lie inside" in message
    assert "roi_cx=18, roi_cy=12" in message and "6×8" in message
    check = check_manifest(path, ManifestConfig(roi_size=(6, 8), min_image_size=1))
    assert check.counts == {"ROI outside the image": 1} and check.cohort["patient_id"].tolist() == ["P0"]


def test_box_columns_outside_the_image_names_the_row(tmp_path):
    path = _manifest(_folder(tmp_path), "roi_x,roi_y,roi_w,roi_h", "0,0,20,16", "5,5,20,4")
    with pytest.raises(OsteoInputError, match=r"line 3, column 'image'.*ROI box \(x=5, y=5, w=20, h=4\)"):
        read_manifest(path)


@pytest.mark.parametrize(
    "head, cells, expect",
    [
        ("roi_cx", ("1", "2"), "ROI point columns must come both or neither; missing 'roi_cy'"),
        ("roi_cx,roi_cy,roi_x,roi_y,roi_w,roi_h", ("1,1,0,0,2,2", ",,,,,"), "keep one kind"),
    ],
)
def test_point_column_structure(tmp_path, head, cells, expect):
    with pytest.raises(OsteoInputError, match=expect):
        read_manifest(_manifest(_folder(tmp_path), head, *cells))


def test_incomplete_or_bad_point(tmp_path):
    path = _manifest(_folder(tmp_path), "roi_cx,roi_cy", "4,", "-1,3")
    with pytest.raises(OsteoInputError) as err:
        read_manifest(path)
    assert "line 2, column 'roi_cy': incomplete ROI point" in str(err.value)
    assert "line 3, column 'roi_cx': '-1' is not a valid ROI value" in str(err.value)


def test_roi_settings_validated_and_round_trip():
    config = ManifestConfig.from_dict({"roi_size": [250, 400], "roi_anchor": "center"})
    assert ManifestConfig.from_dict(config.to_dict()) == config
    for bad in ({"roi_size": [0, 4]}, {"roi_size": "250x400"}, {"roi_anchor": "above"}):
        with pytest.raises(OsteoInputError, match="roi_"):
            ManifestConfig.from_dict(bad)
