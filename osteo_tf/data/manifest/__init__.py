"""Read a user's CSV manifest into a validated cohort table (the data contract).

One row per image. Every value is read as a raw string and checked here; every problem in
the file is collected and reported together in one :class:`osteo_tf.errors.OsteoInputError` whose lines
read ``cohort.csv, line 7, column 'age': 'abc' is not a number (expected years, 0–120)``.
Nothing is silently dropped or defaulted; only lines whose cells are all empty (blank
lines, spreadsheet rows of bare commas) are skipped, and line numbers still count them.
Plausible ranges: age 0–120 years, BMI 10–70 kg/m² (also when derived), height 50–250 cm,
weight 10–350 kg, T-score −10 to +10. Each image (or its ROI crop, when the row has one) must
be at least ``ManifestConfig.min_image_size`` pixels on its shorter side (default 32, the
models' smallest input): ``cohort.csv, line 4, column 'image': img/a.png is 1×1 px; images
must be at least 32×32 px (ManifestConfig.min_image_size)``.

The returned table has canonical column names whatever the user's names were:

========================  =================================================================
``image``                 absolute path (str), resolved against the manifest's folder
``patient_id``            str
``age``                   float, years (if the column exists)
``sex``                   ``"F"`` / ``"M"`` (if the column exists)
``bmi``                   float, kg/m²; derived as weight_kg / (height_cm / 100)² when there
                          is no BMI column (or the cell is empty) but height and weight exist
``height_cm, weight_kg``  float (if the columns exist)
``hip_fracture_history``  int 0/1 (if the column exists)
``t_score``               float (NaN where absent)
``label``                 int 0/1, 1 = osteoporosis (``t_score <= threshold``, else the label
                          column)
``roi_x … roi_h``         nullable Int64 pixels (if the box columns exist, or derived from
                          the point columns)
``roi_cx, roi_cy``        nullable Int64 pixels (if the point columns exist): a fixed-size box
                          ``ManifestConfig.roi_size`` placed by ``roi_anchor`` — ``"below"``
                          (the dental paper: top edge centred on the point, e.g. 250×400 px
                          just below the mental foramen) or ``"center"``
``line``                  int, the CSV line the row starts on (header = line 1)
========================  =================================================================

A covariate that is not in ``ManifestConfig.required`` may have empty cells; they become
NaN / None (``hip_fracture_history`` is then nullable ``Int64``); so may a required one
when ``ManifestConfig.allow_missing`` (the columns must still exist; ``--impute``). Every
other column the user had is kept as its raw strings, unchanged, after the canonical ones.

:func:`read_manifest` is strict: any invalid row is an error. :func:`check_manifest` runs
the same checks and returns a :class:`~osteo_tf.data.exclusions.ManifestCheck` with the valid
rows and every excluded row with its reason (``osteo data check``, ``--allow-exclusions``);
problems with the file or its header are always errors.

The steps live in submodules, in the order they run: ``config`` (options and plausible
ranges), ``table`` (reading the CSV, mapping its header), ``cells`` (cell validation and
the canonical columns), ``checks`` (image files, cross-row checks), ``problems`` (collecting
what is wrong, with file, line and column); this module puts them together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from osteo_tf.data.exclusions import ManifestCheck, exclusion_table
from osteo_tf.data.manifest.cells import (
    _build_covariates,
    _build_ids,
    _build_labels,
    _build_roi,
    _Rows,
    check_roi_status,
)
from osteo_tf.data.manifest.checks import _build_images, _check_duplicates, _check_patient_sex
from osteo_tf.data.manifest.config import (  # noqa: F401 (re-exported)
    COVARIATES,
    DEFAULT_SEX_CODES,
    ManifestColumns,
    ManifestConfig,
    ManifestConfigError,
)
from osteo_tf.data.manifest.problems import _Problems
from osteo_tf.data.manifest.table import _map_columns, _read_table, _Table
from osteo_tf.vocabulary import ROI_COLUMNS, ROI_POINT_COLUMNS

__all__ = [
    "COVARIATES",
    "DEFAULT_SEX_CODES",
    "ManifestCheck",
    "ManifestColumns",
    "ManifestConfig",
    "ManifestConfigError",
    "check_manifest",
    "present_columns",
    "read_manifest",
]


# ------------------------------------------------------------------------------ public


def read_manifest(path: str | Path, config: ManifestConfig | None = None) -> pd.DataFrame:
    """Read and validate a CSV manifest; see the module docstring for the columns returned.

    Args:
        path: the CSV file (UTF-8, comma-separated, header on line 1). Image paths in it
            are relative to its folder (absolute paths and ``..`` are fine).
        config: column names, sex codes, required covariates, image checks, threshold.

    Returns:
        The cohort table, one row per image, in file order, index 0..n-1.

    Raises:
        OsteoInputError: listing every problem found, each with file, line and column.
    """
    check = check_manifest(path, config)
    check.raise_if_any()
    return check.cohort


def present_columns(path: str | Path, config: ManifestConfig | None = None) -> set[str]:
    """Canonical names of the columns the manifest has (its header only; no row checks).

    Raises:
        OsteoInputError: the file cannot be read as a CSV manifest.
    """
    config = config or ManifestConfig()
    table = _read_table(Path(path).absolute())
    return {canon for canon, user in config.columns.as_dict().items() if user in table.header}


def check_manifest(path: str | Path, config: ManifestConfig | None = None) -> ManifestCheck:
    """The checks of :func:`read_manifest`, returning the valid rows and the excluded ones.

    Every row with a problem is excluded, with one exclusion record per problem (its line,
    raw image and patient cells, column, short reason and full message); the rows of a
    duplicated image, or of a patient whose rows disagree on sex, are all excluded.

    Raises:
        OsteoInputError: problems with the file itself or its header (unreadable, not a
            CSV, required columns missing …), where no row can be checked.
    """
    config = config or ManifestConfig()
    path = Path(path).absolute()
    table = _read_table(path)
    present = _map_columns(table, config)
    rows = _Rows(table, present, config)
    cols = _validate(rows)
    problems = rows.problems
    records = _exclusion_records(table, present, problems)
    excluded = {r["line"] for r in records}
    keep = [i for i, line in enumerate(table.lines) if line not in excluded]
    return ManifestCheck(
        path=path,
        cohort=_assemble(table, present, cols, keep),
        exclusions=exclusion_table(records),
        n_rows=len(table.lines) + len(table.malformed),
        message=problems._message() if problems else "",
    )


def _exclusion_records(table: _Table, present: Mapping[str, str], problems: _Problems) -> list[dict[str, Any]]:
    """One record per (row line, problem)."""
    cells = dict(zip(table.lines, table.rows))
    index = {c: table.header.index(present[c]) for c in ("image", "patient_id")}
    records = []
    for p in problems.all_items():
        for line in p.lines:
            row = cells.get(line, table.malformed.get(line, []))
            raw = {c: (row[j] if j < len(row) else "") for c, j in index.items()}
            records.append(
                {
                    "line": line,
                    "image": raw["image"],
                    "patient_id": raw["patient_id"],
                    "column": p.column or "",
                    "reason": p.reason,
                    "detail": p.text,
                }
            )
    return records


def _validate(rows: _Rows) -> dict[str, list[Any]]:
    """Every per-cell and cross-row check; the parsed columns by canonical name."""
    cols: dict[str, list[Any]] = {"patient_id": _build_ids(rows)}
    cols.update(_build_covariates(rows))
    cols["t_score"], cols["label"] = _build_labels(rows)
    roi = _build_roi(rows)
    cols["image"] = _build_images(rows, roi)
    cols.update(roi)
    check_roi_status(rows)
    _check_duplicates(rows, cols["image"])
    if "sex" in cols:
        _check_patient_sex(rows, cols["patient_id"], cols["sex"])
    return cols


_ORDER = (
    "image",
    "patient_id",
    "age",
    "sex",
    "bmi",
    "height_cm",
    "weight_kg",
    "hip_fracture_history",
    "t_score",
    "label",
    *ROI_COLUMNS,
    *ROI_POINT_COLUMNS,
)


def _assemble(
    table: _Table, present: Mapping[str, str], cols: Mapping[str, list[Any]], keep: Sequence[int]
) -> pd.DataFrame:
    """The rows ``keep`` (positions): canonical columns with their dtypes, then ``line``, then
    the user's other columns."""
    data: dict[str, Any] = {}
    for name in _ORDER:
        if name in cols:
            data[name] = _typed(name, [cols[name][i] for i in keep])
    data["line"] = np.asarray([table.lines[i] for i in keep], dtype=np.int64)
    used = set(present.values())
    for j, name in enumerate(table.header):
        if name not in used:
            data[name] = [table.rows[i][j] for i in keep]
    return pd.DataFrame(data, index=pd.RangeIndex(len(keep)))


def _typed(name: str, values: list[Any]) -> Any:
    if name in ("image", "patient_id", "sex"):
        return values
    if name in ("label",):
        return np.asarray(values, dtype=np.int64)
    if name == "hip_fracture_history" or name in ROI_COLUMNS or name in ROI_POINT_COLUMNS:
        series = pd.Series(values, dtype="Int64")
        if name == "hip_fracture_history" and not series.isna().any():
            return series.astype(np.int64)
        return series
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
