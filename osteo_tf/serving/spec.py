"""What an exported model needs to know about its run: a plain, JSON-able description.

:class:`ServingSpec` is read from a finished run folder (config, covariate encoder, manifest
config, decision threshold) and drives both the serving graph (:mod:`.signature`) and the
model card (:mod:`.model_card`). No TensorFlow here.

Light imports only (no Keras / TensorFlow), so the REST client path stays fast.

Raw serving inputs, each a 1-D batch (one value per instance):

=========================  ==========  ===============================================
``image_bytes``            tf.string   encoded PNG or JPEG, any size, gray or RGB(A)
``age``, ``bmi``, other    tf.float32  as in the record (years, kg/m², …)
numeric covariates
``sex``                    tf.string   a code the training manifest accepted (``F``/``M``,
                                       ``female``/``male``, plus its ``sex_codes``)
``hip_fracture_history``   tf.string   ``yes``/``no``, ``y``/``n``, ``1``/``0``,
                                       ``true``/``false``
other categorical          tf.string   one of the training categories, exactly
=========================  ==========  ===============================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from osteo_tf.errors import OsteoInputError
from osteo_tf.io import read_json
from osteo_tf.runs.run_dir import RunDir
from osteo_tf.vocabulary import COVARIATE_MODES, COVARIATE_RANGES, DEFAULT_SEX_CODES, HIP_FRACTURE_CODES, uses_images

__all__ = ["IMAGE_INPUT", "RANGES", "ServingSpec"]

IMAGE_INPUT = "image_bytes"
#: Plausible ranges of the canonical numeric covariates (the manifest's data contract).
RANGES = {name: (float(COVARIATE_RANGES[name][1]), float(COVARIATE_RANGES[name][2])) for name in ("age", "bmi")}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class ServingSpec:
    """One run, as the serving graph sees it.

    encoder: :meth:`osteo_tf.data.covariates.CovariateEncoder.to_dict` of the run (None without covariates).
    sex_codes: lower-case code → ``"F"``/``"M"`` as the training manifest read them.
    intensity: the run's per-image intensity normalisation (``"minmax"``, ``"percentile:1,99"``).
    recalibration: :meth:`osteo_tf.evaluation.calibration.Recalibration.to_dict` of the run's
        ``osteo calibrate`` (None: the model's own probability is served).
    """

    backbone: str
    mode: str
    image_size: int
    threshold: float
    encoder: dict | None = None
    sex_codes: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SEX_CODES))
    intensity: str = "minmax"
    recalibration: dict | None = None

    @classmethod
    def from_run(cls, run: str | Path) -> "ServingSpec":
        from osteo_tf.evaluation.threshold import run_threshold

        run_dir = RunDir(run).require_complete()
        settings = run_dir.read_config()
        train = settings["train"]
        manifest_config = settings.get("manifest_config") or {}
        codes = dict(DEFAULT_SEX_CODES)
        codes.update(
            {
                str(k).strip().lower(): str(v).strip().upper()
                for k, v in (manifest_config.get("sex_codes") or {}).items()
            }
        )
        encoder = read_json(run_dir.encoder) if train["mode"] in COVARIATE_MODES else None
        spec = cls(
            backbone=train["backbone"],
            mode=train["mode"],
            image_size=int(train["image_size"]),
            threshold=run_threshold(run_dir.path),
            encoder=encoder,
            sex_codes=codes,
            intensity=str(train.get("intensity", "minmax")),
            recalibration=read_json(run_dir.calibration)["recalibration"] if run_dir.calibration.is_file() else None,
        )
        spec.check()
        return spec

    @property
    def uses_images(self) -> bool:
        return uses_images(self.mode)

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(self.encoder["numeric"]) if self.encoder else ()

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(self.encoder["categorical"]) if self.encoder else ()

    @property
    def imputed(self) -> tuple[str, ...]:
        """Covariates the run imputes (a missing value → training fill + a missing indicator)."""
        return tuple(self.encoder.get("imputed", ())) if self.encoder else ()

    @property
    def covariate_dim(self) -> int:
        return len(self.encoder["feature_names"]) if self.encoder else 0

    @property
    def inputs(self) -> dict[str, str]:
        """Raw serving inputs, name → dtype name ("string" or "float32"), in signature order."""
        names = {IMAGE_INPUT: "string"} if self.uses_images else {}
        names.update({name: "float32" for name in self.numeric})
        names.update({name: "string" for name in self.categorical})
        return names

    def accepted_codes(self, name: str) -> dict[str, str]:
        """Categorical input ``name``: accepted raw value (lower-case for sex / fracture) → category."""
        categories = self.encoder["categories"][name]
        if name == "sex":
            table = self.sex_codes
        elif name == "hip_fracture_history":
            table = {code: str(value) for code, value in HIP_FRACTURE_CODES.items()}
        else:
            table = {category: category for category in categories}
        return {code: value for code, value in table.items() if value in categories}

    def case_insensitive(self, name: str) -> bool:
        return name in ("sex", "hip_fracture_history")

    def check(self) -> None:
        """Refuses a run whose covariate names cannot be signature input names."""
        for name in self.inputs:
            if not _NAME.match(name):
                raise OsteoInputError(
                    f"covariate column {name!r} cannot be a serving input name (letters, digits and _ only, "
                    "starting with a letter); rename the column in the manifest and retrain"
                )
        for name in self.categorical:
            if not self.accepted_codes(name):
                raise OsteoInputError(f"covariate {name!r} has no category the serving graph could accept")
