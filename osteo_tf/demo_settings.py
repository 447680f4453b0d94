"""The sizes of ``osteo demo``, kept apart from :mod:`osteo_tf.demo` (which imports TensorFlow)
so that the command line can show their defaults without importing it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEMO_OUT", "DemoSettings"]

DEMO_OUT = "demo_out"  # the output folder by default


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo; the defaults finish in a few minutes on 2 CPU cores."""

    n: int = 1200
    image_size: int = 48
    backbone: str = "resnet18"
    epochs: int = 40
    patience: int = 12
    batch_size: int = 32
    learning_rate: float | None = 0.01
    seed: int = 0
