"""``osteo weights fetch``: every backbone's ImageNet weights in one folder to carry offline.

On a machine with internet access, each backbone is built once with ``weights="imagenet"``
(the downloads the online path makes, each checked the way its source allows: keras.applications'
published MD5 by ``keras.utils.get_file``, the Hugging Face Hub's own checks for the timm
snapshots, the SHA-256 prefix torchvision puts in GoogLeNet's file name), saved as this
project's portable form — one Keras ``.weights.h5`` per backbone, tagged with its name and,
for EfficientNet, with keras.applications' ImageNet input scaling — and listed in
``manifest.json`` with its SHA-256, size and source. Loading them needs neither safetensors
nor PyTorch nor a network.

Each file is checked before it is listed: the backbone loaded back from it must give the
downloaded network's outputs (max |difference| ≤ 1e-5 on a fixed random batch, recorded).
Files are written under a temporary name and renamed, and the manifest is rewritten (also
atomically) after each backbone, so a fetch that stops keeps what it finished; a rerun skips
backbones whose file still matches its checksum.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from osteo_tf.errors import OsteoInputError
from osteo_tf.io import write_json
from osteo_tf.models.weight_files import (
    INPUT_SCALING_ATTRIBUTE,
    KERAS_APPLICATIONS_SCALING,
    MANIFEST_NAME,
    file_sha256,
    read_manifest,
)
from osteo_tf.vocabulary import BACKBONES, get_backbone_spec

__all__ = ["CHECK_SIZE", "CHECK_TOLERANCE", "FetchedWeights", "fetch_lines", "fetch_weights"]

#: Image size (px) of the load-back check, and the largest output difference it accepts.
CHECK_SIZE = 64
CHECK_TOLERANCE = 1e-5


@dataclass(frozen=True)
class FetchedWeights:
    """One backbone of a fetch: its file, checksum, and whether it was written now or kept."""

    name: str
    path: Path
    sha256: str
    status: str  # "written" or "kept"
    max_abs_diff: float | None


def _outputs(model: keras.Model) -> np.ndarray:
    images = np.random.default_rng(0).uniform(0, 255, (2, CHECK_SIZE, CHECK_SIZE, 3)).astype("float32")
    return keras.ops.convert_to_numpy(model(images, training=False))


def _fetch_one(name: str, folder: Path) -> tuple[Path, float, str]:
    from osteo_tf.models.backbones import build_backbone
    from osteo_tf.models.convert import save_weights

    spec = get_backbone_spec(name)
    source = f"imagenet:{spec.default_weights} ({spec.weights_source})"
    downloaded = build_backbone(name, CHECK_SIZE, weights="imagenet")  # weights do not depend on the size
    target = folder / f"{name}.weights.h5"
    temporary = folder / f".tmp-{os.getpid()}-{target.name}"  # Keras needs the .weights.h5 ending
    try:
        save_weights(downloaded, name, temporary, source=source)  # tagged with the backbone and the source
        if spec.family == "efficientnet":
            import h5py

            with h5py.File(temporary, "a") as handle:
                handle.attrs[INPUT_SCALING_ATTRIBUTE] = KERAS_APPLICATIONS_SCALING
        loaded = build_backbone(name, CHECK_SIZE, weights=temporary)
        difference = float(np.abs(_outputs(loaded) - _outputs(downloaded)).max())
        if not difference <= CHECK_TOLERANCE:
            raise OsteoInputError(
                f"{name}: the weights saved for offline use give outputs {difference:.2g} away from the downloaded "
                f"network's (tolerance {CHECK_TOLERANCE:g}); nothing was written"
            )
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target, difference, source


def fetch_weights(backbones: Sequence[str], out: str | Path, *, force: bool = False) -> list[FetchedWeights]:
    """Downloads each backbone's default ImageNet weights into ``out`` for offline use.

    Args:
        backbones: registry names, or ``["all"]`` for every backbone.
        out: the folder to write (created); ``--weights OUT`` then loads any backbone it holds.
        force: download again even when a backbone's file matches its checksum.

    Returns:
        One :class:`FetchedWeights` per backbone, in the order given.

    Raises:
        OsteoInputError: an unknown backbone name (before anything is downloaded), a download
            or source check that fails, or a saved file that does not load back equal.
    """
    names = list(BACKBONES) if list(backbones) == ["all"] else list(dict.fromkeys(backbones))
    if not names:
        raise OsteoInputError("name at least one backbone to fetch (or all)", parameter="backbone")
    for name in names:
        get_backbone_spec(name)
    folder = Path(out)
    manifest = read_manifest(folder)
    results = []
    for name in names:
        entry = manifest["backbones"].get(name)
        path = folder / f"{name}.weights.h5"
        if entry and not force and path.is_file() and file_sha256(path) == entry["sha256"]:
            results.append(FetchedWeights(name, path, entry["sha256"], "kept", entry.get("check_max_abs_diff")))
            continue
        path, difference, source = _fetch_one(name, folder)
        digest = file_sha256(path)
        manifest["backbones"][name] = {
            "file": path.name,
            "sha256": digest,
            "bytes": path.stat().st_size,
            "source": source,
            "input_scaling": KERAS_APPLICATIONS_SCALING if get_backbone_spec(name).family == "efficientnet" else None,
            "check_max_abs_diff": difference,
            "keras": keras.__version__,
            "fetched": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        write_json(folder / MANIFEST_NAME, manifest)
        results.append(FetchedWeights(name, path, digest, "written", difference))
    return results


def fetch_lines(results: Sequence[FetchedWeights], out: str | Path) -> list[str]:
    """What ``osteo weights fetch`` prints: one line per backbone, then how to use the folder."""
    lines = [
        f"{r.name}: {r.status} {r.path} (SHA-256 {r.sha256[:12]}…"
        + (f", load-back check max |diff| {r.max_abs_diff:.1g})" if r.max_abs_diff is not None else ")")
        for r in results
    ]
    lines.append(f"copy {out} to the offline machine and train with: --weights {out}")
    return lines
