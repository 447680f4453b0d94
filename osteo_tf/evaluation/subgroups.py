"""Performance per subgroup, with CIs, and its forest plot (TRIPOD+AI 14 and 23a–b, CLAIM 36).

Default subgroups, from the data contract's covariates when the cohort has them:

* ``sex``: F / M;
* ``age band``: < 50, 50–59, 60–69, 70–79, ≥ 80 years (:data:`AGE_BANDS`);
* ``BMI class``: the WHO classes underweight < 18.5, normal 18.5–24.9, overweight 25–29.9,
  obese ≥ 30 kg/m² (:data:`BMI_CLASSES`);
* ``hip fracture history``: no / yes;

and any other manifest column the user names (``--subgroups site,scanner``), by its values as
written. A row whose value is missing falls in a ``missing`` level (counted, never dropped).
Each level gets the seven metrics at the run's threshold with 95 % bootstrap CIs over
patients (:mod:`osteo_tf.evaluation.bootstrap`); a level with one class has no AUC (and no
CI): it is marked "one class" rather than given a number. No library tabulates subgroup
metrics with patient-level bootstrap CIs (fairlearn's MetricFrame has no CIs), so this is
written here on top of the project's own metrics and bootstrap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.bootstrap import bootstrap_metrics
from osteo_tf.evaluation.figures import new_figure, save_figure
from osteo_tf.evaluation.metrics import METRIC_NAMES, binary_metrics

__all__ = ["AGE_BANDS", "BMI_CLASSES", "DEFAULT_SUBGROUPS", "plot_subgroup_forest", "subgroup_levels", "subgroup_table"]

#: (lower bound in years, label), ascending.
AGE_BANDS = ((0.0, "< 50"), (50.0, "50–59"), (60.0, "60–69"), (70.0, "70–79"), (80.0, "≥ 80"))
#: WHO BMI classes: (lower bound in kg/m², label), ascending.
BMI_CLASSES = (
    (0.0, "underweight (< 18.5)"),
    (18.5, "normal (18.5–24.9)"),
    (25.0, "overweight (25–29.9)"),
    (30.0, "obese (≥ 30)"),
)
DEFAULT_SUBGROUPS = ("sex", "age", "bmi", "hip_fracture_history")
_TITLES = {"sex": "sex", "age": "age band", "bmi": "BMI class", "hip_fracture_history": "hip fracture history"}
MISSING = "missing"


def _banded(values: pd.Series, bands) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    bounds = np.array([b for b, _ in bands])
    labels = np.array([label for _, label in bands], dtype=object)
    index = np.clip(np.searchsorted(bounds, numbers.fillna(0).to_numpy(), side="right") - 1, 0, len(bands) - 1)
    return pd.Series(np.where(numbers.isna(), MISSING, labels[index]), index=values.index)


def subgroup_levels(rows: pd.DataFrame, column: str) -> pd.Series:
    """Each row's level of subgroup ``column`` (a string; ``"missing"`` where the value is absent).

    Args:
        rows: cohort rows (canonical columns of the data contract, plus the manifest's own).
        column: ``sex``, ``age``, ``bmi``, ``hip_fracture_history`` or any column of ``rows``.

    Returns:
        (n,) str levels, indexed like ``rows``.

    Raises:
        OsteoInputError: ``column`` is not a column of the rows.
    """
    if column not in rows:
        raise OsteoInputError(
            f"subgroups: no column {column!r} in the cohort (its columns: {', '.join(map(str, rows.columns))})",
            parameter="subgroups",
        )
    values = rows[column]
    if column == "age":
        return _banded(values, AGE_BANDS)
    if column == "bmi":
        return _banded(values, BMI_CLASSES)
    if column == "hip_fracture_history":
        numbers = pd.to_numeric(values, errors="coerce")
        return pd.Series(np.where(numbers.isna(), MISSING, np.where(numbers == 1, "yes", "no")), index=values.index)
    text = values.astype("string").str.strip()
    return text.mask(text.isna() | (text == ""), MISSING).astype(str)


def _order(levels: pd.Series, column: str) -> list[str]:
    present = set(levels)
    known = {
        "age": [b for _, b in AGE_BANDS],
        "bmi": [b for _, b in BMI_CLASSES],
        "hip_fracture_history": ["no", "yes"],
    }
    order = [level for level in known.get(column, sorted(present - {MISSING})) if level in present]
    return order + ([MISSING] if MISSING in present else [])


def subgroup_table(
    rows: pd.DataFrame,
    probability,
    threshold: float = 0.5,
    *,
    columns=DEFAULT_SUBGROUPS,
    seed: int = 0,
    n_resamples: int = 2000,
) -> pd.DataFrame:
    """The seven metrics with 95 % CIs in every level of every subgroup (and ``all`` first).

    Args:
        rows: the scored rows (``label``, ``patient_id`` and the subgroup columns).
        probability: (n,) the reported probability of each row.
        threshold: the decision threshold.
        columns: subgroup columns; those of DEFAULT_SUBGROUPS absent from ``rows`` are skipped,
            any other absent column is an error.
        seed: seeds the bootstrap.
        n_resamples: bootstrap resamples.

    Returns:
        One row per subgroup level: ``subgroup, level, n, patients, positives, note`` and, per
        metric, its value and ``<metric>_low`` / ``<metric>_high`` (NaN where undefined).
    """
    probability = np.asarray(probability, dtype=np.float64).reshape(-1)
    if probability.size != len(rows):
        raise OsteoInputError(f"{len(rows)} rows but {probability.size} probabilities", parameter="probability")
    rows = rows.reset_index(drop=True)
    wanted = [c for c in dict.fromkeys(columns) if c in rows or c not in DEFAULT_SUBGROUPS]
    groups = [("all", pd.Series("all", index=rows.index))] + [(c, subgroup_levels(rows, c)) for c in wanted]
    table = []
    for column, levels in groups:
        for level in _order(levels, column) if column != "all" else ["all"]:
            mask = (levels == level).to_numpy()
            table.append(_level_row(column, level, rows[mask], probability[mask], threshold, seed, n_resamples))
    return pd.DataFrame(table)


def _level_row(column, level, rows, probability, threshold, seed, n_resamples) -> dict:
    labels = rows["label"].to_numpy().astype(int)
    row = {
        "subgroup": _TITLES.get(column, column),
        "level": level,
        "n": int(labels.size),
        "patients": int(rows["patient_id"].nunique()),
        "positives": int(labels.sum()),
        "note": "",
    }
    if labels.size and np.unique(labels).size == 2:
        metrics = binary_metrics(labels, probability, threshold)
        cis = bootstrap_metrics(
            labels, probability, threshold, groups=rows["patient_id"].to_numpy(), seed=seed, n_resamples=n_resamples
        )
    else:
        row["note"] = "one class: no AUC; other metrics without CI"
        metrics = _one_class_metrics(labels, probability, threshold) if labels.size else {}
        cis = {}
    for name in METRIC_NAMES:
        low, high = cis.get(name, (None, None))
        row.update({name: metrics.get(name, np.nan), f"{name}_low": low, f"{name}_high": high})
    return {k: (np.nan if v is None else v) for k, v in row.items()}


def _one_class_metrics(labels: np.ndarray, probability: np.ndarray, threshold: float) -> dict:
    """Accuracy and the one-class rates that are defined (sensitivity for positives, specificity for negatives)."""
    called = probability >= threshold
    metrics = {"accuracy": float(np.mean(called == (labels == 1)))}
    metrics["recall" if labels[0] == 1 else "specificity"] = metrics["accuracy"]
    return metrics


def plot_subgroup_forest(table: pd.DataFrame, path: str | Path, *, metric: str = "auc", title: str = "") -> Path:
    """Forest plot: ``metric`` with its 95 % CI per subgroup level; the dashed line is the whole set's value.

    Args:
        table: :func:`subgroup_table`'s output.
        path: the PNG to write (atomically).
        metric: one of METRIC_NAMES.
        title: the figure title.

    Returns:
        ``path``.
    """
    rows = table.reset_index(drop=True)
    figure, axes = new_figure((6.5, 1.2 + 0.28 * len(rows)))
    y = np.arange(len(rows))[::-1]
    for i, row in rows.iterrows():
        value, low, high = row[metric], row[f"{metric}_low"], row[f"{metric}_high"]
        if np.isfinite(value) and np.isfinite(low):
            axes.errorbar(
                value, y[i], xerr=[[value - low], [high - value]], fmt="o", color="C0", markersize=4, capsize=2
            )
        elif np.isfinite(value):
            axes.plot(value, y[i], "o", color="C0", markersize=4, fillstyle="none")
    overall = rows.loc[rows["subgroup"] == "all", metric]
    if len(overall) and np.isfinite(overall.iloc[0]):
        axes.axvline(overall.iloc[0], color="grey", linewidth=0.8, linestyle="--")
    labels = [
        f"{r.subgroup}: {r.level} (n={r.n})" if r.subgroup != "all" else f"all (n={r.n})" for r in rows.itertuples()
    ]
    axes.set_yticks(y, labels, fontsize=7)
    axes.set(xlabel=f"{metric} (95 % CI, bootstrap over patients); open: no CI", title=title or f"{metric} by subgroup")
    axes.title.set_fontsize(9)
    return save_figure(figure, Path(path))
