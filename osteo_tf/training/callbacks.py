"""Training callbacks that make a fit crash-safe and its resumption exact.

Keras' ``CSVLogger`` appends to ``history.csv`` in place and ``ModelCheckpoint`` writes
``best.keras`` in place, so a fit killed at the wrong moment leaves a half-written file.
:class:`AtomicHistory` and :class:`AtomicBestCheckpoint` write the whole file under a
temporary name and rename it (:func:`osteo_tf.io.atomic_path`): a killed fit leaves the
previous complete version. A resumed fit (:class:`EpochBackup` restores the weights, the
optimiser and the epoch) keeps the rows of the epochs it already finished and replaces a row
of an epoch it runs again.

:class:`EpochBackup` keeps the state a resumed fit starts from: the weights and the optimiser
after the last finished epoch, in one file named by that epoch and written under a temporary
name, so the epoch and the weights can never disagree. Keras' ``BackupAndRestore`` is not
used: it writes the weights in place and then the epoch in a second file, so a kill between
the two resumes an epoch from the weights of the next one (seen: a resumed fit that did not
reproduce the uninterrupted one). What a backup holds is not all a fit's state; the rest is
rebuilt here, so a resumed fit equals one never interrupted: :class:`EpochClock` makes every epoch's data order,
augmentation and dropout a
function of (seed, epoch) — not of how many epochs this process has run — and
:class:`ResumableEarlyStopping` and :class:`AtomicBestCheckpoint` rebuild their state (best
value, epochs without improvement, best weights) from the history of the epochs finished
before the restart. Keras' own ``EarlyStopping`` keeps that state in memory only, so after a
restart it would wait ``patience`` epochs afresh and restore the best weights of the resumed
part alone.

Order matters at an epoch's end: the checkpoint and the history row are written before
:class:`EpochBackup` records the epoch as finished, so a kill in between reruns that epoch
rather than losing its row (:func:`osteo_tf.training.train.callbacks`).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from osteo_tf.io import atomic_path, write_csv

__all__ = ["AtomicBestCheckpoint", "AtomicHistory", "EpochBackup", "EpochClock", "ResumableEarlyStopping"]

# An epoch's dropout draws start at counter epoch × 2**20 of each layer's seed stream, so the
# streams of two epochs never overlap below 2**20 random draws per layer and epoch.
_EPOCH_STRIDE = 2**20


def finished_rows(history: Path | None, before_epoch: int) -> pd.DataFrame:
    """The rows of ``history.csv`` for the epochs before ``before_epoch`` (empty if none)."""
    if history is None or not history.is_file():
        return pd.DataFrame()
    table = pd.read_csv(history)
    return table[table["epoch"] < before_epoch].sort_values("epoch") if "epoch" in table else pd.DataFrame()


class EpochBackup(keras.callbacks.Callback):
    """After each epoch, ``folder/epoch-NNNN.weights.h5``: the model's weights and optimiser
    state at the end of epoch NNNN (0-based), written under a temporary name and renamed;
    older backups are then removed. :meth:`restore` loads the newest and returns the epoch to
    resume at (``fit(initial_epoch=...)``)."""

    PATTERN = re.compile(r"epoch-(\d+)\.weights\.h5")

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = Path(folder)

    def backups(self) -> list[tuple[int, Path]]:
        """(epoch, file) of the complete backups in the folder, oldest first."""
        if not self.folder.is_dir():
            return []
        found = ((self.PATTERN.fullmatch(path.name), path) for path in self.folder.iterdir())
        return sorted((int(match.group(1)), path) for match, path in found if match)

    def restore(self, model: keras.Model) -> int:
        """Loads the newest backup into ``model`` (compiled); returns the first epoch still to run."""
        backups = self.backups()
        if not backups:
            return 0
        epoch, path = backups[-1]
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # its slots must exist to be loaded
        model.load_weights(path)
        return epoch + 1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"epoch-{epoch:04d}.weights.h5"
        temporary = self.folder / f".tmp-{os.getpid()}-{target.name}"  # Keras needs the .weights.h5 ending
        self.model.save_weights(temporary, overwrite=True)
        os.replace(temporary, target)
        for older, path in self.backups():
            if older < epoch:
                path.unlink(missing_ok=True)


class EpochClock(keras.callbacks.Callback):
    """At each epoch's start: sets ``epoch`` (read by :func:`osteo_tf.data.pipeline.epoch_stream`)
    and moves every random layer's seed stream to that epoch's place.

    ``Dropout`` and :class:`~osteo_tf.models.layers.CovariateWithholding` draw from a Keras
    ``SeedGenerator`` whose state (seed, counter) advances by one per call; it is not part of
    the weights a backup restores. Setting the counter to epoch × 2**20 at every epoch makes
    the draws of epoch e the same whether the process started at epoch 0 or resumed at e.
    """

    def __init__(self, epoch) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch.assign(epoch)
        for state in seed_states(self.model):
            seed = keras.ops.convert_to_numpy(state)[0]
            state.assign(np.asarray([seed, epoch * _EPOCH_STRIDE], dtype=state.dtype))


def seed_states(model: keras.Model) -> list:
    """The state variables of every ``SeedGenerator`` of the model's layers."""
    return [variable for variable in model.variables if variable.path.endswith("seed_generator_state")]


class ResumableEarlyStopping(keras.callbacks.Callback):
    """Keras' ``EarlyStopping(monitor, mode="min", patience, restore_best_weights=True)``,
    whose state survives a restart.

    At the first epoch of a fit it replays the ``history`` rows of the epochs before it
    (same rule: an epoch improves when its value is below the best so far; the fit stops
    when ``patience`` epochs in a row did not). At the end it loads the best epoch's weights
    kept in memory, or, when the best epoch came before the restart, from ``checkpoint``
    (written by :class:`AtomicBestCheckpoint` on the same rule), so the final model is the
    best epoch of the whole run, before or after the restart.
    """

    def __init__(
        self, monitor: str, patience: int, history: str | Path, checkpoint: str | Path, verbose: int = 1
    ) -> None:
        super().__init__()
        self.monitor, self.patience, self.verbose = monitor, int(patience), verbose
        self.history, self.checkpoint = Path(history), Path(checkpoint)
        self.best, self.best_epoch, self.wait, self.stopped_epoch = math.inf, -1, 0, -1
        self.best_weights, self._started = None, False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.best, self.best_epoch, self.wait, self.stopped_epoch = math.inf, -1, 0, -1
        self.best_weights, self._started = None, False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._started:
            return
        self._started = True
        self.replay(epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        stop = self._update(epoch, (logs or {}).get(self.monitor))
        if self.best_epoch == epoch:
            self.best_weights = (
                self.model.get_weights()
            )  # in memory, as Keras does: no reload when it is of this session
        if stop:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def _update(self, epoch: int, value) -> bool:
        """Counts one epoch's ``value`` (NaN never improves); True when patience is exhausted."""
        if value is None:
            return False
        self.wait += 1
        if float(value) < self.best:
            self.best, self.best_epoch, self.wait, self.best_weights = float(value), epoch, 0, None
            return False
        return self.wait >= self.patience and epoch > 0

    def replay(self, before_epoch: int) -> bool:
        """Replays the recorded epochs before ``before_epoch``; True when they already met the stop rule."""
        for row in finished_rows(self.history, before_epoch).to_dict("records"):
            if self._update(int(row["epoch"]), row.get(self.monitor)):
                self.stopped_epoch = int(row["epoch"])
                return True
        return False

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.stopped_epoch >= 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.best_epoch < 0:
            return
        if self.verbose:
            print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        elif self.checkpoint.is_file():  # the best epoch came before the restart
            self.model.load_weights(self.checkpoint)


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

    ``history``: a resumed fit starts from the best value recorded there for the epochs
    before its first, so a worse epoch after the restart does not replace the best checkpoint.
    """

    def __init__(self, path: str | Path, monitor: str = "val_loss", history: str | Path | None = None) -> None:
        super().__init__()
        self.path, self.monitor = Path(path), monitor
        self.history = None if history is None else Path(history)
        self.best = math.inf

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.best, self._started = math.inf, False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._started:
            return
        self._started = True
        recorded = finished_rows(self.history, epoch)
        if self.path.is_file() and self.monitor in recorded and recorded[self.monitor].notna().any():
            self.best = float(recorded[self.monitor].min())

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not float(value) < self.best:
            return
        self.best = float(value)
        with atomic_path(self.path) as temporary:
            self.model.save(temporary)
