"""Explainability: Grad-CAM, Grad-CAM++ and Guided Grad-CAM for image-only and ensemble models.

- :func:`gradcam` — one heat map for one image (and the patient's covariates).
- :class:`Explainer` — all maps of a batch, built once per model.
- :func:`explain_run` — figures for a finished run's images (``osteo explain``).
- :func:`mass_inside` — fraction of a map's mass inside a region (the localisation check).

Built on tf-keras-vis (imports TensorFlow); see :mod:`osteo_tf.explain.gradcam` for what is
computed and :mod:`osteo_tf.explain.guided` for the guided-backpropagation rules.
"""

from __future__ import annotations

from osteo_tf.explain.gradcam import METHODS, TARGETS, Explainer, Explanation, gradcam
from osteo_tf.explain.localization import load_masks, mass_inside
from osteo_tf.explain.run import explain_run

__all__ = ["METHODS", "TARGETS", "Explainer", "Explanation", "explain_run", "gradcam", "load_masks", "mass_inside"]
