"""The cost model behind ``osteo experiment CONFIG --dry-run --estimate``: how long will the grid take?

Per backbone, a short timed probe trains the experiment's own model (the config's image
size, batch, precision and XLA, resolved for this machine as a fit would) on in-memory
random images for a few steps after a warm-up, giving seconds per training image; a
forward-only validation pass is counted at a third of a training step per image. Then

    seconds per epoch = train rows × s/image + val rows × s/image / 3
    seconds per fit   = epochs × seconds per epoch
    wall time on N devices = the fits packed longest-first onto N devices (one fit each)

Epochs: the mean ``epochs_run`` of the experiment folder's finished fits of that backbone
when there are any (early stopping), else the config's maximum (an upper bound). Input
pipeline time is not probed (``bench/pipeline.py`` shows it outruns the model), nor are
checkpoints and start-up (a few seconds per fit).
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osteo_tf.errors import OsteoInputError
from osteo_tf.experiments.config import ExperimentConfig
from osteo_tf.experiments.results import read_records

__all__ = [
    "PROBE_COVARIATE_DIM",
    "VALIDATION_COST",
    "BackboneCost",
    "cohort_size",
    "estimate_costs",
    "estimate_experiment",
    "format_duration",
    "measured_epochs",
    "print_estimate",
    "probe_seconds_per_image",
    "split_rows",
    "wall_time",
]

VALIDATION_COST = 1.0 / 3.0  # a forward pass ≈ a third of a training step (forward + backward + update)
PROBE_COVARIATE_DIM = 6


@dataclass(frozen=True)
class BackboneCost:
    """Measured and derived cost of one backbone's fits (covariates_only: backbone "none")."""

    backbone: str
    seconds_per_image: float
    seconds_per_epoch: float
    epochs: float
    epochs_source: str  # "max" (config) or "measured (n fits)"
    fits: int

    @property
    def seconds_per_fit(self) -> float:
        return self.epochs * self.seconds_per_epoch


def split_rows(config: ExperimentConfig, subjects: int) -> tuple[int, int]:
    """(train rows, validation rows) of one fit of a cohort of ``subjects`` images."""
    s = config.split
    if s.kind == "random":
        total = sum(s.ratios)
        return round(subjects * s.ratios[0] / total), round(subjects * s.ratios[1] / total)
    development = subjects * (s.folds - 1) / s.folds
    train = development * s.val_ratio[0] / sum(s.val_ratio)
    return round(train), round(development - train)


def cohort_size(config: ExperimentConfig, subjects: int | None = None) -> int:
    """Images in the cohort: ``subjects`` if given, else the phantom's n or the manifest's rows."""
    if subjects is not None:
        if subjects < 10:
            raise OsteoInputError(f"subjects must be at least 10, got {subjects}", parameter="subjects")
        return subjects
    if config.phantom is not None:
        return config.phantom.n
    if config.manifest is None:
        raise OsteoInputError(
            "the cost estimate needs the cohort size: pass manifest=COHORT.csv or subjects=N", parameter="subjects"
        )
    path = Path(config.manifest)
    if not path.is_file():
        raise OsteoInputError(f"{path}: manifest not found")
    with path.open(encoding="utf-8-sig") as handle:
        return max(sum(1 for line in handle if line.strip()) - 1, 0)


def probe_seconds_per_image(
    config: ExperimentConfig, backbone: str, mode: str, *, steps: int = 3, warmup: int = 2
) -> float:
    """Seconds per training image of one fit's model on this machine (median of ``steps`` timed steps)."""
    import keras

    from osteo_tf.models import build_model, uses_covariates, uses_images
    from osteo_tf.training.hardware import distribution_strategy, dtype_policy, resolve_runtime
    from osteo_tf.training.train import compile_model

    train_config = config.train_config(backbone, mode, 0)
    strategy = distribution_strategy()
    runtime = resolve_runtime(train_config.precision, train_config.jit, train_config.batch_size, strategy)
    batch, size = runtime.global_batch_size, train_config.image_size
    covariate_dim = PROBE_COVARIATE_DIM if uses_covariates(mode) else 0
    with strategy.scope(), dtype_policy(runtime.precision):
        model = build_model(backbone, mode, size, covariate_dim=covariate_dim)
        compile_model(model, train_config, jit=runtime.jit)
    rng = np.random.default_rng(0)
    inputs = {}
    if uses_images(mode):
        inputs["image"] = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    if covariate_dim:
        inputs["covariates"] = rng.normal(size=(batch, covariate_dim)).astype(np.float32)
    labels = rng.integers(0, 2, (batch, 1)).astype(np.float32)
    for _ in range(warmup):
        model.train_on_batch(inputs, labels)
    timings = []
    for _ in range(steps):
        started = time.perf_counter()
        model.train_on_batch(inputs, labels)
        timings.append(time.perf_counter() - started)
    keras.utils.clear_session(free_memory=True)
    return float(np.median(timings)) / batch


def measured_epochs(records: list[dict], backbone: str) -> tuple[float, int]:
    """(mean epochs_run, number of finished fits) of ``backbone`` among an experiment's ``records``."""
    epochs = [r["epochs_run"] for r in records if r["backbone"] == backbone]
    return (float(np.mean(epochs)), len(epochs)) if epochs else (0.0, 0)


def estimate_costs(
    config: ExperimentConfig, fits: list, subjects: int, *, records: list[dict] = (), probe=None
) -> list[BackboneCost]:
    """One BackboneCost per backbone of ``fits`` (each probed once, with its first mode).

    records: the experiment's finished fits (their epochs replace the config maximum). probe: ``(config, backbone,
    mode) → seconds per training image``; default the timed probe.
    """
    probe = probe or probe_seconds_per_image
    train_rows, val_rows = split_rows(config, subjects)
    max_epochs = int(config.train_config(config.backbones[0], config.modes[0], 0).epochs)
    costs = []
    for backbone in dict.fromkeys(f.backbone for f in fits):
        mine = [f for f in fits if f.backbone == backbone]
        probe_backbone = config.backbones[0] if mine[0].mode == "covariates_only" else backbone
        per_image = probe(config, probe_backbone, mine[0].mode)
        per_epoch = per_image * (train_rows + VALIDATION_COST * val_rows)
        mean_epochs, finished = measured_epochs(records, backbone)
        epochs, source = (mean_epochs, f"measured ({finished} fits)") if finished else (float(max_epochs), "max")
        costs.append(BackboneCost(backbone, per_image, per_epoch, epochs, source, len(mine)))
    return costs


def wall_time(fit_seconds: list[float], devices: int) -> float:
    """Makespan of the fits packed longest-first onto ``devices`` devices, one fit at a time each."""
    loads = [0.0] * max(devices, 1)
    for seconds in sorted(fit_seconds, reverse=True):
        heapq.heapreplace(loads, loads[0] + seconds)
    return max(loads)


def format_duration(seconds: float) -> str:
    """Seconds as "3 d 4 h", "5 h 12 min", "7 min" or "42 s"."""
    if seconds >= 86400:
        return f"{int(seconds // 86400)} d {int(seconds % 86400 // 3600)} h"
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    return f"{math.ceil(seconds / 60)} min" if seconds >= 60 else f"{seconds:.0f} s"


def print_estimate(
    config: ExperimentConfig, fits: list, subjects: int, devices: int, *, records: list[dict] = (), probe=None
) -> dict:
    """Probes, prints the estimate table and returns its figures (seconds)."""
    from osteo_tf.training.hardware import distribution_strategy, strategy_devices

    train_rows, val_rows = split_rows(config, subjects)
    device = ", ".join(strategy_devices(distribution_strategy()))
    print(f"cost estimate: {subjects} images → {train_rows} train / {val_rows} val rows per fit; probed on {device}")
    costs = estimate_costs(config, fits, subjects, records=records, probe=probe)
    print(f"  {'backbone':<16}{'fits':>6}{'ms/image':>10}{'s/epoch':>10}{'epochs':>8}  {'per fit':>10}")
    for c in costs:
        print(
            f"  {c.backbone:<16}{c.fits:>6}{1000 * c.seconds_per_image:>10.1f}{c.seconds_per_epoch:>10.1f}"
            f"{c.epochs:>8.1f}  {format_duration(c.seconds_per_fit):>10}   epochs: {c.epochs_source}"
        )
    durations = [c.seconds_per_fit for c in costs for _ in range(c.fits)]
    one, many = wall_time(durations, 1), wall_time(durations, devices)
    print(
        f"  total {len(durations)} fits: {format_duration(one)} on 1 device like this one, "
        f"{format_duration(many)} on {devices} (one fit per device; --executor ray --gpus-per-fit 1)"
    )
    if "GPU" not in device.upper():
        print("  (probed on CPU: on a GPU, rerun --estimate there; mixed precision and XLA are then on by default)")
    return {"costs": costs, "one_device_seconds": one, "devices": devices, "devices_seconds": many}


def estimate_experiment(
    config: ExperimentConfig,
    out: str | Path | None = None,
    shard: tuple[int, int] = (1, 1),
    *,
    devices: int = 4,
    subjects: int | None = None,
) -> dict:
    """``osteo experiment --dry-run --estimate``: the cost of this shard's unfinished fits."""
    from osteo_tf.experiments.runner import plan, shard_fits

    if devices < 1:
        raise OsteoInputError(f"devices must be at least 1, got {devices}", parameter="devices")
    out = None if out is None else Path(out)
    records = read_records(out) if out is not None and (out / "results").is_dir() else []
    done = {r["fit_id"] for r in records}
    todo = [f for f in shard_fits(plan(config), shard) if f.fit_id not in done]
    if not todo:
        print("cost estimate: nothing left to run")
        return {"costs": [], "one_device_seconds": 0.0, "devices": devices, "devices_seconds": 0.0}
    return print_estimate(config, todo, cohort_size(config, subjects), devices, records=records)
