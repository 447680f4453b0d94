"""GPU training-throughput benchmark: the project's fusion models (Keras 3 on JAX) vs torchvision.

What it measures
----------------
Training throughput (images/s) of the *ensemble* (image + covariates) model of each
configuration below, one training step = forward, loss, backward and SGD update, on one
fixed batch that stays in device memory, in three ways:

- ``keras_jax``: the project's model, ``osteo_tf.models.build_model(backbone, "ensemble",
  size, covariate_dim=6, weights=None)``, on Keras 3 with ``KERAS_BACKEND=jax``, mixed
  precision ``keras.mixed_precision`` policy ``mixed_bfloat16`` (the probability layer stays
  float32, as in ``heads.py``), compiled like ``osteo_tf.training.train.compile_model``
  (SGD momentum 0.9, the registry's learning rate, ``binary_crossentropy``, the project's
  AUC + accuracy metrics; ``--keras-metrics none`` drops them) with XLA on,
  ``jit_compile=True`` (on JAX: the jax.jit train step, the only fast path; the TF training
  path's GPU default is the same bf16 + XLA pair, see ``osteo_tf.training``) — and
  trained with ``model.fit`` on a generator that yields the same device-resident batch
  every step (``--keras-data host`` yields host numpy arrays instead, copied to the device
  each step as ``fit`` from arrays does; that was how the project's first H100 figures were taken).
- ``torch_eager``: torchvision's same architecture (``weights=None``) with the same head —
  its pooled features (batch-normalised, dropout) concatenated with the two-layer covariate
  MLP (batch-normalised), then the fusion dense layer and the one-unit output, widths and
  dropout read from ``osteo_tf/models/heads.py`` (its covariate-branch gradient scaling
  changes no step's cost and is left out) — same
  batch, size, optimizer (``torch.optim.SGD``, momentum 0.9, same learning rate), under
  ``torch.autocast(dtype=torch.bfloat16)`` with the output layer in float32 and
  ``binary_cross_entropy_with_logits``; channels-last memory format and
  ``cudnn.benchmark`` (torch's own best practice for convolutions under autocast).
- ``torch_compile``: the same, with the model wrapped in ``torch.compile`` (default mode;
  ``--compile-mode`` changes it; the optimizer step stays eager).

Each (configuration, mode) runs in its own subprocess, so JAX's GPU memory preallocation
and torch's caching allocator never share a device, and a crash, OOM or compiler failure
becomes an ``error`` entry in the output instead of ending the run. After ``--warmup``
steps (which include compilation), ``--steps`` steps are timed ``--repeats`` times back to
back and the median rate is reported. torch: a Python loop, ``torch.cuda.synchronize()``
before each clock reading. Keras: one ``fit`` call for warm-up and all repeats (so the
per-``fit`` set-up and end-of-epoch state sync stay out, as they would over a real epoch),
clocked by a callback at the end of the marked steps; Keras hands each step's logs to a
worker thread that waits for that step's results, so each reading is the step's end on
the device, and fit's asynchronous dispatch is kept (the callback is ``async_safe``).

It also checks parameter parity: the Keras model's trainable parameters and the torch
model's must be equal for each architecture (torchvision's backbone without its
classifier + the same fusion head); both counts are printed, and a mismatch makes the exit
status 1.

Configurations (``--configs`` picks a subset; ``--batch`` / ``--size`` override):

================  =======  =====  ====
name              size px  batch  LR
================  =======  =====  ====
efficientnet_b3   300      64     0.01
resnet50          224      128    0.001
resnet18          224      128    0.001
googlenet         224      128    0.001
================  =======  =====  ====

Output: one JSON line on stdout for the whole run: per configuration the img/s of each
mode (median, and every repeat), the ratios ``keras_jax/torch_eager`` and
``keras_jax/torch_compile``, ``target_met``, both parameter counts, compile/warm-up times
and any errors; plus the device names, the library versions and the settings. ``--out
FILE`` also appends that line to FILE. One progress line per finished mode goes to stderr.

Target
------
For every architecture, the project's fusion model trains at least as fast as
torchvision's eager model: ``keras_jax / torch_eager >= 1`` (``target_met``) with bf16 on
one GPU. ``keras_jax / torch_compile`` is reported alongside. The project's first H100
figures (Keras fed from host numpy arrays, torch from device-resident data) were ~1.2
for EfficientNet-B3, ~0.88 for ResNet-50 and ~0.37 for ResNet-18.

No TensorFlow
-------------
The GPU machine has PyTorch, torchvision and JAX and no TensorFlow; this script imports
none (``osteo_tf.models`` is pure Keras 3). Every process asserts ``'tensorflow' not in
sys.modules`` at its end. keras-hub imports TensorFlow when it is *installed*, so run this
in an environment without TensorFlow.

Running it on the GPU machine (device tool)
-------------------------------------------
**Not yet run on a GPU in this project**: no device was lent to the task that wrote it;
only a CPU smoke run (``--device cpu --steps 2 --warmup 1 --batch 2 --size 64``) was done.
The device machine (see /work/.library/device/README.md and KINDS.md) runs each command
in a copy of this repository with python3 3.12, torch, torchvision, jax (+ CUDA plugin),
numpy, regex, tokenizers, sentencepiece — but no keras / keras-hub. Their wheels travel
in ``.whl/`` (ignored through ``.git/info/exclude``; keras 3.15.1, keras_hub 0.32.0,
namex, optree, kagglehub, kagglesdk are there; refetch with ``python3 -m pip download
--no-deps --only-binary=:all: --python-version 3.12 ... -d .whl NAME==VERSION`` as that
README says). One device call, ``carry: [".whl"]``, ``timeout_s: 600``::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit;
    nvidia-smi --query-gpu=name,driver_version --format=csv;
    PYTHONUNBUFFERED=1 python3 bench/gpu.py --configs efficientnet_b3,resnet50 \
        --budget 540 --out $OUT/gpu_bench.jsonl

and a second call with ``--configs resnet18,googlenet``. One command may run 10 minutes,
and each configuration costs three process starts plus an XLA compile and a
torch.compile (expect minutes for EfficientNet-B3); ``--budget 540`` caps every worker to
what is left and skips the rest (reported as ``errors``), so the JSON line is printed
before the tool's limit. Rerun what was skipped with ``--configs``/``--modes``. The
progress lines on stderr show each mode's figures as they come. ``--params-only`` checks
parity without training (with ``--device cpu`` anywhere, in a few minutes). Report the JSON line(s) and the device
named in
them; compare timings only between runs on the same kind of GPU (H100 vs H200). Not
checked: that keras 3.15.1 runs on the machine's newer JAX (0.11.x, CUDA 13 plugin).

Options: ``--configs``, ``--modes``, ``--steps``, ``--warmup``, ``--repeats``,
``--batch``, ``--size``, ``--device {cuda,cpu}`` (cpu: a smoke run), ``--precision
{bf16,fp32}``, ``--keras-data {device,host}``, ``--keras-metrics {project,none}``,
``--steps-per-execution``, ``--torch-memory-format``, ``--compile-mode``,
``--covariate-dim``, ``--params-only``, ``--out``, ``--worker-timeout``, ``--budget``.

This module imports only the standard library at the top, so tests (and CI, which has no
torch and no JAX) can import it and exercise the pure helpers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the checkout's osteo_tf, installed or not
# The project's shared facts: a standard-library module (no Keras, JAX, TensorFlow or NumPy).
from osteo_tf.vocabulary import COVARIATE_UNITS, FUSION_UNITS, IMAGE_DROPOUT, IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

MODES = ("keras_jax", "torch_eager", "torch_compile")
RESULT_MARK = "@@gpu-bench-result "
MIN_WORKER_S = 20.0  # --budget: no worker is started with less time than this left
RUN_KEYS = ("img_per_s_runs", "warmup_s", "final_loss", "max_memory_gib", "policy", "tensorflow_imported")
RATIO_KEYS = {"keras_jax/torch_eager": "torch_eager", "keras_jax/torch_compile": "torch_compile"}
VERSION_PACKAGES = (
    "jax",
    "jaxlib",
    "jax-cuda12-plugin",
    "jax-cuda13-plugin",
    "keras",
    "keras-hub",
    "torch",
    "torchvision",
    "triton",
    "numpy",
)


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark configuration: the backbone (registry name = torchvision builder name)."""

    name: str
    size: int
    batch: int
    learning_rate: float  # the registry's (checked against it by the Keras worker and a test)


CONFIGS: dict[str, BenchConfig] = {
    "efficientnet_b3": BenchConfig("efficientnet_b3", 300, 64, 0.01),
    "resnet50": BenchConfig("resnet50", 224, 128, 0.001),
    "resnet18": BenchConfig("resnet18", 224, 128, 0.001),
    "googlenet": BenchConfig("googlenet", 224, 128, 0.001),
}


# --------------------------------------------------------------------------------------
# Pure helpers (standard library only; tested in CI)
# --------------------------------------------------------------------------------------


def head_params(feature_channels: int, covariate_dim: int, covariate_units: tuple[int, ...], fusion_units: int) -> int:
    """Trainable parameters of the ensemble head: the image features' batch norm (γ, β),
    covariate MLP and its batch norm, fusion dense and output."""
    total, width = 2 * feature_channels, covariate_dim
    for units in covariate_units:
        total += width * units + units
        width = units
    total += 2 * width
    total += (feature_channels + width) * fusion_units + fusion_units
    return total + fusion_units + 1


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator rounded to 3 places, or None when either is missing or not > 0."""
    if not numerator or not denominator or numerator <= 0 or denominator <= 0:
        return None
    if not (math.isfinite(numerator) and math.isfinite(denominator)):
        return None
    return round(numerator / denominator, 3)


def throughput(batch: int, steps: int, seconds: float) -> float:
    """Images per second for ``steps`` steps of ``batch`` images in ``seconds``."""
    if seconds <= 0:
        raise ValueError(f"elapsed time must be > 0, got {seconds}")
    return batch * steps / seconds


def summarize_config(config: BenchConfig, results: dict[str, dict]) -> dict:
    """One configuration's entry of the output line, from the workers' results by mode.

    A worker result holds ``img_per_s`` (median), ``img_per_s_runs``, ``params``
    ({"trainable", "total"}), ``warmup_s`` and ``device``; or ``error``.
    """
    img = {mode: r.get("img_per_s") for mode, r in results.items() if r.get("img_per_s") is not None}
    keras_img = img.get("keras_jax")
    ratios = {
        key: ratio(keras_img, img.get(mode))
        for key, mode in RATIO_KEYS.items()
        if "keras_jax" in results and mode in results
    }
    eager = ratios.get("keras_jax/torch_eager")
    keras_params = (results.get("keras_jax") or {}).get("params", {}).get("trainable")
    torch_params = next(
        (r["params"]["trainable"] for m, r in results.items() if m.startswith("torch") and r.get("params")), None
    )
    return {
        "name": config.name,
        "size": config.size,
        "batch": config.batch,
        "learning_rate": config.learning_rate,
        "img_per_s": {mode: _round(v, 1) for mode, v in img.items()},
        "ratios": ratios,
        "target_met": None if eager is None else eager >= 1.0,
        "params": {
            "keras_trainable": keras_params,
            "torch_trainable": torch_params,
            "match": None if keras_params is None or torch_params is None else keras_params == torch_params,
            "keras_total": (results.get("keras_jax") or {}).get("params", {}).get("total"),
            "torch_total_with_buffers": next(
                (r["params"].get("total") for m, r in results.items() if m.startswith("torch") and r.get("params")),
                None,
            ),
        },
        "runs": {mode: {k: r[k] for k in RUN_KEYS if k in r} for mode, r in results.items()},
        "errors": {mode: r["error"] for mode, r in results.items() if r.get("error")},
    }


def make_record(entries: list[dict], settings: dict, devices: dict, versions: dict) -> dict:
    """The whole run's output object (one JSON line).

    ``tensorflow_imported``: whether this process or any worker (``runs``) imported TensorFlow.
    """
    workers_tf = any(run.get("tensorflow_imported") for e in entries for run in e["runs"].values())
    return {
        "bench": "gpu_train_throughput",
        "unit": "images/s",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "devices": devices,
        "versions": versions,
        "settings": settings,
        "configs": entries,
        "params_match": all(e["params"]["match"] is not False for e in entries),
        "target_met": (
            None if any(e["target_met"] is None for e in entries) else all(e["target_met"] for e in entries)
        ),
        "tensorflow_imported": "tensorflow" in sys.modules or workers_tf,
    }


def json_line(record: dict) -> str:
    """The record as one line of JSON (no NaN/Infinity: those become null)."""
    return json.dumps(_finite(record), sort_keys=False, separators=(",", ":"))


def parse_result(stdout: str) -> dict | None:
    """The worker's result: the JSON after the last ``RESULT_MARK`` line, or None."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    return None


def package_versions(names: tuple[str, ...] = VERSION_PACKAGES) -> dict[str, str | None]:
    """Installed versions from package metadata (imports nothing); None when not installed."""
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def select_configs(names: str | None, batch: int | None = None, size: int | None = None) -> list[BenchConfig]:
    """Configurations named in a comma list (None/'all' → all), with batch/size overrides."""
    chosen = list(CONFIGS) if not names or names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    return [
        BenchConfig(c.name, size or c.size, batch or c.batch, c.learning_rate) for c in (CONFIGS[n] for n in chosen)
    ]


def worker_timeout(worker_limit: float, budget: float | None, elapsed: float) -> float | None:
    """Seconds the next worker may run: --worker-timeout, capped by what is left of --budget;
    None when too little is left to start one."""
    if budget is None:
        return worker_limit
    left = budget - elapsed
    return None if left < MIN_WORKER_S else min(worker_limit, left)


def select_modes(names: str | None) -> list[str]:
    chosen = list(MODES) if not names or names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="all", help=f"comma list of {', '.join(CONFIGS)} (default all)")
    parser.add_argument("--modes", default="all", help=f"comma list of {', '.join(MODES)} (default all)")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per repeat (default 50)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first, compilation included (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported (default 3)")
    parser.add_argument("--batch", type=int, default=None, help="batch size for every config (default: each config's)")
    parser.add_argument(
        "--size", type=int, default=None, help="image side in px for every config (default: each config's)"
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: smoke run (default cuda)")
    parser.add_argument(
        "--precision",
        choices=("bf16", "fp32"),
        default="bf16",
        help="bf16: Keras mixed_bfloat16 and torch.autocast bf16 (default); fp32: neither",
    )
    parser.add_argument(
        "--keras-data",
        choices=("device", "host"),
        default="device",
        help="device: the batch stays on the device (default); host: numpy copied every step",
    )
    parser.add_argument(
        "--keras-metrics",
        choices=("project", "none"),
        default="project",
        help="project: AUC + accuracy as compile_model (default); none: loss only",
    )
    parser.add_argument("--steps-per-execution", type=int, default=1, help="Keras compile() option (default 1)")
    parser.add_argument("--torch-memory-format", choices=("channels_last", "contiguous"), default="channels_last")
    parser.add_argument(
        "--compile-mode", default="default", help="torch.compile mode: default, reduce-overhead, max-autotune, ..."
    )
    parser.add_argument("--covariate-dim", type=int, default=6, help="covariate vector length (default 6, hip)")
    parser.add_argument("--params-only", action="store_true", help="build the models and count parameters only")
    parser.add_argument("--out", type=Path, default=None, help="also append the JSON line to this file")
    parser.add_argument("--worker-timeout", type=float, default=600, help="seconds per (config, mode) subprocess")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds for the whole run: workers get at most what is left, and once under "
        f"{MIN_WORKER_S:.0f} s are left the rest are skipped (reported as errors), so the "
        "JSON line is printed before an outer time limit (e.g. the device tool's 600 s)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: JSON job of one subprocess
    args = parser.parse_args(argv)
    for name in ("steps", "repeats", "steps_per_execution", "covariate_dim"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 1:
        parser.error("--warmup must be >= 1 (the first step compiles)")
    if args.warmup % args.steps_per_execution or args.steps % args.steps_per_execution:
        parser.error("--steps-per-execution must divide --warmup and --steps")
    try:
        args.config_list = select_configs(args.configs, args.batch, args.size)
        args.mode_list = select_modes(args.modes)
    except ValueError as error:
        parser.error(str(error))
    return args


def settings_of(args: argparse.Namespace) -> dict:
    keys = (
        "steps",
        "warmup",
        "repeats",
        "device",
        "precision",
        "keras_data",
        "keras_metrics",
        "steps_per_execution",
        "torch_memory_format",
        "compile_mode",
        "covariate_dim",
        "params_only",
    )
    # (--budget and --worker-timeout are limits of the driver, not of a measurement.)
    return {"modes": args.mode_list, **{k: getattr(args, k) for k in keys}}


def _round(value, places):
    return None if value is None else round(value, places)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _log(message: str) -> None:
    print(f"[bench/gpu] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Workers (each runs in its own process)
# --------------------------------------------------------------------------------------


def make_batch(batch: int, size: int, covariate_dim: int, seed: int = 0):
    """One fixed training batch (numpy): images in [0, 255] (batch, size, size, 3) float32,
    covariates (batch, covariate_dim) float32, labels (batch, 1) float32 in {0, 1}."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, size=(batch, size, size, 3)).astype("float32")
    covariates = rng.standard_normal((batch, covariate_dim)).astype("float32")
    labels = (rng.uniform(size=(batch, 1)) < 0.5).astype("float32")
    labels[0, 0], labels[-1, 0] = 0.0, 1.0  # both classes present (AUC metric)
    return images, covariates, labels


def imagenet_normalize(images):
    import numpy as np

    return ((images - np.asarray(IMAGENET_MEAN, "float32")) / np.asarray(IMAGENET_STD, "float32")).astype("float32")


def step_clock_class():
    """A Keras callback class that records when given steps have finished (defined lazily: Keras)."""
    import keras

    class StepClock(keras.callbacks.Callback):
        """Records perf_counter() when step ``n`` (1-based) of ``marks`` has finished.

        ``async_safe`` keeps ``fit``'s callback dispatch asynchronous, as it is without this
        callback: Keras then hands each step's logs to a worker thread and converts them to
        Python numbers there, which waits for that step's results, so a time read after it
        is the step's end on the device.
        """

        async_safe = True

        def __init__(self, marks):
            super().__init__()
            self.marks, self.times = set(marks), {}

        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 in self.marks:
                self.times[batch + 1] = time.perf_counter()

    return StepClock


def keras_worker(job: dict) -> dict:
    """Builds the project's ensemble model on Keras/JAX and times model.fit."""
    os.environ["KERAS_BACKEND"] = "jax"
    if job["device"] == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    sys.path.insert(0, str(REPO_ROOT))
    import jax
    import keras
    import numpy as np

    from osteo_tf.models import build_model, get_backbone_spec, normalize_images

    StepClock = step_clock_class()

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"Keras backend is {keras.backend.backend()!r}, not 'jax'")
    if job["device"] == "cuda" and jax.default_backend() != "gpu":
        raise RuntimeError(f"--device cuda but JAX's backend is {jax.default_backend()!r}")
    config = BenchConfig(**job["config"])
    spec = get_backbone_spec(config.name)
    if spec.learning_rate != config.learning_rate:
        raise RuntimeError(f"{config.name}: registry LR {spec.learning_rate} != bench LR {config.learning_rate}")
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if job["precision"] == "bf16" else "float32")
    keras.utils.set_random_seed(0)
    model = build_model(config.name, "ensemble", image_size=config.size, covariate_dim=job["covariate_dim"])
    params = {
        "trainable": int(sum(math.prod(v.shape) for v in model.trainable_variables)),
        "total": int(model.count_params()),
    }
    device = jax.devices()[0]
    result = {
        "params": params,
        "device": f"{device.platform}:{getattr(device, 'device_kind', device)}",
        "policy": keras.mixed_precision.global_policy().name,
    }
    if job["params_only"]:
        return result
    metrics = (
        [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")]
        if job["keras_metrics"] == "project"
        else []
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=spec.learning_rate, momentum=0.9),
        loss="binary_crossentropy",
        metrics=metrics,
        jit_compile=True,
        steps_per_execution=job["steps_per_execution"],
    )
    images, covariates, labels = make_batch(config.batch, config.size, job["covariate_dim"])
    if spec.normalization is not None:  # what the tf.data pipeline does before the model
        images = np.asarray(normalize_images(images, spec), "float32")
    x = {"image": images, "covariates": covariates}
    if job["keras_data"] == "device":
        x, labels = jax.device_put((x, labels))
        jax.block_until_ready((x, labels))

    def batches():
        while True:
            yield x, labels

    # One fit call for warm-up and every repeat: per-fit costs (iterator set-up, state sync
    # at the epoch's end) stay out of the steady-state rate, as in the torch loop.
    total = job["warmup"] + job["repeats"] * job["steps"]
    marks = [job["warmup"] + r * job["steps"] for r in range(job["repeats"] + 1)]
    clock = StepClock(marks)
    start = time.perf_counter()
    history = model.fit(batches(), steps_per_epoch=total, epochs=1, verbose=0, callbacks=[clock])
    jax.block_until_ready([v.value for v in model.variables])
    missing = [m for m in marks if m not in clock.times]
    if missing:
        raise RuntimeError(f"no step-end time for step(s) {missing} (steps_per_execution must divide them)")
    result["warmup_s"] = round(clock.times[marks[0]] - start, 2)
    runs = [throughput(config.batch, job["steps"], clock.times[b] - clock.times[a]) for a, b in zip(marks, marks[1:])]
    loss = history.history["loss"][-1]
    result.update(img_per_s=statistics.median(runs), img_per_s_runs=[round(r, 1) for r in runs], final_loss=float(loss))
    return result


def torchvision_backbone(name: str):
    """torchvision's network without its classifier: (batch, 3, h, w) → (batch, channels) pooled."""
    import torch.nn as nn
    import torchvision

    if name.startswith("resnet"):
        net = getattr(torchvision.models, name)(weights=None)
        channels = net.fc.in_features
        net.fc = nn.Identity()
    elif name == "googlenet":
        # As the project's port: no aux classifiers, transform_input, no dropout/fc.
        net = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=True)
        channels = net.fc.in_features
        net.dropout, net.fc = nn.Identity(), nn.Identity()
    elif name.startswith("efficientnet_"):
        net = getattr(torchvision.models, name)(weights=None)
        channels = net.classifier[-1].in_features
        net.classifier = nn.Identity()  # dropout + linear; keras.applications include_top=False has neither
    else:
        raise ValueError(f"no torchvision mapping for {name!r}")
    return net, channels


def torch_fusion_model(name: str, covariate_dim: int, covariate_units: tuple[int, ...], fusion_units: int):
    """torchvision backbone + the project's ensemble head (heads.py: each branch batch-normalised,
    dropout on the image features), returning logits (batch, 1)."""
    import torch
    import torch.nn as nn

    class FusionModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, channels = torchvision_backbone(name)
            self.image_norm = nn.Sequential(nn.BatchNorm1d(channels), nn.Dropout(IMAGE_DROPOUT))
            layers, width = [], covariate_dim
            for units in covariate_units:
                layers += [nn.Linear(width, units), nn.ReLU()]
                width = units
            self.covariate_encoder = nn.Sequential(*layers, nn.BatchNorm1d(width))
            self.fusion_dense = nn.Linear(channels + width, fusion_units)
            self.probability = nn.Linear(fusion_units, 1)

        def forward(self, image, covariates):
            features = self.image_norm(self.backbone(image))
            encoded = self.covariate_encoder(covariates)
            x = torch.relu(self.fusion_dense(torch.cat([features, encoded.to(features.dtype)], dim=1)))
            # heads.py keeps the output layer float32 under mixed precision: so does this.
            with torch.autocast(device_type=x.device.type, enabled=False):
                return self.probability(x.float())

    return FusionModel()


def torch_worker(job: dict) -> dict:
    """Times torchvision's same model + head, eager or torch.compile, bf16 autocast."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    config = BenchConfig(**job["config"])
    device = torch.device(job["device"])
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda but torch.cuda.is_available() is False")
        torch.backends.cudnn.benchmark = True
        device_name = f"cuda:{torch.cuda.get_device_name(0)}"
    else:
        device_name = f"cpu:{platform.processor() or platform.machine()}"
    torch.manual_seed(0)
    covariate_units, fusion_units = job["head"]
    model = torch_fusion_model(config.name, job["covariate_dim"], tuple(covariate_units), fusion_units)
    params = {
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total": sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers()),
    }
    result = {"params": params, "device": device_name}
    if job["params_only"]:
        return result
    memory_format = torch.channels_last if job["torch_memory_format"] == "channels_last" else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=0.9)
    images, covariates, labels = make_batch(config.batch, config.size, job["covariate_dim"])
    images = torch.from_numpy(np.ascontiguousarray(imagenet_normalize(images).transpose(0, 3, 1, 2)))
    images = images.to(device).contiguous(memory_format=memory_format)
    covariates, labels = torch.from_numpy(covariates).to(device), torch.from_numpy(labels).to(device)
    forward = model
    if job["mode"] == "torch_compile":
        forward = torch.compile(model, mode=None if job["compile_mode"] == "default" else job["compile_mode"])
    autocast = job["precision"] == "bf16"

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = forward(images, covariates)
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
        loss.backward()
        optimizer.step()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    start = time.perf_counter()
    for _ in range(job["warmup"]):
        step()
    sync()
    result["warmup_s"] = round(time.perf_counter() - start, 2)
    runs, loss = [], None
    for _ in range(job["repeats"]):
        start = time.perf_counter()
        for _ in range(job["steps"]):
            loss = step()
        sync()
        runs.append(throughput(config.batch, job["steps"], time.perf_counter() - start))
    result.update(
        img_per_s=statistics.median(runs),
        img_per_s_runs=[round(r, 1) for r in runs],
        final_loss=float(loss.detach().cpu()),
    )
    if device.type == "cuda":
        result["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def run_worker(job: dict) -> int:
    """Entry point of a subprocess: runs one job, prints RESULT_MARK + JSON, asserts no TF."""
    try:
        result = keras_worker(job) if job["mode"] == "keras_jax" else torch_worker(job)
    except Exception as error:  # reported in the output line, not a crash of the whole run
        import traceback

        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {str(error)[:500]}"}
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    print(RESULT_MARK + json.dumps(_finite(result)), flush=True)
    assert "tensorflow" not in sys.modules, "TensorFlow was imported"
    return 0


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def run_job(job: dict, timeout: float) -> dict:
    """Runs one (config, mode) job in a subprocess; its result, or {"error": ...}."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    if job["mode"] == "keras_jax":
        env["KERAS_BACKEND"] = "jax"
        env["JAX_PLATFORMS"] = "cpu" if job["device"] == "cpu" else env.get("JAX_PLATFORMS") or "cuda"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
    # Own process group: a timeout ends the worker and its helpers (torch.compile's workers).
    worker = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        stdout, stderr = worker.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, 9)
        worker.communicate()
        return {"error": f"timed out after {timeout:.0f} s (--worker-timeout)"}
    result = parse_result(stdout)
    if result is None or worker.returncode != 0:
        tail = " | ".join(stderr.strip().splitlines()[-6:])
        message = f"worker exit status {worker.returncode}: {tail[-800:]}"
        result = {**(result or {}), "error": (result or {}).get("error") or message}
    if result.get("error"):
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        _log(f"{job['config']['name']} {job['mode']} failed: {result['error']} [{tail[-400:]}]")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(json.loads(args.worker))
    head = (COVARIATE_UNITS, FUSION_UNITS)
    entries, devices, run_start = [], {}, time.perf_counter()
    # torch_compile builds the same model as torch_eager: counting it again adds nothing.
    modes = [
        m for m in args.mode_list if not (args.params_only and m == "torch_compile" and "torch_eager" in args.mode_list)
    ]
    for config in args.config_list:
        results = {}
        for mode in modes:
            job = {
                "mode": mode,
                "config": asdict(config),
                "head": [list(head[0]), head[1]],
                **{k: v for k, v in settings_of(args).items() if k != "modes"},
            }
            started = time.perf_counter()
            timeout = worker_timeout(args.worker_timeout, args.budget, started - run_start)
            if timeout is None:
                results[mode] = {"error": f"skipped: --budget {args.budget:.0f} s used up"}
                _log(f"{config.name} {mode}: skipped, --budget used up")
                continue
            results[mode] = result = run_job(job, timeout)
            if result.get("device"):
                devices["keras_jax" if mode == "keras_jax" else "torch"] = result["device"]
            _log(
                f"{config.name} {config.size}px batch {config.batch} {mode}: "
                f"{_round(result.get('img_per_s'), 1)} img/s, params {result.get('params')}, "
                f"{time.perf_counter() - started:.0f} s" + (f", ERROR {result['error']}" if result.get("error") else "")
            )
        entries.append(summarize_config(config, results))
        entry = entries[-1]
        _log(
            f"{config.name}: ratios {entry['ratios']}, params keras {entry['params']['keras_trainable']} "
            f"torch {entry['params']['torch_trainable']} match {entry['params']['match']}"
        )
    settings = {**settings_of(args), "head": {"covariate_units": list(head[0]), "fusion_units": head[1]}}
    line = json_line(make_record(entries, settings, devices, package_versions()))
    print(line, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as handle:
            handle.write(line + "\n")
    assert "tensorflow" not in sys.modules, "TensorFlow was imported"
    return 0 if all(e["params"]["match"] is not False for e in entries) else 1


if __name__ == "__main__":
    sys.exit(main())
