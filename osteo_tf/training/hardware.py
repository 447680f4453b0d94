"""Where and how one fit runs: the distribution strategy, numeric precision and XLA.

Defaults follow the hardware (``precision="auto"``, ``jit="auto"``):

- **GPU**: mixed precision — ``mixed_bfloat16`` on compute capability ≥ 8.0 (Ampere and
  later: bfloat16 needs no loss scaling), else ``mixed_float16`` (Keras wraps the optimiser
  in a ``LossScaleOptimizer``) — and XLA (``jit_compile=True``).
- **CPU**: ``float32`` without XLA. Measured on this project's 2-core x86 CPU (AVX-512 with
  BF16/FP16 and AMX): XLA ran the ResNet-18 training step ~40 % slower (it retraces for
  tf.data's last, smaller batch). Mixed precision depends on the network there: ResNet-18
  (128 px, batch 16) trained 1.46× faster with ``mixed_bfloat16`` and 1.41× with
  ``mixed_float16``, but EfficientNet-B0 0.62× and 0.30× (its depthwise convolutions have
  no fast low-precision CPU kernels); CPUs without those instructions emulate both. So float32
  stays the CPU default, and ``--precision mixed_bfloat16`` is there for a ResNet on such a CPU.

The output layer stays float32 under any policy (:mod:`osteo_tf.models.heads`).

Several GPUs: ``MirroredStrategy`` over all visible GPUs; the batch size of the config is
*per replica*, so the global batch is ``batch_size × replicas`` (the learning rate is not
scaled: say so when comparing runs on different GPU counts).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import keras
import tensorflow as tf

__all__ = [
    "BF16_MIN_COMPUTE_CAPABILITY",
    "distribution_strategy",
    "dtype_policy",
    "gpu_compute_capability",
    "resolve_runtime",
    "Runtime",
    "strategy_devices",
]

BF16_MIN_COMPUTE_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class Runtime:
    """What a fit actually ran with, after resolving "auto" on this machine.

    precision: a Keras dtype policy name. jit: XLA compilation of the train step.
    replicas: devices the batch is split over. devices: their names. global_batch_size:
    examples per optimiser step (per-replica batch × replicas).
    """

    precision: str
    jit: bool
    replicas: int
    devices: tuple[str, ...]
    global_batch_size: int

    def to_dict(self) -> dict:
        return {**asdict(self), "devices": list(self.devices)}


_MIRRORED: dict[tuple[str, ...], tf.distribute.MirroredStrategy] = {}


def distribution_strategy(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """MirroredStrategy over ``devices`` (or all GPUs when there are several), else the default strategy.

    One MirroredStrategy per device set and process, reused by every fit: the collective
    all-reduce keys of two strategy objects collide, and a second model's first step aborts
    ("Shape mismatch in the collective instance 100") — the runner trains fits one after
    another in one process.
    """
    if devices is None:
        devices = [device.name for device in tf.config.list_logical_devices("GPU")]
    if len(devices) < 2:
        return tf.distribute.get_strategy()
    key = tuple(devices)
    if key not in _MIRRORED:
        _MIRRORED[key] = tf.distribute.MirroredStrategy(list(key))
    return _MIRRORED[key]


def strategy_devices(strategy: tf.distribute.Strategy) -> tuple[str, ...]:
    """Names of the devices a strategy's replicas run on (the default strategy: the first GPU, else the CPU)."""
    try:
        return tuple(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy does not list its device
        return ("/device:GPU:0",) if tf.config.list_logical_devices("GPU") else ("/device:CPU:0",)


def gpu_compute_capability() -> tuple[int, int] | None:
    """The smallest compute capability of the visible GPUs, or None without a GPU."""
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    return min(capabilities) if capabilities else None


def resolve_runtime(precision: str, jit: str | bool, batch_size: int, strategy: tf.distribute.Strategy) -> Runtime:
    """Resolves ``"auto"`` precision and jit for the devices of ``strategy`` (see module docstring)."""
    devices = strategy_devices(strategy)
    on_gpu = any("GPU" in device.upper() for device in devices)
    if precision == "auto":
        capability = gpu_compute_capability() if on_gpu else None
        if capability is None:
            precision = "float32"
        else:
            precision = "mixed_bfloat16" if capability >= BF16_MIN_COMPUTE_CAPABILITY else "mixed_float16"
    if jit == "auto":
        jit = on_gpu
    replicas = strategy.num_replicas_in_sync
    return Runtime(
        precision=precision, jit=bool(jit), replicas=replicas, devices=devices, global_batch_size=batch_size * replicas
    )


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Builds layers under the Keras dtype policy ``name``; the previous global policy is restored."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
