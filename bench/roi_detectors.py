"""keras-hub's ``RetinaNetObjectDetector`` vs the project's heatmap landmark detector, same images, same budget.

    python bench/roi_detectors.py --out DIR [--kind hip] [--budget 100] [--width 192] [--time-factor 1]

A pool of whole-view phantoms (``make_whole_cohort``, seed 1, ``budget + 100`` images): the
first ``budget`` are the annotated images, the last 100 the held-out test. Both detectors
start from random initialisation on this CPU (nothing pretrained can be downloaded here) at
the same input (the heatmap model's default, 128 × 128 for hip):

- heatmap: ``osteo roi train`` (60 epochs, its landmark-consistent augmentation), scored by
  ``osteo roi evaluate`` on the held-out images;
- RetinaNet: keras-hub 0.32's ``RetinaNetObjectDetector`` on a ``RetinaNetBackbone`` over a
  small ``ResNetBackbone`` (basic blocks, one per stage, 64-64-128-128 filters, FPN P3–P5), two
  classes (the left and the right ROI), its own default losses (focal + smooth L1) and
  optimiser, trained on the same annotated images (all of them: it has no validation split)
  without augmentation, epoch after epoch until its wall time is at least ``--time-factor``
  times the heatmap model's (or ``--max-epochs``). Each held-out image's box is its
  highest-scoring box of the row's side class, mapped back to whole-image pixels (IoU 0 when it predicts none).

Both are scored by the IoU of the row's side's ROI box with the ground truth (``share_iou_50``,
``share_iou_75``, ``iou_median``). One JSON line per model (also appended to DIR/results.jsonl),
then a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, machine  # noqa: E402

from osteo_tf.data.images import read_image  # noqa: E402
from osteo_tf.data.landmarks import box_columns, box_iou  # noqa: E402
from osteo_tf.data.whole import make_whole_cohort  # noqa: E402

INPUT = {"hip": (128, 128), "dental": (128, 256)}


def _pool(kind: str, out: Path, budget: int, width: int, test: int) -> tuple[Path, Path]:
    manifest = out / "pool" / "manifest.csv"
    if not manifest.is_file():
        make_whole_cohort(kind, budget + test, out / "pool", seed=1, image_size=width)
    table = pd.read_csv(manifest)
    annotated, held_out = out / "pool" / f"annotated_{budget}.csv", out / "pool" / "test.csv"
    table.iloc[:budget].to_csv(annotated, index=False)
    table.iloc[budget : budget + test].to_csv(held_out, index=False)
    return annotated, held_out


def heatmap(kind: str, annotated: Path, held_out: Path, out: Path, epochs: int = 60) -> dict:
    """Train and score the project's detector; its figures and training wall time."""
    from osteo_tf.roi.evaluate import evaluate_roi
    from osteo_tf.runs.roi_predict import load_detector
    from osteo_tf.training.roi import train_roi

    start = time.perf_counter()
    train_roi(annotated, kind, out, epochs=epochs, seed=0, force=True, log=lambda line: None)
    seconds = time.perf_counter() - start
    metrics = evaluate_roi(out, held_out, out=out / "heldout")
    params = load_detector(out)[0].count_params()  # the decoder on top holds no weights
    return {"model": "heatmap U-Net (osteo roi)", "train_seconds": round(seconds, 1), "params": params, **metrics}


def _images(table: pd.DataFrame, folder: Path, input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) float32 in [0, 1] resized, and (N, 2) whole-image sizes (width, height)."""
    import tensorflow as tf

    from osteo_tf.data.landmark_pipeline import detector_input

    images, sizes = [], []
    for path in table["image"]:
        pixels = read_image(folder / path)
        sizes.append((pixels.shape[1], pixels.shape[0]))
        images.append(tf.repeat(detector_input(pixels, input_hw), 3, axis=-1).numpy())
    return np.stack(images).astype(np.float32), np.asarray(sizes, np.float64)


def _xyxy(table: pd.DataFrame, side: str, scale: np.ndarray) -> np.ndarray:
    x, y, w, h = (table[c].to_numpy(np.float64) for c in list(box_columns(side)))
    return np.stack([x * scale[:, 0], y * scale[:, 1], (x + w) * scale[:, 0], (y + h) * scale[:, 1]], axis=1)


def retinanet(
    kind: str, annotated: Path, held_out: Path, *, seconds: float, max_epochs: int = 200, seed: int = 0
) -> dict:
    """Train keras-hub's RetinaNet for at least ``seconds`` of wall time and score it on ``held_out``."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    input_hw = INPUT[kind]
    shape = (*input_hw, 3)
    train, test = pd.read_csv(annotated), pd.read_csv(held_out)
    x, sizes = _images(train, annotated.parent, input_hw)
    scale = np.array([input_hw[1], input_hw[0]]) / sizes
    boxes = np.stack([_xyxy(train, side, scale) for side in ("left", "right")], axis=1).astype(np.float32)
    labels = np.tile(np.array([0, 1], np.int32), (len(train), 1))
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 64, 128, 128],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=shape,
    )
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=5, use_p5=False, image_shape=shape
    )
    detector = keras_hub.models.RetinaNetObjectDetector(backbone=backbone, num_classes=2, bounding_box_format="xyxy")
    detector.compile()
    start, epochs = time.perf_counter(), 0
    while (time.perf_counter() - start < seconds or epochs == 0) and epochs < max_epochs:
        detector.fit(
            x, {"boxes": boxes, "labels": labels}, epochs=epochs + 1, initial_epoch=epochs, batch_size=8, verbose=0
        )
        epochs += 1
    trained = time.perf_counter() - start
    x_test, test_sizes = _images(test, held_out.parent, input_hw)
    # Eager, one concrete batch at a time: keras-hub 0.32's NonMaxSuppression needs a static
    # batch size, which ``detector.predict``'s traced step (batch None) does not give it.
    parts = [
        detector.decode_predictions(detector(x_test[i : i + 16], training=False), x_test[i : i + 16])
        for i in range(0, len(x_test), 16)
    ]
    predicted = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in ("boxes", "labels", "confidence")}
    test_scale = np.array([input_hw[1], input_hw[0]]) / test_sizes
    found = np.zeros((len(test), 4))
    for i, side in enumerate(test["side"].fillna("left")):
        wanted = int(side == "right")
        keep = np.flatnonzero(
            (np.asarray(predicted["labels"][i]) == wanted) & (np.asarray(predicted["confidence"][i]) > 0)
        )
        if keep.size:
            x0, y0, x1, y1 = np.asarray(predicted["boxes"][i])[keep[np.argmax(predicted["confidence"][i][keep])]]
            found[i] = [
                x0 / test_scale[i, 0],
                y0 / test_scale[i, 1],
                (x1 - x0) / test_scale[i, 0],
                (y1 - y0) / test_scale[i, 1],
            ]
    truth = np.stack(
        [test[list(box_columns(s))].to_numpy(np.float64)[i] for i, s in enumerate(test["side"].fillna("left"))]
    )
    iou = box_iou(found, truth)
    return {
        "model": "keras-hub RetinaNetObjectDetector (ResNet basic blocks, FPN P3-P5)",
        "train_seconds": round(trained, 1),
        "epochs": epochs,
        "params": detector.count_params(),
        "n": len(test),
        "iou_mean": float(iou.mean()),
        "iou_median": float(np.median(iou)),
        "share_iou_50": float(np.mean(iou >= 0.5)),
        "share_iou_75": float(np.mean(iou >= 0.75)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--kind", choices=tuple(INPUT), default="hip")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--test", type=int, default=100, help="held-out images")
    parser.add_argument("--heatmap-epochs", type=int, default=60)
    parser.add_argument("--max-epochs", type=int, default=200, help="RetinaNet's epoch cap")
    parser.add_argument(
        "--time-factor", type=float, default=1.0, help="RetinaNet's wall time as a multiple of the heatmap model's"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    annotated, held_out = _pool(args.kind, out, args.budget, args.width, args.test)
    rows = [heatmap(args.kind, annotated, held_out, out / "heatmap", args.heatmap_epochs)]
    seconds = args.time_factor * rows[0]["train_seconds"]
    rows.append(retinanet(args.kind, annotated, held_out, seconds=seconds, max_epochs=args.max_epochs))
    for row in rows:
        emit(
            {"bench": "roi_detectors", "kind": args.kind, "budget": args.budget, **row, **machine()},
            str(out / "results.jsonl"),
        )
    print("| model | params | train s | IoU ≥ 0.5 | IoU ≥ 0.75 | median IoU |\n|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['params']:,} | {r['train_seconds']:.0f} | {100 * r['share_iou_50']:.0f} % | "
            f"{100 * r['share_iou_75']:.0f} % | {r['iou_median']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
