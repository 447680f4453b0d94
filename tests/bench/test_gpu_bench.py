"""bench/gpu.py: the pure helpers everywhere; a real CPU smoke run only where JAX + torch exist without TF."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gpu.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("osteo_bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gpu = load_bench()

# The ensemble model's trainable parameters, covariate_dim 6. Measured identical in both
# frameworks by bench/gpu.py --params-only (Keras 3.15.1 on JAX, torchvision 0.29.1) for the
# first wave's head; the second wave's head adds the two branches' batch norms (γ, β):
# 2 × channels + 2 × 32 (the Keras count of resnet18 is checked below on this machine).
ENSEMBLE_PARAMS = {
    "efficientnet_b3": 10_797_993 + 2 * 1536 + 64,
    "resnet50": 23_642_561 + 2 * 2048 + 64,
    "resnet18": 11_212_737 + 2 * 512 + 64,
    "googlenet": 5_668_897 + 2 * 1024 + 64,
}


def worker_result(img, trainable=1000, **extra):
    return {
        "img_per_s": img,
        "img_per_s_runs": [img],
        "warmup_s": 1.0,
        "params": {"trainable": trainable, "total": trainable + 10},
        "device": "cpu:x",
        **extra,
    }


def test_module_imports_only_the_standard_library_and_the_vocabulary():
    code = (
        f"import importlib.util, sys; s = importlib.util.spec_from_file_location('b', {str(BENCH)!r}); "
        "m = importlib.util.module_from_spec(s); sys.modules['b'] = m; s.loader.exec_module(m); "
        "print(sorted(n for n in ('tensorflow', 'keras', 'jax', 'torch', 'numpy', 'osteo_tf.models')"
        " if n in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_configs_match_the_registry_and_the_issue():
    from osteo_tf.models import get_backbone_spec

    assert [(c.name, c.size, c.batch) for c in gpu.CONFIGS.values()] == [
        ("efficientnet_b3", 300, 64),
        ("resnet50", 224, 128),
        ("resnet18", 224, 128),
        ("googlenet", 224, 128),
    ]
    for config in gpu.CONFIGS.values():
        assert get_backbone_spec(config.name).learning_rate == config.learning_rate


def test_expected_parameter_counts_follow_from_the_registry():
    """torchvision backbone without classifier (registry) + the head = the measured parity count."""
    from osteo_tf.models import get_backbone_spec

    units, fusion = gpu.COVARIATE_UNITS, gpu.FUSION_UNITS
    for name, expected in ENSEMBLE_PARAMS.items():
        spec = get_backbone_spec(name)
        assert spec.backbone_params + gpu.head_params(spec.feature_channels, 6, units, fusion) == expected, name


def test_keras_ensemble_model_has_the_expected_trainable_count():
    from osteo_tf.models import build_model

    model = build_model("resnet18", "ensemble", image_size=32, covariate_dim=6)
    assert sum(math.prod(v.shape) for v in model.trainable_variables) == ENSEMBLE_PARAMS["resnet18"]


def test_ratio_and_throughput():
    assert gpu.ratio(1230.0, 1015.0) == 1.212
    assert gpu.ratio(None, 5.0) is None and gpu.ratio(5.0, None) is None and gpu.ratio(5.0, 0.0) is None
    assert gpu.ratio(float("nan"), 1.0) is None
    assert gpu.throughput(64, 50, 2.0) == 1600.0
    with pytest.raises(ValueError):
        gpu.throughput(64, 50, 0.0)


def test_summarize_config_ratios_target_and_parity():
    config = gpu.CONFIGS["resnet50"]
    entry = gpu.summarize_config(
        config,
        {
            "keras_jax": worker_result(3700.0),
            "torch_eager": worker_result(3700.0),
            "torch_compile": worker_result(5000.0),
        },
    )
    assert entry["img_per_s"] == {"keras_jax": 3700.0, "torch_eager": 3700.0, "torch_compile": 5000.0}
    assert entry["ratios"] == {"keras_jax/torch_eager": 1.0, "keras_jax/torch_compile": 0.74}
    assert entry["target_met"] is True
    assert entry["params"]["match"] is True and entry["params"]["keras_trainable"] == 1000
    assert entry["errors"] == {}

    slower = gpu.summarize_config(
        config, {"keras_jax": worker_result(100.0, trainable=999), "torch_eager": worker_result(200.0)}
    )
    assert slower["target_met"] is False and slower["params"]["match"] is False
    assert slower["ratios"] == {"keras_jax/torch_eager": 0.5}


def test_summarize_config_reports_errors_as_missing_numbers():
    entry = gpu.summarize_config(
        gpu.CONFIGS["googlenet"],
        {
            "keras_jax": worker_result(50.0),
            "torch_eager": worker_result(40.0),
            "torch_compile": {"error": "InductorError: no C++ compiler"},
        },
    )
    assert entry["errors"] == {"torch_compile": "InductorError: no C++ compiler"}
    assert entry["ratios"] == {"keras_jax/torch_eager": 1.25, "keras_jax/torch_compile": None}
    assert entry["target_met"] is True and "torch_compile" not in entry["img_per_s"]


def test_record_is_one_json_line_without_nan():
    entry = gpu.summarize_config(gpu.CONFIGS["resnet18"], {"keras_jax": worker_result(10.0, final_loss=float("nan"))})
    record = gpu.make_record([entry], {"steps": 2}, {"torch": "cpu:x"}, {"python": "3"})
    line = gpu.json_line(record)
    assert "\n" not in line and "NaN" not in line
    parsed = json.loads(line)
    assert parsed["configs"][0]["runs"]["keras_jax"]["final_loss"] is None
    assert parsed["target_met"] is None and parsed["params_match"] is True
    assert parsed["tensorflow_imported"] == ("tensorflow" in sys.modules)


def test_parse_result_takes_the_last_marked_line():
    stdout = "noise\n" + gpu.RESULT_MARK + '{"a": 1}\nmore\n' + gpu.RESULT_MARK + '{"a": 2}\n'
    assert gpu.parse_result(stdout) == {"a": 2}
    assert gpu.parse_result("nothing here") is None


def test_parse_args_selection_and_overrides():
    args = gpu.parse_args(
        [
            "--configs",
            "resnet18,googlenet",
            "--batch",
            "2",
            "--size",
            "64",
            "--device",
            "cpu",
            "--modes",
            "keras_jax,torch_eager",
        ]
    )
    assert [(c.name, c.size, c.batch) for c in args.config_list] == [("resnet18", 64, 2), ("googlenet", 64, 2)]
    assert args.mode_list == ["keras_jax", "torch_eager"]
    assert [c.name for c in gpu.parse_args([]).config_list] == list(gpu.CONFIGS)
    for bad in (["--configs", "vgg16"], ["--modes", "tf"], ["--steps", "0"], ["--warmup", "0"]):
        with pytest.raises(SystemExit):
            gpu.parse_args(bad)


def test_package_versions_imports_nothing():
    versions = gpu.package_versions(("pytest", "surely-not-installed-package"))
    assert versions["pytest"] == pytest.__version__ and versions["surely-not-installed-package"] is None


def test_worker_timeout_respects_the_budget():
    assert gpu.worker_timeout(600, None, 1000) == 600
    assert gpu.worker_timeout(600, 540, 100) == 440
    assert gpu.worker_timeout(100, 540, 100) == 100
    assert gpu.worker_timeout(600, 540, 540 - gpu.MIN_WORKER_S + 1) is None


def test_main_prints_one_line_when_the_budget_skips_everything(tmp_path):
    # A fresh interpreter: main asserts at its end that TensorFlow was not imported, and
    # other tests of this session may have imported it.
    out = tmp_path / "runs" / "bench.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--configs",
            "resnet18,googlenet",
            "--modes",
            "keras_jax,torch_eager",
            "--budget",
            "1",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert "\n" not in line and out.read_text() == line + "\n"
    record = json.loads(line)
    assert [e["name"] for e in record["configs"]] == ["resnet18", "googlenet"]
    assert all(e["errors"]["keras_jax"].startswith("skipped") for e in record["configs"])
    assert record["settings"]["head"] == {"covariate_units": [32, 32], "fusion_units": 64}
    assert record["target_met"] is None and record["versions"]["python"] and record["tensorflow_imported"] is False


def test_a_failing_worker_becomes_an_error_entry():
    """The subprocess plumbing: a worker that cannot build its model reports an error, no crash."""
    job = {
        "mode": "torch_eager",
        "config": {"name": "no_such_net", "size": 32, "batch": 2, "learning_rate": 0.1},
        "head": [[32, 32], 64],
        "steps": 1,
        "warmup": 1,
        "repeats": 1,
        "device": "cpu",
        "precision": "bf16",
        "keras_data": "device",
        "keras_metrics": "none",
        "steps_per_execution": 1,
        "torch_memory_format": "contiguous",
        "compile_mode": "default",
        "covariate_dim": 6,
        "params_only": False,
    }
    result = gpu.run_job(job, timeout=120)
    assert result["error"] and "img_per_s" not in result


def _smoke_environment() -> bool:
    found = {
        name: importlib.util.find_spec(name) is not None
        for name in ("jax", "keras", "keras_hub", "torch", "torchvision", "tensorflow")
    }
    # keras-hub imports TensorFlow whenever it is installed, so the no-TF run needs an env without it.
    return all(found[n] for n in ("jax", "keras", "keras_hub", "torch", "torchvision")) and not found["tensorflow"]


@pytest.mark.skipif(
    not _smoke_environment(), reason="needs jax, keras, keras-hub, torch, torchvision and no tensorflow"
)
def test_cpu_smoke_run(tmp_path):
    out = tmp_path / "bench.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--device",
            "cpu",
            "--configs",
            "resnet18",
            "--modes",
            "keras_jax,torch_eager",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--repeats",
            "1",
            "--batch",
            "2",
            "--size",
            "32",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text().splitlines()[-1]) == record
    entry = record["configs"][0]
    assert entry["errors"] == {}
    assert entry["params"]["match"] is True and entry["params"]["keras_trainable"] == ENSEMBLE_PARAMS["resnet18"]
    assert entry["img_per_s"]["keras_jax"] > 0 and entry["img_per_s"]["torch_eager"] > 0
    assert entry["ratios"]["keras_jax/torch_eager"] > 0
    assert record["tensorflow_imported"] is False
