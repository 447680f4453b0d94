"""Fixtures shared by the test folders."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def phantom_cohort(tmp_path_factory):
    """``make(kind="hip", n=40, *, seed=…, image_size=32, **options) → manifest path``: the synthetic
    cohort ``make_cohort(kind, n, folder, seed=seed, image_size=image_size, **options)``, made once
    per distinct argument set (make_cohort's defaults filled in, so ``seed`` omitted and
    ``seed=0`` are one cohort) and shared for the session. Read-only: a test that writes into
    the cohort's folder or edits its manifest calls make_cohort itself, in a folder of its own."""
    from osteo_tf.data.synthetic import make_cohort

    signature = inspect.signature(make_cohort)
    made: dict[str, Path] = {}

    def make(kind: str = "hip", n: int = 40, *, image_size: int = 32, **options) -> Path:
        bound = signature.bind(kind, n, None, image_size=image_size, **options)
        bound.apply_defaults()
        key = repr(sorted((name, value) for name, value in bound.arguments.items() if name != "out_dir"))
        if key not in made:
            bound.arguments["out_dir"] = tmp_path_factory.mktemp(f"phantom_{kind}_{n}_")
            made[key] = make_cohort(*bound.args, **bound.kwargs)
        return made[key]

    return make


def _write_dicom(
    path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None, **elements
) -> Path:
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
