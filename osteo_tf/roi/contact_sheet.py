"""Contact sheets for reviewing automatic ROI detections: one PNG grid of thumbnails with the boxes drawn.

Each :class:`Tile` is one whole radiograph with its detected ROI box, landmarks and confidence.
:func:`draw_tile` renders one thumbnail (the image min–max scaled to 8 bits for display, the box
in green, or in red when the tile is flagged for review, landmarks as yellow crosses, an optional
reference box in thin blue, and a caption line underneath); :func:`contact_sheets` lays the
thumbnails out in grids of at most ``per_sheet`` tiles, flagged tiles first so that a reviewer
sees them first, and writes ``{prefix}_001.png``, ``{prefix}_002.png``, … crash-safely.

Pure Pillow + NumPy (no TensorFlow); images are read by :func:`osteo_tf.data.images.read_image`,
so PNG, TIFF (8 or 16 bit) and DICOM all work.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from osteo_tf.data.images import read_image, to_unit_range
from osteo_tf.errors import OsteoInputError
from osteo_tf.io import atomic_path

__all__ = ["MIN_TILE_WIDTH", "Tile", "contact_sheets", "draw_tile"]

#: The narrowest thumbnail :func:`draw_tile` draws, in pixels (a caption needs some room).
MIN_TILE_WIDTH = 32

_GREEN = (0, 255, 0)
_RED = (255, 0, 0)
_YELLOW = (255, 255, 0)
_BLUE = (0, 128, 255)
_CAPTION_TEXT = (230, 230, 230)
_CAPTION_BACKGROUND = (0, 0, 0)
_SHEET_BACKGROUND = (24, 24, 24)
_BOX_LINE = 2  # px, the detected box (drawn inward from its edges)
_TRUTH_LINE = 1  # px, the reference box
_CROSS_ARM = 3  # px, half the size of a landmark cross
_CAPTION_PAD = 2  # px around the caption text


@dataclass(frozen=True)
class Tile:
    """One radiograph on a contact sheet.

    Args:
        image: path of the whole image (absolute, or as resolvable from the working folder).
        label: the caption, e.g. the patient id or the file name.
        box: the detected ROI ``(x, y, w, h)`` in pixels of the image, origin top-left, or None.
        keypoints: ``(K, 2)`` landmark pixel coordinates ``(x, y)`` in the image, or None; rows
            holding NaN (a landmark not found) are skipped.
        confidence: the detection's confidence, shown in the caption, or None.
        flagged: True when the detection is below the confidence threshold and needs review.
        truth: an optional reference box ``(x, y, w, h)`` in pixels, drawn thin in blue.
    """

    image: str
    label: str
    box: tuple[int, int, int, int] | None
    keypoints: np.ndarray | None
    confidence: float | None
    flagged: bool
    truth: tuple[int, int, int, int] | None = None


def contact_sheets(
    tiles: Sequence[Tile],
    out_dir: str | Path,
    *,
    columns: int = 6,
    tile_width: int = 192,
    per_sheet: int = 48,
    prefix: str = "contact_sheet",
) -> list[Path]:
    """Write RGB PNG grids of every tile, flagged tiles first, for a reviewer to look through.

    Each tile is drawn by :func:`draw_tile`: the image scaled to ``tile_width`` (aspect kept),
    the box in green (red when flagged), landmarks as yellow crosses, the reference box in thin
    blue, and the caption ``"label  conf 0.93"`` (plus ``"REVIEW"`` for flagged tiles) under it.
    Sheets are named ``{prefix}_001.png``, ``{prefix}_002.png``, … and hold at most ``per_sheet``
    tiles each: the flagged tiles in their given order, then the others in their given order,
    row by row. Every sheet of one call has ``min(columns, per_sheet, len(tiles))`` columns,
    each exactly ``tile_width`` pixels wide with no gap, so a tile's pixel ``(u, v)`` lies at
    ``(column * tile_width + u, top of its row + v)``; a row is as tall as the sheet's tallest
    tile. Each file is written under a temporary name and renamed, so a failure never leaves a
    partial file (sheets finished before it stay).

    Args:
        tiles: the tiles to draw.
        out_dir: the folder for the sheets (created when needed).
        columns: tiles per row, ≥ 1.
        tile_width: thumbnail width in pixels, ≥ :data:`MIN_TILE_WIDTH`.
        per_sheet: most tiles on one sheet, ≥ 1.
        prefix: the sheets' file-name prefix.

    Returns:
        The written sheets' paths, in order; ``[]`` (and nothing written) when there are no tiles.

    Raises:
        OsteoInputError: ``columns``, ``tile_width``, ``per_sheet`` or ``prefix`` out of range, or
            a tile whose image cannot be read or whose ``box`` / ``truth`` / ``keypoints`` is malformed
            (naming the tile's label and the field).
    """
    columns = _check_count("columns", columns, 1)
    tile_width = _check_count("tile_width", tile_width, MIN_TILE_WIDTH)
    per_sheet = _check_count("per_sheet", per_sheet, 1)
    if not isinstance(prefix, str) or not prefix or "/" in prefix or os.sep in prefix:
        raise OsteoInputError(
            f"prefix must be a non-empty file-name prefix without a folder separator, got {prefix!r}",
            parameter="prefix",
        )
    tiles = list(tiles)
    if not tiles:
        return []
    ordered = [t for t in tiles if t.flagged] + [t for t in tiles if not t.flagged]
    n_columns = min(columns, per_sheet, len(ordered))
    out_dir = Path(out_dir)
    written = []
    for number, start in enumerate(range(0, len(ordered), per_sheet), start=1):
        drawn = [draw_tile(tile, tile_width) for tile in ordered[start : start + per_sheet]]
        row_height = max(img.height for img in drawn)
        rows = math.ceil(len(drawn) / n_columns)
        sheet = Image.new("RGB", (n_columns * tile_width, rows * row_height), _SHEET_BACKGROUND)
        for index, img in enumerate(drawn):
            row, column = divmod(index, n_columns)
            sheet.paste(img, (column * tile_width, row * row_height))
        path = out_dir / f"{prefix}_{number:03d}.png"
        with atomic_path(path) as temporary:
            sheet.save(temporary, format="PNG")
        written.append(path)
    return written


def draw_tile(tile: Tile, tile_width: int) -> Image.Image:
    """Render one tile: the thumbnail with its boxes and landmarks, and the caption strip under it.

    The image is read by :func:`osteo_tf.data.images.read_image`, min–max scaled to 8 bits on its
    own, and resized to ``tile_width`` pixels wide, height ``round(height * scale)`` with
    ``scale = tile_width / image width``. An image coordinate ``c`` is drawn at ``round(c * scale)``:
    a box ``(x, y, w, h)`` is outlined from ``round(x * scale)`` to ``round((x + w) * scale) - 1``
    (and likewise vertically), its line drawn inward, green (red when flagged); the reference box
    is a 1-pixel blue outline on top; each landmark is a yellow cross centred on its scaled point.

    Args:
        tile: the tile to draw.
        tile_width: the thumbnail's width in pixels, ≥ :data:`MIN_TILE_WIDTH`.

    Returns:
        An RGB image ``tile_width`` wide: the thumbnail on top, the caption strip below.

    Raises:
        OsteoInputError: ``tile_width`` too small, the image unreadable, or ``box`` / ``truth`` /
            ``keypoints`` malformed (naming the tile's label and the field).
    """
    tile_width = _check_count("tile_width", tile_width, MIN_TILE_WIDTH)
    box = _check_box(tile, "box", tile.box)
    truth = _check_box(tile, "truth", tile.truth)
    points = _check_keypoints(tile)
    try:
        pixels = read_image(tile.image)
    except OsteoInputError as exc:
        raise OsteoInputError(f"tile {tile.label!r}: its image {tile.image} cannot be read: {exc}") from exc
    height, width = pixels.shape
    scale = tile_width / width
    thumb_height = max(1, round(height * scale))
    gray = Image.fromarray(np.round(to_unit_range(pixels) * 255.0).astype(np.uint8))  # 2-D uint8: mode "L"
    thumb = gray.resize((tile_width, thumb_height), Image.Resampling.BILINEAR, reducing_gap=3.0).convert("RGB")

    draw = ImageDraw.Draw(thumb)
    if box is not None:
        draw.rectangle(_scaled_box(box, scale), outline=_RED if tile.flagged else _GREEN, width=_BOX_LINE)
    if truth is not None:
        draw.rectangle(_scaled_box(truth, scale), outline=_BLUE, width=_TRUTH_LINE)
    for x, y in points:
        cx, cy = round(x * scale), round(y * scale)
        draw.line([(cx - _CROSS_ARM, cy), (cx + _CROSS_ARM, cy)], fill=_YELLOW, width=1)
        draw.line([(cx, cy - _CROSS_ARM), (cx, cy + _CROSS_ARM)], fill=_YELLOW, width=1)

    font = _font()
    caption_height = font.getbbox("Ag|")[3] + 2 * _CAPTION_PAD
    out = Image.new("RGB", (tile_width, thumb_height + caption_height), _CAPTION_BACKGROUND)
    out.paste(thumb, (0, 0))
    _draw_caption(ImageDraw.Draw(out), tile, (_CAPTION_PAD, thumb_height + _CAPTION_PAD), tile_width, font)
    return out


# --------------------------------------------------------------------------- internals


@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _check_count(name: str, value: object, minimum: int) -> int:
    """``value`` as an int ≥ ``minimum`` (bools and non-whole numbers rejected)."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and int(value) >= minimum
    if not ok:
        raise OsteoInputError(f"{name} must be a whole number >= {minimum}, got {value!r}", parameter=name)
    return int(value)  # type: ignore[arg-type]


def _check_box(tile: Tile, field: str, value: object) -> tuple[float, float, float, float] | None:
    """A box field as four finite floats with positive width and height, or None."""
    if value is None:
        return None
    try:
        x, y, w, h = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise OsteoInputError(
            f"tile {tile.label!r}: {field} {value!r} must be four numbers (x, y, w, h) in pixels, or None"
        ) from exc
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise OsteoInputError(
            f"tile {tile.label!r}: {field} (x={x:g}, y={y:g}, w={w:g}, h={h:g}) needs finite numbers and w, h > 0"
        )
    return x, y, w, h


def _check_keypoints(tile: Tile) -> list[tuple[float, float]]:
    """The finite ``(x, y)`` rows of ``tile.keypoints`` (NaN rows skipped); [] for None."""
    if tile.keypoints is None:
        return []
    try:
        points = np.asarray(tile.keypoints, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise OsteoInputError(f"tile {tile.label!r}: keypoints must be a (K, 2) array of numbers") from exc
    if points.ndim != 2 or points.shape[1] != 2:
        raise OsteoInputError(
            f"tile {tile.label!r}: keypoints must be a (K, 2) array of (x, y) pixels, got shape {points.shape}"
        )
    return [(float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)]


def _scaled_box(box: tuple[float, float, float, float], scale: float) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` image pixels → inclusive ``(left, top, right, bottom)`` tile pixels."""
    x, y, w, h = box
    left, top = round(x * scale), round(y * scale)
    right = max(left, round((x + w) * scale) - 1)
    bottom = max(top, round((y + h) * scale) - 1)
    return left, top, right, bottom


def _draw_caption(
    draw: ImageDraw.ImageDraw,
    tile: Tile,
    origin: tuple[int, int],
    tile_width: int,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> None:
    """``"label  conf 0.93"`` then a red ``"  REVIEW"`` for flagged tiles; the label shortened to fit."""
    confidence = tile.confidence
    status = f"  conf {confidence:.2f}" if confidence is not None and math.isfinite(confidence) else ""
    review = "  REVIEW" if tile.flagged else ""
    label = _drawable(str(tile.label), font)
    room = tile_width - 2 * _CAPTION_PAD - draw.textlength(status + review, font=font)
    if draw.textlength(label, font=font) > room:
        while label and draw.textlength(label + "...", font=font) > room:
            label = label[:-1]
        label = label + "..." if label else ""
    text = label + status
    draw.text(origin, text, fill=_CAPTION_TEXT, font=font)
    if review:
        draw.text((origin[0] + draw.textlength(text, font=font), origin[1]), review, fill=_RED, font=font)


def _drawable(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> str:
    """``text`` on one line, or its ASCII rendering when the (bitmap) font cannot take it."""
    text = " ".join(text.split())
    try:
        font.getbbox(text)
    except UnicodeError:
        return text.encode("ascii", "replace").decode("ascii")
    return text
