"""--deterministic: two CPU runs with the same seed give identical split files and metrics."""

from __future__ import annotations

import json

import pytest

from osteo_tf.cli import main


@pytest.fixture(autouse=True)
def restore_op_determinism():
    """--deterministic switches TensorFlow's op determinism on process-wide; undo it for the
    tests that follow in this process."""
    yield
    from tensorflow.python.framework import config

    config.disable_op_determinism()


@pytest.fixture(scope="module")
def phantom(phantom_cohort):
    return phantom_cohort("hip", 40, seed=11, image_size=32)


def test_two_seeded_runs_are_identical(phantom, tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        assert (
            main(
                [
                    "train",
                    "--manifest",
                    str(phantom),
                    "--out",
                    str(run),
                    "--backbone",
                    "resnet18",
                    "--mode",
                    "ensemble",
                    "--image-size",
                    "32",
                    "--epochs",
                    "1",
                    "--batch-size",
                    "8",
                    "--learning-rate",
                    "0.01",
                    "--seed",
                    "5",
                    "--deterministic",
                    "--verbose",
                    "0",
                ]
            )
            == 0
        )
    a, b = runs
    assert (a / "splits.csv").read_bytes() == (b / "splits.csv").read_bytes()
    assert json.loads((a / "metrics.json").read_text()) == json.loads((b / "metrics.json").read_text())
    assert (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes()
    assert (a / "history.csv").read_bytes() == (b / "history.csv").read_bytes()
    assert json.loads((a / "config.json").read_text())["train"]["deterministic"] is True
    from tensorflow.python.framework import config

    assert config.is_op_determinism_enabled()
