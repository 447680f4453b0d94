"""The report's tables: dental Tables 1–2 layout and hip Tables 2–4, as DataFrames and Markdown.

Input is a table of *analysis units* — one row per run (or per repeat, metrics averaged over
its folds) with columns ``backbone, mode, key`` and one column per metric. Everything here
is pure pandas / numpy; nothing reads or writes files.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.metrics import METRIC_NAMES
from osteo_tf.evaluation.stats import MIN_RUNS_FOR_TEST, compare, describe, format_p
from osteo_tf.vocabulary import MODEL_NAMES as MODE_NAMES
from osteo_tf.vocabulary import MODEL_ORDER as MODES

__all__ = [
    "METRIC_TITLES",
    "comparison_table",
    "dental_markdown",
    "format_frame",
    "markdown_table",
    "ordered",
    "paired_samples",
    "per_model_table",
    "ratio_table",
    "summary_table",
]
METRIC_TITLES = {
    "accuracy": "Accuracy",
    "precision": "Precision",
    "recall": "Recall",
    "specificity": "Specificity",
    "npv": "NPV",
    "f1": "F1 score",
    "auc": "AUC",
}


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (cells via ``str``, ``|`` escaped)."""

    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def ordered(values, order) -> list:
    """Unique ``values``, those in ``order`` first (in that order), the rest sorted."""
    present = list(dict.fromkeys(values))
    return [v for v in order if v in present] + sorted(v for v in present if v not in order)


def summary_table(units: pd.DataFrame, metrics=METRIC_NAMES, backbones=()) -> pd.DataFrame:
    """Long table ``backbone, mode, metric, n, mean, sd, ci_low, ci_high`` (t-based 95 % CI)."""
    rows = []
    for backbone in ordered(units["backbone"], backbones):
        for mode in ordered(units.loc[units["backbone"] == backbone, "mode"], MODES):
            group = units[(units["backbone"] == backbone) & (units["mode"] == mode)]
            for metric in metrics:
                rows.append({"backbone": backbone, "mode": mode, "metric": metric, **describe(group[metric])})
    return pd.DataFrame(rows, columns=["backbone", "mode", "metric", "n", "mean", "sd", "ci_low", "ci_high"])


def paired_samples(
    units: pd.DataFrame, backbone: str, metric: str, a: str, b: str, paired: bool
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Values of modes ``a`` and ``b`` for one backbone; paired: matched on ``key``."""
    first = units[(units["backbone"] == backbone) & (units["mode"] == a)].set_index("key")
    second = units[(units["backbone"] == backbone) & (units["mode"] == b)].set_index("key")
    if not paired:
        return first[metric].to_numpy(), second[metric].to_numpy(), []
    keys = [k for k in first.index if k in second.index]
    notes = []
    if len(keys) < max(len(first), len(second)):
        notes.append(
            f"{backbone}: pairing kept {len(keys)} runs present for both modes ({len(first)} {a}, {len(second)} {b})."
        )
    for key in keys:
        if first.at[key, "test_images"] != second.at[key, "test_images"]:
            raise OsteoInputError(
                f"--paired: {backbone} {a} and {b} were tested on different images in run {key}; "
                "pairing needs the same splits for both models (drop --paired for the unpaired test)"
            )
    return first.loc[keys, metric].to_numpy(), second.loc[keys, metric].to_numpy(), notes


def comparison_table(
    units: pd.DataFrame,
    metrics=METRIC_NAMES,
    paired: bool = False,
    *,
    a: str = "ensemble",
    b: str = "image_only",
    backbones=(),
) -> tuple[pd.DataFrame, list[str]]:
    """``a`` vs ``b`` per backbone and metric: test, statistic, p, Hedges' g (+ CI, label).

    Backbones with fewer than three runs of either mode get no row; a note says why.
    """
    rows, notes = [], []
    for backbone in ordered(units["backbone"], backbones):
        modes = set(units.loc[units["backbone"] == backbone, "mode"])
        if not {a, b} <= modes:
            continue
        for metric in metrics:
            x, y, pair_notes = paired_samples(units, backbone, metric, a, b, paired)
            notes += [n for n in pair_notes if n not in notes]
            if min(len(x), len(y)) < MIN_RUNS_FOR_TEST:
                note = (
                    f"{backbone}: {len(x)} {a} and {len(y)} {b} run(s); a test needs at least {MIN_RUNS_FOR_TEST} each."
                )
                if note not in notes:
                    notes.append(note)
                continue
            rows.append(
                {"backbone": backbone, "metric": metric, "a": a, "b": b, **compare(x, y, paired=paired).to_dict()}
            )
    columns = [
        "backbone",
        "metric",
        "a",
        "b",
        "test",
        "statistic",
        "p_value",
        "hedges_g",
        "g_ci_low",
        "g_ci_high",
        "effect_size",
        "paired",
        "normal",
        "shapiro_p_a",
        "shapiro_p_b",
        "n_a",
        "n_b",
        "mean_a",
        "mean_b",
    ]
    return pd.DataFrame(rows, columns=columns), notes


def dental_markdown(summary: pd.DataFrame, comparison: pd.DataFrame, metrics=METRIC_NAMES) -> str:
    """Dental Tables 1–2: per backbone, mean / SD / 95 % CI per mode, then p, test and g."""
    blocks = []
    for backbone in dict.fromkeys(summary["backbone"]):
        rows = []
        part = summary[summary["backbone"] == backbone]
        for mode in dict.fromkeys(part["mode"]):
            stats = part[part["mode"] == mode].set_index("metric")
            n = int(stats["n"].iloc[0])
            name = f"{MODE_NAMES.get(mode, mode)} (n={n})"
            rows.append([f"{name} mean", *(_number(stats.at[m, "mean"]) for m in metrics)])
            rows.append([f"{name} SD", *(_number(stats.at[m, "sd"]) for m in metrics)])
            rows.append(
                [
                    f"{name} 95% CI",
                    *(
                        f"{_number(stats.at[m, 'ci_low'])}–{_number(stats.at[m, 'ci_high'])}"
                        if stats.at[m, "sd"] is not None and np.isfinite(stats.at[m, "sd"])
                        else "–"
                        for m in metrics
                    ),
                ]
            )
        tests = comparison[comparison["backbone"] == backbone].set_index("metric")
        if len(tests):
            rows.append(["P value (ensemble vs image-only)", *(format_p(tests.at[m, "p_value"]) for m in metrics)])
            rows.append(["Test", *(tests.at[m, "test"] for m in metrics)])
            rows.append(["Effect size (Hedges' g)", *(_number(tests.at[m, "hedges_g"]) for m in metrics)])
            rows.append(["Effect size label", *(tests.at[m, "effect_size"] for m in metrics)])
        frame = pd.DataFrame(rows, columns=[backbone, *(METRIC_TITLES.get(m, m) for m in metrics)])
        blocks.append(f"### {backbone}\n\n{markdown_table(frame)}")
    return "\n\n".join(blocks) + "\n"


def per_model_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Hip Tables 2–3: one row per backbone × mode, the mean of each metric over runs."""
    wide = summary.pivot_table(index=["backbone", "mode"], columns="metric", values="mean", sort=False)
    n = summary.groupby(["backbone", "mode"], sort=False)["n"].first()
    wide.insert(0, "n", n)
    metrics = [m for m in dict.fromkeys(summary["metric"])]
    return wide[["n", *metrics]].reset_index()


def ratio_table(summary: pd.DataFrame, a: str = "ensemble", b: str = "image_only") -> pd.DataFrame:
    """Hip Table 4: mean(a) / mean(b) × 100 % per backbone and metric (NaN when mean(b) is 0)."""
    means = summary.pivot_table(index=["backbone", "mode"], columns="metric", values="mean", sort=False)
    metrics = list(dict.fromkeys(summary["metric"]))
    rows = []
    for backbone in dict.fromkeys(summary["backbone"]):
        if (backbone, a) in means.index and (backbone, b) in means.index:
            top, bottom = means.loc[(backbone, a)], means.loc[(backbone, b)]
            rows.append(
                {"backbone": backbone, **{m: 100.0 * top[m] / bottom[m] if bottom[m] else np.nan for m in metrics}}
            )
    return pd.DataFrame(rows, columns=["backbone", *metrics])


def format_frame(frame: pd.DataFrame, digits: int, titles: bool = True) -> pd.DataFrame:
    """Floats rounded to ``digits`` (NaN → "n/a"), metric columns titled, for Markdown."""
    shown = frame.copy()
    for column in shown.columns:
        if column == "p_value":
            shown[column] = [format_p(v) for v in shown[column]]
        elif shown[column].dtype.kind == "f":
            shown[column] = [_number(v, digits) if np.isfinite(v) else "n/a" for v in shown[column]]
    if "mode" in shown:
        shown["mode"] = [MODE_NAMES.get(m, m) for m in shown["mode"]]
    if titles:
        shown.columns = [METRIC_TITLES.get(c, c) for c in shown.columns]
    return shown
