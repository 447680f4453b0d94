"""The cohort table (hip paper Table 1, dental paper Table 3): characteristics by class.

Rows: number of patients (and images, when a patient has several), sex n (%), age and BMI
mean (SD, min–max), hip-fracture history n (%) when the column exists. Columns:
osteoporosis, non-osteoporosis, p-value and the test used. Percentages are within each
class column, as in hip Table 1.

Tests: a continuous characteristic gets the Welch t-test when Shapiro–Wilk passes in both
classes (p > 0.05), else the Mann–Whitney U test; a categorical one gets Pearson's χ²
(no continuity correction), or Fisher's exact test when any expected count is below 5.
Missing values are left out of a row's test and counted in its cells.

The unit is the patient (each patient's first image in file order supplies the
covariates); if some patient has images in both classes the unit falls back to the image,
and the table's note says so.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as st

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.stats import format_p, unpaired_test
from osteo_tf.evaluation.tables import markdown_table
from osteo_tf.io import atomic_path, write_csv

__all__ = ["CLASSES", "categorical_test", "cohort_markdown", "cohort_table", "split_table", "write_cohort_table"]

CLASSES = ((1, "osteoporosis"), (0, "non_osteoporosis"))
_CONTINUOUS = (("age", "Age, years: mean (SD, min–max)"), ("bmi", "BMI, kg/m²: mean (SD, min–max)"))


def categorical_test(table: np.ndarray) -> tuple[str, float, float]:
    """``(test, statistic, p)`` for a contingency table: Fisher's exact test (2×2) when any
    expected count is < 5, else Pearson's χ² without continuity correction."""
    table = np.asarray(table, dtype=np.int64)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / max(table.sum(), 1)
    if (expected < 5).any():
        if table.shape != (2, 2):
            return "n/a (expected counts < 5 in a table larger than 2×2)", np.nan, np.nan
        result = st.fisher_exact(table)
        return "Fisher's exact test", float(result.statistic), float(result.pvalue)
    result = st.chi2_contingency(table, correction=False)
    return "Pearson's χ² test", float(result.statistic), float(result.pvalue)


def _units(cohort: pd.DataFrame) -> tuple[pd.DataFrame, str, list[str]]:
    """One row per patient (first image), or per image when a patient spans both classes."""
    mixed = cohort.groupby("patient_id")["label"].nunique()
    mixed = mixed[mixed > 1]
    if len(mixed):
        return (
            cohort,
            "images",
            [
                f"{len(mixed)} patient(s) have images in both classes "
                f"(e.g. {mixed.index[0]!r}); every row counts per image."
            ],
        )
    patients = cohort.drop_duplicates("patient_id", keep="first")
    notes = []
    if len(patients) < len(cohort):
        notes.append("A patient with several images is counted once, with the covariates of their first image.")
    return patients, "patients", notes


def _continuous_cell(values: pd.Series) -> str:
    present = values.dropna().astype(float)
    if present.empty:
        return "–"
    sd = present.std(ddof=1) if len(present) > 1 else float("nan")
    cell = f"{present.mean():.1f} ({sd:.1f}, {present.min():.1f}–{present.max():.1f})"
    missing = int(values.isna().sum())
    return cell + (f"; {missing} missing" if missing else "")


def _count_cell(values: pd.Series, level) -> str:
    present = values.dropna()
    k = int((present == level).sum())
    cell = f"{k} ({100.0 * k / len(present):.1f})" if len(present) else "–"
    missing = int(values.isna().sum())
    return cell + (f"; {missing} missing" if missing else "")


def _row(name: str, cells: dict[str, str], test: str = "", p: float = np.nan) -> dict:
    return {"characteristic": name, **cells, "p_value": p, "test": test}


def _binary_rows(groups: dict[str, pd.Series], levels: list[tuple[object, str]]) -> list[dict]:
    counts = np.array([[int((groups[name].dropna() == level).sum()) for level, _ in levels] for _, name in CLASSES])
    if len(levels) == 1:  # a yes/no characteristic shown as its "yes" row: test yes vs the rest
        present = np.array([[len(groups[name].dropna())] for _, name in CLASSES])
        counts = np.hstack([counts, present - counts])
    test, _, p = categorical_test(counts)
    rows = []
    for i, (level, label) in enumerate(levels):
        cells = {name: _count_cell(groups[name], level) for _, name in CLASSES}
        rows.append(_row(label, cells, test if i == 0 else "", p if i == 0 else np.nan))
    return rows


def cohort_table(cohort: pd.DataFrame, alpha: float = 0.05) -> tuple[pd.DataFrame, list[str]]:
    """The characteristics table of a cohort from :func:`osteo_tf.data.manifest.read_manifest`, and its notes.

    Returns a DataFrame with columns ``characteristic, osteoporosis, non_osteoporosis,
    p_value`` (float, NaN on rows without a test) and ``test``.
    """
    if cohort.empty:
        raise OsteoInputError("the cohort is empty: no rows to tabulate")
    units, unit, notes = _units(cohort)
    by_class = {name: units[units["label"] == label] for label, name in CLASSES}
    if any(frame.empty for frame in by_class.values()):
        raise OsteoInputError("the cohort table needs both classes, but one class has no rows")
    rows = [_row(f"Number of {unit}", {n: str(len(f)) for n, f in by_class.items()})]
    if unit == "patients" and len(units) < len(cohort):
        images = {name: str(int((cohort["label"] == label).sum())) for label, name in CLASSES}
        rows.append(_row("Number of images", images))
    if "sex" in units:
        rows += _binary_rows(
            {n: f["sex"] for n, f in by_class.items()}, [("F", "Sex: female, n (%)"), ("M", "Sex: male, n (%)")]
        )
    for column, label in _CONTINUOUS:
        if column not in units:
            continue
        groups = {n: f[column].dropna().astype(float) for n, f in by_class.items()}
        cells = {n: _continuous_cell(f[column]) for n, f in by_class.items()}
        if min(len(g) for g in groups.values()) >= 3:
            test, _, p, _, _ = unpaired_test(groups["osteoporosis"], groups["non_osteoporosis"], alpha)
        else:
            test, p = "n/a (fewer than 3 values in a class)", np.nan
        rows.append(_row(label, cells, test, p))
    if "hip_fracture_history" in units:
        rows += _binary_rows(
            {n: f["hip_fracture_history"] for n, f in by_class.items()}, [(1, "History of hip fracture, n (%)")]
        )
    return pd.DataFrame(rows), notes


def cohort_markdown(
    table: pd.DataFrame, notes: list[str], title: str = "Cohort characteristics", *, threshold: float | None = -2.5
) -> str:
    """The table as Markdown, p-values printed as the papers do, notes below."""
    shown = table.copy()
    shown["p_value"] = [format_p(p) if np.isfinite(p) else "" for p in table["p_value"]]
    if threshold is not None:
        header = [f"Osteoporosis (T-score ≤ {threshold:g})", f"Non-osteoporosis (T-score > {threshold:g})"]
    else:
        header = ["Osteoporosis", "Non-osteoporosis"]
    shown.columns = ["Characteristic", *header, "p value", "Test"]
    lines = [f"# {title}", "", markdown_table(shown), ""]
    lines += [f"- {note}" for note in notes]
    lines += [
        "- Continuous: Welch t-test when Shapiro–Wilk p > 0.05 in both classes, else Mann–Whitney U. "
        "Categorical: Pearson's χ² (no continuity correction), Fisher's exact test when an expected count "
        "is below 5. Percentages are within each class."
    ]
    return "\n".join(lines) + "\n"


def write_cohort_table(
    manifest: str | Path, out_dir: str | Path = ".", manifest_config=None
) -> tuple[str, dict[str, Path]]:
    """Read ``manifest`` (image headers only, no decoding), tabulate it, write
    ``cohort_table.md`` and ``cohort_table.csv`` under ``out_dir``; returns the Markdown and
    the paths."""
    from osteo_tf.data.manifest import ManifestConfig, read_manifest

    config = dataclasses.replace(manifest_config or ManifestConfig(), check_images=False)
    cohort = read_manifest(manifest, config)
    has_t = "t_score" in cohort and cohort["t_score"].notna().all()
    table, notes = cohort_table(cohort)
    text = cohort_markdown(
        table,
        notes,
        title=f"Cohort characteristics: {Path(manifest).name}",
        threshold=config.t_score_threshold if has_t else None,
    )
    out = Path(out_dir)
    paths = {"markdown": out / "cohort_table.md", "csv": out / "cohort_table.csv"}
    with atomic_path(paths["markdown"]) as temporary:
        temporary.write_text(text)
    write_csv(paths["csv"], table)
    return text, paths


def split_table(cohort: pd.DataFrame, splits: dict[str, np.ndarray], *, columns=("site",)) -> pd.DataFrame:
    """Demographics of each partition (CLAIM 36): one column per split (train, val, test).

    Rows: images, patients, osteoporosis n (%), female n (%), age and BMI mean (SD, min–max),
    hip-fracture history n (%) — each when the cohort has the column — and, for each of
    ``columns`` present (e.g. ``site``), the count n (%) of every value. Per patient (first
    image) as :func:`cohort_table`, except images and osteoporosis, which count images.

    Args:
        cohort: the run's cohort table (canonical columns).
        splits: split name → row positions in ``cohort``.
        columns: categorical manifest columns tabulated value by value when present.

    Returns:
        A frame with ``characteristic`` and one column per split.
    """
    parts = {name: cohort.iloc[index] for name, index in splits.items()}
    patients = {name: part.drop_duplicates("patient_id", keep="first") for name, part in parts.items()}
    rows = [
        {"characteristic": "Images", **{n: str(len(p)) for n, p in parts.items()}},
        {"characteristic": "Patients", **{n: str(len(p)) for n, p in patients.items()}},
        {"characteristic": "Osteoporosis (images), n (%)", **{n: _count_cell(p["label"], 1) for n, p in parts.items()}},
    ]
    if "sex" in cohort:
        rows.append(
            {"characteristic": "Sex: female, n (%)", **{n: _count_cell(p["sex"], "F") for n, p in patients.items()}}
        )
    for column, label in _CONTINUOUS:
        if column in cohort:
            rows.append({"characteristic": label, **{n: _continuous_cell(p[column]) for n, p in patients.items()}})
    if "hip_fracture_history" in cohort:
        rows.append(
            {
                "characteristic": "History of hip fracture, n (%)",
                **{n: _count_cell(p["hip_fracture_history"], 1) for n, p in patients.items()},
            }
        )
    for column in (c for c in columns if c in cohort):
        for level in sorted(cohort[column].dropna().astype(str).unique()):
            rows.append(
                {
                    "characteristic": f"{column}: {level}, n (%)",
                    **{n: _count_cell(p[column].astype(str), level) for n, p in patients.items()},
                }
            )
    return pd.DataFrame(rows)
