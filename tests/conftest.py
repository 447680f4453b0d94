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


def _randomized(model, seed: int):
    """``model`` with every weight drawn at random, returned: kernels He-scaled, then each
    BatchNorm's moving mean and variance set to its input's statistics on a random batch (layer
    by layer, in order), so that the outputs still depend on the input — a check that two loaders
    agree means something only then (plain random statistics let the signal die out)."""
    import keras

    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape, path = tuple(variable.shape), variable.path
        if path.endswith("count"):
            continue
        if "variance" in path or "gamma" in path:
            value = rng.uniform(0.7, 1.3, shape)
        elif len(shape) >= 2:
            fan_in = shape[0] * shape[1] if "depthwise" in path else int(np.prod(shape[:-1]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        else:
            value = rng.normal(0.0, 0.1, shape)
        variable.assign(value.astype(variable.dtype))
    size = model.input.shape[1] or 32
    images = rng.uniform(0, 255, (4, size, size, 3)).astype("float32")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            inputs = keras.ops.convert_to_numpy(keras.Model(model.input, layer.input)(images))
            layer.moving_mean.assign(inputs.mean(axis=(0, 1, 2)))
            layer.moving_variance.assign(inputs.var(axis=(0, 1, 2)) + 1e-3)
    return model


@pytest.fixture(scope="session")
def published_weights(tmp_path_factory):
    """``make(kind, name) → path``: weights in a source's exact published layout, random values, made
    once per session. kinds: ``timm`` (the Hugging Face snapshot folder of timm/NAME.tv_in1k:
    timm's config.json + model.safetensors with torchvision's keys, fc and num_batches_tracked
    included), ``keras-hub`` (the same weights through keras-hub's ``save_to_preset``),
    ``keras-applications`` / ``keras-applications-top`` (efficientnetbN_notop.h5 / efficientnetbN.h5,
    the legacy HDF5 layout: ``layer_names`` and per-layer ``weight_names``)."""
    import json

    made: dict[tuple[str, str], Path] = {}

    def timm(name: str, folder: Path) -> Path:
        from safetensors.numpy import save_file

        from osteo_tf.models import build_backbone
        from osteo_tf.models.convert import export_state_dict
        from osteo_tf.vocabulary import get_backbone_spec

        model = _randomized(build_backbone(name, 32), seed=len(name))
        state = export_state_dict(name, model)
        channels = get_backbone_spec(name).feature_channels
        rng = np.random.default_rng(1)
        state["fc.weight"] = rng.normal(0, 0.01, (1000, channels)).astype(np.float32)
        state["fc.bias"] = np.zeros(1000, np.float32)
        for key in [k for k in state if k.endswith(".running_var")]:
            state[key.replace(".running_var", ".num_batches_tracked")] = np.array(0, np.int64)
        save_file(
            {k: np.ascontiguousarray(v) for k, v in state.items()}, str(folder / "model.safetensors"), {"format": "pt"}
        )
        config = {
            "architecture": name,
            "num_classes": 1000,
            "num_features": channels,
            "global_pool": "avg",
            "pretrained_cfg": {
                "tag": "tv_in1k",
                "custom_load": False,
                "input_size": [3, 224, 224],
                "fixed_input_size": False,
                "interpolation": "bilinear",
                "crop_pct": 0.875,
                "crop_mode": "center",
                "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225],
                "num_classes": 1000,
                "pool_size": [7, 7],
                "first_conv": "conv1",
                "classifier": "fc",
                "origin_url": "https://github.com/pytorch/vision",
                "license": "bsd-3-clause",
            },
        }
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        return folder

    def keras_hub_preset(name: str, folder: Path) -> Path:
        import keras_hub

        backbone = keras_hub.models.ResNetBackbone.from_preset(str(make("timm", name)))
        backbone.save_to_preset(str(folder))
        return folder

    def keras_applications(name: str, folder: Path, top: bool) -> Path:
        import h5py
        import keras
        from keras.src.legacy.saving import legacy_h5_format

        variant = name.rpartition("_")[2]
        constructor = getattr(keras.applications, f"EfficientNet{variant.upper()}")
        model = _randomized(constructor(include_top=top, weights=None, input_shape=(32, 32, 3)), seed=3)
        path = folder / f"efficientnet{variant}{'' if top else '_notop'}.h5"
        with h5py.File(path, "w") as handle:
            legacy_h5_format.save_weights_to_hdf5_group(handle, model)
        return path

    def make(kind: str, name: str) -> Path:
        if (kind, name) not in made:
            folder = tmp_path_factory.mktemp(f"published_{kind}_{name}_")
            if kind == "timm":
                made[kind, name] = timm(name, folder)
            elif kind == "keras-hub":
                made[kind, name] = keras_hub_preset(name, folder)
            else:
                made[kind, name] = keras_applications(name, folder, top=kind.endswith("-top"))
        return made[kind, name]

    return make


@pytest.fixture(scope="session")
def whole_hip(tmp_path_factory):
    """A read-only whole-view hip phantom: 60 subjects, 128 px wide (``make_whole_cohort``, seed 3);
    ``manifest``, ``annotated`` (its first 40 rows) and ``heldout`` (the last 20) CSV paths."""
    import pandas as pd

    from osteo_tf.data.whole import make_whole_cohort

    folder = tmp_path_factory.mktemp("whole_hip")
    manifest = make_whole_cohort("hip", 60, folder, seed=3, image_size=128)
    table = pd.read_csv(manifest)
    table.iloc[:40].to_csv(folder / "annotated.csv", index=False)
    table.iloc[40:].to_csv(folder / "heldout.csv", index=False)
    return {"manifest": manifest, "annotated": folder / "annotated.csv", "heldout": folder / "heldout.csv"}


@pytest.fixture(scope="session")
def roi_run(whole_hip, tmp_path_factory):
    """A finished ROI detector run (read-only) trained on ``whole_hip``'s 40 annotated images at a
    64 × 64 px input for 80 epochs (~50 s on 2 cores): median landmark error ~2.5 % of the width, every
    held-out box IoU ≥ 0.5 (measured), so tests can check its output against the ground truth."""
    from osteo_tf.training.roi import train_roi

    run = tmp_path_factory.mktemp("roi_run") / "run"
    train_roi(
        whole_hip["annotated"], "hip", run, input_size=(64, 64), epochs=80, learning_rate=5e-3, log=lambda line: None
    )
    return run
