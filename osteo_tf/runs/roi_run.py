"""The folder of an ROI detector run (``osteo roi train --out ROI_RUN``): its files and settings.

Keras-free: the CLI, ``osteo roi detect`` and the two-stage export read it. Files::

    roi_config.json     RoiSettings: kind, target, input size, keypoints, dental box, fit options
    splits.csv          image, patient_id, split (train / val) of every annotated row
    history.csv         one row per epoch: loss, val_loss (written atomically)
    backup/             the newest epoch's weights + optimiser (resume)
    detector.keras      the trained heatmap network, written last: its presence = complete
    val_metrics.json    landmark error and box IoU on the validation split
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from osteo_tf.data.landmarks import DENTAL_BOX_FRACTION, keypoint_names
from osteo_tf.errors import OsteoInputError
from osteo_tf.io import read_json

__all__ = ["DEFAULT_CONFIDENCE", "DEFAULT_STEPS", "EPOCH_RANGE", "RoiRun", "RoiSettings"]

#: Rows whose detection confidence (the lowest of the side's keypoints) is below this are
#: flagged for review. Chosen on the phantoms: README "Automatic ROI".
DEFAULT_CONFIDENCE = 0.5
DEFAULT_STEPS = 600  # optimiser steps osteo roi train's default epoch count aims at, whatever the images
EPOCH_RANGE = (60, 240)  # the default epoch count's bounds


@dataclass(frozen=True)
class RoiSettings:
    """How an ROI detector was trained, and how its output becomes a box.

    Attributes:
        kind: "hip" or "dental".
        target: "landmarks" or "box" (:data:`osteo_tf.data.landmarks.TARGETS`).
        input_height, input_width: the detector's input in pixels (multiples of 32).
        dental_box: the dental ROI's (width, height) as fractions of the image width.
        confidence_threshold: rows below it are flagged for review.
        epochs, batch_size, learning_rate, seed, val_fraction: the fit.
        manifest: the annotated manifest it was trained on.
    """

    kind: str
    target: str
    input_height: int
    input_width: int
    dental_box: tuple[float, float] = DENTAL_BOX_FRACTION
    confidence_threshold: float = DEFAULT_CONFIDENCE
    epochs: int = 60
    batch_size: int = 8
    learning_rate: float = 2e-3
    seed: int = 0
    val_fraction: float = 0.2
    manifest: str = ""

    @property
    def keypoints(self) -> tuple[str, ...]:
        """The keypoint names, in the detector's channel order."""
        return keypoint_names(self.kind, self.target)

    @property
    def input_hw(self) -> tuple[int, int]:
        return (self.input_height, self.input_width)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "dental_box": list(self.dental_box), "keypoints": list(self.keypoints)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RoiSettings:
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in values.items() if k in known}
        return cls(**{**kept, "dental_box": tuple(kept.get("dental_box", DENTAL_BOX_FRACTION))})


class RoiRun:
    """Paths of an ROI run folder (module docstring) and its settings."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = self.path / "roi_config.json"
        self.splits = self.path / "splits.csv"
        self.history = self.path / "history.csv"
        self.backup = self.path / "backup"
        self.model = self.path / "detector.keras"
        self.val_metrics = self.path / "val_metrics.json"

    @property
    def is_complete(self) -> bool:
        return self.model.is_file()

    def settings(self) -> RoiSettings:
        """The run's settings; refuses a folder that is not a finished ROI run, by name."""
        if not self.is_complete or not self.config.is_file():
            raise OsteoInputError(
                f"{self.path} is not a finished ROI detector run (no {self.model.name} / {self.config.name}); "
                "train one with osteo roi train --manifest ANNOTATED.csv --kind hip|dental --out ROI_RUN",
                parameter="run",
            )
        return RoiSettings.from_dict(read_json(self.config))
