"""``osteo weights fetch`` on a machine whose downloads are served from local caches, then offline use."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import backbone_outputs

from osteo_tf.cli import main
from osteo_tf.errors import OsteoInputError
from osteo_tf.models import build_backbone
from osteo_tf.models.weight_fetch import fetch_weights

SIZE = 32
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"  # the commit a Hugging Face cache names a snapshot by

# The random test file's MD5 stands in for the hash keras.applications publishes for its download.
FETCH = """
import hashlib, sys
import keras.src.applications.efficientnet as efficientnet
md5 = hashlib.md5(open(sys.argv[1], "rb").read()).hexdigest()
efficientnet.WEIGHTS_HASHES["b0"] = (md5, md5)
from osteo_tf.models import build_backbone
build_backbone("resnet18", 32, weights="imagenet")  # the README's HF_HUB_OFFLINE route
from osteo_tf.cli import main
sys.exit(main(["weights", "fetch", "--backbone", "resnet18", "efficientnet_b0", "--out", sys.argv[2]]))
"""


@pytest.fixture(scope="module")
def fetched(published_weights, tmp_path_factory):
    """A folder written by ``osteo weights fetch`` with the network replaced by local caches:
    the timm snapshot in a Hugging Face cache (HF_HUB_OFFLINE=1) and keras-applications' file in
    the Keras cache. Returns (folder, stdout)."""
    root = tmp_path_factory.mktemp("fetch")
    hub = root / "hf" / "hub" / "models--timm--resnet18.tv_in1k"
    shutil.copytree(published_weights("timm", "resnet18"), hub / "snapshots" / SNAPSHOT)
    (hub / "refs").mkdir()
    (hub / "refs" / "main").write_text(SNAPSHOT)
    notop = published_weights("keras-applications", "efficientnet_b0")
    (root / "keras" / "models").mkdir(parents=True)
    shutil.copy(notop, root / "keras" / "models" / notop.name)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(root / "hf"), "KERAS_HOME": str(root / "keras")}
    done = subprocess.run(
        [sys.executable, "-c", FETCH, str(notop), str(root / "weights")],
        capture_output=True,
        text=True,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return root / "weights", done.stdout


def test_fetched_folder_loads_offline_into_the_same_networks(fetched, published_weights):
    folder, stdout = fetched
    assert "resnet18: written" in stdout and "efficientnet_b0: written" in stdout
    assert f"--weights {folder}" in stdout
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, source in [("resnet18", published_weights("timm", "resnet18")), ("efficientnet_b0", None)]:
        entry = manifest["backbones"][name]
        assert hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
        assert entry["check_max_abs_diff"] <= 1e-5
        source = source or published_weights("keras-applications", name)
        ours, reference = build_backbone(name, SIZE, weights=folder), build_backbone(name, SIZE, weights=source)
        assert [type(layer).__name__ for layer in ours.layers] == [type(layer).__name__ for layer in reference.layers]
        np.testing.assert_allclose(backbone_outputs(ours, SIZE), backbone_outputs(reference, SIZE), atol=1e-5, rtol=0)
    assert manifest["backbones"]["efficientnet_b0"]["input_scaling"] == "keras-applications-imagenet"
    single = build_backbone("efficientnet_b0", SIZE, weights=folder / "efficientnet_b0.weights.h5")  # copied alone
    assert [type(layer).__name__ for layer in single.layers][1:4] == ["Rescaling", "Normalization", "Rescaling"]


def test_a_second_fetch_keeps_files_that_match_their_checksum(fetched, tmp_path):
    folder = tmp_path / "weights"
    shutil.copytree(fetched[0], folder)
    kept = fetch_weights(["resnet18", "efficientnet_b0"], folder)  # no download: this process has no caches
    assert [r.status for r in kept] == ["kept", "kept"]


def test_damaged_or_missing_weights_are_refused_by_name(fetched, tmp_path, capsys):
    folder = tmp_path / "weights"
    shutil.copytree(fetched[0], folder)
    data = bytearray((folder / "resnet18.weights.h5").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "resnet18.weights.h5").write_bytes(bytes(data))
    with pytest.raises(OsteoInputError, match=r"resnet18\.weights\.h5 does not match its checksum in .*manifest\.json"):
        build_backbone("resnet18", SIZE, weights=folder)
    with pytest.raises(OsteoInputError, match=r"holds no googlenet weights \(it holds: efficientnet_b0, resnet18\)"):
        build_backbone("googlenet", SIZE, weights=folder)
    assert main(["weights", "fetch", "--backbone", "resnet18", "nonsense", "--out", str(tmp_path / "w")]) == 2
    assert "unknown backbone 'nonsense'" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()  # refused before anything was written
