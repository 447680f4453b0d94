"""The run folder: what one fit leaves behind, and the rule for when it is complete.

Layout (every file written under a temporary name and renamed)::

    run/
      config.json              training options, manifest path and settings, versions
      exclusions.csv           manifest rows left out (--allow-exclusions) and why; header only if none
      splits.csv               image, patient_id, label, split (train/val/test)
      covariate_encoder.json   encoding statistics fitted on the training rows
      history.csv              one row per epoch (loss, auc, val_loss, val_auc, …)
      checkpoints/best.keras   best model so far (by validation loss)
      backup/                  epoch-NNNN.weights.h5: weights and optimiser after the last finished
                               epoch; a killed fit resumes here (deleted when the run completes)
      cache/                   --cache disk only: tf.data caches of the decoded train/val images
                               (<split>-<key>.*; deleted when the run completes)
      runtime.json             precision, XLA, replicas and global batch the fit ran with
      tensorboard/             TensorBoard logs
      model.keras              final model (best epoch's weights)
      predictions.csv          validation and test predictions (probability per image)
      metrics.json             binary_metrics on validation and test
      roc.png                  test ROC curve
      threshold.json           decision threshold chosen on val by `osteo threshold` (absent: 0.5)
      calibration.json         recalibration fitted on val by `osteo calibrate` (absent: the model's own
                               probabilities); evaluate, threshold, export and report then use it
      report/                  `osteo report --run`: report.html and its tables and figures
      COMPLETE                 written last: a run without it is not finished
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from osteo_tf.errors import OsteoInputError
from osteo_tf.io import read_json

__all__ = ["RunDir"]


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run folder."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    config = property(lambda self: self.path / "config.json")
    splits = property(lambda self: self.path / "splits.csv")
    encoder = property(lambda self: self.path / "covariate_encoder.json")
    history = property(lambda self: self.path / "history.csv")
    checkpoint = property(lambda self: self.path / "checkpoints" / "best.keras")
    backup = property(lambda self: self.path / "backup")
    cache = property(lambda self: self.path / "cache")
    runtime = property(lambda self: self.path / "runtime.json")
    tensorboard = property(lambda self: self.path / "tensorboard")
    model = property(lambda self: self.path / "model.keras")
    predictions = property(lambda self: self.path / "predictions.csv")
    metrics = property(lambda self: self.path / "metrics.json")
    roc = property(lambda self: self.path / "roc.png")
    threshold = property(lambda self: self.path / "threshold.json")
    calibration = property(lambda self: self.path / "calibration.json")
    report = property(lambda self: self.path / "report")
    exclusions = property(lambda self: self.path / "exclusions.csv")
    complete_marker = property(lambda self: self.path / "COMPLETE")

    @property
    def is_complete(self) -> bool:
        return self.complete_marker.is_file()

    def read_config(self) -> dict:
        return read_json(self.config)

    def load_model(self, path: str | Path | None = None):
        """The run's ``model.keras`` (or ``path``), loaded with :func:`load_keras_model` (safe mode)."""
        import osteo_tf.models.layers  # noqa: F401  (registers the project's layers for deserialisation)

        return load_keras_model(Path(path) if path is not None else self.model)

    def require_complete(self) -> "RunDir":
        """Raises a clear error unless the run finished (its COMPLETE marker exists)."""
        if not self.path.is_dir():
            raise OsteoInputError(f"run folder {self.path} does not exist")
        if not self.is_complete:
            raise OsteoInputError(
                f"run {self.path} is not complete (no COMPLETE marker): training was interrupted or "
                "is still running; rerun the same `osteo train` command to resume it"
            )
        return self


def load_keras_model(path: Path, custom_objects: dict | None = None):
    """A ``.keras`` file loaded for inference with Keras ``safe_mode=True``.

    Safe mode refuses to deserialise code (``Lambda`` layers, pickled Python), so a
    model file from an untrusted run folder cannot run anything on load; nothing in a
    run folder is ever unpickled. A missing, refused or damaged file is an OsteoInputError.

    Args:
        path: the ``.keras`` file.
        custom_objects: the project's own classes the file names, beyond the registered ones.

    Returns:
        The uncompiled ``keras.Model``.
    """
    import keras

    if not path.is_file():
        raise OsteoInputError(f"model file {path} does not exist")
    try:
        # compile=False: every caller predicts; it also skips rebuilding the optimiser
        # (a mixed_float16 run's LossScaleOptimizer would not match a plain SGD's slots).
        return keras.models.load_model(path, safe_mode=True, compile=False, custom_objects=custom_objects)
    except Exception as error:  # Keras raises ValueError / TypeError / OSError / zip errors
        raise OsteoInputError(
            f"refusing to load {path}: it cannot be loaded in Keras safe mode ({type(error).__name__}: "
            f"{str(error)[:300]}). Model files holding code (e.g. Lambda layers) are not loaded, and a "
            "damaged file is not a finished run: retrain it"
        ) from None
