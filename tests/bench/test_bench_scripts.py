"""Smoke runs of bench/pipeline.py, train_step.py, phantom.py and serving.py at the smallest sizes.

Each script runs in a subprocess, as a user runs it; the test checks that ``--help`` works
and that stdout is ONE parseable JSON line with the expected keys (never timing values).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}


def run(script: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *options],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
        cwd=BENCH.parent,
    )


def one_json_line(process: subprocess.CompletedProcess) -> dict:
    assert process.returncode == 0, process.stderr[-3000:]
    lines = process.stdout.splitlines()
    assert len(lines) == 1, process.stdout[-3000:]
    return json.loads(lines[0])


@pytest.mark.parametrize("script", ["pipeline.py", "train_step.py", "phantom.py", "serving.py"])
def test_help(script):
    process = run(script, "--help")
    assert process.returncode == 0 and process.stdout.startswith("usage:")


def test_pipeline_smoke():
    result = one_json_line(run("pipeline.py", "--configs", "32:resnet18", "--quick"))
    assert result["bench"] == "pipeline" and result["target_ratio"] == 3.0
    assert {
        "configs",
        "augmentation",
        "augmentation_default",
        "augmentation_faster_here",
        "settings",
        "machine",
        "versions",
    } <= set(result)
    (config,) = result["configs"]
    assert config["size"] == 32 and config["backbone"] == "resnet18" and config["images"] == 24
    assert {
        "memory_cold_img_s",
        "memory_cached_img_s",
        "disk_cold_img_s",
        "disk_cached_img_s",
        "model_img_s",
        "ratio_cold",
        "ratio_cached",
        "target_met",
    } <= set(config)
    (augmentation,) = result["augmentation"]
    assert {"size", "tf_data_img_s", "tf_data_p1_img_s", "keras_layers_img_s", "faster"} <= set(augmentation)
    assert augmentation["faster"] in ("tf.data", "keras_layers") and result["augmentation_default"] == "tf.data"


def test_train_step_smoke():
    result = one_json_line(
        run(
            "train_step.py",
            "--backbones",
            "resnet18",
            "--size",
            "32",
            "--batch",
            "2",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--repeats",
            "2",
        )
    )
    assert result["bench"] == "train_step" and result["budget_ratio"] == 1.05
    assert {"backbones", "settings", "machine", "versions"} <= set(result)
    figures = result["backbones"]["resnet18"]
    assert {
        "ratio",
        "ratio_basis",
        "ratio_runs",
        "within_budget",
        "ratio_wall",
        "ratio_cpu",
        "project_step_s",
        "plain_step_s",
        "project_cpu_s",
        "plain_cpu_s",
        "project_img_s",
        "plain_img_s",
        "plain",
        "params_match_preset",
    } <= set(figures)
    assert figures["ratio_basis"] in ("cpu", "wall") and len(figures["ratio_runs"]) == 2
    assert figures["params_match_preset"] is True
    assert figures["project_params"] == figures["plain_params"]  # same architecture and head


def test_bad_option_is_a_usage_error():
    process = run("pipeline.py", "--configs", "big:resnet18")
    assert process.returncode == 2 and "SIZE:BACKBONE" in process.stderr


def test_phantom_smoke():
    result = one_json_line(run("phantom.py", "--configs", "32:10", "--repeats", "1"))
    (config,) = result["configs"]
    assert result["bench"] == "phantom" and (config["size"], config["n"]) == (32, 10)
    assert {"phantom_s", "png_reference_s", "ratio", "phantom_images_per_s"} <= set(config)
    assert run("phantom.py", "--configs", "32:5").returncode == 2  # fewer than 10 subjects: usage error


def test_fusion_balance_shows_the_project_head_balancing_the_branches():
    result = one_json_line(run("fusion_balance.py", "--configs", "resnet18:32", "--n", "10"))
    assert result["bench"] == "fusion_balance"
    literal, project = result["configs"]["resnet18:32"]["literal"], result["configs"]["resnet18:32"]["project"]
    # The papers' literal head: the perceptron's features far smaller than the pooled image features.
    assert literal["covariate_abs_mean"] < 0.3 * literal["image_abs_mean"]
    # The project's head: both branches batch-normalised, the covariate branch moving faster for its size.
    assert 0.5 < project["covariate_abs_mean"] / project["image_abs_mean"] < 2.0
    assert project["relative_grad_ratio"] < literal["relative_grad_ratio"]
    assert run("fusion_balance.py", "--configs", "resnet18").returncode == 2  # no size: usage error
    assert run("fusion_balance.py", "--n", "8").returncode == 2  # below the phantom minimum


def test_serving_smoke():
    result = one_json_line(
        run(
            "serving.py",
            *("--size", "32", "--batches", "1,4", "--train-images", "24", "--request-images", "6"),
            *("--repeats", "1", "--warmup", "1", "--latency-requests", "3", "--predict-images", "12"),
        )
    )
    assert result["bench"] == "serving" and result["budget_batch"] == 32 and result["budget_met"] is None
    assert set(result["batches"]) == {"1", "4"}
    for batch in result["batches"].values():
        assert {"serving_s", "bare_s", "preprocess_s", "overhead", "preprocess_share"} <= set(batch)
        assert batch["max_abs_diff_probability"] <= 1e-6  # the exported graph computes the bare model's output
    assert set(result["latency_batch_1"]) == {"serving", "bare"}
    assert result["predict"]["images"] == 12
