"""What every TensorFlow benchmark script here reports the same way: the machine, the versions, and
its one JSON line (stdout, and appended to ``--out FILE`` when given). Imported by the scripts
(``bench/`` is first on ``sys.path`` when one runs); TensorFlow is imported only when called."""

from __future__ import annotations

import json
import os
import platform


def gpus() -> list[str]:
    """The GPUs TensorFlow sees, by logical device name."""
    import tensorflow as tf

    return [d.name for d in tf.config.list_logical_devices("GPU")]


def machine() -> dict:
    """CPU count, GPUs, platform and the load average when the benchmark ended."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpus": os.cpu_count(),
        "gpus": gpus(),
        "platform": platform.platform(),
        "loadavg_at_end": [round(v, 2) for v in load] if load else None,
    }


def versions() -> dict:
    """Python, TensorFlow, Keras, keras-hub and NumPy versions."""
    import keras
    import keras_hub
    import numpy as np
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_hub": keras_hub.__version__,
        "numpy": np.__version__,
    }


def emit(output: dict, out: str | None) -> dict:
    """Prints ``output`` as one JSON line and appends it to ``out`` (when given); returns ``output``."""
    line = json.dumps(output)
    print(line, flush=True)
    if out:
        with open(out, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    return output
