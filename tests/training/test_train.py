"""End to end on a tiny phantom (32 px, 2 epochs): train → run folder → evaluate."""

import json

import numpy as np
import pandas as pd
import pytest

from osteo_tf.data.synthetic import make_cohort
from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.evaluate import evaluate
from osteo_tf.evaluation.metrics import METRIC_NAMES
from osteo_tf.runs.config import TrainConfig
from osteo_tf.training.train import train

TINY = dict(backbone="resnet18", image_size=32, epochs=2, batch_size=16, learning_rate=0.01, verbose=0)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return make_cohort("hip", 120, tmp_path_factory.mktemp("phantom"), seed=1, image_size=32)


@pytest.fixture(scope="module")
def ensemble_run(phantom, tmp_path_factory):
    return train(phantom, tmp_path_factory.mktemp("runs") / "ensemble", mode="ensemble", **TINY)


def test_run_folder_is_complete(ensemble_run):
    for name in (
        "config.json",
        "splits.csv",
        "covariate_encoder.json",
        "history.csv",
        "model.keras",
        "predictions.csv",
        "metrics.json",
        "roc.png",
        "COMPLETE",
        "checkpoints/best.keras",
    ):
        assert (ensemble_run.path / name).is_file(), name
    assert any((ensemble_run.path / "tensorboard").rglob("events.out.tfevents*"))
    assert len(pd.read_csv(ensemble_run.history)) == 2
    assert not list(ensemble_run.path.glob(".*tmp*"))  # no temporary files left behind


def test_covariate_encoder_fitted_on_training_rows_only(ensemble_run, phantom):
    cohort = pd.read_csv(phantom)
    splits = pd.read_csv(ensemble_run.splits)
    train_images = set(splits.loc[splits["split"] == "train", "image"].map(lambda p: p.split("/")[-1]))
    train_ages = cohort.loc[cohort["image"].map(lambda p: p.split("/")[-1]).isin(train_images), "age"]
    stats = json.loads(ensemble_run.encoder.read_text())["stats"]["age"]
    assert stats["mean"] == pytest.approx(train_ages.mean())
    assert stats["max"] == pytest.approx(train_ages.max())
    assert stats["mean"] != pytest.approx(cohort["age"].mean(), abs=1e-9)


def test_evaluate_reproduces_the_test_metrics(ensemble_run):
    written = json.loads(ensemble_run.metrics.read_text())["test"]
    again = evaluate(ensemble_run.path)
    for name in METRIC_NAMES:
        assert again[name] == pytest.approx(written[name], abs=1e-6)
    assert again["n"] == (pd.read_csv(ensemble_run.splits)["split"] == "test").sum()


def test_evaluate_on_an_external_cohort(ensemble_run, tmp_path):
    external = make_cohort("hip", 30, tmp_path / "other_hospital", seed=9, image_size=32)
    metrics = evaluate(ensemble_run.path, manifest=external)
    assert metrics["n"] == 30
    assert (ensemble_run.path / "evaluation_external_manifest.json").is_file()
    assert evaluate(ensemble_run.path, manifest=external)["auc"] == metrics["auc"]  # the same cohort again: rescored
    namesake = make_cohort("hip", 20, tmp_path / "third_hospital", seed=10, image_size=32)  # also manifest.csv
    with pytest.raises(OsteoInputError, match="another cohort whose manifest has the same file name"):
        evaluate(ensemble_run.path, manifest=namesake)
    assert json.loads((ensemble_run.path / "evaluation_external_manifest.json").read_text())["n"] == 30  # kept


def _one_class(manifest, out):
    """The manifest with every T-score at −3.0 (all osteoporosis), beside its images."""
    table = pd.read_csv(manifest)
    table["t_score"], table["label"] = -3.0, 1
    path = manifest.parent / f"{out}.csv"
    table.to_csv(path, index=False)
    return path


def test_one_class_cohorts_are_refused_before_anything_is_written(phantom, ensemble_run, tmp_path, capsys):
    from osteo_tf.cli import main

    manifest = _one_class(phantom, "all_osteoporosis")
    assert main(["train", "--manifest", str(manifest), "--out", str(tmp_path / "run"), "--backbone", "resnet18"]) == 2
    assert not (tmp_path / "run").exists()
    assert main(["experiment", "demo", "--manifest", str(manifest), "--out", str(tmp_path / "exp")]) == 2
    assert not (tmp_path / "exp" / "runs").exists()
    assert main(["evaluate", "--run", str(ensemble_run.path), "--manifest", str(manifest)]) == 2
    errors = capsys.readouterr().err
    assert (
        errors.count(
            f"manifest {manifest} has one class only: 120 osteoporosis and 0 non-osteoporosis rows "
            "(labels from column 't_score' (1 = T-score ≤ -2.5) and column 'label')"
        )
        == 3
    )
    assert "Traceback" not in errors


@pytest.mark.parametrize("mode", ["image_only", "covariates_only"])
def test_other_modes_train(phantom, tmp_path, mode):
    run = train(phantom, tmp_path / mode, mode=mode, **TINY)
    metrics = json.loads(run.metrics.read_text())["test"]
    assert 0.0 <= metrics["auc"] <= 1.0 and np.isfinite(metrics["accuracy"])
    assert run.encoder.is_file() == (mode == "covariates_only")


def test_complete_run_is_not_overwritten(ensemble_run, phantom):
    with pytest.raises(OsteoInputError, match="already complete"):
        train(phantom, ensemble_run.path, mode="ensemble", **TINY)


def test_evaluate_refuses_an_incomplete_run(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(OsteoInputError, match="not complete"):
        evaluate(tmp_path / "half")


def test_config_defaults_follow_the_papers():
    assert TrainConfig(backbone="efficientnet_b0").learning_rate == 0.01
    assert TrainConfig(backbone="resnet18").learning_rate == 0.001
    config = TrainConfig()
    assert (config.momentum, config.weight_decay, config.epochs, config.patience) == (0.9, 0.0, 100, 20)
    with pytest.raises(OsteoInputError, match="batch_size"):
        TrainConfig(batch_size=0)
