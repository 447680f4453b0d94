"""The Ray executor on a tiny phantom: same records as the local runner, retried kills, CLI options.

One local Ray (2 CPUs, no dashboard) serves the module. Tests that need no Ray (option
checks, the not-installed message) run without it; the others skip when ray is absent.
Fits are real: covariates_only (~1 s) and a 1-epoch ResNet-18 at 32 px (~10 s).
"""

import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import experiment_maker, stored

from osteo_tf.cli import main
from osteo_tf.errors import OsteoInputError
from osteo_tf.experiments.ray_executor import RayExecutor, parse_gpus_per_fit
from osteo_tf.experiments.runner import plan, run_experiment

TINY = {
    "name": "tiny_ray",
    "cohort": {"phantom": {"kind": "hip", "n": 40, "image_size": 32, "seed": 1}},
    "backbones": ["resnet18"],
    "modes": ["covariates_only"],
    "covariates": "hip",
    "split": {"kind": "kfold", "folds": 2, "repeats": 1},
    "train": {"epochs": 1, "batch_size": 16, "image_size": 32, "weights": "none"},
}


tiny = experiment_maker(TINY)


def temporaries(out):
    return [p for p in out.rglob("*") if ".tmp-" in p.name]


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    yield ray
    ray.shutdown()


def test_ray_gives_the_plans_records_and_the_local_runners_metrics(ray_session, tmp_path):
    config = tiny(modes=["image_only", "covariates_only"])
    local = run_experiment(config, tmp_path / "local")
    remote = run_experiment(config, tmp_path / "ray", executor=RayExecutor(gpus_per_fit=0))
    expected = sorted(f.fit_id for f in plan(config))
    assert sorted(r["fit_id"] for r in remote) == expected == [n[:-5] for n in stored(tmp_path / "ray")]
    for mine, theirs in zip(local, remote, strict=True):  # seeded fits: the same numbers (observed bit-identical)
        assert mine["fit_id"] == theirs["fit_id"]
        for split in ("val", "test"):
            point = {k: v for k, v in theirs["metrics"][split].items() if k != "ci"}
            assert {k: v for k, v in mine["metrics"][split].items() if k != "ci"} == pytest.approx(point, rel=1e-9)
            assert mine["metrics"][split]["ci"]["seed"] == theirs["metrics"][split]["ci"]["seed"]
        np.testing.assert_allclose(
            [p["probability"] for p in mine["test_predictions"]],
            [p["probability"] for p in theirs["test_predictions"]],
            rtol=0,
            atol=1e-6,
        )
    assert not temporaries(tmp_path / "ray") and not list((tmp_path / "ray" / "runs").glob("*/checkpoints"))


def test_a_worker_killed_mid_fit_is_retried_and_recorded_once(ray_session, tmp_path):
    config, out, attempts = tiny(train={**TINY["train"], "epochs": 2}), tmp_path / "exp", tmp_path / "attempts"
    attempts.mkdir()

    def dies_after_first_epoch_once(manifest, run, *args, **kwargs):  # runs in a Ray worker
        import os

        import keras

        from osteo_tf.training import train as training

        log = attempts / Path(run).name
        first = not log.exists()
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        if first:  # after epoch 1 is backed up and logged, the worker process dies (as if SIGKILLed)

            class Die(keras.callbacks.Callback):
                def on_epoch_end(self, epoch, logs=None):
                    os._exit(1)

            original = training.callbacks
            training.callbacks = lambda *args: [*original(*args), Die()]
        return training.train(manifest, run, *args, **kwargs)

    records = run_experiment(config, out, executor=RayExecutor(max_retries=2), fit_function=dies_after_first_epoch_once)
    fit_ids = sorted(f.fit_id for f in plan(config))
    assert sorted(r["fit_id"] for r in records) == fit_ids == [n[:-5] for n in stored(out)]
    for fit in fit_ids:  # two attempts in two worker processes; the retry resumed and finished the fit
        pids = (attempts / fit).read_text().split()
        assert len(pids) == 2 and pids[0] != pids[1]
    assert all(r["epochs_run"] == 2 for r in records)
    assert not temporaries(out) and not list((out / "results").glob(".*"))


def test_an_input_error_in_a_fit_is_not_retried_and_keeps_its_message(ray_session, tmp_path):
    attempts = tmp_path / "attempts"
    attempts.mkdir()

    def bad_image(manifest, run, *args, **kwargs):
        with open(attempts / Path(run).name, "a") as handle:
            handle.write("attempt\n")
        raise OsteoInputError("image x.png does not decode")

    with pytest.raises(OsteoInputError, match=r"^fit none__covariates_only__r00__f0\d: image x.png does not decode$"):
        run_experiment(tiny(), tmp_path / "exp", executor=RayExecutor(max_retries=3), fit_function=bad_image)
    assert all(len(p.read_text().split()) == 1 for p in attempts.iterdir())  # never retried
    assert not list((tmp_path / "exp" / "results").glob("*.json"))


def test_cli_ray_with_shards_resumes_the_local_runners_folder(ray_session, tmp_path, capsys):
    import yaml

    path, out = tmp_path / "tiny.yaml", tmp_path / "exp"
    path.write_text(yaml.safe_dump(TINY))
    assert main(["experiment", str(path), "--out", str(out), "--executor", "ray", "--gpus-per-fit", "1"]) == 2
    assert "no node of the Ray cluster has 1 CPU and 1 GPU" in capsys.readouterr().err
    assert main(["experiment", str(path), "--out", str(out), "--executor", "ray", "--shard", "1/2"]) == 0
    assert stored(out) == ["none__covariates_only__r00__f00.json"]
    assert main(["experiment", str(path), "--out", str(out), "--shard", "2/2"]) == 0  # the local runner does the rest
    first = {name: (out / "results" / name).read_bytes() for name in stored(out)}
    assert len(first) == 2
    capsys.readouterr()
    assert main(["experiment", str(path), "--out", str(out), "--executor", "ray", "--max-retries", "0"]) == 0
    assert "2 already done, 0 to run" in capsys.readouterr().err
    assert {name: (out / "results" / name).read_bytes() for name in stored(out)} == first


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["--executor", "ray", "--gpus-per-fit", "0.3"],
            "--gpus-per-fit must be 0, a whole number of GPUs, or a fraction 1/k",
        ),
        (["--executor", "ray", "--gpus-per-fit", "-1"], "--gpus-per-fit must be"),
        (["--executor", "ray", "--gpus-per-fit", "half"], "--gpus-per-fit must be"),
        (["--executor", "ray", "--max-retries", "-1"], "--max-retries must be a whole number >= 0"),
        (["--executor", "ray", "--cpus-per-fit", "0"], "--cpus-per-fit must be a number > 0"),
        (["--gpus-per-fit", "0.5", "--address", "auto"], "--address, --gpus-per-fit only apply with --executor ray"),
    ],
)
def test_cli_refuses_bad_ray_options_without_a_traceback(tmp_path, capsys, options, message):
    assert main(["experiment", "demo", "--out", str(tmp_path / "o"), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "o").exists()


def test_gpus_per_fit_values():
    assert [parse_gpus_per_fit(v) for v in ("0", "1", "2", "0.5", "0.25", "1/4", "0.2", "1/3")] == [
        0,
        1,
        2,
        0.5,
        0.25,
        0.25,
        0.2,
        0.3333,
    ]
    with pytest.raises(OsteoInputError):
        RayExecutor(gpus_per_fit=0.45)


def test_missing_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    with pytest.raises(OsteoInputError, match=r"pip install 'osteo_tf\[ray\]'"):
        run_experiment(tiny(), tmp_path / "exp", executor="ray")
    assert not (tmp_path / "exp").exists()


def test_a_node_that_cannot_see_the_experiment_folder_says_so(tmp_path):
    from osteo_tf.experiments.ray_executor import _fit_task

    with pytest.raises(OsteoInputError, match="not visible on Ray node .*mounts at the same path"):
        _fit_task(tiny(), tmp_path / "elsewhere", tmp_path / "manifest.csv", plan(tiny())[0], None, None, 0, None, 1)
