"""Speed options and devices: precision / XLA resolution, mixed-precision fits, MirroredStrategy on 2 CPUs."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from osteo_tf.errors import OsteoInputError
from osteo_tf.models import build_model
from osteo_tf.runs.config import TrainConfig
from osteo_tf.training.hardware import dtype_policy, resolve_runtime
from osteo_tf.training.train import train


def test_auto_resolves_to_float32_without_xla_on_cpu():
    runtime = resolve_runtime("auto", "auto", 16, tf.distribute.get_strategy())
    assert (runtime.precision, runtime.jit, runtime.replicas, runtime.global_batch_size) == ("float32", False, 1, 16)
    explicit = resolve_runtime("mixed_bfloat16", True, 8, tf.distribute.get_strategy())
    assert (explicit.precision, explicit.jit) == ("mixed_bfloat16", True)


def test_config_validates_precision_and_jit():
    assert TrainConfig(jit="off").jit is False and TrainConfig(jit="true").jit is True
    with pytest.raises(OsteoInputError, match="precision='fp16'"):
        TrainConfig(precision="fp16")
    with pytest.raises(OsteoInputError, match="jit='maybe'"):
        TrainConfig(jit="maybe")


def test_dtype_policy_builds_mixed_layers_keeps_the_output_float32_and_restores_the_global_policy():
    with dtype_policy("mixed_bfloat16"):
        model = build_model("resnet18", "ensemble", 32, covariate_dim=4)
    assert keras.config.dtype_policy().name == "float32"
    assert model.get_layer("fusion_dense").compute_dtype == "bfloat16"
    assert model.get_layer("probability").compute_dtype == "float32"
    model.compile(keras.optimizers.SGD(0.01), "binary_crossentropy")
    inputs = {"image": np.full((4, 32, 32, 3), 100.0, "float32"), "covariates": np.zeros((4, 4), "float32")}
    model.fit(inputs, np.array([[0.0], [1.0], [0.0], [1.0]]), verbose=0)
    probability = model.predict(inputs, verbose=0)
    assert probability.dtype == np.float32 and np.isfinite(probability).all()


@pytest.fixture(scope="module")
def phantom(phantom_cohort):
    return phantom_cohort("hip", 40, seed=3, image_size=32)


def test_mixed_float16_fit_scales_the_loss_and_records_its_runtime(phantom, tmp_path):
    run = train(
        phantom,
        tmp_path / "run",
        backbone="resnet18",
        mode="ensemble",
        image_size=32,
        epochs=1,
        batch_size=8,
        precision="mixed_float16",
        jit=False,
        verbose=0,
    )
    runtime = json.loads(run.runtime.read_text())
    assert runtime == {
        "precision": "mixed_float16",
        "jit": False,
        "replicas": 1,
        "devices": runtime["devices"],
        "global_batch_size": 8,
    }
    model = run.load_model()  # as evaluate / export / explain load it
    assert model.get_layer("fusion_dense").compute_dtype == "float16"
    assert model.get_layer("probability").compute_dtype == "float32"
    assert np.isfinite(json.loads(run.metrics.read_text())["test"]["auc"])
    assert keras.config.dtype_policy().name == "float32"  # the next fit in this process is not affected


# Logical devices must be configured before TensorFlow initialises, so this runs in a fresh process.
MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from osteo_tf.training.hardware import distribution_strategy
    from osteo_tf.training.train import train

    manifest, out = sys.argv[1], sys.argv[2]
    common = dict(image_size=32, epochs=3, learning_rate=0.05, seed=5, verbose=0, deterministic=True)
    two = distribution_strategy(["/cpu:0", "/cpu:1"])
    assert distribution_strategy(["/cpu:0", "/cpu:1"]) is two
    result = {"replicas": two.num_replicas_in_sync}
    # covariates_only has no batch statistics, so 2 replicas x 16 must equal 1 device x 32. The
    # 32 training rows make one batch: Keras' distributed and single-device paths draw the
    # shuffle's epochs in a different order, which a full batch makes irrelevant.
    single = train(manifest, out + "/single", mode="covariates_only", backbone="resnet18", batch_size=32, **common)
    mirrored = train(manifest, out + "/mirrored", mode="covariates_only", backbone="resnet18", batch_size=16,
                     strategy=two, **common)
    read = lambda run: __import__("pandas").read_csv(run.predictions)["probability"].to_numpy()
    result["max_probability_difference"] = float(np.abs(read(single) - read(mirrored)).max())
    result["runtime"] = json.loads(mirrored.runtime.read_text())
    # An image model through train() on both replicas.
    image = train(manifest, out + "/image", mode="ensemble", backbone="resnet18", batch_size=8,
                  strategy=two, **{**common, "epochs": 1})
    result["image_runtime"] = json.loads(image.runtime.read_text())
    result["image_auc"] = json.loads(image.metrics.read_text())["test"]["auc"]
    # Both replicas train: each variable has one copy per device; after fitting, the copies
    # agree (gradients all-reduced) and every trainable variable has moved.
    from osteo_tf.models import build_model
    with two.scope():  # the third model on the same strategy: the collective keys must not collide
        model = build_model("resnet18", "image_only", 32, covariate_dim=0)
        model.compile(keras.optimizers.SGD(0.01), "binary_crossentropy")
    before = [v.numpy().copy() for v in model.trainable_variables]
    rng = np.random.default_rng(0)
    model.fit(rng.uniform(0, 255, (32, 32, 32, 3)).astype("float32"), rng.integers(0, 2, (32, 1)).astype("float32"),
              batch_size=16, epochs=1, verbose=0)
    copies = [[c.numpy() for c in v.value.values] for v in model.trainable_variables]
    result["copy_devices"] = sorted({c.device[-5:] for v in model.trainable_variables for c in v.value.values})
    result["copies_agree"] = all(all(np.array_equal(c[0], other) for other in c[1:]) for c in copies)
    result["moved"] = sum(not np.allclose(c[0], b) for c, b in zip(copies, before)) / len(copies)
    print("RESULT " + json.dumps(result))
""")


def test_mirrored_strategy_on_two_cpu_devices_matches_one_device(phantom, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(phantom), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(line[7:] for line in done.stdout.splitlines() if line.startswith("RESULT ")))
    assert result["replicas"] == 2
    assert result["runtime"]["replicas"] == 2 and result["runtime"]["global_batch_size"] == 32
    assert len(result["runtime"]["devices"]) == 2
    assert result["max_probability_difference"] < 1e-4, result
    assert result["image_runtime"]["replicas"] == 2 and np.isfinite(result["image_auc"])
    assert result["copy_devices"] == ["CPU:0", "CPU:1"] and result["copies_agree"] and result["moved"] == 1.0, result
