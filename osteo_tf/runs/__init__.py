"""The run folder and what reads it: one layer above data and models, below training and evaluation.

- :class:`~osteo_tf.runs.run_dir.RunDir` — the folder's layout and completeness rule;
- :class:`~osteo_tf.runs.config.TrainConfig` — the options a run was trained with;
- :func:`~osteo_tf.runs.cohort.load_cohort`, :func:`~osteo_tf.runs.cohort.exclusions_of` —
  the manifest read for one model, and the rows it left out;
- :func:`~osteo_tf.runs.loading.load_run`, :func:`~osteo_tf.runs.loading.predict_rows` — a
  finished run's model and settings, and its predictions.

Imported lazily (``RunDir`` and ``TrainConfig`` need neither Keras nor TensorFlow).
"""

from __future__ import annotations

from osteo_tf import lazy_exports

_EXPORTS = {
    "RunDir": "osteo_tf.runs.run_dir",
    "TrainConfig": "osteo_tf.runs.config",
    "TrainOptionError": "osteo_tf.runs.config",
    "load_cohort": "osteo_tf.runs.cohort",
    "exclusions_of": "osteo_tf.runs.cohort",
    "label_source": "osteo_tf.runs.cohort",
    "load_run": "osteo_tf.runs.loading",
    "predict_rows": "osteo_tf.runs.loading",
}

__all__, __getattr__ = lazy_exports("osteo_tf.runs", _EXPORTS)
