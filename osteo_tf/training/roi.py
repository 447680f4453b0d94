"""``osteo roi train``: fit the ROI landmark detector on annotated whole radiographs, resumably.

Everything the fit needs is checked before the run folder is touched: the manifest, every
image, every annotation value (:func:`osteo_tf.data.annotations.read_annotations`), the
options. The annotated rows are split by patient into train and validation
(``val_fraction``, seeded; at least one validation image). The fit runs ``epochs`` epochs of
Adam with a cosine-decayed learning rate and keeps the last epoch's weights (no selection
on the validation split, so its figures are an honest estimate and a resumed fit has no
"best so far" to rebuild). Data order and augmentation are a function of (seed, epoch,
item) (:class:`osteo_tf.training.callbacks.EpochClock`), the weights and optimiser are
backed up after every epoch (:class:`~osteo_tf.training.callbacks.EpochBackup`), so a run
killed and started again with the same command ends with the weights of one never
interrupted. ``detector.keras`` is written last, under a temporary name.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from osteo_tf.data.annotations import Annotations, read_annotations
from osteo_tf.data.landmark_pipeline import landmark_dataset
from osteo_tf.data.landmarks import TARGETS, roi_metrics
from osteo_tf.errors import OsteoInputError
from osteo_tf.io import atomic_path, read_json, write_csv, write_json
from osteo_tf.models.landmarks import build_landmark_detector, heatmap_loss
from osteo_tf.runs.roi_predict import detect_boxes, predict_keypoints, reference_boxes
from osteo_tf.runs.roi_run import DEFAULT_STEPS, EPOCH_RANGE, RoiRun, RoiSettings
from osteo_tf.training.callbacks import AtomicHistory, EpochBackup, EpochClock
from osteo_tf.training.train import set_determinism, versions
from osteo_tf.vocabulary import PHANTOM_KINDS

__all__ = ["DEFAULT_INPUT", "default_epochs", "train_roi"]

#: The detector's default input (H, W) per kind: the whole view downsampled (hip square,
#: panoramic 2:1).
DEFAULT_INPUT = {"hip": (128, 128), "dental": (128, 256)}


def _check_options(kind: str, target: str | None, input_hw: tuple[int, int], settings: dict) -> None:
    if kind not in PHANTOM_KINDS:
        raise OsteoInputError(f"kind must be one of {PHANTOM_KINDS}, got {kind!r}", parameter="kind")
    if target is not None and target not in TARGETS:
        raise OsteoInputError(f"target must be one of {TARGETS}, got {target!r}", parameter="target")
    if any(not isinstance(v, int) or v < 64 or v % 32 for v in input_hw):
        raise OsteoInputError(
            f"input_size must be whole multiples of 32, at least 64 px, got {input_hw}", parameter="input_size"
        )
    for name, minimum in (("epochs", 1), ("batch_size", 1)):
        if name == "epochs" and settings[name] is None:
            continue  # the default, resolved from the number of training images
        if not isinstance(settings[name], int) or settings[name] < minimum:
            raise OsteoInputError(f"{name} must be an integer >= {minimum}, got {settings[name]!r}", parameter=name)
    if not 0 < settings["learning_rate"] < 1:
        raise OsteoInputError(
            f"learning_rate must be in (0, 1), got {settings['learning_rate']!r}", parameter="learning_rate"
        )
    if not 0 < settings["val_fraction"] < 0.5:
        raise OsteoInputError(
            f"val_fraction must be in (0, 0.5), got {settings['val_fraction']!r}", parameter="val_fraction"
        )
    if not 0 <= settings["confidence_threshold"] < 1:
        raise OsteoInputError(
            f"confidence_threshold must be in [0, 1), got {settings['confidence_threshold']!r}",
            parameter="confidence_threshold",
        )


def _split(annotations: Annotations, val_fraction: float, seed: int) -> dict[str, np.ndarray]:
    table = annotations.images.table
    groups = table["patient_id"].to_numpy() if "patient_id" in table else np.arange(len(table)).astype(str)
    if len(set(groups)) < 5:
        raise OsteoInputError(
            f"{annotations.images.manifest}: {len(set(groups))} annotated patients; the detector needs at least 5 "
            "(4 to train on, 1 to validate)",
            parameter="manifest",
        )
    unique = np.unique(groups)
    chosen = np.random.default_rng(seed).permutation(unique)[: max(1, int(round(val_fraction * len(unique))))]
    val = np.isin(groups, chosen)
    return {"train": np.flatnonzero(~val), "val": np.flatnonzero(val)}


def _settings_match(run: RoiRun, settings: RoiSettings) -> None:
    if run.config.is_file() and RoiSettings.from_dict(read_json(run.config)) != settings:
        raise OsteoInputError(
            f"{run.path} holds an unfinished ROI run started with other settings; resume it with the same command, "
            "or choose another out=",
            parameter="out",
        )


def train_roi(
    manifest: str | Path,
    kind: str,
    out: str | Path,
    *,
    coco: str | Path | None = None,
    target: str | None = None,
    input_size: tuple[int, int] | None = None,
    epochs: int | None = None,
    batch_size: int = 8,
    learning_rate: float = 2e-3,
    seed: int = 0,
    val_fraction: float = 0.2,
    confidence_threshold: float = 0.5,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Train an ROI detector and write its run folder (:mod:`osteo_tf.runs.roi_run`).

    Args:
        manifest: the annotated whole-image manifest (:mod:`osteo_tf.data.annotations`).
        kind: "hip" or "dental".
        out: the run folder.
        coco: a COCO keypoint / bounding-box JSON with the annotations (else the manifest's columns).
        target: "landmarks" or "box" (default: what the annotations hold).
        input_size: the detector's input (H, W) in pixels (default :data:`DEFAULT_INPUT`).
        epochs: passes over the training images (default :func:`default_epochs`: a few dozen
            annotated images need more passes than a few hundred); recorded in ``roi_config.json``.
        batch_size, learning_rate, seed, val_fraction: the fit.
        confidence_threshold: ``osteo roi detect`` flags rows below it for review.
        force: replace a finished run.
        log: where progress lines go.

    Returns:
        The validation figures (:func:`osteo_tf.data.landmarks.roi_metrics`), also in ``val_metrics.json``.

    Raises:
        OsteoInputError: a bad option or annotation, named; a finished run without ``force``.
    """
    input_hw = tuple(input_size) if input_size is not None else DEFAULT_INPUT.get(kind, (128, 128))
    options = dict(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        val_fraction=val_fraction,
        confidence_threshold=confidence_threshold,
    )
    _check_options(kind, target, input_hw, options)
    annotations = read_annotations(manifest, kind, coco=coco, target=target)
    splits = _split(annotations, val_fraction, seed)
    if epochs is None:
        options["epochs"] = default_epochs(len(splits["train"]), batch_size)
    run = RoiRun(out)
    settings = RoiSettings(
        kind=kind,
        target=annotations.target,
        input_height=input_hw[0],
        input_width=input_hw[1],
        dental_box=_dental_box(annotations),
        manifest=str(Path(manifest).resolve()),
        **options,
    )
    if run.is_complete and not force:
        raise OsteoInputError(f"ROI run {run.path} is already complete; choose another out= or pass force=True")
    if run.is_complete:
        shutil.rmtree(run.path)
    _settings_match(run, settings)
    run.path.mkdir(parents=True, exist_ok=True)
    write_json(run.config, {**settings.to_dict(), "versions": versions()})
    table = annotations.images.table
    write_csv(
        run.splits,
        pd.DataFrame(
            {
                "image": table["image"].to_numpy(),
                "patient_id": table["patient_id"].to_numpy() if "patient_id" in table else "",
                "split": np.where(np.isin(np.arange(len(table)), splits["val"]), "val", "train"),
            }
        ),
    )
    model = _fit(run, settings, annotations, splits, log)
    metrics = _validate(model, settings, annotations, splits["val"])
    write_json(run.val_metrics, metrics)
    with atomic_path(run.model) as temporary:
        model.save(temporary)
    return metrics


def default_epochs(n_train: int, batch_size: int) -> int:
    """Epochs giving about ``DEFAULT_STEPS`` optimiser steps, within ``EPOCH_RANGE`` (:mod:`osteo_tf.runs.roi_run`).

    On the phantoms (``bench/roi_study.py``) 600 steps at batch 8 trained the detector to the
    same accuracy from 20 training images (240 epochs) as from 160 (60 epochs); a fixed
    epoch count would leave a small annotation set with too few steps to learn at all.

    Args:
        n_train: training images (after the validation split).
        batch_size: images per step.

    Returns:
        The epoch count.
    """
    return int(np.clip(round(DEFAULT_STEPS * batch_size / max(1, n_train)), *EPOCH_RANGE))


def _dental_box(annotations: Annotations) -> tuple[float, float] | None:
    """The dental box size (fractions of the width) from box columns when present, else the phantoms'."""
    table = annotations.images.table
    columns = ("left_roi_w", "left_roi_h")
    if not all(c in table for c in columns):
        return RoiSettings.__dataclass_fields__["dental_box"].default
    widths = annotations.images.sizes[:, 0].astype(np.float64)
    values = [pd.to_numeric(table[c], errors="coerce").to_numpy() / widths for c in columns]
    return tuple(round(float(np.nanmedian(v)), 4) for v in values)  # type: ignore[return-value]


def _fit(
    run: RoiRun,
    settings: RoiSettings,
    annotations: Annotations,
    splits: dict[str, np.ndarray],
    log: Callable[[str], None],
) -> keras.Model:
    set_determinism(settings.seed, True)
    paths = np.asarray(annotations.images.paths)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    data = {
        name: landmark_dataset(
            list(paths[rows]),
            annotations.keypoints[rows],
            input_hw=settings.input_hw,
            batch_size=settings.batch_size,
            training=name == "train",
            seed=settings.seed,
            epoch=epoch,
        )
        for name, rows in splits.items()
    }
    model = build_landmark_detector(len(settings.keypoints), settings.input_hw)
    steps = int(np.ceil(len(splits["train"]) / settings.batch_size)) * settings.epochs
    schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, decay_steps=steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=heatmap_loss)
    backup = EpochBackup(run.backup)
    start = backup.restore(model)
    if start:
        log(f"resuming {run.path} at epoch {start + 1} of {settings.epochs}")
    log(
        f"training the {settings.kind} ROI detector ({model.count_params():,} parameters, {len(settings.keypoints)} "
        f"keypoints, input {settings.input_width}×{settings.input_height} px) on {len(splits['train'])} images, "
        f"validating on {len(splits['val'])}"
    )
    if start < settings.epochs:
        model.fit(
            data["train"],
            validation_data=data["val"],
            epochs=settings.epochs,
            initial_epoch=start,
            callbacks=[EpochClock(epoch), AtomicHistory(run.history), backup],
            verbose=0,
        )
    return model


def _validate(model: keras.Model, settings: RoiSettings, annotations: Annotations, rows: np.ndarray) -> dict:
    from osteo_tf.models.landmarks import inference_model

    images = annotations.images
    paths = [images.paths[i] for i in rows]
    keypoints, confidence = predict_keypoints(inference_model(model), settings, paths)
    sizes, sides = images.sizes[rows], [images.sides[i] for i in rows]
    found = detect_boxes(settings, keypoints, confidence, sizes, sides)
    truth_px = annotations.pixels()[rows]
    truth_boxes = reference_boxes(settings, truth_px, sides, sizes)
    return {
        "split": "val",
        **roi_metrics(found.keypoints, truth_px, sizes[:, 0], found.boxes, truth_boxes),
        "share_flagged": float(np.mean((found.confidence < settings.confidence_threshold) | ~found.inside)),
    }
