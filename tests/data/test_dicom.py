"""DICOM decoding: pydicom's own test files and files written here (modality rescale, VOI LUT,
windowing, MONOCHROME1, 8–16 bit, compressed syntaxes, errors)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip(
    "pydicom", reason="DICOM support needs the optional pydicom: pip install '.[dicom]' (it is in '.[dev]')"
)

from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder  # noqa: E402
from pydicom.uid import JPEGLSLossless  # noqa: E402

from osteo_tf.data.images import image_size, read_image, to_unit_range, verify_image  # noqa: E402
from osteo_tf.data.manifest import ManifestConfig, read_manifest  # noqa: E402
from osteo_tf.errors import OsteoInputError  # noqa: E402


def reference(path: str | Path) -> np.ndarray:
    """pydicom's own modality + VOI pipeline, for comparison."""
    ds = pydicom.dcmread(path)
    return np.asarray(apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds), dtype=np.float64)


# ------------------------------------------------------------------- pydicom's test files


def test_ct_rescale_intercept():
    path = get_testdata_file("CT_small.dcm")  # 16-bit signed, slope 1, intercept -1024, no window
    ds = pydicom.dcmread(path)
    out = read_image(path)
    assert out.dtype == np.float32 and out.shape == (128, 128)
    np.testing.assert_array_equal(out, ds.pixel_array.astype(np.float64) - 1024.0)
    assert image_size(path) == (128, 128) == verify_image(path)


def test_mr_window_centre_width_is_applied():
    path = get_testdata_file("MR_small.dcm")  # Window Center 600, Width 1600; raw values reach 2145
    out = read_image(path)
    np.testing.assert_allclose(out, reference(path), rtol=0, atol=1e-3)
    raw = pydicom.dcmread(path).pixel_array
    above = raw > 600 - 0.5 + (1600 - 1) / 2  # beyond the window's top: all at the output maximum
    assert above.any() and (out[above] == out.max()).all() and len(np.unique(out[above])) == 1


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_expb.dcm", "MR_small_implicit.dcm"])
def test_rle_and_other_syntaxes_decode_identically(name):
    np.testing.assert_array_equal(read_image(get_testdata_file(name)), read_image(get_testdata_file("MR_small.dcm")))


@pytest.mark.parametrize(
    "name, syntax", [("MR_small_jp2klossless.dcm", "JPEG 2000"), ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS")]
)
def test_compressed_decodes_or_names_the_syntax_and_package(name, syntax):
    path = get_testdata_file(name)
    uid = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if get_decoder(uid).is_available:
        np.testing.assert_array_equal(read_image(path), read_image(get_testdata_file("MR_small.dcm")))
    else:
        with pytest.raises(OsteoInputError) as err:
            read_image(path)
        assert syntax in str(err.value) and "pip install" in str(err.value) and name in str(err.value)


def test_missing_decoder_message(monkeypatch):
    class Unavailable:
        is_available = False
        missing_dependencies = ["pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1"]

    monkeypatch.setattr("pydicom.pixels.get_decoder", lambda uid: Unavailable())
    path = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
    with pytest.raises(OsteoInputError) as err:
        read_image(path)
    message = str(err.value)
    assert "JPEG-LS Lossless Image Compression" in message and str(JPEGLSLossless) in message
    assert "pip install pylibjpeg pylibjpeg-libjpeg" in message


def test_rgb_dicom_becomes_luma():
    path = get_testdata_file("SC_rgb_small_odd.dcm")
    rgb = pydicom.dcmread(path).pixel_array.astype(np.float64)
    np.testing.assert_allclose(read_image(path), rgb @ [0.299, 0.587, 0.114], atol=1e-3)


@pytest.mark.parametrize(
    "name, expect",
    [
        ("rtplan.dcm", "no image pixel data"),
        ("MR_truncated.dcm", "corrupt or truncated"),
        ("rtdose.dcm", "15 frames"),
    ],
)
def test_unusable_dicom_files(name, expect):
    path = get_testdata_file(name)
    with pytest.raises(OsteoInputError, match=expect) as err:
        verify_image(path)
    assert name in str(err.value)


# ------------------------------------------------------------------- files written here


def test_16_bit_stored_values_keep_full_precision(tmp_path, write_dicom):
    pixels = np.array([[0, 1000, 1001], [2048, 4094, 4095]], np.uint16)  # 12 bits stored
    out = read_image(write_dicom(tmp_path / "a.dcm", pixels, bits_stored=12))
    np.testing.assert_array_equal(out, pixels.astype(np.float32))
    assert out[0, 1] != out[0, 2]


def test_8_bit_and_signed_16_bit(tmp_path, write_dicom):
    eight = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    np.testing.assert_array_equal(read_image(write_dicom(tmp_path / "u8.dcm", eight)), eight)
    signed = np.array([[-1000, -1], [0, 32767]], np.int16)
    np.testing.assert_array_equal(read_image(write_dicom(tmp_path / "s16.dcm", signed)), signed)


def test_rescale_slope_and_intercept(tmp_path, write_dicom):
    pixels = np.array([[0, 10], [20, 4095]], np.uint16)
    out = read_image(
        write_dicom(
            tmp_path / "r.dcm", pixels, bits_stored=12, RescaleSlope="2.5", RescaleIntercept="-100", RescaleType="US"
        )
    )
    np.testing.assert_allclose(out, pixels * 2.5 - 100.0)


def test_monochrome1_is_inverted_to_monochrome2(tmp_path, write_dicom):
    pixels = np.array([[0, 100], [300, 1000]], np.uint16)
    mono1 = read_image(write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1"))
    mono2 = read_image(write_dicom(tmp_path / "m2.dcm", pixels))
    np.testing.assert_array_equal(mono1, 1000.0 - pixels)  # min + max − value: same range
    np.testing.assert_allclose(to_unit_range(mono1), 1.0 - to_unit_range(mono2))


def test_window_centre_width_clips(tmp_path, write_dicom):
    pixels = np.array([[0, 100, 200], [300, 400, 4000]], np.uint16)
    path = write_dicom(tmp_path / "w.dcm", pixels, WindowCenter="200", WindowWidth="201")
    out = read_image(path)
    np.testing.assert_allclose(out, reference(path))
    assert out[0, 0] == out.min() and out[1, 2] == out.max() and out[1, 1] == out[1, 2]  # clipped


def test_voi_lut_sequence_preferred_over_window(tmp_path, write_dicom):
    lut = Dataset()
    lut.LUTDescriptor = [4, 0, 16]  # 4 entries, first input value 0, 16-bit output
    lut.LUTData = np.array([0, 1000, 3000, 9000], "<u2").tobytes()
    pixels = np.array([[0, 1], [2, 3]], np.uint16)
    path = write_dicom(tmp_path / "v.dcm", pixels, VOILUTSequence=[lut], WindowCenter="1", WindowWidth="2")
    np.testing.assert_array_equal(read_image(path), [[0, 1000], [3000, 9000]])


def test_roi_crop_and_box_outside(tmp_path, write_dicom):
    pixels = np.arange(30, dtype=np.uint16).reshape(5, 6)
    path = write_dicom(tmp_path / "roi.dcm", pixels)
    np.testing.assert_array_equal(read_image(path, roi=(1, 2, 3, 2)), pixels[2:4, 1:4])
    with pytest.raises(OsteoInputError, match="does not lie inside"):
        read_image(path, roi=(4, 0, 3, 2))


def test_multi_frame_refused(tmp_path, write_dicom):
    meta_path = write_dicom(tmp_path / "two.dcm", np.zeros((2, 3, 4), np.uint16))
    with pytest.raises(OsteoInputError, match="2 frames"):
        image_size(meta_path)


def test_dicom_by_marker_without_suffix_and_in_a_manifest(tmp_path, write_dicom):
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8) * 100
    write_dicom(tmp_path / "scan_0001", pixels)  # PACS exports often have no suffix
    write_dicom(tmp_path / "scan_0002.dcm", pixels[::-1].copy())
    (tmp_path / "m.csv").write_text(
        "image,patient_id,age,sex,bmi,t_score,roi_x,roi_y,roi_w,roi_h\n"
        "scan_0001,P1,70,F,22,-3,0,0,4,4\nscan_0002.dcm,P2,60,M,25,-1,,,,\n"
    )
    cohort = read_manifest(tmp_path / "m.csv", ManifestConfig(min_image_size=4))  # 8×8 px scans, a 4×4 box
    assert len(cohort) == 2
    np.testing.assert_array_equal(read_image(cohort["image"][0], (0, 0, 4, 4)), pixels[:4, :4])


def test_pydicom_missing_is_a_clear_error(tmp_path, monkeypatch, write_dicom):
    path = write_dicom(tmp_path / "a.dcm", np.zeros((2, 2), np.uint16))
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom → ImportError
    with pytest.raises(OsteoInputError, match=r"needs pydicom.*pip install"):
        read_image(path)
