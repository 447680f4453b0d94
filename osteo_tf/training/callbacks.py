"""Crash-safe training callbacks: the history and the best checkpoint, written atomically.

Keras' ``CSVLogger`` appends to ``history.csv`` in place and ``ModelCheckpoint`` writes
``best.keras`` in place, so a fit killed at the wrong moment leaves a half-written file.
These two write the whole file under a temporary name and rename it
(:func:`osteo_tf.io.atomic_path`): a killed fit leaves the previous complete version.
A resumed fit (``BackupAndRestore``) keeps the rows of the epochs it already finished and
replaces a row of an epoch it runs again.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import pandas as pd

from osteo_tf.io import atomic_path, write_csv

__all__ = ["AtomicBestCheckpoint", "AtomicHistory"]


class AtomicHistory(keras.callbacks.Callback):
    """``history.csv``: one row per finished epoch (``epoch`` from 0, then the logs, sorted)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.rows: list[dict] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.rows = pd.read_csv(self.path).to_dict("records") if self.path.is_file() else []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row = {"epoch": int(epoch), **{k: float(v) for k, v in sorted((logs or {}).items())}}
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch] + [row]
        write_csv(self.path, pd.DataFrame(self.rows))


class AtomicBestCheckpoint(keras.callbacks.Callback):
    """Saves the model to ``path`` (a ``.keras`` file) whenever ``monitor`` improves (lower).

    ``history``: a resumed fit starts from the best value recorded there, so a worse epoch
    after the restart does not replace the best checkpoint.
    """

    def __init__(self, path: str | Path, monitor: str = "val_loss", history: str | Path | None = None) -> None:
        super().__init__()
        self.path, self.monitor = Path(path), monitor
        self.history = None if history is None else Path(history)
        self.best = math.inf

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.best = math.inf
        if self.history is not None and self.history.is_file() and self.path.is_file():
            recorded = pd.read_csv(self.history)
            if self.monitor in recorded and recorded[self.monitor].notna().any():
                self.best = float(recorded[self.monitor].min())

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not float(value) < self.best:
            return
        self.best = float(value)
        with atomic_path(self.path) as temporary:
            self.model.save(temporary)
