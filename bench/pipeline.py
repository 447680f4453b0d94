"""Input-pipeline throughput against the model's own consumption, and where augmentation is faster.

What it measures (TensorFlow backend, whatever devices TensorFlow sees; written on 2 CPU cores)
------------------------------------------------------------------------------------------------
For each configuration SIZE:BACKBONE (default ``224:resnet50,300:efficientnet_b3``, the
papers' sizes of the two families):

1. A phantom hip cohort of ``--images`` PNGs generated at SIZE px
   (``osteo_tf.data.synthetic.make_cohort``), each row given a seeded ROI box of 80–95 % of
   the side, so every image is decoded, cropped, intensity-normalised, resized back to SIZE,
   augmented (the papers' augmentation, ``osteo_tf.data.pipeline.augment``), normalised for
   the backbone and batched — ``osteo_tf.data.pipeline.make_dataset(training=True)``,
   exactly what ``osteo train`` feeds ``fit``.
   - ``cold``: images/s of the first epoch (decoding; the cache is being filled),
   - ``cached``: images/s of the next ``--cached-epochs`` epochs (read from the cache,
     shuffled, augmented), for ``cache="memory"`` (the default) and ``cache="disk"``.
2. The model's consumption: images/s of the training step of
   ``osteo_tf.models.build_model(BACKBONE, "image_only", SIZE, weights=None)`` compiled by
   ``osteo_tf.training.train.compile_model``, ``train_on_batch`` on in-memory arrays
   (``--model-steps`` timed steps after ``--warmup``).
3. ``ratio_cold`` / ``ratio_cached`` = pipeline images/s ÷ model images/s.

Augmentation placement, at each SIZE, on in-memory [0, 255] images (no decoding):

- ``tf_data``: today's code, ``augment`` in a parallel ``tf.data`` map + batch (each image
  transformed with probability 0.5, the papers' rule); ``tf_data_p1``: the same with every
  image transformed (like for like with the layers, which have no 0.5 gate);
- ``keras_layers``: the closest Keras 3 preprocessing layers — ``RandomRotation(25/360,
  fill_mode="constant")``, ``RandomFlip("horizontal_and_vertical")``,
  ``RandomBrightness(0.05)`` (additive, where the papers' is multiplicative),
  ``RandomContrast(0.05)`` — run on whole batches in a ``tf.function`` with
  ``training=True``, as they would run inside the model on the accelerator.

Target
------
``ratio_cached >= 3`` and ``ratio_cold >= 3`` (``target_met``): the input pipeline
produces images at least three times as fast as the model consumes them, so it never
starves the accelerator. On a CPU-only machine the pipeline and the model share the same
cores, so the ratio says what fraction of the CPU the pipeline takes while training
(1/ratio), not that they overlap for free.

Augmentation: the faster placement is the default. On this CPU-only machine the
"accelerator" is the CPU, so only the CPU side is measured here (``augmentation.faster``);
tf.data augmentation also runs in tf.data's threads, overlapped with the training step,
where layers add their time to every step. **The GPU side (layers on the GPU, tf.data on
the host CPU) needs a run on a GPU machine** (this script, unchanged; ``machine.gpus`` in
the output says where it ran). Until then the default stays augmentation in tf.data.

Measured here (2 CPU cores shared with other jobs, load average 2.4–3.9, TF 2.21, batch 16,
256 images; ``--cached-epochs 2``; run again under load 4–7.5 in brackets)
-----------------------------------------------------------------------------------------
==========================  ================  ================  ================  =============
size, backbone              pipeline cold     pipeline cached   training step     ratio cold /
                            (disk cache)      (disk cache)                        cached
==========================  ================  ================  ================  =============
224 px, resnet50            272 (256) img/s   387 (412) img/s   3.5 [2.2] img/s   78× / 111×
                                                                                  [103× / 183×]
300 px, efficientnet_b3     195 (195) img/s   387 (389) img/s   4.0 [0.8] img/s   49× / 97×
                                                                                  [107× / 294×]
==========================  ================  ================  ================  =============

The target (≥ 3×) is met with a wide margin; on an idle machine (where ResNet50 at
224 px trains at ~11 img/s, a figure measured elsewhere) the ratio would still be ~25×. Memory and disk caches read
back alike.
Augmentation, images/s: 224 px — tf.data 741 (p = 0.5) / 386 (p = 1) vs Keras layers 299;
300 px — tf.data 751 / 386 vs layers 311 [under heavier load: 350 / 184 vs 126 and
189 / 94 vs 74]. On the CPU, tf.data is faster even like for like (p = 1) and about twice
as fast with the papers' 0.5 gate, so augmentation stays in tf.data (``augmentation_default``).

Output: ONE JSON line on stdout (keys ``bench``, ``configs``, ``augmentation``,
``augmentation_default`` (what osteo_tf does), ``augmentation_faster_here``, ``target_ratio``,
``settings``, ``machine``, ``versions``);
human-readable progress on stderr. Seeded (``--seed``): same cohort, same augmentations.
Defaults take 1.5–4 min on 2 CPU cores (most of it the two models' tracing and steps). ``--quick`` is the smoke-test
size (seconds).

    python bench/pipeline.py                       # defaults
    python bench/pipeline.py --configs 32:resnet18 --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import emit, machine, versions  # bench/ is the script's folder, first on sys.path

TARGET_RATIO = 3.0
# Where osteo_tf augments (osteo_tf.data.pipeline.make_dataset): the faster placement measured on CPU.
AUGMENTATION_DEFAULT = "tf.data"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="See the module docstring (head -60 bench/pipeline.py) for what is measured.",
    )
    parser.add_argument(
        "--configs",
        default="224:resnet50,300:efficientnet_b3",
        help="comma-separated SIZE:BACKBONE pairs (default %(default)s)",
    )
    parser.add_argument(
        "--images", type=int, default=256, help="phantom images per configuration (default %(default)s)"
    )
    parser.add_argument("--batch", type=int, default=16, help="batch size, pipeline and model (default %(default)s)")
    parser.add_argument(
        "--cached-epochs", type=int, default=2, help="epochs timed after the cold one (default %(default)s)"
    )
    parser.add_argument("--model-steps", type=int, default=2, help="timed training steps (default %(default)s)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed training steps first (tracing) (default %(default)s)"
    )
    parser.add_argument(
        "--aug-images", type=int, default=256, help="images per augmentation measurement (default %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke-test size: 24 images, 1 cached epoch, 1 model step, 32 augmentation images",
    )
    parser.add_argument("--out", help="also append the JSON line to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.cached_epochs, args.model_steps, args.warmup, args.aug_images = 24, 1, 1, 1, 32
    args.pairs = []
    for item in args.configs.split(","):
        size, _, backbone = item.strip().partition(":")
        if not size.isdigit() or not backbone:
            parser.error(f"--configs: {item!r} is not SIZE:BACKBONE")
        args.pairs.append((int(size), backbone))
    for name in ("images", "batch", "cached_epochs", "model_steps", "aug_images"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def log(message: str) -> None:
    print(f"[bench/pipeline] {message}", file=sys.stderr, flush=True)


def phantom_cohort(folder: Path, size: int, n: int, seed: int):
    """The validated cohort table of a phantom generated at ``size`` px, with seeded ROI boxes."""
    import numpy as np

    from osteo_tf.data.manifest import read_manifest
    from osteo_tf.data.synthetic import make_cohort

    cohort = read_manifest(make_cohort("hip", max(n, 10), folder, seed=seed, image_size=size)).iloc[:n].copy()
    rng = np.random.default_rng(seed)
    side = (size * rng.uniform(0.80, 0.95, len(cohort))).astype(int)
    cohort["roi_x"] = [int(rng.integers(0, size - s + 1)) for s in side]
    cohort["roi_y"] = [int(rng.integers(0, size - s + 1)) for s in side]
    cohort["roi_w"] = side
    cohort["roi_h"] = side
    return cohort


def time_epochs(dataset, epochs: int) -> list[float]:
    """Seconds per epoch, iterating the dataset as training does (every batch materialised)."""
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        for inputs, _labels in dataset:
            inputs["image"].numpy()  # the batch exists (prefetch hands ready tensors)
        seconds.append(time.perf_counter() - started)
    return seconds


def pipeline_rates(cohort, spec, size: int, args, cache_dir: Path) -> dict:
    from osteo_tf.data.pipeline import make_dataset

    rates = {}
    for cache in ("memory", "disk"):
        dataset = make_dataset(
            cohort,
            None,
            image_size=size,
            normalization=spec.normalization,
            batch_size=args.batch,
            training=True,
            seed=args.seed,
            cache=cache,
            cache_file=cache_dir / f"train{size}",
        )
        seconds = time_epochs(dataset, 1 + args.cached_epochs)
        rates[f"{cache}_cold_img_s"] = len(cohort) / seconds[0]
        rates[f"{cache}_cached_img_s"] = len(cohort) * args.cached_epochs / sum(seconds[1:])
    return rates


def model_rate(backbone: str, size: int, args) -> dict:
    """Images/s of the project's training step (build_model + compile_model), in-memory arrays."""
    import keras
    import numpy as np

    from osteo_tf.models import build_model
    from osteo_tf.runs.config import TrainConfig
    from osteo_tf.training.train import compile_model

    keras.utils.set_random_seed(args.seed)
    model = build_model(backbone, "image_only", size, covariate_dim=0, weights=None)
    compile_model(model, TrainConfig(backbone=backbone, mode="image_only", image_size=size, batch_size=args.batch))
    rng = np.random.default_rng(args.seed)
    x = {"image": rng.normal(size=(args.batch, size, size, 3)).astype("float32")}
    y = rng.integers(0, 2, (args.batch, 1)).astype("float32")
    started = time.perf_counter()
    for _ in range(args.warmup):
        model.train_on_batch(x, y)
    warmup = time.perf_counter() - started
    steps = []
    for _ in range(args.model_steps):
        started = time.perf_counter()
        model.train_on_batch(x, y)
        steps.append(time.perf_counter() - started)
    keras.utils.clear_session(free_memory=True)
    step = statistics.median(steps)
    return {"model_img_s": args.batch / step, "model_step_s": step, "model_warmup_s": warmup}


def keras_augmentation(seed: int):
    import keras

    from osteo_tf.data.pipeline import JITTER, MAX_ROTATION_DEGREES

    return keras.Sequential(
        [
            keras.layers.RandomRotation(MAX_ROTATION_DEGREES / 360.0, fill_mode="constant", fill_value=0.0, seed=seed),
            keras.layers.RandomFlip("horizontal_and_vertical", seed=seed + 1),
            keras.layers.RandomBrightness(JITTER, value_range=(0.0, 255.0), seed=seed + 2),
            keras.layers.RandomContrast(JITTER, value_range=(0.0, 255.0), seed=seed + 3),
        ],
        name="keras_augmentation",
    )


def augmentation_rates(size: int, args) -> dict:
    """Images/s of the papers' augmentation in tf.data vs the closest Keras layers on batches."""
    import numpy as np
    import tensorflow as tf

    import osteo_tf.data.pipeline as pipeline

    images = np.random.default_rng(args.seed).uniform(0, 255, (args.aug_images, size, size, 3)).astype("float32")
    n, rounds = len(images), 3

    def tf_data(probability: float) -> float:
        saved = pipeline.AUGMENT_PROBABILITY
        pipeline.AUGMENT_PROBABILITY = probability  # read when the map function is traced
        try:
            seeds = tf.data.Dataset.random(seed=args.seed, rerandomize_each_iteration=True).batch(2)
            dataset = (
                tf.data.Dataset.zip((tf.data.Dataset.from_tensor_slices(images), seeds))
                .map(pipeline.augment, num_parallel_calls=tf.data.AUTOTUNE)
                .batch(args.batch)
                .prefetch(tf.data.AUTOTUNE)
            )
            for _ in dataset:  # warm-up: tracing, autotuning
                pass
            seconds = []
            for _ in range(rounds):
                started = time.perf_counter()
                for batch in dataset:
                    batch.numpy()
                seconds.append(time.perf_counter() - started)
        finally:
            pipeline.AUGMENT_PROBABILITY = saved
        return n / statistics.median(seconds)

    layers = keras_augmentation(args.seed)
    apply = tf.function(lambda batch: layers(batch, training=True), jit_compile=False)
    batches = [tf.constant(images[i : i + args.batch]) for i in range(0, n, args.batch)]
    for batch in batches:  # warm-up: tracing (one trace per batch shape)
        apply(batch)
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        for batch in batches:
            apply(batch).numpy()
        seconds.append(time.perf_counter() - started)
    rates = {
        "size": size,
        "tf_data_img_s": tf_data(pipeline.AUGMENT_PROBABILITY),
        "tf_data_p1_img_s": tf_data(1.0),
        "keras_layers_img_s": n / statistics.median(seconds),
    }
    rates["faster"] = "tf.data" if rates["tf_data_p1_img_s"] >= rates["keras_layers_img_s"] else "keras_layers"
    return rates


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # not the retracing notes of several models' train functions
    import keras

    from osteo_tf.models import get_backbone_spec

    keras.utils.set_random_seed(args.seed)
    configs, augmentation = [], []
    with tempfile.TemporaryDirectory(prefix="osteo_bench_pipeline_") as scratch:
        for size, backbone in args.pairs:
            spec = get_backbone_spec(backbone)
            started = time.perf_counter()
            cohort = phantom_cohort(Path(scratch) / f"phantom{size}", size, args.images, args.seed)
            log(f"{size} px: phantom of {len(cohort)} images written in {time.perf_counter() - started:.1f} s")
            rates = pipeline_rates(cohort, spec, size, args, Path(scratch) / "cache")
            log(
                f"{size} px pipeline: cold {rates['memory_cold_img_s']:.0f} img/s, "
                f"cached {rates['memory_cached_img_s']:.0f} "
                f"img/s (disk cache: cold {rates['disk_cold_img_s']:.0f}, cached {rates['disk_cached_img_s']:.0f})"
            )
            rates.update(model_rate(backbone, size, args))
            rates["ratio_cold"] = rates["memory_cold_img_s"] / rates["model_img_s"]
            rates["ratio_cached"] = rates["memory_cached_img_s"] / rates["model_img_s"]
            rates["target_met"] = min(rates["ratio_cold"], rates["ratio_cached"]) >= TARGET_RATIO
            log(
                f"{size} px {backbone} training step: {rates['model_img_s']:.1f} img/s → pipeline/model "
                f"cold {rates['ratio_cold']:.1f}×, cached {rates['ratio_cached']:.1f}× (target ≥ {TARGET_RATIO:g}×)"
            )
            configs.append(
                {
                    "size": size,
                    "backbone": backbone,
                    "images": len(cohort),
                    **{k: round(v, 4) if isinstance(v, float) else v for k, v in rates.items()},
                }
            )
            aug = augmentation_rates(size, args)
            log(
                f"{size} px augmentation: tf.data {aug['tf_data_img_s']:.0f} img/s (p=0.5), "
                f"{aug['tf_data_p1_img_s']:.0f} "
                f"(p=1); Keras layers {aug['keras_layers_img_s']:.0f} img/s → faster: {aug['faster']}"
            )
            augmentation.append({k: round(v, 2) if isinstance(v, float) else v for k, v in aug.items()})
    faster = {a["faster"] for a in augmentation}
    result = {
        "bench": "pipeline",
        "target_ratio": TARGET_RATIO,
        "configs": configs,
        "augmentation": augmentation,
        "augmentation_default": AUGMENTATION_DEFAULT,
        "augmentation_faster_here": faster.pop() if len(faster) == 1 else "depends on size",
        "settings": {k: v for k, v in vars(args).items() if k not in ("pairs", "out")},
        "machine": machine(),
        "versions": versions(),
    }
    return emit(result, args.out)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's osteo_tf, not an installed one
    main()
