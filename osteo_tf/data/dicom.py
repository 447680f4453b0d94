"""DICOM radiographs → 2-D float32 arrays, as a PACS exports them (needs ``pydicom``).

``pydicom`` is an optional extra (``pip install "osteo_tf[dicom]"``), imported only when a
DICOM file is met. Per file, in the order the DICOM standard's grayscale pipeline applies
them:

1. decode the stored values (8–16 bit, signed or unsigned, any byte order; compressed
   transfer syntaxes when one of pydicom's installed decoders handles them — otherwise a
   clear error naming the transfer syntax and the package to install);
2. the modality transform: *Rescale Slope / Intercept* or a *Modality LUT Sequence*;
3. the VOI transform when the file has one: a *VOI LUT Sequence* (preferred) or
   *Window Center / Width* (its first view, with the file's *VOI LUT Function*);
4. ``MONOCHROME1`` (bright = low values) is inverted to ``MONOCHROME2``:
   ``out = min + max − out``, so the value range stays the same;
5. optional ROI crop.

The result keeps its full precision (float32 of the transformed values); scaling to the
network's range is the pipeline's per-image intensity normalisation, as for PNG / TIFF.
RGB / YBR files become grayscale by BT.601 luma, as PNGs do. Multi-frame files, palette
colour and files without pixel data are refused with a message naming the file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from osteo_tf.data.roi import Roi, check_roi
from osteo_tf.errors import OsteoInputError
from osteo_tf.optional import optional_import
from osteo_tf.vocabulary import LUMA

__all__ = ["dicom_size", "read_dicom", "require_pydicom"]

_GRAY = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420")
#: Transfer syntax UID prefix → what to install so that pydicom can decode it.
_DECODER_PACKAGES = (
    ("1.2.840.10008.1.2.4.8", "pip install pylibjpeg pylibjpeg-libjpeg  (JPEG-LS; or pyjpegls, or python-gdcm)"),
    ("1.2.840.10008.1.2.4.9", "pip install pylibjpeg pylibjpeg-openjpeg  (JPEG 2000; or python-gdcm)"),
    ("1.2.840.10008.1.2.4.20", "pip install pylibjpeg pylibjpeg-openjpeg  (HTJ2K)"),
    ("1.2.840.10008.1.2.4.", "pip install pylibjpeg pylibjpeg-libjpeg  (JPEG; or python-gdcm)"),
)


def require_pydicom() -> Any:
    """Import and return ``pydicom``, or raise OsteoInputError saying how to install it."""
    return optional_import("pydicom", purpose="reading DICOM files")


def dicom_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` in pixels from the DICOM header only (no pixel decoding)."""
    ds = _read(Path(path), header_only=True)
    return _size(Path(path), ds)


def read_dicom(path: str | os.PathLike[str], roi: Roi | None = None) -> np.ndarray:
    """Decode one DICOM radiograph into a 2-D float32 array (height, width); see the module
    docstring for the transforms applied.

    Raises:
        OsteoInputError: pydicom missing, not a DICOM Part-10 file, no pixel data, several
            frames, palette colour, a compressed transfer syntax no installed decoder
            reads, corrupt or truncated pixel data, NaN/inf values, or a ROI outside.
    """
    p = Path(path)
    ds = _read(p, header_only=False)
    width, height = _size(p, ds)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric not in _GRAY + _COLOUR:
        raise OsteoInputError(
            f"DICOM {p}: photometric interpretation {photometric!r} is not supported (only MONOCHROME1, "
            "MONOCHROME2 and RGB/YBR); export the radiograph as grayscale"
        )
    if roi is not None:
        check_roi(p, roi, (width, height))
    pixels = _pixels(p, ds)
    if photometric in _GRAY:
        out = _grayscale_pipeline(p, ds, pixels, photometric)
    else:
        if pixels.ndim != 3 or pixels.shape[-1] < 3:
            raise OsteoInputError(f"DICOM {p}: {photometric} pixel data of unexpected shape {pixels.shape}")
        out = pixels[..., :3].astype(np.float64) @ np.asarray(LUMA, dtype=np.float64)
    if out.ndim != 2:
        raise OsteoInputError(f"DICOM {p}: pixel data of shape {out.shape}, expected one 2-D frame")
    if roi is not None:
        x, y, w, h = (int(v) for v in roi)
        out = out[y : y + h, x : x + w]
    out = np.ascontiguousarray(out, dtype=np.float32)
    if not np.isfinite(out).all():
        raise OsteoInputError(f"DICOM {p} contains NaN or infinite pixel values; fix or re-export it")
    return out


# --------------------------------------------------------------------------- internals


def _read(p: Path, header_only: bool) -> Any:
    """``pydicom.dcmread`` with every failure turned into an OsteoInputError naming ``p``."""
    pydicom = require_pydicom()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns on many harmless header quirks
            ds = pydicom.dcmread(p, stop_before_pixels=header_only)
    except pydicom.errors.InvalidDicomError as exc:
        raise OsteoInputError(
            f"{p} is not a DICOM Part-10 file ({exc}); export it from the PACS as a DICOM file "
            "(with the 128-byte preamble and 'DICM' marker)"
        ) from None
    except Exception as exc:  # pydicom raises many types on damaged headers
        raise OsteoInputError(
            f"cannot read DICOM {p}: the file is corrupt or truncated ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if not header_only and "PixelData" not in ds:
        sop = ds.get("SOPClassUID")
        what = f" (SOP class {sop.name})" if sop is not None and hasattr(sop, "name") else ""
        raise OsteoInputError(f"DICOM {p} holds no image pixel data{what}; point the manifest at the radiograph")
    return ds


def _size(p: Path, ds: Any) -> tuple[int, int]:
    try:
        width, height = int(ds.Columns), int(ds.Rows)
    except (AttributeError, TypeError, ValueError):
        raise OsteoInputError(f"DICOM {p} has no valid Rows / Columns: it is not an image") from None
    frames = ds.get("NumberOfFrames", 1)
    try:
        frames = int(frames or 1)
    except (TypeError, ValueError):
        raise OsteoInputError(f"DICOM {p}: invalid Number of Frames {frames!r}") from None
    if frames != 1:
        raise OsteoInputError(f"DICOM {p} holds {frames} frames; save each radiograph as its own single-frame file")
    if width < 1 or height < 1:
        raise OsteoInputError(f"DICOM {p} has an empty image ({width}×{height} px)")
    return width, height


def _transfer_syntax(ds: Any) -> Any:
    meta = getattr(ds, "file_meta", None)
    return None if meta is None else meta.get("TransferSyntaxUID")


def _pixels(p: Path, ds: Any) -> np.ndarray:
    """The decoded stored values; a missing decoder is named with what to install."""
    from pydicom.pixels import get_decoder

    uid = _transfer_syntax(ds)
    name = f"'{uid.name}' ({uid})" if uid is not None else "(no transfer syntax in the file meta)"
    if uid is not None and uid.is_compressed:
        try:
            decoder = get_decoder(uid)
        except NotImplementedError:
            raise OsteoInputError(
                f"DICOM {p}: pixel data use the transfer syntax {name}, which pydicom cannot decode; "
                "re-export the image uncompressed (Explicit VR Little Endian) from the PACS"
            ) from None
        if not decoder.is_available:
            missing = "; ".join(decoder.missing_dependencies)
            raise OsteoInputError(
                f"DICOM {p}: pixel data use the compressed transfer syntax {name}, and no installed "
                f"decoder reads it: {_install_hint(str(uid))} (pydicom's plugins: {missing}); or "
                "re-export the image uncompressed from the PACS"
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ds.pixel_array
    except Exception as exc:  # decoder errors, truncated data, inconsistent header
        raise OsteoInputError(
            f"cannot decode DICOM {p} (transfer syntax {name}): {type(exc).__name__}: {str(exc)[:300]}; "
            "the file is corrupt or truncated, or needs another decoder: re-export or re-copy it"
        ) from None


def _install_hint(uid: str) -> str:
    for prefix, hint in _DECODER_PACKAGES:
        if uid.startswith(prefix):
            return hint
    return "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg  (or python-gdcm)"


def _grayscale_pipeline(p: Path, ds: Any, pixels: np.ndarray, photometric: str) -> np.ndarray:
    """Modality LUT / rescale, then VOI LUT / windowing, then MONOCHROME1 inversion."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = apply_modality_lut(pixels, ds)  # integer stays integer for a VOI LUT lookup
            out = np.asarray(apply_voi_lut(out, ds, prefer_lut=True), dtype=np.float64)
    except Exception as exc:  # malformed LUT descriptors, window values, ...
        raise OsteoInputError(
            f"DICOM {p}: cannot apply its modality / VOI transform ({type(exc).__name__}: {str(exc)[:200]}); "
            "check Rescale Slope/Intercept, Window Center/Width and the LUT sequences"
        ) from None
    if photometric == "MONOCHROME1" and out.size:
        out = (out.min() + out.max()) - out
    return out
