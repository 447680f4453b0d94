"""The project's shared words, in one place that imports nothing heavy (no Keras, no TensorFlow).

Every module that needs one of these imports it from here; none keeps a copy.
"""

from __future__ import annotations

MODES = ("image_only", "ensemble", "covariates_only")
FUSIONS = ("concat", "late", "film")  # see osteo_tf.models.heads
DEFAULT_FUSION = "concat"  # the papers' design
PHANTOM_INFORMATION = ("image_led", "balanced")  # see osteo_tf.data.synthetic.INFORMATION_SIGMA
DEFAULT_INFORMATION = "image_led"
# A model trained with auxiliary losses: its outputs, and the validation loss that picks its epoch.
OUTPUTS_WITH_AUX = ("probability", "aux_image", "aux_covariates")
PROBABILITY_VAL_LOSS = "val_probability_loss"


def uses_images(mode: str) -> bool:
    return mode in ("image_only", "ensemble")


def uses_covariates(mode: str) -> bool:
    return mode in ("ensemble", "covariates_only")


def model_label(mode: str, fusion: str = DEFAULT_FUSION) -> str:
    """The name a fit's model goes by in result tables: the mode, with a non-default fusion
    appended (``ensemble_late``); the papers' concat ensemble stays ``ensemble``."""
    return f"{mode}_{fusion}" if mode == "ensemble" and fusion != DEFAULT_FUSION else mode


# Result tables list models in this order: image-only, the ensemble variants, covariates-only.
MODEL_ORDER = ("image_only", *(model_label("ensemble", f) for f in FUSIONS), "covariates_only")
MODEL_NAMES = {"image_only": "Image-only", "ensemble": "Ensemble", "covariates_only": "Covariates-only",
               **{model_label("ensemble", f): f"Ensemble ({f})" for f in FUSIONS if f != DEFAULT_FUSION}}
