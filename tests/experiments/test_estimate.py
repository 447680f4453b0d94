"""The cost model of ``osteo experiment --dry-run --estimate``."""

import numpy as np
import pytest
import yaml

from osteo_tf.cli import main
from osteo_tf.errors import OsteoInputError
from osteo_tf.experiments.config import parse_experiment
from osteo_tf.experiments.estimate import (
    estimate_costs,
    estimate_experiment,
    format_duration,
    probe_seconds_per_image,
    split_rows,
    wall_time,
)
from osteo_tf.experiments.runner import plan

GRID = {
    "name": "grid",
    "cohort": {"phantom": {"kind": "hip", "n": 100, "image_size": 32, "seed": 1}},
    "backbones": ["resnet18", "googlenet"],
    "modes": ["image_only", "ensemble", "covariates_only"],
    "covariates": "hip",
    "split": {"kind": "kfold", "folds": 5, "repeats": 2},
    "train": {"epochs": 10, "batch_size": 4, "image_size": 32},
}


def fake_probe(config, backbone, mode):
    """Seconds per image: googlenet twice resnet18; covariates_only nearly free."""
    return {"resnet18": 0.01, "googlenet": 0.02}[backbone] if mode != "covariates_only" else 0.0001


def test_split_rows_follow_the_protocol():
    config = parse_experiment(GRID)
    assert split_rows(config, 100) == (71, 9)  # 4/5 of 100 for development, split 8:1
    random = parse_experiment({**GRID, "split": {"kind": "random", "ratios": [8, 1, 1], "repeats": 1}})
    assert split_rows(random, 100) == (80, 10)


def test_wall_time_packs_longest_first():
    assert wall_time([3, 3, 2, 2, 2], 2) == 7  # longest-first greedy, as a scheduler without foresight (optimum 6)
    assert wall_time([5, 1, 1], 4) == 5
    assert wall_time([1.5] * 4, 1) == 6


def test_costs_use_the_config_epochs_then_the_epochs_finished_fits_ran():
    config = parse_experiment(GRID)
    fits = plan(config)
    costs = {c.backbone: c for c in estimate_costs(config, fits, 100, records=(), probe=fake_probe)}
    assert {b: c.fits for b, c in costs.items()} == {"resnet18": 20, "googlenet": 20, "none": 10}
    per_epoch = 0.01 * (71 + 9 / 3)
    assert costs["resnet18"].seconds_per_epoch == pytest.approx(per_epoch)
    assert (
        costs["resnet18"].seconds_per_fit == pytest.approx(10 * per_epoch) and costs["resnet18"].epochs_source == "max"
    )
    finished = [
        {"backbone": "resnet18", "epochs_run": 4},
        {"backbone": "resnet18", "epochs_run": 6},
        {"backbone": "none", "epochs_run": 9},
    ]  # two resnet18 fits stopped early
    resnet = next(
        c for c in estimate_costs(config, fits, 100, records=finished, probe=fake_probe) if c.backbone == "resnet18"
    )
    assert resnet.epochs == 5.0 and resnet.epochs_source == "measured (2 fits)"


def test_probe_times_the_real_model():
    config = parse_experiment(GRID)
    seconds = probe_seconds_per_image(config, "resnet18", "ensemble", steps=1, warmup=1)
    assert np.isfinite(seconds) and 0 < seconds < 5


def test_estimate_prints_one_and_n_device_wall_times(capsys, monkeypatch):
    from osteo_tf.experiments import estimate as module

    monkeypatch.setattr(module, "probe_seconds_per_image", fake_probe)
    figures = estimate_experiment(parse_experiment(GRID), None, devices=4)
    printed = capsys.readouterr().out
    assert "resnet18" in printed and "googlenet" in printed and "on 4" in printed
    assert figures["devices_seconds"] < figures["one_device_seconds"]
    assert figures["one_device_seconds"] == pytest.approx(sum(c.seconds_per_fit * c.fits for c in figures["costs"]))


def test_format_duration():
    assert [format_duration(s) for s in (42, 61, 3 * 3600 + 120, 2 * 86400 + 7200)] == [
        "42 s",
        "2 min",
        "3 h 2 min",
        "2 d 2 h",
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--estimate"], "--estimate goes with --dry-run"),
        (["--dry-run", "--estimate", "--devices", "0"], "--devices must be at least 1"),
    ],
)
def test_cli_mistakes(argv, message, tmp_path, capsys):
    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump(GRID))
    assert main(["experiment", str(config), "--out", str(tmp_path / "out"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_config_without_cohort_needs_subjects():
    config = parse_experiment({k: v for k, v in GRID.items() if k != "cohort"})
    with pytest.raises(OsteoInputError, match="subjects=N"):
        estimate_experiment(config, None)
