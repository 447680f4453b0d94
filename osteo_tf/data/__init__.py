"""Data: the manifest contract and its checks, image decoding (PNG / TIFF / DICOM), covariate
encoding, splits, the synthetic phantom cohort and the tf.data pipeline; for the automatic
ROI, the landmarks and box rules (``landmarks``), whole-radiograph phantoms (``whole``), COCO
import (``coco``), annotated manifests (``annotations``) and the detector's pipeline
(``landmark_pipeline``).

The first layer of the package: it imports only :mod:`osteo_tf.vocabulary`, :mod:`osteo_tf.errors`
and :mod:`osteo_tf.io` of the project, never the models. Import from the submodules.
"""

__all__: list[str] = []
