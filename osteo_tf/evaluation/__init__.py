"""Evaluation: metrics, the decision threshold, scoring a finished run (:mod:`.evaluate`), the
statistics of both papers (:mod:`.stats`, :mod:`.delong`), cohort tables, fusion checks and figures.

Reads run folders through :mod:`osteo_tf.runs`; the experiment report that combines many runs is
:mod:`osteo_tf.experiments.report`. Import from the submodules.
"""

__all__: list[str] = []
