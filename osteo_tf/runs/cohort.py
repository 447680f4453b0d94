"""A run's cohort: the manifest read and validated for one model, with its exclusions.

What ``train`` reads before a fit and what ``evaluate`` / ``explain`` read again from a
finished run's settings, so both get the same rows.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from osteo_tf.console import log
from osteo_tf.data.manifest import ManifestConfig, check_manifest, present_columns
from osteo_tf.data.splits import LABEL_FROM_ATTR, SOURCE_ATTR
from osteo_tf.runs.config import TrainConfig
from osteo_tf.vocabulary import COVARIATES, uses_covariates

__all__ = ["exclusions_of", "label_source", "load_cohort"]


def load_cohort(
    manifest: str | Path, config: TrainConfig, manifest_config: ManifestConfig | None = None
) -> pd.DataFrame:
    """Reads and validates the manifest, requiring the canonical covariates the model uses.

    With covariates "auto", age, sex and BMI are required, and the fracture history too when
    the manifest has its column. Any invalid row is an error, unless
    ``config.allow_exclusions``: then the invalid rows are left out, logged with their
    reasons, and their records kept in ``cohort.attrs["osteo_exclusions"]`` (``train``
    writes them to the run's ``exclusions.csv``). With ``config.impute`` the required
    covariate columns may have empty cells.
    """
    base = manifest_config or ManifestConfig()
    present = present_columns(manifest, base)
    required: tuple[str, ...] = ()
    if uses_covariates(config.mode):
        wanted = config.covariate_columns(sorted(present))
        required = tuple(c for c in wanted if c in COVARIATES)
    check = check_manifest(
        manifest, dataclasses.replace(base, required=required, allow_missing=config.impute != "none")
    )
    if not config.allow_exclusions:
        check.raise_if_any()
    check.require_rows()
    if check.n_excluded:
        log(check.summary())
    cohort = check.cohort
    cohort.attrs[SOURCE_ATTR] = f"manifest {check.path}"
    cohort.attrs[LABEL_FROM_ATTR] = label_source(present, base)
    cohort.attrs["osteo_exclusions"] = check.records()
    cohort.attrs["osteo_manifest_rows"] = check.n_rows
    return cohort


def label_source(present: set[str], config: ManifestConfig) -> str:
    """Where the manifest's labels come from, in the user's column names (for messages).

    Args:
        present: canonical names of the manifest's columns (:func:`present_columns`).
        config: the manifest config (the user's column names, the T-score threshold).
    """
    names = config.columns.as_dict()
    parts = []
    if "t_score" in present:
        parts.append(f"column {names['t_score']!r} (1 = T-score ≤ {config.t_score_threshold:g})")
    if "label" in present:
        parts.append(f"column {names['label']!r}")
    return " and ".join(parts) or "no label column"


def exclusions_of(cohort: pd.DataFrame) -> pd.DataFrame:
    """The exclusion records :func:`load_cohort` attached to a cohort (empty if none)."""
    from osteo_tf.data.exclusions import exclusion_table

    return exclusion_table(list(cohort.attrs.get("osteo_exclusions", [])))
