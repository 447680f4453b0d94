"""Fixtures shared by the test folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
                 **elements) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.set_pixel_data(pixels, photometric, bits_stored or pixels.dtype.itemsize * 8)
    for name, value in elements.items():
        setattr(ds, name, value)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


@pytest.fixture
def write_dicom():
    """``write_dicom(path, pixels, photometric="MONOCHROME2", bits_stored=None, **elements) → path``:
    a minimal single-frame Part-10 DICOM file (Explicit VR Little Endian) holding ``pixels``, with
    any data elements given (``RescaleSlope=…``, ``WindowCenter=…``). Skips without pydicom."""
    pytest.importorskip("pydicom", reason="DICOM support needs the optional pydicom (it is in '.[dev]')")
    return _write_dicom
