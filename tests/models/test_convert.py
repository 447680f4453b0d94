"""torchvision state_dict → Keras weights: numerically the same network, and a lossless file."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from osteo_tf.cli import main
from osteo_tf.errors import OsteoInputError
from osteo_tf.models.backbones import build_backbone, convert_torchvision
from osteo_tf.models.convert import assign_state_dict, export_state_dict, save_weights

HAS_TORCHVISION = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("torchvision") is not None
needs_torchvision = pytest.mark.skipif(
    not HAS_TORCHVISION, reason="torch + torchvision not installed (optional: pip install 'osteo_tf[torch]')"
)


# Runs in its own process: torchvision's compiled ops crash when loaded after TensorFlow.
TORCHVISION_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, torch, torchvision
    arch, checkpoint, reference, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.manual_seed(0)
    if arch == "googlenet":  # as with its pretrained weights: transform_input on, no aux heads
        model = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=True)
    else:
        model = getattr(torchvision.models, arch)(weights=None)
    # Non-trivial BatchNorm statistics and affines, so a mis-mapped buffer cannot go unnoticed;
    # the statistics come from data, which keeps the logits at unit scale (1e-4 means something).
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None  # cumulative average over the batches below
                module.weight.copy_(torch.rand(module.num_features, generator=generator) * 0.4 + 0.8)
                module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
        model.train()
        for _ in range(2):
            model(torch.randn(8, 3, size, size, generator=generator) + 0.3)
    model.eval()
    torch.save(model.state_dict(), checkpoint)
    batch = np.random.default_rng(2).normal(size=(2, size, size, 3)).astype("float32")  # ImageNet-normalised
    with torch.no_grad():
        logits = model(torch.from_numpy(batch.transpose(0, 3, 1, 2).copy())).numpy()
    np.savez(reference, batch=batch, logits=logits, fc_weight=model.fc.weight.detach().numpy(),
             fc_bias=model.fc.bias.detach().numpy())
""")


def _torchvision_checkpoint(arch: str, folder, size: int = 64) -> tuple:
    """Writes a random torchvision ``arch`` checkpoint; returns its path and the reference arrays."""
    checkpoint, reference = folder / f"{arch}.pth", folder / f"{arch}.npz"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-c", TORCHVISION_SCRIPT, arch, str(checkpoint), str(reference), str(size)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return checkpoint, dict(np.load(reference))


@needs_torchvision
@pytest.mark.parametrize("arch", ["googlenet", "resnet18", "resnet50"])
def test_converted_weights_give_torchvisions_logits(arch, tmp_path):
    checkpoint, reference = _torchvision_checkpoint(arch, tmp_path)
    out = tmp_path / f"{arch}.weights.h5"
    assert main(["weights", "convert", "--arch", arch, str(checkpoint), "--out", str(out)]) == 0

    batch, expected = reference["batch"], reference["logits"]
    backbone = build_backbone(arch, batch.shape[1], weights=out)
    features = keras.layers.GlobalAveragePooling2D()(backbone.output)
    pooled = np.asarray(keras.Model(backbone.input, features).predict(batch, verbose=0))
    logits = pooled @ reference["fc_weight"].T + reference["fc_bias"]
    assert logits.shape == expected.shape == (2, 1000)
    assert np.abs(expected).max() > 0.1  # not a degenerate all-zero comparison
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


@needs_torchvision
def test_convert_names_a_wrong_architecture(tmp_path):
    checkpoint, _ = _torchvision_checkpoint("resnet18", tmp_path, size=32)
    with pytest.raises(
        OsteoInputError,
        match=r"does not match torchvision's resnet34: key 'layer1\.2\.conv1\.weight' "
        r"for Keras layer 'stack0_block2_1_conv'",
    ):
        convert_torchvision("resnet34", checkpoint, tmp_path / "x.weights.h5")
    assert not (tmp_path / "x.weights.h5").exists()
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert (
        main(
            [
                "weights",
                "convert",
                "--arch",
                "resnet18",
                str(tmp_path / "junk.pth"),
                "--out",
                str(tmp_path / "y.weights.h5"),
            ]
        )
        == 2
    )


@pytest.mark.parametrize("arch", ["googlenet", "resnet18"])
def test_state_dict_round_trip_through_a_weights_file(arch, tmp_path):
    # No torch needed: Keras → torch layout → a fresh Keras model → .weights.h5 → loaded again.
    source = build_backbone(arch, 32)
    state_dict = export_state_dict(arch, source)
    assert all(
        value.ndim != 4 or value.shape[2] == value.shape[3] for value in state_dict.values()
    )  # (out, in, kh, kw)
    copy = build_backbone(arch, 32)
    report = assign_state_dict(arch, copy, state_dict)
    assert report.tensors == len(state_dict) and report.left_out == []
    path = save_weights(copy, arch, tmp_path / f"{arch}.weights.h5")
    loaded = build_backbone(arch, 48, weights=path)  # weights do not depend on the input size
    batch = np.random.default_rng(0).normal(size=(2, 48, 48, 3)).astype("float32")
    source_at_48 = build_backbone(arch, 48)
    source_at_48.set_weights(source.get_weights())
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), source_at_48.predict(batch, verbose=0), atol=1e-5)
    with pytest.raises(OsteoInputError, match=f"holds {arch} weights, not resnet34"):
        build_backbone("resnet34", 32, weights=path)


def test_assign_names_missing_and_misshapen_keys():
    model = build_backbone("resnet18", 32)
    state_dict = export_state_dict("resnet18", model)
    del state_dict["layer1.0.conv1.weight"]
    state_dict["bn1.running_var"] = np.ones(3, np.float32)
    with pytest.raises(OsteoInputError) as error:
        assign_state_dict("resnet18", model, state_dict, source="x.pth")
    message = str(error.value)
    assert "'layer1.0.conv1.weight'" in message and "stack0_block0_1_conv" in message
    assert "'bn1.running_var' has shape (3,)" in message and "conv1_bn" in message
