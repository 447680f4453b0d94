"""Contact sheets: layout, naming, flagged-first order, exact box / landmark positions, errors, crash safety."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from osteo_tf.errors import OsteoInputError
from osteo_tf.roi.contact_sheet import Tile, contact_sheets, draw_tile

WIDTH, HEIGHT = 96, 64  # the test images, px
TILE = 192  # tile_width in most tests: scale 2
BOX = (30, 10, 40, 30)  # drawn from x = 60 to 139, y = 20 to 79 at scale 2


def _png(folder: Path, name: str, pixels: np.ndarray | None = None) -> str:
    if pixels is None:  # a horizontal 8-bit gradient, 40..200: never pure red, green, blue or yellow
        pixels = np.tile(np.linspace(40, 200, WIDTH), (HEIGHT, 1)).astype(np.uint8)
    path = folder / name
    Image.fromarray(pixels).save(path)
    return str(path)


def _tile(image: str, label: str = "p1", *, flagged: bool = False, box=BOX, **fields) -> Tile:
    fields = {"keypoints": None, "confidence": 0.93, "truth": None} | fields
    return Tile(image=image, label=label, box=box, flagged=flagged, **fields)


def _rgb(img: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in img.getpixel((x, y))[:3])


def _is(colour: str, rgb: tuple[int, int, int]) -> bool:
    r, g, b = rgb
    return {
        "red": r > 200 and g < 60 and b < 60,
        "green": g > 200 and r < 60 and b < 60,
        "yellow": r > 200 and g > 200 and b < 60,
        "blue": b > 200 and r < 60,
    }[colour]


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if "tmp" in p.name]


def test_sheet_count_names_and_width(tmp_path):
    image = _png(tmp_path, "a.png")
    out = tmp_path / "sheets"
    paths = contact_sheets([_tile(image, f"p{i}") for i in range(5)], out, per_sheet=2, tile_width=TILE)
    assert [p.name for p in paths] == ["contact_sheet_001.png", "contact_sheet_002.png", "contact_sheet_003.png"]
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in paths]
    tile_height = draw_tile(_tile(image), TILE).height
    for path in paths:  # every sheet of one call as wide as min(columns, per_sheet, n) tiles, the last too
        with Image.open(path) as sheet:
            assert sheet.mode == "RGB"
            assert sheet.width == 2 * TILE
    with Image.open(paths[0]) as first, Image.open(paths[-1]) as last:
        assert first.height == tile_height  # 2 tiles on one row
        assert last.height == tile_height


def test_columns_and_rows(tmp_path):
    image = _png(tmp_path, "a.png")
    tile_height = draw_tile(_tile(image), TILE).height
    (few,) = contact_sheets([_tile(image)] * 4, tmp_path / "few", tile_width=TILE)  # columns=6 > 4 tiles
    (many,) = contact_sheets([_tile(image)] * 7, tmp_path / "many", columns=3, tile_width=TILE, prefix="qc")
    assert many.name == "qc_001.png"
    with Image.open(few) as a, Image.open(many) as b:
        assert a.size == (4 * TILE, tile_height)
        assert b.size == (3 * TILE, 3 * tile_height)


def test_tile_size_keeps_the_aspect_and_adds_a_caption(tmp_path):
    img = draw_tile(_tile(_png(tmp_path, "a.png")), TILE)
    assert img.mode == "RGB" and img.width == TILE
    assert img.height > HEIGHT * 2  # the 128-px thumbnail plus a caption strip
    caption = np.asarray(img)[HEIGHT * 2 :]
    assert (caption > 150).any()  # some caption text was drawn


@pytest.mark.parametrize(("flagged", "colour"), [(False, "green"), (True, "red")])
def test_box_edges_at_the_exact_scaled_position(tmp_path, flagged, colour):
    img = draw_tile(_tile(_png(tmp_path, "a.png"), flagged=flagged), TILE)
    # x=30, y=10, w=40, h=30 at scale 2: left column 60, right 139, top row 20, bottom 79 (2-px line inward)
    for x, y in [(60, 50), (61, 50), (139, 50), (138, 50), (100, 20), (100, 79)]:
        assert _is(colour, _rgb(img, x, y)), (x, y, _rgb(img, x, y))
    for x, y in [(59, 50), (62, 50), (140, 50), (100, 19), (100, 80)]:  # just outside / inside the line
        assert not _is(colour, _rgb(img, x, y)), (x, y, _rgb(img, x, y))


def test_scale_follows_tile_width(tmp_path):
    img = draw_tile(_tile(_png(tmp_path, "a.png")), 144)  # scale 1.5: left edge at 45, right at 104
    assert _is("green", _rgb(img, 45, 40)) and not _is("green", _rgb(img, 44, 40))
    assert _is("green", _rgb(img, 104, 40)) and not _is("green", _rgb(img, 105, 40))


def test_flagged_tiles_come_first_in_their_order(tmp_path):
    image = _png(tmp_path, "a.png")
    tiles = [
        _tile(image, "ok1", box=(5, 10, 20, 30)),
        _tile(image, "bad1", flagged=True, box=(10, 10, 20, 30)),
        _tile(image, "ok2", box=(15, 10, 20, 30)),
        _tile(image, "bad2", flagged=True, box=(20, 10, 20, 30)),
    ]
    (path,) = contact_sheets(tiles, tmp_path / "out", columns=2, tile_width=TILE)
    row = draw_tile(tiles[0], TILE).height
    with Image.open(path) as sheet:
        assert sheet.size == (2 * TILE, 2 * row)
        # (cell column, cell row, left edge of its box in the tile, colour): bad1, bad2, then ok1, ok2
        for column, r, left, colour in [(0, 0, 20, "red"), (1, 0, 40, "red"), (0, 1, 10, "green"), (1, 1, 30, "green")]:
            x, y = column * TILE + left, r * row + 50
            assert _is(colour, _rgb(sheet, x, y)), (column, r, _rgb(sheet, x, y))
            assert not _is(colour, _rgb(sheet, x - 1, y))


def test_keypoints_and_truth_box(tmp_path):
    points = np.array([[48.0, 32.0], [np.nan, np.nan], [10.0, 50.0]])  # the NaN row (not found) is skipped
    tile = _tile(_png(tmp_path, "a.png"), box=None, keypoints=points, truth=(20, 8, 50, 40))
    img = draw_tile(tile, TILE)
    for x, y in [(96, 64), (99, 64), (96, 61), (20, 100), (23, 100)]:
        assert _is("yellow", _rgb(img, x, y)), (x, y)
    assert not _is("yellow", _rgb(img, 98, 62))  # a cross, not a square
    # truth at scale 2: left 40, right 139, top 16, bottom 95, one pixel wide
    for x, y in [(40, 30), (139, 30), (80, 16), (80, 95)]:
        assert _is("blue", _rgb(img, x, y)), (x, y)
    assert not _is("blue", _rgb(img, 41, 30))


def test_sixteen_bit_png_is_min_max_scaled(tmp_path):
    pixels = np.tile(np.linspace(1000, 60000, WIDTH), (HEIGHT, 1)).astype(np.uint16)
    image = _png(tmp_path, "deep.png", pixels)
    with Image.open(image) as check:
        assert check.mode.startswith("I")  # really a 16-bit file
    img = draw_tile(_tile(image, box=None), TILE)
    thumb = np.asarray(img)[: 2 * HEIGHT]
    assert thumb[:, 0].max() < 10 and thumb[:, -1].min() > 245  # its own min -> black, max -> white
    assert (thumb[..., 0] == thumb[..., 1]).all()  # gray where nothing is drawn


def test_no_tiles_writes_nothing(tmp_path):
    assert contact_sheets([], tmp_path / "none") == []
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    ("option", "value"), [("columns", 0), ("tile_width", 31), ("per_sheet", 0), ("columns", 2.5), ("prefix", "")]
)
def test_bad_options(tmp_path, option, value):
    with pytest.raises(OsteoInputError, match=option) as info:
        contact_sheets([_tile(_png(tmp_path, "a.png"))], tmp_path / "out", **{option: value})
    assert info.value.parameter == option
    assert not (tmp_path / "out").exists()


def test_draw_tile_checks_its_width(tmp_path):
    with pytest.raises(OsteoInputError, match="tile_width"):
        draw_tile(_tile(_png(tmp_path, "a.png")), 16)


@pytest.mark.parametrize(
    ("field", "value"), [("box", (1, 2, 0, 5)), ("box", (1, 2, 3)), ("truth", (0, 0, -4, 4)), ("keypoints", [1, 2, 3])]
)
def test_bad_tile_fields(tmp_path, field, value):
    tile = _tile(_png(tmp_path, "a.png"), "knee-9", **{field: value})
    with pytest.raises(OsteoInputError, match=field) as info:
        draw_tile(tile, TILE)
    assert "knee-9" in str(info.value)


@pytest.mark.parametrize("broken", ["garbage", "missing"])
def test_unreadable_image_names_file_and_label(tmp_path, broken):
    bad = tmp_path / "bad.png"
    if broken == "garbage":
        bad.write_bytes(b"not a png at all")
    good = _png(tmp_path, "a.png")
    tiles = [_tile(good, "p1"), _tile(good, "p2"), _tile(str(bad), "patient-17")]
    out = tmp_path / "out"
    with pytest.raises(OsteoInputError, match="patient-17") as info:
        contact_sheets(tiles, out, per_sheet=2, tile_width=TILE)
    assert "bad.png" in str(info.value) and "image" in str(info.value)
    # the first sheet was finished and stays; the failing one left no partial or temporary file
    assert sorted(p.name for p in out.iterdir()) == ["contact_sheet_001.png"]
    assert _leftovers(out) == []


def test_no_temporary_files_after_success(tmp_path):
    image = _png(tmp_path, "a.png")
    out = tmp_path / "out"
    contact_sheets([_tile(image, flagged=i % 2 == 0) for i in range(3)], out, per_sheet=1, tile_width=64)
    assert sorted(p.name for p in out.iterdir()) == [f"contact_sheet_00{i}.png" for i in (1, 2, 3)]
    assert _leftovers(out) == []


def test_long_labels_and_missing_confidence_still_draw(tmp_path):
    tile = _tile(_png(tmp_path, "a.png"), "x" * 200 + "\nünïcode", confidence=None, flagged=True)
    img = draw_tile(tile, 32)
    assert img.width == 32
