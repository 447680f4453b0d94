"""Tests for osteo_tf.data.images: decoding, precision, ROI crops and error messages."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from osteo_tf.data.images import (
    check_roi,
    image_size,
    read_image,
    to_unit_range,
    verify_image,
)
from osteo_tf.errors import OsteoInputError


def _save(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def _png_bytes(width: int, height: int, depth: int, colour_type: int, raw: bytes) -> bytes:
    """A minimal PNG built by hand (Pillow cannot write 16-bit colour)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------- decoding


def test_8bit_png_native_range(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = read_image(_save(tmp_path / "a.png", arr))
    assert out.dtype == np.float32 and out.shape == (3, 4)
    np.testing.assert_array_equal(out, arr.astype(np.float32))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_precision_preserved(tmp_path: Path, suffix: str) -> None:
    arr = np.array([[1000, 1001], [0, 65535]], dtype=np.uint16)
    out = read_image(_save(tmp_path / f"a{suffix}", arr))
    assert out.dtype == np.float32
    assert out[0, 0] == 1000.0 and out[0, 1] == 1001.0 and out[1, 1] == 65535.0


def test_16bit_big_endian_png(tmp_path: Path) -> None:
    g = np.array([[1000, 1001], [2, 40000]], dtype=">u2")
    raw = b"".join(b"\x00" + g[y].tobytes() for y in range(2))
    (tmp_path / "be.png").write_bytes(_png_bytes(2, 2, 16, 0, raw))
    np.testing.assert_array_equal(read_image(tmp_path / "be.png"), g.astype(np.float32))


def test_rgb_becomes_luminance(tmp_path: Path) -> None:
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[1, 0] = (0, 0, 255)
    rgb[1, 1] = (100, 100, 100)
    out = read_image(_save(tmp_path / "rgb.png", rgb))
    expected = np.array([[0.299 * 255, 0.587 * 255], [0.114 * 255, 100.0]], np.float32)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_rgba_alpha_ignored_and_palette(tmp_path: Path) -> None:
    rgba = np.full((2, 3, 4), 80, dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: alpha must not matter
    np.testing.assert_allclose(read_image(_save(tmp_path / "a.png", rgba)), 80.0, rtol=1e-6)
    pal = Image.fromarray(np.full((2, 3), 50, np.uint8)).convert("P")
    pal.save(tmp_path / "p.png")
    np.testing.assert_allclose(read_image(tmp_path / "p.png"), 50.0, rtol=1e-6)


def test_roi_crop(tmp_path: Path) -> None:
    arr = np.arange(20, dtype=np.uint16).reshape(4, 5) * 1000
    path = _save(tmp_path / "a.png", arr)
    out = read_image(path, roi=(1, 2, 3, 2))
    np.testing.assert_array_equal(out, arr[2:4, 1:4].astype(np.float32))
    assert image_size(path) == (5, 4) == verify_image(path)


@pytest.mark.parametrize("roi", [(3, 0, 3, 2), (0, 0, 5, 5), (-1, 0, 2, 2), (0, 0, 0, 2)])
def test_roi_outside_image(tmp_path: Path, roi: tuple[int, int, int, int]) -> None:
    path = _save(tmp_path / "a.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(OsteoInputError) as err:
        read_image(path, roi=roi)
    msg = str(err.value)
    assert str(path) in msg and "5×4" in msg and f"x={roi[0]}" in msg and f"w={roi[2]}" in msg


def test_check_roi_rejects_non_integers(tmp_path: Path) -> None:
    with pytest.raises(OsteoInputError, match="whole numbers"):
        check_roi(tmp_path / "a.png", (0.5, 0, 1, 1), (4, 4))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    for fn in (read_image, image_size):
        with pytest.raises(OsteoInputError, match="not found") as err:
            fn(path)
        assert str(path) in str(err.value)


def test_folder_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(OsteoInputError, match="folder"):
        read_image(tmp_path)


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(b"not an image at all")
    with pytest.raises(OsteoInputError) as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_truncated_png_caught_by_full_decode(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = _save(tmp_path / "t.png", rng.integers(0, 255, (64, 64), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert image_size(path) == (64, 64)  # the header alone still reads
    for fn in (read_image, verify_image):
        with pytest.raises(OsteoInputError, match="corrupt or truncated") as err:
            fn(path)
        assert str(path) in str(err.value)


def test_corrupt_png_crc(tmp_path: Path) -> None:
    path = _save(tmp_path / "c.png", np.zeros((8, 8), np.uint8))
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF  # inside IDAT
    path.write_bytes(bytes(data))
    with pytest.raises(OsteoInputError) as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_broken_dicom_is_a_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("pydicom", reason="DICOM support needs the optional pydicom (pip install '.[dicom]')")
    by_suffix = tmp_path / "a.dcm"
    by_suffix.write_bytes(b"anything")
    by_magic = tmp_path / "scan"
    by_magic.write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 16)
    for path in (by_suffix, by_magic):
        with pytest.raises(OsteoInputError, match="DICOM") as err:
            read_image(path)
        assert str(path) in str(err.value)


def test_other_formats_rejected(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    with pytest.raises(OsteoInputError, match="JPEG"):
        read_image(path)


def test_16bit_colour_rejected_not_truncated(tmp_path: Path) -> None:
    px = np.array([[[1000, 2000, 3000]]], dtype=">u2")
    path = tmp_path / "rgb16.png"
    path.write_bytes(_png_bytes(1, 1, 16, 2, b"\x00" + px[0].tobytes()))
    with pytest.raises(OsteoInputError, match="16-bit colour"):
        read_image(path)


def test_multi_page_tiff_rejected(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (1, 2)]
    path = tmp_path / "m.tif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(OsteoInputError, match="2 frames"):
        read_image(path)


def test_float_tiff_nan_rejected(tmp_path: Path) -> None:
    path = _save(tmp_path / "f.tif", np.array([[1.5, np.nan]], np.float32))
    with pytest.raises(OsteoInputError, match="NaN"):
        verify_image(path)
    ok = _save(tmp_path / "g.tif", np.array([[1.5, -2.0]], np.float32))
    np.testing.assert_array_equal(read_image(ok), [[1.5, -2.0]])


# ------------------------------------------------------------------------ to_unit_range


def test_to_unit_range() -> None:
    out = to_unit_range(np.array([[1000, 1001], [1002, 3000]], np.float32))
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert 0 < out[0, 1] < out[1, 0]  # neighbouring 16-bit values stay distinct
    np.testing.assert_array_equal(to_unit_range(np.full((2, 2), 7.0)), np.zeros((2, 2)))
    assert to_unit_range(np.zeros((0, 3))).shape == (0, 3)
    with pytest.raises(ValueError):
        to_unit_range(np.array([0.0, np.nan]))
