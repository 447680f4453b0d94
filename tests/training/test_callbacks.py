"""Resumable early stopping against Keras' own EarlyStopping on the same validation losses."""

from __future__ import annotations

import types

import keras
import pytest

from osteo_tf.training.callbacks import AtomicHistory, ResumableEarlyStopping

LOSSES = [5.0, 4.0, 4.5, 4.2, 3.0, 3.5, float("nan"), 3.2, 3.1, 2.0, 2.5, 2.6, 2.7, 2.8]


def _keras_reference(patience: int) -> tuple[int, int]:
    """(stopped epoch or -1, best epoch) of keras.callbacks.EarlyStopping on LOSSES."""
    reference = keras.callbacks.EarlyStopping(
        monitor="val_loss", mode="min", patience=patience, restore_best_weights=True
    )
    reference.set_model(types.SimpleNamespace(stop_training=False, get_weights=lambda: []))
    reference.on_train_begin()
    for epoch, loss in enumerate(LOSSES):
        reference.on_epoch_end(epoch, {"val_loss": loss})
        if reference.model.stop_training:
            return epoch, reference.best_epoch
    return -1, reference.best_epoch


def _fit(stopping: ResumableEarlyStopping, history: AtomicHistory, first: int, last: int) -> int:
    """Epochs first..last (stopping early); returns the stopped epoch or -1."""
    model = types.SimpleNamespace(stop_training=False, get_weights=lambda: [])
    for callback in (stopping, history):
        callback.set_model(model)
        callback.on_train_begin()
    for epoch in range(first, last):
        stopping.on_epoch_begin(epoch)
        history.on_epoch_end(epoch, {"val_loss": LOSSES[epoch]})
        stopping.on_epoch_end(epoch, {"val_loss": LOSSES[epoch]})
        if model.stop_training:
            return epoch
    return -1


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_stopping_resumed_at_any_epoch_matches_keras_uninterrupted(tmp_path, patience):
    expected = _keras_reference(patience)
    for restart in range(1, expected[0] + 1 if expected[0] >= 0 else len(LOSSES)):
        folder = tmp_path / f"p{patience}-r{restart}"
        folder.mkdir()
        path = folder / "history.csv"
        make = lambda: ResumableEarlyStopping("val_loss", patience, path, folder / "best.keras", verbose=0)  # noqa: E731
        assert _fit(make(), AtomicHistory(path), 0, restart) == -1  # killed after epoch restart - 1
        resumed = make()
        stopped = _fit(resumed, AtomicHistory(path), restart, len(LOSSES))
        assert (stopped, resumed.best_epoch) == expected, f"resumed at epoch {restart}"


def test_recorded_history_that_met_the_rule_is_recognised(tmp_path):
    stopped, _ = _keras_reference(2)
    path = tmp_path / "history.csv"
    history = AtomicHistory(path)
    history.on_train_begin()
    for epoch in range(stopped + 1):
        history.on_epoch_end(epoch, {"val_loss": LOSSES[epoch]})
    stopping = ResumableEarlyStopping("val_loss", 2, path, tmp_path / "best.keras", verbose=0)
    assert stopping.replay(stopped + 1) and stopping.stopped_epoch == stopped
    assert not ResumableEarlyStopping("val_loss", 2, path, tmp_path / "best.keras", verbose=0).replay(stopped)
