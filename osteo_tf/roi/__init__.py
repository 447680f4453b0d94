"""Automatic ROI: detection on whole radiographs, its evaluation, and the contact sheets a person reviews.

- :func:`~osteo_tf.roi.detect.detect_manifest` — ``osteo roi detect``: the ROI columns of a whole-image
  manifest, a confidence per row, review flags, contact sheets;
- :func:`~osteo_tf.roi.evaluate.evaluate_roi` — ``osteo roi evaluate``: landmark error and box IoU;
- :func:`~osteo_tf.roi.contact_sheet.contact_sheets` — PNG grids of detections.

Training lives in :mod:`osteo_tf.training.roi`, the run folder in :mod:`osteo_tf.runs.roi_run`,
the detector in :mod:`osteo_tf.models.landmarks`, the whole-view phantoms in
:mod:`osteo_tf.data.whole`. Imported lazily.
"""

from __future__ import annotations

from osteo_tf import lazy_exports

_EXPORTS = {
    "detect_manifest": "osteo_tf.roi.detect",
    "evaluate_roi": "osteo_tf.roi.evaluate",
    "contact_sheets": "osteo_tf.roi.contact_sheet",
}

__all__, __getattr__ = lazy_exports("osteo_tf.roi", _EXPORTS)
