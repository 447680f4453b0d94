"""``DIR/report/report.html``: the experiment report as one self-contained page, with the checklist.

Beside the statistics over repeated fits that ``report.md`` holds (copied in as tables and
figures), it adds what TRIPOD+AI and CLAIM ask of a study: per model (backbone × mode), the
test predictions of all its fits pooled — calibration (metrics and reliability diagram), a
decision curve, and subgroup metrics with bootstrap CIs over patients (a patient tested in
several fits counts once per fit) — the per-site table of a leave-one-site-out split
(``split: {kind: site}``: each fit's test set is one held-out site), the cohort table, and the
sample size. Everything is read from ``DIR`` and the run folders its records name.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from osteo_tf.evaluation.bootstrap import with_intervals
from osteo_tf.evaluation.calibration import plot_reliability, pooled_calibration
from osteo_tf.evaluation.cohort import cohort_table
from osteo_tf.evaluation.decision import write_decision_curve
from osteo_tf.evaluation.metrics import METRIC_NAMES, binary_metrics, ci_text
from osteo_tf.evaluation.sample_size import validation_sample_size
from osteo_tf.evaluation.subgroups import DEFAULT_SUBGROUPS, plot_subgroup_forest, subgroup_table
from osteo_tf.evaluation.tables import MODE_NAMES
from osteo_tf.experiments.checklist import checklist_table
from osteo_tf.experiments.html import Page
from osteo_tf.io import write_csv
from osteo_tf.runs.config import TrainConfig
from osteo_tf.runs.run_dir import RunDir

__all__ = ["pooled_predictions", "site_table", "write_experiment_html"]


def pooled_predictions(results: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """Every fit's test predictions, pooled per (backbone, mode).

    Args:
        results: :func:`osteo_tf.experiments.report.load_results`' frame.

    Returns:
        ``{(backbone, mode): rows}`` with ``image, patient_id, label, probability, fit_id`` (and
        ``site`` for a leave-one-site-out split).
    """
    pooled = {}
    for (backbone, mode), fits in results.groupby(["backbone", "mode"], sort=False):
        frames = []
        for fit in fits.itertuples():
            frame = pd.DataFrame(fit.test_predictions).assign(fit_id=fit.fit_id)
            if "site" in results and pd.notna(getattr(fit, "site", None)):
                frame["fit_site"] = fit.site
            frames.append(frame)
        pooled[(backbone, mode)] = pd.concat(frames, ignore_index=True)
    return pooled


def site_table(results: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Leave-one-site-out: each model's metrics (95 % CI) on each held-out site.

    Args:
        results: the experiment's fits; only those with a ``site`` are tabulated.
        seed: seeds the bootstraps.

    Returns:
        One row per backbone × mode × site: ``n`` and, per metric, ``value (low–high)``.
    """
    if "site" not in results or results["site"].isna().all():
        return pd.DataFrame()
    rows = []
    for fit in results.dropna(subset=["site"]).itertuples():
        frame = pd.DataFrame(fit.test_predictions)
        labels, probability = frame["label"].to_numpy(), frame["probability"].to_numpy()
        row = {"backbone": fit.backbone, "model": MODE_NAMES.get(fit.mode, fit.mode), "site": fit.site, "n": len(frame)}
        if frame["label"].nunique() == 2:
            metrics = with_intervals(
                binary_metrics(labels, probability), labels, probability, groups=frame["patient_id"], seed=seed
            )
            row.update({name: ci_text(metrics, name) for name in METRIC_NAMES})
        else:
            row.update({name: "one class" for name in METRIC_NAMES})
        rows.append(row)
    return pd.DataFrame(rows)


def _per_backbone(pooled: dict) -> dict[str, dict[str, tuple]]:
    """backbone → {model name: (labels, probabilities)}; the covariates-only model (backbone
    ``none``) joins every backbone's figure, as in the ROC figures, and has none of its own."""
    backbones = [b for b in dict.fromkeys(b for b, _ in pooled) if b != "none"] or ["none"]
    return {
        backbone: {
            MODE_NAMES.get(m, m): (f["label"].to_numpy(), f["probability"].to_numpy())
            for (b, m), f in pooled.items()
            if b in (backbone, "none")
        }
        for backbone in backbones
    }


def _cohort(results: pd.DataFrame, directory: Path):
    """The experiment's cohort, read as its first run read it (None and why when it cannot be)."""
    from osteo_tf.experiments.run_report import read_run_cohort

    named = results["run_dir"].dropna()
    run = RunDir(directory / named.iloc[0]) if len(named) else None  # records name it relative to DIR
    if run is None or not run.config.is_file():
        return None, "no run folder to read the cohort from"
    settings = run.read_config()
    return read_run_cohort(settings, TrainConfig.from_dict(settings["train"]))


def write_experiment_html(
    out: Path,
    results: pd.DataFrame,
    *,
    title: str,
    markdown_tables: dict[str, pd.DataFrame],
    figures: list[Path],
    subgroups: tuple[str, ...] | list[str] = (),
    seed: int = 0,
) -> Path:
    """Writes ``out/report.html`` (and the pooled tables as CSV beside it).

    Args:
        out: the report folder (``DIR/report``).
        results: the experiment's fits (:func:`osteo_tf.experiments.report.load_results`).
        title: the page title.
        markdown_tables: title → table already in ``report.md`` (summary, comparison, …), shown as is.
        figures: the figures ``report.md`` shows (ROC, effect sizes), inlined.
        subgroups: manifest columns tabulated as subgroups besides the default ones.
        seed: seeds the bootstraps.

    Returns:
        The path of ``report.html``.
    """
    page = Page(title)
    anchors: dict[str, str] = {}

    def section(anchor: str, heading: str) -> Page:
        anchors[anchor] = heading
        return page.section(anchor, heading)

    cohort, note = _cohort(results, out.parent)
    section("repeats", "Discrimination over repeated fits")
    for name, table in markdown_tables.items():
        page.table(table, caption=name)
    for path in figures:
        page.figure(path, path.stem.replace("_", " "))
    pooled = pooled_predictions(results)
    _pooled_discrimination(section("discrimination", "Pooled test predictions, with 95 % CIs"), pooled, seed, out)
    _pooled_calibration(section("calibration", "Calibration (pooled over fits)"), pooled, results, out)
    section("decision-curve", "Clinical utility: decision curves (pooled test predictions)")
    for backbone, curves in _per_backbone(pooled).items():
        csv, png = out / f"decision_curve_{backbone}.csv", out / "figures" / f"decision_curve_{backbone}.png"
        write_decision_curve(curves, csv, png, title=f"Decision curve — {backbone}")
        page.figure(png, f"Decision curve, {backbone} (pooled test predictions)")
    sites = site_table(results, seed)
    section("subgroups", "Subgroups and sites")
    if len(sites):
        write_csv(out / "sites.csv", sites)
        page.table(sites, caption="Leave-one-site-out: each site held out as the test set once (external-site)")
    if cohort is None:
        page.text(f"Subgroup tables left out: {note}", note=True)
    else:
        _pooled_subgroups(page, pooled, cohort, subgroups, seed, out)
        table, notes = cohort_table(cohort)
        section("cohort", "Participants").table(table.drop(columns=["p_value"]).astype(str)).text(
            " ".join(notes) + " Each fit's partitions (patient-level) are in its run folder's splits.csv; "
            "`osteo report --run RUN` tabulates them per partition.",
            note=True,
        )
    _sample_size(section("sample-size", "Sample size"), pooled, out)
    missing = {
        "failures": "per run: osteo report --run RUN (failure analysis with Grad-CAM)",
        "threshold": "per run: osteo threshold / osteo report --run RUN",
        "model": "per run: osteo report --run RUN; the experiment's settings are in experiment.yaml",
    }
    if cohort is None:
        missing["cohort"] = f"not available: {note}"
    page.section("checklist", "TRIPOD+AI / CLAIM checklist").text(
        "Where this page holds each item's evidence; not the full checklists (TRIPOD+AI: Collins et al., BMJ "
        "2024;385:e078378; CLAIM 2024: Tejani et al., doi 10.1148/ryai.240300)."
    ).table(checklist_table(anchors, missing))
    return page.write(out / "report.html")


def _pooled_discrimination(page: Page, pooled: dict, seed: int, out: Path) -> None:
    rows = []
    for (backbone, mode), frame in pooled.items():
        labels, probability = frame["label"].to_numpy(), frame["probability"].to_numpy()
        metrics = with_intervals(
            binary_metrics(labels, probability), labels, probability, groups=frame["patient_id"], seed=seed
        )
        rows.append(
            {
                "backbone": backbone,
                "model": MODE_NAMES.get(mode, mode),
                "n": len(frame),
                **{n: ci_text(metrics, n) for n in METRIC_NAMES},
            }
        )
    table = pd.DataFrame(rows)
    write_csv(out / "pooled_metrics.csv", table)
    page.table(
        table, caption="All fits' test predictions pooled per model, threshold 0.5; 95 % bootstrap CIs over patients"
    )


def _pooled_calibration(page: Page, pooled: dict, results: pd.DataFrame, out: Path) -> None:
    rows = []
    for (backbone, mode), frame in pooled.items():
        fits = [(f["label"].to_numpy(), f["probability"].to_numpy()) for _, f in frame.groupby("fit_id")]
        summary = pooled_calibration(fits)
        row = {"backbone": backbone, "model": MODE_NAMES.get(mode, mode), "fits": summary["n_fits"]}
        row.update({k: summary["pooled"][k] for k in ("intercept", "slope", "brier", "scaled_brier", "ece", "n")})
        if summary["sd"]:
            row.update({f"{k}_sd_over_fits": summary["sd"][k] for k in ("slope", "brier")})
        rows.append(row)
    table = pd.DataFrame(rows)
    write_csv(out / "calibration.csv", table)
    page.table(table, caption="Pooled test predictions; SD over fits where there are several")
    for backbone, curves in _per_backbone(pooled).items():
        path = plot_reliability(
            curves, out / "figures" / f"reliability_{backbone}.png", title=f"Calibration — {backbone}"
        )
        page.figure(path, f"Reliability diagram, {backbone}")


def _pooled_subgroups(page: Page, pooled: dict, cohort: pd.DataFrame, subgroups, seed: int, out: Path) -> None:
    extra = cohort.drop(columns=[c for c in ("label", "patient_id") if c in cohort]).drop_duplicates("image")
    tables = []
    for (backbone, mode), frame in pooled.items():
        rows = frame.merge(extra, on="image", how="left")
        table = subgroup_table(rows, rows["probability"], 0.5, columns=(*DEFAULT_SUBGROUPS, *subgroups), seed=seed)
        tables.append(table.assign(backbone=backbone, model=MODE_NAMES.get(mode, mode)))
        path = out / "figures" / f"subgroups_{backbone}_{mode}.png"
        plot_subgroup_forest(table, path, title=f"Test AUC by subgroup — {backbone} {MODE_NAMES.get(mode, mode)}")
        page.figure(path, f"AUC by subgroup, {backbone} {MODE_NAMES.get(mode, mode)} (pooled test predictions)")
    write_csv(out / "subgroups.csv", pd.concat(tables, ignore_index=True))
    page.text("Per-level metrics with CIs: subgroups.csv.", note=True)


def _sample_size(page: Page, pooled: dict, out: Path) -> None:
    rows = []
    for (backbone, mode), frame in pooled.items():
        metrics = binary_metrics(frame["label"], frame["probability"])
        prevalence = float(frame["label"].mean())
        needed = validation_sample_size(min(max(metrics["auc"], 0.51), 0.99), prevalence, ci_width=0.1)
        per_fit = int(frame.groupby("fit_id").size().mean())
        rows.append(
            {
                "backbone": backbone,
                "model": MODE_NAMES.get(mode, mode),
                "AUC": metrics["auc"],
                "test images per fit": per_fit,
                "needed for a 0.1-wide 95 % AUC CI": needed.n,
            }
        )
    table = pd.DataFrame(rows)
    write_csv(out / "sample_size.csv", table)
    page.text(
        "Test-set size for a 95 % AUC CI of width 0.1 (Hanley & McNeil 1982) at each model's pooled AUC and "
        "prevalence; development sizes: `osteo plan`."
    ).table(table)
