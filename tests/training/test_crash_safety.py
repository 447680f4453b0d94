"""Crash safety: run files are written under a temporary name and renamed; a killed
``osteo train`` leaves nothing that ``evaluate`` or ``export`` accepts as complete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from osteo_tf.cli import main
from osteo_tf.data.synthetic import make_cohort
from osteo_tf.io import write_json
from osteo_tf.runs.run_dir import RunDir


def test_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    write_json(target, {"auc": 0.5})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # killed between writing the temporary file and the rename

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_json(target, {"auc": 0.9})
    assert json.loads(target.read_text()) == {"auc": 0.5} and os.listdir(tmp_path) == ["metrics.json"]


def test_history_rewritten_whole_and_resumed_epochs_replaced(tmp_path):
    from osteo_tf.training.callbacks import AtomicHistory

    history = AtomicHistory(tmp_path / "history.csv")
    history.on_train_begin()
    for epoch in range(3):
        history.on_epoch_end(epoch, {"loss": 1.0 - epoch / 10, "val_loss": 2.0})
    resumed = AtomicHistory(tmp_path / "history.csv")  # a restarted fit re-runs epoch 2
    resumed.on_train_begin()
    resumed.on_epoch_end(2, {"loss": 0.1, "val_loss": 1.5})
    table = pd.read_csv(tmp_path / "history.csv")
    assert table["epoch"].tolist() == [0, 1, 2] and table["loss"].tolist() == [1.0, 0.9, 0.1]


def _wait_for(predicate, process, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _kill_after_epochs(command: list[str], history: Path, epochs: int) -> None:
    """Runs ``command`` and SIGKILLs it inside the epoch after the first ``epochs`` finished ones."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        rows = lambda: len(history.read_text().splitlines()) - 1 if history.is_file() else 0  # noqa: E731
        started = _wait_for(lambda: rows() >= epochs - 1, process, 240)
        begun = time.monotonic()
        finished = started and _wait_for(lambda: rows() >= epochs, process, 240)
        assert finished, process.stderr.read()[-3000:] if process.poll() is not None else "no epoch finished in time"
        time.sleep(min(0.3, (time.monotonic() - begun) / 3))  # somewhere inside the next epoch
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL


def test_killed_train_is_incomplete_and_resumes_to_the_uninterrupted_run(tmp_path, capsys):
    """Kill ``osteo train --deterministic`` inside epoch 3, rerun the command: history, metrics and
    predictions equal those of a fit never interrupted (CPU, op determinism)."""
    manifest = make_cohort("hip", 40, tmp_path / "cohort", seed=3, image_size=32)
    run = tmp_path / "run"
    options = [
        "--manifest",
        str(manifest),
        "--backbone",
        "resnet18",
        "--mode",
        "ensemble",
        "--image-size",
        "32",
        "--epochs",
        "4",
        "--patience",
        "2",
        "--batch-size",
        "4",
        "--verbose",
        "0",
        "--deterministic",
        "--covariate-dropout",
        "0.3",  # dropout and withholding: random layers must resume too
        "--fusion",
        "late",
        "--aux-loss-weight",
        "0.3",
    ]  # early stopping follows val_probability_loss
    command = [sys.executable, "-m", "osteo_tf.cli", "train", "--out", str(run), *options]
    _kill_after_epochs(command, run / "history.csv", 2)

    assert not RunDir(run).is_complete and not (run / "model.keras").exists()
    assert main(["evaluate", "--run", str(run)]) == 2
    assert main(["export", "--run", str(run), "--root", str(tmp_path / "saved")]) == 2
    errors = capsys.readouterr().err
    assert errors.count("is not complete (no COMPLETE marker)") == 2 and "Traceback" not in errors
    assert not (tmp_path / "saved").exists() or not any((tmp_path / "saved").rglob("saved_model.pb"))

    # Whatever the killed run left under its final names is whole (temporaries aside).
    table = pd.read_csv(run / "history.csv")
    assert len(table) >= 2 and table["epoch"].tolist() == list(range(len(table)))
    json.loads((run / "config.json").read_text())
    json.loads((run / "covariate_encoder.json").read_text())
    assert len(pd.read_csv(run / "splits.csv")) == 40
    assert RunDir(run).load_model(run / "checkpoints" / "best.keras") is not None
    for leftover in Path(run).rglob("*"):
        assert leftover.name.startswith(".") or ".tmp-" not in leftover.name

    quiet = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as on a user's machine
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600, env=quiet)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming the unfinished run" in resumed.stdout and "resuming at epoch" in resumed.stdout
    assert resumed.stderr.strip() == "", resumed.stderr[-3000:]  # no TensorFlow / Keras start-up or fit warnings
    assert main(["train", "--out", str(tmp_path / "straight"), *options]) == 0
    for name in ("history.csv", "predictions.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(run / name), pd.read_csv(tmp_path / "straight" / name), rtol=0, atol=0
        )
    assert json.loads((run / "metrics.json").read_text()) == json.loads(
        (tmp_path / "straight" / "metrics.json").read_text()
    )
    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == list(range(len(history))) and "val_probability_loss" in history
    assert RunDir(run).load_model().name == "resnet18_ensemble_late" and not (run / "backup").exists()
