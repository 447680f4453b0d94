"""The probability a run reports: its model's output, recalibrated when ``osteo calibrate`` was run.

``RUN/calibration.json`` (written by :func:`osteo_tf.evaluation.calibrate.calibrate_run`)
holds a :class:`~osteo_tf.evaluation.calibration.Recalibration` fitted on the validation
split. Every reader of a run's probabilities goes through :func:`reported_probability` —
``osteo evaluate``, ``osteo threshold``, the report and the exported serving graph — so a
threshold is always on the scale of the probability the run reports. ``predictions.csv``
keeps the model's own (uncalibrated) outputs, so a calibration can be refitted or removed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from osteo_tf.evaluation.calibration import Recalibration
from osteo_tf.io import read_json
from osteo_tf.runs.run_dir import RunDir

__all__ = ["reported_probability", "run_recalibration"]


def run_recalibration(run: str | Path) -> Recalibration | None:
    """The run's recalibration, or None when it has none (no ``calibration.json``).

    Args:
        run: a run folder.

    Returns:
        The :class:`Recalibration` fitted by ``osteo calibrate``, or None.
    """
    path = RunDir(run).calibration
    return Recalibration.from_dict(read_json(path)["recalibration"]) if path.is_file() else None


def reported_probability(run: str | Path, probability) -> np.ndarray:
    """The run's reported probabilities for its model's raw outputs.

    Args:
        run: a run folder.
        probability: (n,) the model's outputs.

    Returns:
        (n,) float64: recalibrated when the run has a calibration, else the outputs unchanged.
    """
    recalibration = run_recalibration(run)
    probability = np.asarray(probability, dtype=np.float64).reshape(-1)
    return probability if recalibration is None else recalibration.apply(probability)
