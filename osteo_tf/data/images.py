"""Radiograph file decoding (PNG / TIFF, 8 or 16 bit, DICOM) into 2-D float32 arrays.

Pure Pillow + NumPy so that it imports fast and can be shared by the manifest checks and
the tf.data pipeline. Pixel values stay in the file's native range (0–255 for 8 bit,
0–65535 for 16 bit, as stored for 32-bit integer / float TIFFs): nothing is truncated to
8 bits. DICOM files (by the ``.dcm`` / ``.dicom`` suffix or the Part-10 ``DICM`` marker)
go through :mod:`osteo_tf.data.dicom` (modality and VOI transforms, MONOCHROME1 inversion;
needs the optional ``pydicom``).

Scaling to the network's range is a separate, explicit step, configured by an
:class:`Intensity` (``"minmax"`` or ``"percentile:LOW,HIGH"``, see :func:`parse_intensity`)
and computed by :func:`osteo_tf.data.pipeline.normalize_intensity`, the one function the
training, evaluation and serving graphs share. :func:`to_unit_range` is the NumPy min–max.

Every problem with a user's file raises :class:`osteo_tf.errors.OsteoInputError` naming the
file.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from osteo_tf.data.roi import Roi, check_roi
from osteo_tf.errors import OsteoInputError
from osteo_tf.vocabulary import LUMA, MIN_IMAGE_SIZE

__all__ = [
    "MIN_IMAGE_SIZE",
    "SUPPORTED_FORMATS",
    "Intensity",
    "check_roi",
    "image_size",
    "is_dicom",
    "normalize_pixels",
    "parse_intensity",
    "read_image",
    "to_unit_range",
    "verify_image",
]

#: Pillow format names accepted (the data contract: PNG and TIFF; DICOM via pydicom).
SUPPORTED_FORMATS: tuple[str, ...] = ("PNG", "TIFF")

_DICOM_SUFFIXES = (".dcm", ".dicom")
# Modes whose pixels NumPy can take as they are (one band, native range).
_SINGLE_BAND = {"1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_FIX_HINT = "re-export it as an 8- or 16-bit grayscale PNG or TIFF, or as DICOM"


@dataclass(frozen=True)
class Intensity:
    """Per-image intensity normalisation to [0, 255], applied after decoding and ROI crop.

    ``minmax``: ``(x − min) / (max − min)`` over the image. ``percentile``: the window
    ``[P_low, P_high]`` of the image's own pixel values (NumPy's default linear
    interpolation), values outside clipped — robust to a few burnt-out or dead pixels,
    labels and collimator edges. A constant image becomes 0; a percentile window that
    collapses (``P_low == P_high``) falls back to min–max. Written ``"minmax"`` or
    ``"percentile:1,99"`` (:func:`parse_intensity`, ``str``).
    """

    method: str = "minmax"
    low: float = 0.0
    high: float = 100.0

    def __str__(self) -> str:
        return "minmax" if self.method == "minmax" else f"percentile:{self.low:g},{self.high:g}"


def parse_intensity(value: str | Intensity | None) -> Intensity:
    """``"minmax"`` (default), ``"percentile"`` (= ``percentile:1,99``) or ``"percentile:LOW,HIGH"``.

    Raises:
        OsteoInputError: anything else, or percentiles not ``0 ≤ LOW < HIGH ≤ 100``.
    """
    if isinstance(value, Intensity):
        return value
    text = "minmax" if value is None else str(value).strip().lower()
    if text in ("minmax", "min-max", "min_max"):
        return Intensity()
    method, _, args = text.partition(":")
    if method == "percentile":
        try:
            low, high = (float(v) for v in (args or "1,99").split(","))
        except ValueError:
            low = high = math.nan
        if math.isfinite(low) and math.isfinite(high) and 0.0 <= low < high <= 100.0:
            return Intensity("percentile", low, high)
    raise OsteoInputError(
        f"intensity normalisation {value!r} is not valid: use 'minmax' or 'percentile:LOW,HIGH' "
        "with 0 <= LOW < HIGH <= 100, e.g. 'percentile:1,99'"
    )


def is_dicom(path: str | os.PathLike[str]) -> bool:
    """True for a ``.dcm`` / ``.dicom`` name or a file with the DICOM Part-10 ``DICM`` marker."""
    p = Path(path)
    return p.suffix.lower() in _DICOM_SUFFIXES or (p.is_file() and _has_dicom_magic(p))


def read_image(path: str | os.PathLike[str], roi: Roi | None = None) -> np.ndarray:
    """Decode a PNG, TIFF or DICOM radiograph into a 2-D float32 array (height, width).

    Grayscale images keep their native pixel values (16-bit stays 16-bit: 1000 and 1001
    remain distinct). RGB / RGBA / palette images become grayscale by BT.601 luminance
    (0.299 R + 0.587 G + 0.114 B, alpha ignored); a bilevel image gives 0/1. DICOM: see
    :func:`osteo_tf.data.dicom.read_dicom`.

    Args:
        path: the image file.
        roi: optional crop box ``(x, y, w, h)`` in pixels, origin top-left; it must lie
            wholly inside the image.

    Raises:
        OsteoInputError: file missing, unreadable, corrupt or truncated (the whole file is
            decoded), an unsupported format, or a ROI outside the image.
    """
    if _dicom_file(path):
        from osteo_tf.data.dicom import read_dicom

        return read_dicom(path, roi)
    with _open_decoded(path) as img:
        if roi is not None:
            check_roi(path, roi, img.size)
            x, y, w, h = (int(v) for v in roi)
            img = img.crop((x, y, x + w, y + h))
        return _to_gray(path, img)


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Return ``(width, height)`` in pixels from the file header only (cheap, no decode).

    Raises:
        OsteoInputError: file missing or not a supported image.
    """
    if _dicom_file(path):
        from osteo_tf.data.dicom import dicom_size

        return dicom_size(path)
    with _open_checked(path) as img:
        return img.size


def verify_image(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Decode the whole file (as :func:`read_image` would) and return ``(width, height)``.

    Used by the manifest checks to catch corrupt or truncated files up front without
    keeping the pixels.

    Raises:
        OsteoInputError: as :func:`read_image`.
    """
    if _dicom_file(path):
        pixels = read_image(path)
        return pixels.shape[1], pixels.shape[0]
    with _open_decoded(path) as img:
        if img.mode == "F":
            _to_gray(path, img)  # float TIFFs: reject NaN / inf pixels now
        return img.size


def to_unit_range(array: np.ndarray) -> np.ndarray:
    """Per-image min–max normalisation to float32 in [0, 1].

    ``(a - min) / (max - min)`` over the whole array, so the darkest pixel becomes 0 and the
    brightest 1 whatever the bit depth. A constant image (max == min) becomes all zeros;
    an empty array stays empty.

    Raises:
        ValueError: the array holds NaN or infinity (a programming error:
            :func:`read_image` never returns such values).
    """
    a = np.asarray(array, dtype=np.float64)
    if a.size == 0:
        return a.astype(np.float32)
    if not np.isfinite(a).all():
        raise ValueError("to_unit_range: array contains NaN or infinite values")
    lo, hi = a.min(), a.max()
    if hi == lo:
        return np.zeros(a.shape, dtype=np.float32)
    # Computed in float64 so 16-bit and 32-bit inputs keep their steps before the cast.
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- internals


@contextlib.contextmanager
def _open_checked(path: str | os.PathLike[str]) -> Iterator[Image.Image]:
    """Open ``path`` with Pillow (header only) after the existence / format checks."""
    p = _existing_file(path)
    try:
        img = Image.open(p)
    except Image.DecompressionBombError as exc:
        raise OsteoInputError(f"image {p} is too large to decode safely: {exc}") from exc
    # Pillow raises many exception types on hostile or damaged headers (OSError,
    # SyntaxError, struct.error, ...); all of them mean "this file is not a usable image".
    except Exception as exc:
        raise OsteoInputError(
            f"cannot read image {p}: not a PNG or TIFF file Pillow recognises "
            f"({type(exc).__name__}: {exc}); {_FIX_HINT}"
        ) from exc
    with img:
        _check_header(p, img)
        yield img


@contextlib.contextmanager
def _open_decoded(path: str | os.PathLike[str]) -> Iterator[Image.Image]:
    """As :func:`_open_checked`, with the pixel data fully decoded (``.load()``); a PNG's
    chunk checksums are verified through its last data chunk, so a truncated copy whose
    pixels happen to decode is still refused."""
    with _open_checked(path) as img:
        p = Path(path)
        try:
            if img.format == "PNG":
                with Image.open(p) as whole:
                    whole.verify()
            img.load()
        except Image.DecompressionBombError as exc:
            raise OsteoInputError(f"image {p} is too large to decode safely: {exc}") from exc
        except Exception as exc:  # any decoder failure = corrupt data (see _open_checked)
            raise OsteoInputError(
                f"cannot decode image {p}: the file is corrupt or truncated "
                f"({type(exc).__name__}: {exc}); re-export or re-copy it"
            ) from exc
        yield img


def _dicom_file(path: str | os.PathLike[str]) -> bool:
    """Existing-file checks, then: is it DICOM (by name or marker)?"""
    p = _existing_file(path)
    return p.suffix.lower() in _DICOM_SUFFIXES or _has_dicom_magic(p)


def _existing_file(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path if it is an existing regular file."""
    p = Path(path)
    try:
        exists, is_dir = p.exists(), p.is_dir()
    except (OSError, ValueError) as exc:  # e.g. NUL byte or name too long
        raise OsteoInputError(f"cannot use {str(p)!r} as an image path: {exc}") from exc
    if is_dir:
        raise OsteoInputError(f"image path is a folder, not a file: {p}")
    if not exists:
        raise OsteoInputError(f"image file not found: {p}")
    return p


def _has_dicom_magic(p: Path) -> bool:
    """True if the file carries the DICOM Part-10 marker ("DICM" at byte 128)."""
    try:
        with open(p, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError as exc:
        raise OsteoInputError(f"cannot open image {p}: {exc}") from exc


def _check_header(p: Path, img: Image.Image) -> None:
    """Reject formats, multi-frame files and 16-bit colour that we cannot read faithfully."""
    if img.format not in SUPPORTED_FORMATS:
        raise OsteoInputError(
            f"image {p} is {img.format or 'an unknown format'}; only "
            f"{', '.join(SUPPORTED_FORMATS)} and DICOM are supported: {_FIX_HINT}"
        )
    if getattr(img, "n_frames", 1) != 1:
        raise OsteoInputError(
            f"image {p} holds {img.n_frames} frames/pages; save each radiograph as its own single-page file"
        )
    if img.mode not in _SINGLE_BAND and any("16" in _rawmode(t.args) for t in img.tile):
        # Pillow has no 16-bit colour mode: it would silently drop to 8 bits per channel.
        raise OsteoInputError(
            f"image {p} is 16-bit colour ({img.mode}), which cannot be read without losing "
            f"precision; {_FIX_HINT} (16-bit grayscale keeps full precision)"
        )


def _rawmode(args: object) -> str:
    """The raw (file) pixel layout of a Pillow tile, e.g. ``'RGB;16B'``."""
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return ""


def normalize_pixels(images, normalization: tuple[tuple[float, ...], tuple[float, ...]] | None):
    """``(images − mean) / std`` per channel, or ``images`` unchanged when ``normalization`` is None.

    Args:
        images: (…, 3) float32 in [0, 255] — a NumPy array or any backend's tensor (plain
            arithmetic, so the tf.data pipeline, the serving graph and Keras share it).
        normalization: (mean, std), three values each in [0, 255] units (a backbone's
            ``BackboneSpec.normalization``), or None.

    Returns:
        The normalised images, same shape.
    """
    if normalization is None:
        return images
    mean, std = (np.asarray(v, dtype=np.float32) for v in normalization)
    return (images - mean) / std


def _to_gray(p: str | os.PathLike[str], img: Image.Image) -> np.ndarray:
    """Convert a decoded Pillow image to a 2-D float32 array in its native range."""
    if img.mode in _SINGLE_BAND:
        out = np.asarray(img).astype(np.float32)
    elif img.mode in ("LA", "La"):
        out = np.asarray(img.getchannel(0)).astype(np.float32)
    else:
        if img.mode not in ("RGB", "RGBA", "RGBa", "RGBX"):
            img = img.convert("RGBA" if img.mode in ("P", "PA") else "RGB")
        rgb = np.asarray(img)[..., :3].astype(np.float64)
        out = (rgb @ np.asarray(LUMA, dtype=np.float64)).astype(np.float32)
    if out.ndim != 2:  # defensive: a mode Pillow gives us in an unexpected shape
        raise OsteoInputError(f"image {p}: unsupported pixel layout {img.mode!r}; {_FIX_HINT}")
    if not np.isfinite(out).all():
        raise OsteoInputError(f"image {p} contains NaN or infinite pixel values; fix or re-export it")
    return out
