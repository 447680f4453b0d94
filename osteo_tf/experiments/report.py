"""``osteo report DIR``: tables, figures and a written verdict from an experiment folder.

Reads only ``DIR`` (``experiment.yaml``, ``results/<fit_id>.json`` and, for external
validation, the run folders named there) and writes ``DIR/report/``:

==============================  ==========================================================
``report.html``                 one self-contained page: the tables and figures below, pooled
                                calibration, decision curves, subgroups, sites, sample size and
                                the TRIPOD+AI / CLAIM checklist (:mod:`.report_html`)
``report.md``                   everything below, plus one sentence per backbone saying
                                whether the ensemble beat image-only (p, test, Hedges' g)
``summary.csv``                 per backbone × mode × metric: n, mean, SD, 95 % CI
``comparison.csv``              ensemble vs image-only per backbone × metric: test used,
                                statistic, p, Hedges' g (95 % CI), label, Shapiro–Wilk p
``dental_tables.md``            the two above in the layout of dental Tables 1–2
``per_model.csv/.md``           hip Tables 2–3: mean of each metric per model
``ratio.csv/.md``               hip Table 4: ensemble / image-only × 100 %
``delong.csv/.md``              one run per model: DeLong's test of the two AUCs
``units.csv``                   the per-run (or per-repeat) values every test used
``external_<name>*.csv/.md``    the same tables on an external cohort (``--external``)
``figures/roc_<backbone>.png``  ROC image-only vs ensemble (mean ± 1 SD band over runs)
``figures/external_<stem>_roc_<backbone>.png``  the same on the external cohort <stem>.csv
``figures/effect_sizes.png``    forest plot of Hedges' g with 95 % CI
``fusion.csv/.md``              each ensemble variant and naive late fusion vs image-only,
                                paired by fold (:mod:`osteo_tf.evaluation.fusion`)
==============================  ==========================================================

Unit of analysis: with k-fold CV repeated at least three times, a *repeat* (its folds'
metrics averaged), as in the dental paper's 30 repeats; otherwise each fit. The records are
read through :func:`osteo_tf.experiments.results.read_records` (no TensorFlow), the same
reader the runner uses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation import external as ext
from osteo_tf.evaluation.delong import delong_test
from osteo_tf.evaluation.figures import plot_forest, plot_roc_comparison
from osteo_tf.evaluation.fusion import NAIVE_LATE, NAIVE_LATE_NAME, fusion_table
from osteo_tf.evaluation.metrics import METRIC_NAMES
from osteo_tf.evaluation.stats import ALPHA, MIN_RUNS_FOR_TEST, p_phrase
from osteo_tf.evaluation.tables import (
    MODE_NAMES,
    MODES,
    comparison_table,
    dental_markdown,
    format_frame,
    markdown_table,
    ordered,
    per_model_table,
    ratio_table,
    summary_table,
)
from osteo_tf.experiments.report_html import write_experiment_html
from osteo_tf.experiments.results import RESULTS, read_records
from osteo_tf.io import atomic_path, write_csv

__all__ = ["analysis_units", "load_results", "make_report", "report_summary", "verdicts"]

_KEPT = (
    "fit_id",
    "config_hash",
    "experiment",
    "backbone",
    "mode",
    "repeat",
    "fold",
    "site",
    "seed",
    "run_dir",
    "seconds",
    "epochs_run",
    "best_epoch",
    "finished_at",
)


def load_results(directory: str | Path) -> pd.DataFrame:
    """One row per finished fit from ``DIR/results/*.json``: the record's fields, its test
    metrics as columns, ``test_predictions`` (list of dicts) and ``test_images`` (frozenset)."""
    records = read_records(directory)
    if not records:
        raise OsteoInputError(
            f"{directory} has no results: expected {Path(directory) / RESULTS}/<fit_id>.json files "
            "written by `osteo experiment`; run (or finish) the experiment first"
        )
    rows = []
    for record in records:
        row = {k: record.get(k) for k in _KEPT}
        row["mode"] = record.get("model") or record["mode"]  # ensemble variants by name: ensemble_late, …
        row.update({m: float(record["metrics"]["test"][m]) for m in METRIC_NAMES})
        row["test_predictions"] = record["test_predictions"]
        row["test_images"] = frozenset(p["image"] for p in record["test_predictions"])
        rows.append(row)
    hashes = sorted({str(row["config_hash"]) for row in rows})
    if len(hashes) > 1:
        raise OsteoInputError(
            f"{Path(directory) / RESULTS} mixes records of {len(hashes)} configs {hashes}; "
            "report on one experiment at a time (rerun the experiment into a fresh folder)"
        )
    return pd.DataFrame(rows)


def analysis_units(results: pd.DataFrame) -> tuple[pd.DataFrame, str, list[str]]:
    """The values the statistics run on: per repeat (folds averaged) when every model has
    ≥ 3 repeats of a multi-fold CV, else per fit. Returns (units, unit name, notes)."""
    per_repeat = results.groupby(["backbone", "mode", "repeat"]).size()
    repeats = results.groupby(["backbone", "mode"])["repeat"].nunique()
    notes = []
    if per_repeat.max() > 1 and repeats.min() >= MIN_RUNS_FOR_TEST:
        aggregations = {m: "mean" for m in METRIC_NAMES}
        aggregations.update(fold="count", test_images=lambda s: frozenset().union(*s))
        units = results.groupby(["backbone", "mode", "repeat"], sort=False).agg(aggregations).reset_index()
        units = units.rename(columns={"fold": "folds"})
        units["key"] = [f"r{r:02d}" for r in units["repeat"]]
        if units["folds"].nunique() > 1:
            notes.append(
                f"Repeats have between {units['folds'].min()} and {units['folds'].max()} finished folds; "
                "each repeat's metrics are the mean over the folds it has."
            )
        return units, "repeat (metrics averaged over its folds)", notes
    units = results.copy()
    units["key"] = [f"r{r:02d}f{f:02d}" for r, f in zip(units["repeat"], units["fold"])]
    if per_repeat.max() > 1:
        notes.append(
            "Fewer than 3 repeats: each fold counts as one run. Folds of one CV share training data, "
            "so the p-values below are optimistic."
        )
    return units, "fit", notes


def _delong_table(results: pd.DataFrame, backbones: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """DeLong's test for every backbone run exactly once in both modes on one test set."""
    rows, notes = [], []
    for backbone in backbones:
        part = results[results["backbone"] == backbone]
        fits = {m: part[part["mode"] == m] for m in ("ensemble", "image_only")}
        if any(len(f) != 1 for f in fits.values()):
            continue
        preds = {m: {p["image"]: p for p in f["test_predictions"].iloc[0]} for m, f in fits.items()}
        images = sorted(preds["ensemble"])
        if set(images) != set(preds["image_only"]):
            notes.append(f"{backbone}: the two models were tested on different images; no DeLong test.")
            continue
        y = np.array([int(preds["ensemble"][i]["label"]) for i in images])
        result = delong_test(
            y,
            [preds["ensemble"][i]["probability"] for i in images],
            [preds["image_only"][i]["probability"] for i in images],
        )
        rows.append(
            {
                "backbone": backbone,
                "test": result.test,
                "auc_ensemble": result.auc_a,
                "auc_image_only": result.auc_b,
                "z": result.z,
                "p_value": result.p_value,
                "n_test": int(y.size),
                "n_positive": int(y.sum()),
            }
        )
    columns = ["backbone", "test", "auc_ensemble", "auc_image_only", "z", "p_value", "n_test", "n_positive"]
    return pd.DataFrame(rows, columns=columns), notes


def verdicts(
    summary: pd.DataFrame, comparison: pd.DataFrame, delong: pd.DataFrame, *, alpha: float = ALPHA, metric: str = "auc"
) -> list[str]:
    """One sentence per backbone: did the ensemble beat image-only on ``metric``?"""
    lines = []
    for backbone in dict.fromkeys(summary["backbone"]):
        modes = set(summary.loc[summary["backbone"] == backbone, "mode"])
        if not modes & {"ensemble", "image_only"}:
            continue  # e.g. the runner's backbone-free covariates-only model: in the tables only
        if not {"ensemble", "image_only"} <= modes:
            lines.append(f"- **{backbone}**: only {', '.join(sorted(modes))} was run; nothing to compare.")
            continue
        tests = comparison[(comparison["backbone"] == backbone) & (comparison["metric"] == metric)]
        dl = delong[delong["backbone"] == backbone] if metric == "auc" else delong.iloc[0:0]
        if len(tests):
            t = tests.iloc[0]
            a, b, p, test = t["mean_a"], t["mean_b"], t["p_value"], t["test"]
            g = f"Hedges' g = {t['hedges_g']:.2f}, {t['effect_size']}"
            significant = comparison[(comparison["backbone"] == backbone) & (comparison["p_value"] < alpha)]
            tail = (
                " Significant (p < %g) on: %s." % (alpha, ", ".join(significant["metric"]))
                if len(significant)
                else f" No metric differed significantly (p < {alpha:g})."
            )
        elif len(dl):
            d = dl.iloc[0]
            a, b, p, test = d["auc_ensemble"], d["auc_image_only"], d["p_value"], d["test"]
            g, tail = "Hedges' g needs repeated runs, here one per model", ""
        else:
            lines.append(
                f"- **{backbone}**: too few runs for a test (need ≥ {MIN_RUNS_FOR_TEST} per model, "
                "or one run per model on a shared test set for DeLong's test)."
            )
            continue
        if np.isfinite(p) and p < alpha:
            verdict = "the ensemble beat image-only" if a > b else "image-only beat the ensemble"
        else:
            verdict = "the ensemble did not differ significantly from image-only"
        name = metric.upper() if metric == "auc" else metric
        mean = "mean " if len(tests) else ""
        lines.append(
            f"- **{backbone}**: {verdict} on {name} ({mean}{a:.3f} vs {b:.3f}; {test}, {p_phrase(p)}; {g}).{tail}"
        )
    return lines


def _write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return path


def _write_pair(out: Path, stem: str, frame: pd.DataFrame, digits: int, title: str) -> str:
    write_csv(out / f"{stem}.csv", frame)
    text = f"## {title}\n\n{markdown_table(format_frame(frame, digits))}\n"
    _write_text(out / f"{stem}.md", text)
    return text


def _read_experiment(directory: Path) -> dict:
    path = directory / "experiment.yaml"
    if not path.is_file():
        return {}
    import yaml

    values = yaml.safe_load(path.read_text()) or {}
    return values if isinstance(values, dict) else {}


def _runs(frame: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray]]:
    """(labels, probabilities) of every fit in ``frame`` whose test set has both classes."""
    runs = [
        (np.array([p["label"] for p in preds], dtype=int), np.array([p["probability"] for p in preds], dtype=float))
        for preds in frame["test_predictions"]
    ]
    return [r for r in runs if len(set(r[0].tolist())) == 2]


def _roc_figures(
    results: pd.DataFrame, backbones: list[str], delong: pd.DataFrame, out: Path, cohort: str = "test"
) -> list[Path]:
    """One ROC figure per backbone run image-only or ensemble; covariates-only fits (of that
    backbone, or the runner's backbone-free ones) are drawn beside them as a reference.
    ``cohort``: "test" (each fit's test split) or an external cohort's name (figure name prefix)."""
    paths = []
    reference = results[results["mode"] == "covariates_only"]
    for backbone in backbones:
        part = results[results["backbone"] == backbone]
        if not set(part["mode"]) & {"image_only", "ensemble"}:
            continue
        curves = {mode: _runs(part[part["mode"] == mode]) for mode in ordered(part["mode"], MODES)}
        if "covariates_only" not in curves and len(reference):
            curves["covariates_only"] = _runs(reference)
        dl = delong.loc[delong["backbone"] == backbone, "p_value"]
        path = out / "figures" / (f"roc_{backbone}.png" if cohort == "test" else f"{cohort}_roc_{backbone}.png")
        paths.append(
            plot_roc_comparison(
                {m: r for m, r in curves.items() if r},
                path,
                f"{backbone}: {cohort} ROC",
                delong_p=float(dl.iloc[0]) if len(dl) else None,
            )
        )
    return paths


def _statistics(units: pd.DataFrame, paired: bool, backbones: list[str]):
    summary = summary_table(units, backbones=backbones)
    comparison, notes = comparison_table(units, paired=paired, backbones=backbones)
    return summary, comparison, notes


def make_report(
    directory: str | Path,
    external: str | Path | None = None,
    paired: bool = False,
    *,
    alpha: float = ALPHA,
    evaluate_fn=None,
    subgroups: tuple[str, ...] | list[str] = (),
) -> Path:
    """Write ``DIR/report/`` (see the module docstring); returns the path of ``report.md``.

    external: a manifest CSV to score every fit on first (see :mod:`osteo_tf.evaluation.external`); external
    scores already in the run folders are always included. paired: match runs by repeat
    (and fold) for paired tests; raises OsteoInputError if the test images differ. subgroups:
    manifest columns tabulated as subgroups in ``report.html`` besides sex, age band, BMI class
    and fracture history. Also writes ``report.html``
    (:func:`osteo_tf.experiments.report_html.write_experiment_html`).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise OsteoInputError(f"experiment folder {directory} does not exist")
    experiment = _read_experiment(directory)
    results = load_results(directory)
    order = experiment.get("backbones") if isinstance(experiment.get("backbones"), list) else []
    backbones = ordered(results["backbone"], order)
    units, unit, notes = analysis_units(results)
    summary, comparison, test_notes = _statistics(units, paired, backbones)
    delong, delong_notes = _delong_table(results, backbones)
    if len(delong):  # the "too few runs" notes of those backbones say nothing new
        test_notes = [n for n in test_notes if n.split(":")[0] not in set(delong["backbone"])]
        delong_notes.append(
            "One run per model: the AUCs are compared by DeLong's test on the shared test set; "
            "the other metrics are reported, not tested."
        )
    out = directory / "report"
    write_csv(out / "summary.csv", summary)
    write_csv(out / "comparison.csv", comparison)
    write_csv(out / "units.csv", units.drop(columns=[c for c in ("test_predictions", "test_images") if c in units]))
    dental = dental_markdown(summary, comparison)
    _write_text(out / "dental_tables.md", "## Mean, SD and 95 % CI over runs; ensemble vs image-only\n\n" + dental)
    per_model = _write_pair(out, "per_model", per_model_table(summary), 4, "Test metrics per model (mean over runs)")
    ratio = _write_pair(out, "ratio", ratio_table(summary), 1, "Ensemble / image-only × 100 %")
    delong_text = (
        _write_pair(out, "delong", delong, 4, "DeLong's test, ensemble vs image-only AUC") if len(delong) else ""
    )
    fusion_text = _fusion_section(out, results)
    figures = _roc_figures(results, backbones, delong, out)
    if len(comparison):
        figures.append(
            plot_forest(
                comparison,
                out / "figures" / "effect_sizes.png",
                f"{experiment.get('name', directory.name)}: effect sizes",
            )
        )
    if external is not None:
        ext.score_external(directory, results, external, evaluate_fn=evaluate_fn)
    external_text = []
    for name, frame in ext.collect_external(directory, results).items():
        external_text.append(_external_section(out, name, frame, paired, backbones, alpha))
        figures += _roc_figures(frame, backbones, pd.DataFrame(columns=["backbone", "p_value"]), out, cohort=name)
    lines = [
        f"# Report: {experiment.get('name', directory.name)}",
        "",
        f"Experiment folder `{directory}`; {len(results)} finished fits; backbones {', '.join(backbones)}; "
        f"split {(experiment.get('split') or {}).get('kind', 'unknown')}; unit of analysis: {unit}; "
        f"{'paired' if paired else 'unpaired'} tests.",
        "",
        "## Ensemble vs image-only",
        "",
        *verdicts(summary, comparison, delong, alpha=alpha),
        "",
        *[f"- Note: {n}" for n in notes + test_notes + delong_notes],
        "",
        *fusion_text,
        "## Mean, SD and 95 % CI over runs (dental Tables 1–2 layout)",
        "",
        dental,
        per_model,
        ratio,
        delong_text,
        *external_text,
        "## Figures",
        "",
        *[f"![{p.stem}](figures/{p.name})" for p in figures],
        "",
        _methods(paired, alpha),
    ]
    write_experiment_html(
        out,
        results,
        title=f"Report: {experiment.get('name', directory.name)}",
        markdown_tables={
            "Mean, SD and 95 % CI over runs": format_frame(summary, 3, titles=False) if len(summary) else summary,
            "Ensemble vs image-only": format_frame(comparison, 4, titles=False) if len(comparison) else comparison,
            **({"DeLong's test, one run per model": delong} if len(delong) else {}),
        },
        figures=figures,
        subgroups=subgroups,
    )
    return _write_text(out / "report.md", "\n".join(lines) + "\n")


def report_summary(path: str | Path) -> str:
    """The head of a ``report.md``: title, verdicts and notes, up to its tables (what ``osteo report`` prints).

    Args:
        path: a ``report.md`` written by :func:`make_report`.

    Returns:
        Its text before the first "## Mean, SD" section, without trailing whitespace.
    """
    return Path(path).read_text().split("## Mean, SD")[0].rstrip()


def _fusion_section(out: Path, results: pd.DataFrame) -> list[str]:
    """fusion.csv/.md and the report's lines: each ensemble variant (and naive late fusion)
    against image-only fold by fold; nothing when the experiment has no ensemble or image-only."""
    table = fusion_table(results)
    if not len(table):
        return []
    write_csv(out / "fusion.csv", table)
    shown = table.assign(
        diff_ci=[
            f"{lo:+.3f} to {hi:+.3f}" if pd.notna(lo) else "–"
            for lo, hi in zip(table["diff_ci_low"], table["diff_ci_high"])
        ],
        higher=[f"{h} of {n}" for h, n in zip(table["higher"], table["n"])],
    )
    shown["model"] = [NAIVE_LATE_NAME if m == NAIVE_LATE else MODE_NAMES.get(m, m) for m in shown["model"]]
    shown = shown[
        [
            "backbone",
            "model",
            "n",
            "mean",
            "mean_image_only",
            "diff",
            "diff_ci",
            "higher",
            "min_diff",
            "p_value",
            "test",
            "diff_naive",
        ]
    ]
    text = (
        "## Fusion: does the ensemble use the covariates?\n\n"
        "Test AUC of each ensemble variant against image-only on the same folds (diff: mean paired difference "
        "with its 95 % t-CI; higher: folds where the model was above image-only), and against naive late "
        "fusion (the image-only and covariates-only models' logits added, no training: the reference a "
        "trained fusion should reach; diff_naive).\n\n" + markdown_table(format_frame(shown, 3, titles=False)) + "\n"
    )
    _write_text(out / "fusion.md", text)
    return [text]


def _external_section(
    out: Path, name: str, frame: pd.DataFrame, paired: bool, backbones: list[str], alpha: float
) -> str:
    units, unit, notes = analysis_units(frame)
    summary, comparison, test_notes = _statistics(units, paired, backbones)
    write_csv(out / f"{name}_fits.csv", frame.drop(columns=["test_images", "test_predictions"]))
    write_csv(out / f"{name}_summary.csv", summary)
    write_csv(out / f"{name}_comparison.csv", comparison)
    sources = ", ".join(f"`{s}`" for s in dict.fromkeys(frame["source"]))
    text = "\n".join(
        [
            f"## External validation: {name}",
            "",
            f"Every trained model scored on {sources} with the covariate encoder fitted at training "
            f"time (never refitted); unit of analysis: {unit}.",
            "",
            *verdicts(summary, comparison, pd.DataFrame(columns=["backbone"]), alpha=alpha),
            *[f"- Note: {n}" for n in notes + test_notes],
            "",
            dental_markdown(summary, comparison),
        ]
    )
    _write_text(out / f"{name}.md", text)
    return text


def _methods(paired: bool, alpha: float) -> str:
    tests = (
        "paired: Shapiro–Wilk on the differences, then the paired t-test (p > %g) or the Wilcoxon signed-rank test"
        if paired
        else "unpaired: Shapiro–Wilk on each model's values, then the Welch two-sample t-test (both p > %g) "
        "or the Mann–Whitney U test"
    ) % alpha
    return (
        "## Methods\n\nMean, SD (n − 1) and t-based 95 % CI over runs. Ensemble vs image-only per backbone "
        f"and metric, {tests}; significance at p < {alpha:g}. Effect size: Hedges' g (pooled SD, correction "
        "1 − 3/(4(n₁+n₂) − 9); 95 % CI from its large-sample SE), labelled very small ≥ 0.01, small ≥ 0.2, "
        "medium ≥ 0.5, large ≥ 0.8, very large ≥ 1.0, huge ≥ 2.0 (the dental paper's thresholds). One run per "
        "model on a shared test set: DeLong's test of the two AUCs (fast algorithm of Sun & Xu 2014). "
        "Ratio table: mean(ensemble) / mean(image-only) × 100 %.\n"
    )
