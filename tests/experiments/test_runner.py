"""The experiment runner on a tiny phantom: resume after a kill, shards, the results store.

Fits are real (covariates_only: the covariate perceptron, ~1 s each) except in the pure
planning tests; one test kills a real ``osteo experiment`` subprocess.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from helpers import experiment_maker, stored
from hypothesis import given
from hypothesis import strategies as st

from osteo_tf.cli import main
from osteo_tf.errors import OsteoInputError
from osteo_tf.experiments.config import parse_experiment
from osteo_tf.experiments.results import RECORD_KEYS
from osteo_tf.experiments.runner import parse_shard, plan, read_results, run_experiment, shard_fits
from osteo_tf.training.train import train

TINY = {
    "name": "tiny",
    "cohort": {"phantom": {"kind": "hip", "n": 40, "image_size": 32, "seed": 1}},
    "backbones": ["resnet18"],
    "modes": ["covariates_only"],
    "covariates": "hip",
    "split": {"kind": "kfold", "folds": 2, "repeats": 2},
    "train": {"epochs": 2, "batch_size": 16, "image_size": 32},
}


tiny = experiment_maker(TINY)


def ids(records):
    return sorted(r["fit_id"] for r in records)


@given(
    backbones=st.integers(1, 3),
    modes=st.sets(st.sampled_from(["image_only", "ensemble", "covariates_only"]), min_size=1),
    repeats=st.integers(1, 4),
    folds=st.integers(2, 6),
    n=st.integers(1, 12),
)
def test_shards_cover_the_grid_exactly_once(backbones, modes, repeats, folds, n):
    config = tiny(
        backbones=["resnet18", "resnet34", "googlenet"][:backbones],
        modes=sorted(modes),
        split={"kind": "kfold", "folds": folds, "repeats": repeats},
    )
    fits = plan(config)
    image_modes = len(modes - {"covariates_only"})
    assert len(fits) == repeats * folds * (backbones * image_modes + ("covariates_only" in modes))
    assert len({f.fit_id for f in fits}) == len(fits)
    sharded = [f for i in range(1, n + 1) for f in shard_fits(fits, (i, n))]
    assert sorted(f.fit_id for f in sharded) == sorted(f.fit_id for f in fits)


def test_plan_shares_seed_and_split_between_modes_and_parse_shard():
    fits = plan(tiny(modes=["image_only", "ensemble", "covariates_only"]))
    assert [f.fit_id for f in fits[:3]] == [
        "resnet18__image_only__r00__f00",
        "resnet18__ensemble__r00__f00",
        "none__covariates_only__r00__f00",
    ]
    assert len({f.seed for f in fits[:3]}) == 1 and fits[0].seed != fits[3].seed
    assert parse_shard("2/4") == (2, 4)
    for bad in ("3/2", "0/0", "0/2", "x", "1/2/3", "-1/2"):
        with pytest.raises(OsteoInputError, match="shard"):
            parse_shard(bad)


def test_killed_run_resumes_without_losing_or_duplicating_records(tmp_path):
    config, out = tiny(), tmp_path / "exp"
    calls = []

    def killed_after_two(*args, **kwargs):  # the 3rd fit finishes training, then the process "dies"
        calls.append(args[1].name)
        run = train(*args, **kwargs)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return run

    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, out, fit_function=killed_after_two)
    assert len(stored(out)) == 2
    first_two = {name: (out / "results" / name).read_bytes() for name in stored(out)}
    retrained = []

    def counting(*args, **kwargs):
        retrained.append(args[1].name)
        return train(*args, **kwargs)

    records = run_experiment(config, out, fit_function=counting)
    assert ids(records) == sorted(f.fit_id for f in plan(config)) == [n[:-5] for n in stored(out)]
    assert retrained == [f.fit_id for f in plan(config)[3:]]  # the complete 3rd run was recorded, not retrained
    assert all((out / "results" / name).read_bytes() == data for name, data in first_two.items())
    assert not list((out / "results").glob(".*"))  # no temporary files left
    assert run_experiment(config, out, fit_function=counting) == records and len(retrained) == 1

    table = read_results(out)
    assert len(table) == 4 and {"test_auc", "val_auc", "test_accuracy", "test_npv"} <= set(table.columns)
    record = records[0]
    assert set(record) == set(RECORD_KEYS) and record["config_hash"] == config.hash()
    assert record["run_dir"] == f"runs/{record['fit_id']}" and record["epochs_run"] == 2
    assert (out / record["run_dir"] / "model.keras").is_file() and not (
        out / record["run_dir"] / "checkpoints"
    ).exists()
    for repeat in (0, 1):  # k-fold: every subject is tested exactly once per repeat
        images = [p["image"] for r in records if r["repeat"] == repeat for p in r["test_predictions"]]
        assert len(images) == len(set(images)) == 40
    probabilities = [p["probability"] for p in record["test_predictions"]]
    assert np.allclose(record["metrics"]["test"]["n"], len(probabilities))


def test_shards_write_to_one_store_and_another_config_is_refused(tmp_path, capsys):
    config, out = tiny(split={"kind": "kfold", "folds": 2, "repeats": 1}), tmp_path / "exp"
    assert run_experiment(config, out, dry_run=True) == [] and not out.exists()
    assert "2 fits" in capsys.readouterr().out
    first = run_experiment(config, out, shard=(1, 2))
    second = run_experiment(config, out, shard=(2, 2))
    assert len(first) == len(second) == 1 and ids(first + second) == [n[:-5] for n in stored(out)]
    assert yaml.safe_load((out / "experiment.yaml").read_text())["name"] == "tiny"

    other = tiny(seed=5, split={"kind": "kfold", "folds": 2, "repeats": 1})
    with pytest.raises(OsteoInputError, match="force=True"):
        run_experiment(other, out)
    assert len(run_experiment(other, out, force=True, shard=(1, 2))) == 1
    assert len(read_results(out)) == 1 and read_results(out)["config_hash"].iloc[0] == other.hash()


def test_cli_dry_run_and_bad_shard(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert main(["experiment", str(path), "--out", str(tmp_path / "o"), "--dry-run", "--shard", "2/4"]) == 0
    printed = capsys.readouterr().out
    assert "= 4 fits" in printed and printed.strip().endswith("1 fit(s) in shard 2/4 of 4")
    assert main(["experiment", str(path), "--out", str(tmp_path / "o"), "--shard", "3/2"]) == 2
    assert "bad shard 3/2" in capsys.readouterr().err


def test_a_killed_subprocess_resumes(tmp_path):
    path, out = tmp_path / "tiny.yaml", tmp_path / "exp"
    config = {**TINY, "split": {"kind": "kfold", "folds": 2, "repeats": 1}}
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [sys.executable, "-m", "osteo_tf.cli", "experiment", str(path), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "results").is_dir() and any((out / "results").glob("*.json"))):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    done_before = len(stored(out))
    assert done_before == 1
    records = run_experiment(path, out)
    assert ids(records) == sorted(f.fit_id for f in plan(parse_experiment(config))) == [n[:-5] for n in stored(out)]
    for name in stored(out):
        assert json.loads((out / "results" / name).read_text())["fit_id"] == name[:-5]


def test_weights_that_cannot_load_are_refused_before_the_cohort_is_made(tmp_path):
    config = tiny(modes=["image_only", "covariates_only"], train={**TINY["train"], "weights": str(tmp_path / "gone")})
    expected = r"gone does not exist; pass weights=none, imagenet, or a path to resnet18 weights"
    with pytest.raises(OsteoInputError, match=expected):
        run_experiment(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()
