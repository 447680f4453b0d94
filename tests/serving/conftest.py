"""One tiny trained and exported run (hip phantom, 80 images of 32 px, ensemble, 1 epoch) for the serving tests."""

import pytest

from osteo_tf.cli import main
from osteo_tf.evaluation.threshold import select_threshold
from osteo_tf.training.train import train


@pytest.fixture(scope="session")
def exported(tmp_path_factory, phantom_cohort):
    root = tmp_path_factory.mktemp("deploy")
    manifest = phantom_cohort("hip", 80, seed=1, image_size=32)
    run = train(
        manifest,
        root / "run",
        backbone="resnet18",
        mode="ensemble",
        image_size=32,
        epochs=1,
        batch_size=16,
        learning_rate=0.01,
        verbose=0,
    )
    record = select_threshold(run.path, "youden")
    assert main(["export", "--run", str(run.path), "--root", str(root / "saved_models"), "--version", "1"]) == 0
    return {
        "root": root,
        "manifest": manifest,
        "run": run,
        "model": root / "saved_models" / "osteo" / "1",
        "threshold": record["threshold"],
    }
