"""osteo_tf: osteoporosis screening CNNs from hip and dental radiographs (Keras 3 / TensorFlow).

The public entry points are imported lazily, so ``import osteo_tf`` (and ``osteo --help``)
does not pay for importing TensorFlow::

    import osteo_tf
    run = osteo_tf.train("cohort.csv", "runs/x", backbone="efficientnet_b0", mode="ensemble")
    metrics = osteo_tf.evaluate("runs/x")
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("osteo_tf")  # one source: pyproject.toml's [project] version
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_EXPORTS = {
    "train": "osteo_tf.training.train",
    "TrainConfig": "osteo_tf.runs.config",
    "evaluate": "osteo_tf.evaluation.evaluate",
    "select_threshold": "osteo_tf.evaluation.threshold",
    "export_run": "osteo_tf.serving.archive",
    "predict_manifest": "osteo_tf.serving.predict",
    "binary_metrics": "osteo_tf.evaluation.metrics",
    "make_report": "osteo_tf.experiments.report",
    "write_cohort_table": "osteo_tf.evaluation.cohort",
    "gradcam": "osteo_tf.explain",
    "explain_run": "osteo_tf.explain",
    "build_model": "osteo_tf.models",
    "read_manifest": "osteo_tf.data.manifest",
    "check_manifest": "osteo_tf.data.manifest",
    "make_cohort": "osteo_tf.data.synthetic",
    "run_demo": "osteo_tf.demo",
    "load_experiment": "osteo_tf.experiments.config",
    "run_experiment": "osteo_tf.experiments.runner",
    "RunDir": "osteo_tf.runs.run_dir",
    "load_run": "osteo_tf.runs.loading",
    "RayExecutor": "osteo_tf.experiments.ray_executor",
    "read_results": "osteo_tf.experiments.runner",
    "OsteoInputError": "osteo_tf.errors",
}


def lazy_exports(package: str, exports: dict[str, str]):
    """A package's ``(__all__, __getattr__)`` that import each name's module on first use.

    Args:
        package: the package's name, for the AttributeError.
        exports: public name → the module that defines it.

    Returns:
        The sorted names and a module-level ``__getattr__`` (PEP 562).
    """

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return sorted(exports), __getattr__


__all__, __getattr__ = lazy_exports("osteo_tf", _EXPORTS)
