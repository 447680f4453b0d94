"""Reading a finished run back: its model and settings, and the model's predictions on rows."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd

from osteo_tf.data.pipeline import make_dataset
from osteo_tf.runs.config import TrainConfig
from osteo_tf.runs.run_dir import RunDir
from osteo_tf.vocabulary import get_backbone_spec, uses_images

__all__ = ["load_run", "predict_rows"]


def load_run(path: str | Path) -> tuple[RunDir, TrainConfig, dict, keras.Model]:
    """A complete run's folder, training config, saved settings and model (safe_mode load).

    Raises:
        OsteoInputError: the run is missing, unfinished, or its model cannot be loaded safely.
    """
    run = RunDir(path).require_complete()
    settings = run.read_config()
    config = TrainConfig.from_dict(settings["train"])
    model = run.load_model()  # keras safe_mode=True: no code, no pickles
    return run, config, settings, model


def predict_rows(
    model: keras.Model, cohort: pd.DataFrame, covariates: np.ndarray | None, config: TrainConfig
) -> np.ndarray:
    """Probabilities (rows,) for the given rows, in row order, without augmentation."""
    images = uses_images(config.mode)
    dataset = make_dataset(
        cohort,
        covariates,
        image_size=config.image_size if images else None,
        normalization=get_backbone_spec(config.backbone).normalization if images else None,
        batch_size=config.batch_size,
        training=False,
        intensity=config.intensity,
        cache="none",
    )  # one pass: nothing to cache
    return model.predict(dataset, verbose=0).reshape(-1).astype(np.float64)
