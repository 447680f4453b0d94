"""The serving path's cost: the exported SavedModel against the bare Keras model, on this machine.

What it measures (TensorFlow backend, whatever devices TensorFlow sees; written on 2 CPU cores)
------------------------------------------------------------------------------------------------
1. A phantom hip cohort (``osteo_tf.data.synthetic.make_cohort``) at ``--size`` px trains the
   ``--backbone`` ensemble for one epoch (random initial weights: weights do not change the
   cost) and is exported with ``osteo_tf.serving.export_run``, as ``osteo export`` does.
2. Requests: ``--request-images`` further phantom subjects, each image read as ``osteo predict``
   reads it (``read_image``) and encoded as it sends it (``encode_png``: lossless 16-bit PNG),
   with the raw covariates (age, sex code, BMI, fracture-history code).
3. For each batch size in ``--batches`` (default 1, 8, 32, 64), alternating in ``--repeats``
   rounds after ``--warmup`` untimed calls each:
   - ``serving``: the SavedModel's ``serving_default`` (PNG bytes + raw covariates → probability,
     label): input checks, per-instance decoding, min–max, resize, ImageNet normalisation,
     covariate encoding, the model, the threshold;
   - ``bare``: the Keras model (``model.keras``) in a ``tf.function`` on the preprocessed tensors
     (the serving graph's own preprocessing output for the same requests, computed once);
   - ``preprocess``: the serving graph's preprocessing alone (``ServingGraph.images`` +
     ``covariates`` in a ``tf.function``): decoding and encoding, no model.
   Reported per side: median seconds per batch and images/s; ``overhead`` = serving ÷ bare − 1;
   ``preprocess_share`` = preprocess ÷ serving. The serving and bare probabilities of the same
   batch are compared (``max_abs_diff_probability``), so the two sides compute the same thing.
4. Latency of one request (batch 1): p50 and p99 over ``--latency-requests`` calls, serving
   and bare.
5. ``osteo predict`` end to end: ``predict_manifest`` over a ``--predict-images``-row manifest with
   the exported model in this process (manifest reading and checks, image reading, PNG encoding,
   the signature, the CSV) → images/s.

Budget: ``overhead`` ≤ 0.20 at batch 32 (``budget_met``). Prints ONE JSON line on stdout
(progress on stderr); ``--out FILE`` also appends it to FILE. No timing is asserted by the tests.

Usage: ``python bench/serving.py [--backbone resnet18] [--size 224] [--batches 1,8,32,64]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import emit, machine, versions  # bench/ is the script's folder, first on sys.path

BUDGET_OVERHEAD = 0.20
BUDGET_BATCH = 32


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="See the module docstring (head -40 bench/serving.py) for what is measured.",
    )
    parser.add_argument("--backbone", default="resnet18", help="registry name (default %(default)s)")
    parser.add_argument("--size", type=int, default=224, help="image side in px (default %(default)s)")
    parser.add_argument("--batches", default="1,8,32,64", help="comma-separated batch sizes (default %(default)s)")
    parser.add_argument("--train-images", type=int, default=40, help="phantom subjects to train (default %(default)s)")
    parser.add_argument("--request-images", type=int, default=64, help="distinct request images (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per side and batch (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per side and batch (default %(default)s)")
    parser.add_argument(
        "--latency-requests", type=int, default=100, help="single requests for p50/p99 (default %(default)s)"
    )
    parser.add_argument(
        "--predict-images", type=int, default=1000, help="manifest rows for osteo predict (default %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also append the JSON line to this file")
    args = parser.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batches.split(",") if b.strip()]
    for name in ("size", "request_images", "repeats", "latency_requests"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("train_images", "predict_images"):
        if getattr(args, name) < 10:
            parser.error(f"--{name.replace('_', '-')} must be >= 10 (phantom cohorts have at least 10 subjects)")
    if args.warmup < 0 or not args.batch_sizes or min(args.batch_sizes) < 1:
        parser.error("--warmup must be >= 0 and every batch size >= 1")
    return args


def log(message: str) -> None:
    print(f"[bench/serving] {message}", file=sys.stderr, flush=True)


def exported_model(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """(run folder, SavedModel version folder) of a one-epoch ensemble on a phantom cohort."""
    from osteo_tf.data.synthetic import make_cohort
    from osteo_tf.serving.archive import export_run
    from osteo_tf.training.train import train

    manifest = make_cohort("hip", args.train_images, work / "train_cohort", seed=args.seed, image_size=args.size)
    run = work / "run"
    train(
        manifest,
        run,
        backbone=args.backbone,
        mode="ensemble",
        image_size=args.size,
        epochs=1,
        batch_size=8,
        seed=args.seed,
        verbose=0,
    )
    return run, export_run(run, work / "saved_models").path


def requests(args: argparse.Namespace, work: Path, inputs: dict[str, str], card: dict) -> list[dict]:
    """Request instances as ``osteo predict`` builds them (decoded image re-encoded as PNG)."""
    from osteo_tf.data.images import read_image
    from osteo_tf.data.manifest import ManifestConfig
    from osteo_tf.data.synthetic import make_cohort
    from osteo_tf.serving.predict import encode_png, read_requests
    from osteo_tf.serving.spec import IMAGE_INPUT

    manifest = make_cohort(
        "hip", max(args.request_images, 10), work / "request_cohort", seed=args.seed + 1, image_size=args.size
    )
    rows = read_requests(manifest, inputs, ManifestConfig.from_dict(card.get("manifest_config")), card=card)
    instances = []
    for record in rows.to_dict("records"):
        instance = {name: record[name] for name in inputs if name != IMAGE_INPUT}
        instance[IMAGE_INPUT] = encode_png(read_image(record["path"], record["roi"]))
        instances.append(instance)
    return instances[: args.request_images]


def batch_of(instances: list[dict], inputs: dict[str, str], size: int) -> dict:
    import tensorflow as tf

    chosen = [instances[i % len(instances)] for i in range(size)]
    return {
        name: tf.constant([c[name] for c in chosen], tf.string if dtype == "string" else tf.float32)
        for name, dtype in inputs.items()
    }


def timed(function, argument, warmup: int) -> float:
    for _ in range(warmup):
        function(argument)
    start = time.perf_counter()
    out = function(argument)
    for value in out.values() if isinstance(out, dict) else [out]:
        value.numpy()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import numpy as np
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    from osteo_tf.models import get_backbone_spec
    from osteo_tf.runs import RunDir
    from osteo_tf.serving.predict import LocalModel, predict_manifest
    from osteo_tf.serving.signature import ServingGraph
    from osteo_tf.serving.spec import IMAGE_INPUT, ServingSpec

    get_backbone_spec(args.backbone)  # an unknown name fails before anything is built
    # the library's progress lines (and Keras') go to stderr: stdout carries the one JSON line
    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(sys.stderr):
        work = Path(scratch)
        log(f"training and exporting a one-epoch {args.backbone} ensemble at {args.size} px")
        run, saved = exported_model(args, work)
        local = LocalModel(saved)
        inputs, serving = local.inputs(), local.signature
        model = RunDir(run).load_model()
        graph = ServingGraph(model, ServingSpec.from_run(run))

        @tf.function
        def preprocess(batch):
            return {"image": graph.images(batch[IMAGE_INPUT]), "covariates": graph.covariates(batch)}

        @tf.function
        def bare(tensors):
            return model(tensors, training=False)

        instances = requests(args, work, inputs, local.card)
        batches = {}
        for size in args.batch_sizes:
            raw = batch_of(instances, inputs, size)
            tensors = preprocess(raw)
            sides = {"serving": (lambda b: serving(**b), raw), "bare": (bare, tensors), "preprocess": (preprocess, raw)}
            times = {side: [] for side in sides}
            for round_ in range(args.repeats):
                for side, (function, argument) in sides.items():
                    times[side].append(timed(function, argument, args.warmup if round_ == 0 else 0))
            medians = {side: statistics.median(values) for side, values in times.items()}
            probability_serving = serving(**raw)["probability"].numpy()
            probability_bare = tf.reshape(bare(tensors), (-1,)).numpy()
            batches[str(size)] = {
                **{f"{side}_s": round(value, 5) for side, value in medians.items()},
                **{f"{side}_img_s": round(size / medians[side], 2) for side in ("serving", "bare")},
                "overhead": round(medians["serving"] / medians["bare"] - 1.0, 4),
                "preprocess_share": round(medians["preprocess"] / medians["serving"], 4),
                "max_abs_diff_probability": float(np.abs(probability_serving - probability_bare).max()),
            }
            log(f"batch {size}: {batches[str(size)]}")

        single_tensors = preprocess(batch_of(instances, inputs, 1))
        latency = {"serving": [], "bare": []}
        for i in range(args.latency_requests):
            one = batch_of([instances[i % len(instances)]], inputs, 1)
            latency["serving"].append(timed(lambda b: serving(**b), one, 1 if i == 0 else 0))
            latency["bare"].append(timed(bare, single_tensors, 1 if i == 0 else 0))
        latency_ms = {
            side: {
                "p50_ms": round(1000 * float(np.percentile(values, 50)), 3),
                "p99_ms": round(1000 * float(np.percentile(values, 99)), 3),
            }
            for side, values in latency.items()
        }
        log(f"latency of one request: {latency_ms}")

        from osteo_tf.data.synthetic import make_cohort

        manifest = make_cohort(
            "hip", max(args.predict_images, 10), work / "predict_cohort", seed=args.seed + 2, image_size=args.size
        )
        start = time.perf_counter()
        predicted = predict_manifest(manifest, work / "predictions.csv", model=saved, batch_size=BUDGET_BATCH)
        predict_s = time.perf_counter() - start
        log(f"osteo predict: {len(predicted)} images in {predict_s:.1f} s")

    at_budget = batches.get(str(BUDGET_BATCH))
    output = {
        "bench": "serving",
        "budget_overhead": BUDGET_OVERHEAD,
        "budget_batch": BUDGET_BATCH,
        "budget_met": None if at_budget is None else at_budget["overhead"] <= BUDGET_OVERHEAD,
        "batches": batches,
        "latency_batch_1": latency_ms,
        "predict": {
            "images": len(predicted),
            "seconds": round(predict_s, 2),
            "img_s": round(len(predicted) / predict_s, 2),
            "batch_size": BUDGET_BATCH,
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("batch_sizes", "out")},
        "machine": machine(),
        "versions": versions(),
    }
    return emit(output, args.out)


if __name__ == "__main__":
    main()
