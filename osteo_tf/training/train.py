"""One fit, end to end: manifest → split → covariate encoding → tf.data → model → run folder.

``train(manifest, out, backbone=..., mode=...)`` is what ``osteo train`` calls and what a
user's own script calls. The fit uses the papers' optimiser (SGD, momentum 0.9, weight
decay 0, the backbone family's learning rate), early stopping on validation loss with
patience 20 restoring the best weights, a best-model checkpoint, a history CSV and
TensorBoard logs, under ``MirroredStrategy`` when more than one GPU is visible. A killed
fit resumes from its last finished epoch when the same command is run again, and ends as
the uninterrupted fit would (identically with ``deterministic``): every epoch's order,
augmentation and dropout are a function of (seed, epoch, item), and early stopping's state
is rebuilt from the history (:mod:`osteo_tf.training.callbacks`).
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

import osteo_tf
from osteo_tf.console import log
from osteo_tf.data.covariates import CovariateEncoder
from osteo_tf.data.manifest import ManifestConfig
from osteo_tf.data.pipeline import make_dataset
from osteo_tf.data.splits import SOURCE_ATTR, check_split_classes, random_split, require_both_classes, splits_table
from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.bootstrap import with_intervals
from osteo_tf.evaluation.metrics import binary_metrics, plot_roc
from osteo_tf.io import atomic_path, write_csv, write_json
from osteo_tf.models import build_model, check_weights, inference_model
from osteo_tf.runs.cohort import exclusions_of, load_cohort
from osteo_tf.runs.config import RESULT_NEUTRAL_OPTIONS, TrainConfig
from osteo_tf.runs.loading import predict_rows
from osteo_tf.runs.run_dir import RunDir
from osteo_tf.training.callbacks import (
    AtomicBestCheckpoint,
    AtomicHistory,
    EpochBackup,
    EpochClock,
    ResumableEarlyStopping,
    finished_rows,
)
from osteo_tf.training.hardware import distribution_strategy, dtype_policy, resolve_runtime
from osteo_tf.vocabulary import OUTPUTS_WITH_AUX, PROBABILITY_VAL_LOSS, get_backbone_spec, uses_covariates, uses_images

__all__ = ["compile_model", "train", "versions"]


def set_determinism(seed: int, deterministic: bool) -> None:
    """Seeds Python, NumPy, TensorFlow and Keras; with ``deterministic`` also TensorFlow's op
    determinism (``tf.config.experimental.enable_op_determinism``: same inputs, same seed →
    bit-identical results on the same machine, at some speed cost). Process-wide."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def prepare_run(run: RunDir, settings: dict, force: bool) -> None:
    """Creates the run folder, or checks that an unfinished one was started with the same settings."""
    if run.is_complete and not force:
        raise OsteoInputError(
            f"run {run.path} is already complete; choose another out=, or pass force=True to retrain it"
        )
    if run.config.is_file() and not force:
        previous = run.read_config()
        now = json.loads(json.dumps(settings, default=str))  # as written: tuples become lists
        for values in (previous, now):
            if isinstance(values.get("train"), dict):
                values["train"] = {k: v for k, v in values["train"].items() if k not in RESULT_NEUTRAL_OPTIONS}
        if any(previous.get(key) != now.get(key) for key in ("train", "manifest", "splits")):
            raise OsteoInputError(
                f"{run.path} holds an unfinished run with different settings; choose another out= "
                "or pass force=True to discard it"
            )
        log(f"resuming the unfinished run in {run.path}")
    if force and run.path.exists():
        shutil.rmtree(run.path)
    run.path.mkdir(parents=True, exist_ok=True)
    write_json(run.config, settings)


def monitored_loss(config: TrainConfig) -> str:
    """The validation loss that early stopping and the best checkpoint follow: the probability's
    own (``val_probability_loss``) when auxiliary losses are added, so the auxiliary heads
    never choose the epoch of the model that is kept."""
    return PROBABILITY_VAL_LOSS if config.uses_aux_loss else "val_loss"


def callbacks(run: RunDir, config: TrainConfig, epoch: tf.Variable) -> list[keras.callbacks.Callback]:
    """The fit's callbacks, in the order that keeps a resumed fit identical to an uninterrupted one.

    ``epoch``: the variable the training dataset reads (:func:`osteo_tf.data.pipeline.epoch_stream`).
    At an epoch's end the best checkpoint and the history row are written before
    :class:`EpochBackup` records the epoch as done (a kill in between reruns the epoch);
    early stopping rebuilds its state from the history (:mod:`osteo_tf.training.callbacks`).
    """
    run.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    monitor = monitored_loss(config)
    return [
        EpochClock(epoch),
        AtomicBestCheckpoint(run.checkpoint, monitor=monitor, history=run.history),  # crash-safe
        AtomicHistory(run.history),
        EpochBackup(run.backup),
        early_stopping(run, config),
        keras.callbacks.TensorBoard(str(run.tensorboard), write_graph=False, profile_batch=0),
    ]


def early_stopping(run: RunDir, config: TrainConfig) -> ResumableEarlyStopping:
    """Early stopping on the monitored loss with the config's patience, restoring the best epoch."""
    return ResumableEarlyStopping(monitored_loss(config), config.patience, run.history, run.checkpoint)


def recorded_fit_is_over(run: RunDir, config: TrainConfig) -> bool:
    """Whether the epochs recorded in the run's history already end the fit (all epochs run, or
    early stopping's rule met) and the best checkpoint exists: a run killed after its last
    epoch then only loads the best weights instead of fitting again."""
    if not run.checkpoint.is_file():
        return False
    return len(finished_rows(run.history, config.epochs)) >= config.epochs or early_stopping(run, config).replay(
        config.epochs
    )


def compile_model(model: keras.Model, config: TrainConfig, jit: bool = False) -> keras.Model:
    """SGD with the config's rate and momentum, binary cross-entropy, AUC and accuracy; ``jit``: XLA.

    A model with auxiliary outputs (``config.uses_aux_loss``) is trained on the loss of its
    probability plus ``aux_loss_weight`` × each branch's loss; AUC and accuracy are those of
    the probability.
    """
    optimizer = keras.optimizers.SGD(
        learning_rate=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay or None,
    )
    metrics = [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")]
    if isinstance(model.output, dict):
        model.compile(
            optimizer=optimizer,
            jit_compile=jit,
            loss={n: "binary_crossentropy" for n in OUTPUTS_WITH_AUX},
            loss_weights={n: 1.0 if n == "probability" else config.aux_loss_weight for n in OUTPUTS_WITH_AUX},
            metrics={"probability": metrics},
        )
    else:
        model.compile(optimizer=optimizer, loss="binary_crossentropy", jit_compile=jit, metrics=metrics)
    return model


def aux_targets(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """(inputs, label) batches → (inputs, {output: label}) for a model with auxiliary outputs."""
    return dataset.map(lambda x, y: (x, {name: y for name in OUTPUTS_WITH_AUX}))


def score_splits(model, cohort, encoded, splits, config, run: RunDir) -> dict:
    """Predicts val and test, writes predictions.csv, metrics.json (with bootstrap CIs) and roc.png; returns metrics."""
    tables, metrics = [], {}
    for name in ("val", "test"):
        rows = cohort.iloc[splits[name]]
        probability = predict_rows(model, rows, None if encoded is None else encoded[splits[name]], config)
        labels, patients = rows["label"].to_numpy(), rows["patient_id"].to_numpy()
        point = binary_metrics(labels, probability, config.threshold)
        metrics[name] = with_intervals(point, labels, probability, groups=patients, seed=config.seed)
        tables.append(
            pd.DataFrame(
                {
                    "image": rows["image"].to_numpy(),
                    "patient_id": rows["patient_id"].to_numpy(),
                    "label": rows["label"].to_numpy(),
                    "probability": probability,
                    "split": name,
                }
            )
        )
    predictions = pd.concat(tables, ignore_index=True)
    write_csv(run.predictions, predictions)
    write_json(run.metrics, metrics)
    test = predictions[predictions["split"] == "test"]
    plot_roc(
        {config.mode: (test["label"], test["probability"])}, run.roc, title=f"{config.backbone} {config.mode} — test"
    )
    return metrics


def train(
    manifest: str | Path,
    out: str | Path,
    config: TrainConfig | None = None,
    *,
    manifest_config: ManifestConfig | None = None,
    force: bool = False,
    verbose: int | str = "auto",
    cohort: pd.DataFrame | None = None,
    splits: dict[str, np.ndarray] | None = None,
    strategy: tf.distribute.Strategy | None = None,
    **options,
) -> RunDir:
    """Trains one model on ``manifest`` and writes a complete run folder at ``out``.

    A killed fit resumes from its last finished epoch when called again with the same
    arguments, and ends as the uninterrupted fit would (see the module docstring).

    Args:
        manifest: the cohort CSV (the data contract: README, "Data contract").
        out: the run folder to create, or to resume (:class:`osteo_tf.runs.run_dir.RunDir`).
        config: the training options; None → ``TrainConfig(**options)``.
        manifest_config: column names, sex codes, ROI options of the manifest.
        force: discard an existing run folder at ``out`` (a complete one is refused otherwise).
        verbose: Keras' progress (0 none, 1 bars, 2 a line per epoch, "auto").
        cohort: an already validated table of the same manifest (the demo reads it once for
            several models).
        splits: the train/val/test positional row indices of the cohort (e.g. one fold of
            k-fold CV); by default the rows are split at random by ``config.split`` and
            ``config.seed``.
        strategy: the tf.distribute strategy (default: MirroredStrategy over several GPUs, see
            :mod:`osteo_tf.training.hardware`); batches are ``config.batch_size`` per replica.
        **options: :class:`~osteo_tf.runs.config.TrainConfig` fields (backbone, mode,
            image_size, epochs, …), used when ``config`` is None.

    Returns:
        The complete run folder.

    Raises:
        OsteoInputError: a bad option, manifest or split (before the run folder is created),
            a complete run at ``out`` without ``force``, an unfinished one with other settings.

    Example::

        >>> from osteo_tf.data.synthetic import make_cohort
        >>> manifest = make_cohort("hip", 40, "phantom_train", seed=0, image_size=32)
        >>> run = train(manifest, "run_train", backbone="resnet18", mode="ensemble", image_size=32,
        ...             epochs=1, verbose=0)  # doctest: +ELLIPSIS
        [osteo...
        >>> run.is_complete, sorted(json.loads(run.metrics.read_text()))
        (True, ['test', 'val'])
    """
    config = config or TrainConfig.from_dict(options)  # an unknown option is named, not a TypeError
    run = RunDir(out)
    started = time.time()
    if cohort is None:
        log(f"reading manifest {manifest}")
        cohort = load_cohort(manifest, config, manifest_config)
    require_both_classes(cohort, cohort.attrs.get(SOURCE_ATTR, f"manifest {manifest}"))
    given_splits = None if splits is None else _splits_digest(cohort, splits)
    splits = random_split(cohort, config.split, config.seed) if splits is None else splits
    check_split_classes(cohort, splits)  # all before the run folder is created
    if uses_images(config.mode):
        check_weights(config.backbone, config.weights)
    covariate_columns = config.covariate_columns(list(cohort.columns)) if uses_covariates(config.mode) else ()
    settings = {
        "train": config.to_dict(),
        "manifest": str(Path(manifest).resolve()),
        "manifest_config": None if manifest_config is None else manifest_config.to_dict(),
        "covariate_columns": list(covariate_columns),
        "versions": versions(),
        "splits": given_splits,
    }
    exclusions = exclusions_of(cohort)
    settings["exclusions"] = {
        "manifest_rows": int(cohort.attrs.get("osteo_manifest_rows", len(cohort))),
        "excluded_rows": int(exclusions["line"].nunique()),
        "by_reason": exclusions.drop_duplicates(["line", "reason"])["reason"].value_counts().to_dict(),
    }
    prepare_run(run, settings, force)
    write_csv(run.exclusions, exclusions)
    set_determinism(config.seed, config.deterministic)
    write_csv(run.splits, splits_table(cohort, splits))
    counts = {
        name: f"{len(rows)} ({int(cohort['label'].iloc[rows].sum())} osteoporosis)" for name, rows in splits.items()
    }
    log(f"{len(cohort)} images, split train/val/test: {counts['train']} / {counts['val']} / {counts['test']}")

    encoded = None
    if uses_covariates(config.mode):
        encoder = CovariateEncoder.for_columns(
            covariate_columns, cohort, impute=config.impute, impute_all=config.covariate_dropout > 0
        ).fit(cohort.iloc[splits["train"]])
        write_json(run.encoder, encoder.to_dict())
        encoded = encoder.transform(cohort)
        log(f"covariates {list(covariate_columns)} → {encoder.dim}-vector {encoder.feature_names}")

    strategy = strategy or distribution_strategy()
    runtime = resolve_runtime(config.precision, config.jit, config.batch_size, strategy)
    write_json(run.runtime, runtime.to_dict())
    images = uses_images(config.mode)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")  # set by EpochClock, read by the data
    datasets = {
        name: make_dataset(
            cohort.iloc[rows],
            None if encoded is None else encoded[rows],
            image_size=config.image_size if images else None,
            normalization=get_backbone_spec(config.backbone).normalization if images else None,
            batch_size=runtime.global_batch_size,
            training=(name == "train"),
            seed=config.seed,
            intensity=config.intensity,
            cache=config.cache,
            cache_file=run.cache / name,
            epoch=epoch,
        )
        for name, rows in splits.items()
        if name != "test"
    }
    if config.uses_aux_loss:
        datasets = {name: aux_targets(dataset) for name, dataset in datasets.items()}
    withholding = None
    if encoded is not None and config.covariate_dropout > 0:
        withholding = {"groups": encoder.withholding_groups(), "rate": config.covariate_dropout, "seed": config.seed}
    with strategy.scope(), dtype_policy(runtime.precision):
        model = build_model(
            config.backbone,
            config.mode,
            config.image_size,
            covariate_dim=0 if encoded is None else encoded.shape[1],
            weights=config.weights,
            fusion=config.fusion,
            aux_outputs=config.uses_aux_loss,
            covariate_withholding=withholding,
        )
        compile_model(model, config, jit=runtime.jit)
    log(
        f"training {model.name} ({model.count_params():,} parameters) at {config.image_size} px, "
        f"lr {config.learning_rate}, up to {config.epochs} epochs on {runtime.replicas} replica(s) "
        f"(global batch {runtime.global_batch_size}), {runtime.precision}, XLA {'on' if runtime.jit else 'off'}"
    )
    if recorded_fit_is_over(run, config):
        log(f"the epochs in {run.history} already finished this fit; loading its best epoch")
        model.load_weights(run.checkpoint)
    else:
        with strategy.scope():
            initial_epoch = EpochBackup(run.backup).restore(model)
        if initial_epoch:
            log(f"resuming at epoch {initial_epoch + 1} from {run.backup}")
        # shuffle=False: the order comes from the dataset (a function of seed and epoch), never from Keras
        model.fit(
            datasets["train"],
            validation_data=datasets["val"],
            epochs=config.epochs,
            shuffle=False,
            initial_epoch=initial_epoch,
            callbacks=callbacks(run, config, epoch),
            verbose=verbose,
        )

    model = inference_model(model)  # the auxiliary outputs only served the training loss
    with atomic_path(run.model) as temporary:
        model.save(temporary)
    metrics = score_splits(model, cohort, encoded, splits, config, run)
    for folder in (run.cache, run.backup):  # decoded images (--cache disk), resume state: not needed once complete
        shutil.rmtree(folder, ignore_errors=True)
    write_json(run.complete_marker, {"seconds": round(time.time() - started, 1), "test_auc": metrics["test"]["auc"]})
    log(f"run complete: {run.path} (test AUC {metrics['test']['auc']:.3f})")
    return run


def _splits_digest(cohort: pd.DataFrame, splits: dict[str, np.ndarray]) -> str:
    """Checks caller-given splits (disjoint, in range, train/val/test non-empty); returns their SHA-256."""
    import hashlib

    if sorted(splits) != ["test", "train", "val"]:
        raise OsteoInputError(f"splits must have keys train, val and test, got {sorted(splits)}")
    rows = np.concatenate([np.asarray(splits[k], dtype=np.int64) for k in ("train", "val", "test")])
    if (
        min(len(splits[k]) for k in splits) == 0
        or rows.min() < 0
        or rows.max() >= len(cohort)
        or len(np.unique(rows)) != len(rows)
    ):
        raise OsteoInputError(f"splits must be non-empty, disjoint row indices into the {len(cohort)}-row cohort")
    digest = hashlib.sha256()
    for key in ("train", "val", "test"):
        digest.update(key.encode() + np.sort(np.asarray(splits[key], dtype=np.int64)).tobytes())
    return digest.hexdigest()


def versions() -> dict[str, str]:
    import sklearn

    return {
        "osteo_tf": osteo_tf.__version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
    }
