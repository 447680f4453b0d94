"""``osteo report --run RUN``: one run's evidence for TRIPOD+AI and CLAIM, as one HTML page.

Reads only the run folder (``config.json``, ``predictions.csv``, ``splits.csv``, and
``threshold.json`` / ``calibration.json`` when present) and the run's manifest for the
covariates and any subgroup column; everything is computed from those on demand, so a run
folder written before this report existed reports too. Writes ``RUN/report/``:

===============================  ==========================================================
``report.html``                  everything below in one self-contained page (figures
                                 inlined), with the TRIPOD+AI / CLAIM checklist table
``metrics.csv``                  val and test metrics, 95 % bootstrap CIs over patients,
                                 DeLong CI of the AUC
``cohort_splits.csv``            demographics of train / val / test (CLAIM 36)
``calibration.csv``              intercept, slope, Brier, scaled Brier, ECE (model's own
                                 and, after ``osteo calibrate``, recalibrated)
``reliability_test.csv``         the reliability diagram's bins
``decision_curve.csv``           net benefit of the model, treat all and treat none
``threshold_table.csv``          every metric with CIs at candidate thresholds
``subgroups.csv``                metrics with CIs per sex, age band, BMI class, fracture
                                 history and the columns named in ``subgroups``
``sample_size.csv``              Riley et al.'s minimum development size and the test-set
                                 size for the AUC CI, beside this run's own sizes
``failures/``                    the most confident errors of the test split with Grad-CAM
``figures/*.png``                ROC, reliability diagram, decision curve, subgroup forest plot
===============================  ==========================================================
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from osteo_tf.data.manifest import ManifestConfig
from osteo_tf.data.splits import splits_from_table
from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.bootstrap import with_intervals
from osteo_tf.evaluation.calibration import (
    CALIBRATION_METRICS,
    calibration_metrics,
    plot_reliability,
    reliability_data,
)
from osteo_tf.evaluation.cohort import split_table
from osteo_tf.evaluation.decision import write_decision_curve
from osteo_tf.evaluation.metrics import METRIC_NAMES, binary_metrics, ci_text, plot_roc
from osteo_tf.evaluation.recalibration import run_recalibration
from osteo_tf.evaluation.sample_size import development_sample_size, validation_sample_size
from osteo_tf.evaluation.subgroups import DEFAULT_SUBGROUPS, plot_subgroup_forest, subgroup_table
from osteo_tf.evaluation.threshold import run_threshold, split_predictions, threshold_record, threshold_table
from osteo_tf.experiments.checklist import checklist_table
from osteo_tf.experiments.html import Page
from osteo_tf.explain.failures import write_failures
from osteo_tf.io import read_json, write_csv
from osteo_tf.runs.cohort import load_cohort
from osteo_tf.runs.config import TrainConfig
from osteo_tf.runs.run_dir import RunDir
from osteo_tf.vocabulary import model_label, uses_images

__all__ = ["make_run_report", "read_run_cohort"]

_AUC_CI_WIDTH = 0.10  # the test-set size is planned for a 95 % AUC CI this wide


def make_run_report(
    run: str | Path, *, subgroups: tuple[str, ...] | list[str] = (), failures: int = 4, seed: int | None = None
) -> Path:
    """Writes ``RUN/report/`` (see the module docstring) and returns the path of ``report.html``.

    Args:
        run: a complete run folder.
        subgroups: manifest columns tabulated as subgroups besides sex, age band, BMI class and
            fracture history (e.g. ``("site", "scanner")``); each must be a manifest column.
        failures: how many false positives and false negatives the failure analysis shows.
        seed: seeds the bootstraps (default: the run's training seed).

    Returns:
        The path of ``report.html``.

    Raises:
        OsteoInputError: an unfinished run, a subgroup column the manifest lacks.
    """
    run_dir = RunDir(run).require_complete()
    settings = run_dir.read_config()
    config = TrainConfig.from_dict(settings["train"])
    seed = config.seed if seed is None else int(seed)
    cohort, cohort_note = read_run_cohort(settings, config)
    if subgroups and cohort is None:
        raise OsteoInputError(f"subgroups: the run's manifest cannot be read ({cohort_note})", parameter="subgroups")
    for column in subgroups:  # refused before any figure is drawn
        if column not in cohort:
            raise OsteoInputError(
                f"subgroups: the manifest {settings['manifest']} has no column {column!r}", parameter="subgroups"
            )
    out = run_dir.report
    figures = out / "figures"
    splits = split_predictions(run_dir.path)
    threshold = run_threshold(run_dir.path)
    title = f"{model_label(config.mode)} · {config.backbone} · {run_dir.path.name}"
    page = Page(f"Run report: {title}")
    anchors: dict[str, str] = {}

    def section(anchor: str, heading: str) -> Page:
        anchors[anchor] = heading
        return page.section(anchor, heading)

    _model_section(section("model", "Model, data preparation, outcome"), settings, config, run_dir)
    if cohort is not None:
        assigned = splits_from_table(cohort, pd.read_csv(run_dir.splits))
        table = split_table(cohort, assigned, columns=("site", *subgroups))
        write_csv(out / "cohort_splits.csv", table)
        section("cohort", "Partitions and participants").text(
            "Patient-level split: every image of a patient is in one partition. Per patient (first image) except "
            "the image counts."
        ).table(table)
    else:
        section("cohort", "Partitions and participants").text(cohort_note, note=True)
    _discrimination(section("discrimination", "Discrimination, with 95 % CIs"), splits, threshold, seed, out, title)
    _calibration(section("calibration", "Calibration and recalibration"), splits, run_dir, out)
    _threshold(section("threshold", "Model output and decision threshold"), run_dir, threshold, out)
    _decision(section("decision-curve", "Clinical utility: decision curve"), splits["test"], config, out)
    rows = _scored_rows(splits["test"], cohort)
    columns = (*DEFAULT_SUBGROUPS, *subgroups)
    table = subgroup_table(rows, rows["probability"], threshold, columns=columns, seed=seed)
    write_csv(out / "subgroups.csv", table)
    plot_subgroup_forest(table, figures / "subgroups_auc.png", title=f"Test AUC by subgroup — {title}")
    section("subgroups", "Subgroups (fairness) and sites").text(
        "Test split, at the run's threshold; 95 % CIs by bootstrap over patients. A level with one class has no "
        "AUC. Small subgroups have wide intervals: read them as such."
    ).table(_subgroup_view(table)).figure(figures / "subgroups_auc.png", "Test AUC per subgroup level (95 % CI)")
    _failures(section("failures", "Failure analysis and explanations"), run_dir, config, failures, out)
    _sample_size(section("sample-size", "Sample size"), splits, cohort, run_dir, config, out)
    missing = {"repeats": "one fit: robustness over repeated fits is in the experiment report (osteo report DIR)"}
    page.section("checklist", "TRIPOD+AI / CLAIM checklist").text(
        "Where this page holds each item's evidence. Not the full checklists (TRIPOD+AI: Collins et al., BMJ "
        "2024;385:e078378; CLAIM 2024: Tejani et al., doi 10.1148/ryai.240300): the items no run folder can "
        "answer are the authors' to provide."
    ).table(checklist_table(anchors, missing))
    return page.write(out / "report.html")


def read_run_cohort(settings: dict, config: TrainConfig) -> tuple[pd.DataFrame | None, str]:
    """The run's cohort as it read it (no image decoding), or None and why not.

    Args:
        settings: the run's ``config.json``.
        config: its training options.

    Returns:
        (cohort, "") or (None, the reason).
    """
    manifest = settings.get("manifest")
    manifest_config = dataclasses.replace(ManifestConfig.from_dict(settings.get("manifest_config")), check_images=False)
    try:
        return load_cohort(manifest, config, manifest_config), ""
    except (OsteoInputError, OSError) as error:
        return None, f"the run's manifest {manifest} could not be read ({error}); covariate tables are left out"


def _model_section(page: Page, settings: dict, config: TrainConfig, run_dir: RunDir) -> None:
    train = settings["train"]
    manifest_config = settings.get("manifest_config") or {}
    rows = [
        ("model", model_label(config.mode)),
        ("backbone", config.backbone),
        ("weights", train.get("weights", "none")),
        ("image size, px", config.image_size if uses_images(config.mode) else "—"),
        ("intensity normalisation", train.get("intensity", "minmax")),
        ("covariates", train.get("covariates", "auto")),
        (
            "missing covariates",
            f"impute={train.get('impute', 'none')}, covariate_dropout={train.get('covariate_dropout', 0)}",
        ),
        (
            "outcome",
            f"osteoporosis: T-score ≤ {manifest_config.get('t_score_threshold', -2.5)} (else the label column)",
        ),
        ("epochs (max), patience", f"{train.get('epochs')}, {train.get('patience')}"),
        (
            "optimiser, learning rate, batch",
            f"{train.get('optimizer', 'sgd')}, {train.get('learning_rate')}, {train.get('batch_size')}",
        ),
        ("seed", config.seed),
        ("manifest", settings.get("manifest")),
        (
            "exclusions",
            f"{max(len(pd.read_csv(run_dir.exclusions)), 0)} rows (exclusions.csv)"
            if run_dir.exclusions.is_file()
            else "none recorded",
        ),
    ]
    page.table(pd.DataFrame(rows, columns=["item", "value"]).astype(str))


def _discrimination(page: Page, splits: dict, threshold: float, seed: int, out: Path, title: str) -> None:
    scored = {}
    for name, rows in splits.items():
        labels, probability = rows["label"].to_numpy(), rows["probability"].to_numpy()
        metrics = binary_metrics(labels, probability, threshold)
        scored[name] = with_intervals(metrics, labels, probability, groups=rows["patient_id"].to_numpy(), seed=seed)
    table = pd.DataFrame(
        [
            {
                "metric": name,
                **{split: scored[split][name] for split in scored},
                **{f"{split}_low": scored[split]["ci"]["metrics"][name][0] for split in scored},
                **{f"{split}_high": scored[split]["ci"]["metrics"][name][1] for split in scored},
            }
            for name in METRIC_NAMES
        ]
    )
    write_csv(out / "metrics.csv", table)
    shown = pd.DataFrame(
        {"metric": list(METRIC_NAMES), **{s: [ci_text(scored[s], n) for n in METRIC_NAMES] for s in scored}}
    )
    test = scored["test"]
    low, high = test["ci"]["auc_delong"]
    plot_roc({"test": (splits["test"]["label"], splits["test"]["probability"])}, out / "figures" / "roc.png", title)
    page.table(shown, caption=f"At threshold {threshold:.4g}; value (95 % CI).").text(
        f"CIs: {test['ci']['method']}, {test['ci']['n_resamples']} resamples, seed {seed}; test AUC DeLong 95 % CI "
        f"{low:.3f}–{high:.3f}. Test: {test['n']} images of {test['ci']['n_patients']} patients "
        f"(tp={test['tp']} fp={test['fp']} tn={test['tn']} fn={test['fn']}).",
        note=True,
    ).figure(out / "figures" / "roc.png", "Test ROC curve")


def _calibration(page: Page, splits: dict, run_dir: RunDir, out: Path) -> None:
    raw = pd.read_csv(run_dir.predictions)
    recalibration = run_recalibration(run_dir.path)
    rows, curves = [], {}
    for split in ("val", "test"):
        part = raw[raw["split"] == split]
        rows.append(
            {"split": split, "probability": "model's own", **calibration_metrics(part["label"], part["probability"])}
        )
        if recalibration is not None:
            reported = splits[split]
            rows.append(
                {
                    "split": split,
                    "probability": f"recalibrated ({recalibration.method})",
                    **calibration_metrics(reported["label"], reported["probability"]),
                }
            )
    test = raw[raw["split"] == "test"]
    curves["model's own"] = (test["label"].to_numpy(), test["probability"].to_numpy())
    if recalibration is not None:
        curves[f"recalibrated ({recalibration.method})"] = (
            splits["test"]["label"].to_numpy(),
            splits["test"]["probability"].to_numpy(),
        )
    table = pd.DataFrame(rows)
    write_csv(out / "calibration.csv", table)
    write_csv(out / "reliability_test.csv", reliability_data(splits["test"]["label"], splits["test"]["probability"]))
    plot_reliability(curves, out / "figures" / "reliability_test.png", title="Calibration — test split")
    columns = [
        "split",
        "probability",
        *(k for k in CALIBRATION_METRICS if k not in ("prevalence", "mean_predicted")),
        "n",
    ]
    page.table(table[[c for c in columns if c in table]])
    if recalibration is None:
        page.text(
            "Not recalibrated: `osteo calibrate --run RUN --method logistic|isotonic|temperature` fits a "
            "recalibration on the validation split; evaluate, threshold, export and this report then use it.",
            note=True,
        )
    else:
        page.text(
            f"Recalibrated with {recalibration.method} ({_parameters_text(recalibration)}) "
            "fitted on the validation split; the test rows show its effect on unseen patients. The exported "
            "model serves the recalibrated probability.",
            note=True,
        )
    page.figure(
        out / "figures" / "reliability_test.png", "Reliability diagram, test split (bins with Wilson 95 % CIs, LOWESS)"
    )


def _parameters_text(recalibration) -> str:
    if recalibration.method == "isotonic":
        return f"{len(recalibration.parameters['x'])} isotonic knots"
    return ", ".join(f"{k} {v:.4g}" for k, v in recalibration.parameters.items())


def _threshold(page: Page, run_dir: RunDir, threshold: float, out: Path) -> None:
    record = threshold_record(run_dir.path)
    source = (
        f"chosen on the validation split for {record['target']}" if record else "the training config's (default 0.5)"
    )
    table = threshold_table(run_dir.path, chosen=threshold)
    write_csv(out / "threshold_table.csv", table)
    test = table[table["split"] == "test"]
    shown = pd.DataFrame(
        {
            "threshold": test["threshold"],
            "chosen": np.where(test["chosen"], "◀", ""),
            **{
                name: [
                    f"{v:.3f} ({lo:.3f}–{hi:.3f})" if pd.notna(lo) else f"{v:.3f}"
                    for v, lo, hi in zip(test[name], test[f"{name}_low"], test[f"{name}_high"])
                ]
                for name in ("recall", "specificity", "precision", "npv")
            },
        }
    )
    page.text(
        f"Output: the probability of osteoporosis; label 1 when probability ≥ {threshold:.4g} ({source}). "
        "Test-split metrics (95 % CI) at candidate thresholds; validation rows in threshold_table.csv."
    ).table(shown)


def _decision(page: Page, test: pd.DataFrame, config: TrainConfig, out: Path) -> None:
    label = model_label(config.mode)
    write_decision_curve(
        {label: (test["label"].to_numpy(), test["probability"].to_numpy())},
        out / "decision_curve.csv",
        out / "figures" / "decision_curve.png",
        title="Decision curve — test split",
    )
    page.text(
        "Net benefit = TP/n − FP/n · pt/(1 − pt) at threshold probability pt, against treating everyone and "
        "no one (Vickers & Elkin 2006); the model helps where its curve is above both."
    ).figure(out / "figures" / "decision_curve.png", "Decision curve, test split")


def _scored_rows(test: pd.DataFrame, cohort: pd.DataFrame | None) -> pd.DataFrame:
    """The test predictions with the cohort's covariate and manifest columns (matched by image)."""
    if cohort is None:
        return test.reset_index(drop=True)
    extra = cohort.drop(columns=[c for c in ("label", "patient_id") if c in cohort]).drop_duplicates("image")
    return test.merge(extra, on="image", how="left", validate="one_to_one").reset_index(drop=True)


def _subgroup_view(table: pd.DataFrame) -> pd.DataFrame:
    def text(row, name):
        value, low, high = row[name], row[f"{name}_low"], row[f"{name}_high"]
        if pd.isna(value):
            return "—"
        return f"{value:.3f}" if pd.isna(low) else f"{value:.3f} ({low:.3f}–{high:.3f})"

    return pd.DataFrame(
        {
            "subgroup": table["subgroup"],
            "level": table["level"],
            "n": table["n"],
            "positives": table["positives"],
            **{name: [text(r, name) for _, r in table.iterrows()] for name in ("auc", "recall", "specificity")},
            "note": table["note"],
        }
    )


def _failures(page: Page, run_dir: RunDir, config: TrainConfig, per_kind: int, out: Path) -> None:
    table = write_failures(run_dir.path, out / "failures", per_kind=per_kind)
    page.text(
        f"The {per_kind} most confident false positives and false negatives of the test split, with their "
        "covariates" + (" and Grad-CAM maps (what the image branch looked at)." if uses_images(config.mode) else ".")
    )
    shown = table.drop(columns=[c for c in ("figure",) if c in table])
    page.table(shown)
    if uses_images(config.mode) and (out / "failures" / "failures.png").is_file():
        page.figure(out / "failures" / "failures.png", "Most confident errors: Grad-CAM")


def _sample_size(page: Page, splits: dict, cohort, run_dir: RunDir, config: TrainConfig, out: Path) -> None:
    train = pd.read_csv(run_dir.splits).query("split == 'train'")
    prevalence = float(train["label"].mean())
    test = splits["test"]
    auc = binary_metrics(test["label"], test["probability"])["auc"]
    rows = []
    predictors = _predictor_parameters(run_dir, config)
    if predictors:
        development = development_sample_size(prevalence, predictors, c_statistic=min(max(auc, 0.51), 0.99))
        rows.append(
            {
                "question": f"minimum development size (Riley et al. 2020; {predictors} covariate parameters, "
                f"prevalence {prevalence:.2f}, C {auc:.2f})",
                "required": development.n,
                "this run": len(train),
            }
        )
    validation = validation_sample_size(min(max(auc, 0.51), 0.99), prevalence, ci_width=_AUC_CI_WIDTH)
    rows.append(
        {
            "question": f"test set for a 95 % AUC CI of width {_AUC_CI_WIDTH} (Hanley & McNeil 1982, AUC {auc:.2f})",
            "required": validation.n,
            "this run": len(test),
        }
    )
    table = pd.DataFrame(rows)
    write_csv(out / "sample_size.csv", table)
    page.text(
        "Riley et al.'s criteria apply to the covariate model's parameters; no accepted method sizes a CNN's "
        "image inputs (say so in the paper; `osteo plan` computes these for other inputs)."
    ).table(table)


def _predictor_parameters(run_dir: RunDir, config: TrainConfig) -> int:
    """The covariate model's candidate parameters (its encoded features); 0 for an image-only model."""
    if not run_dir.encoder.is_file():
        return 0
    return len(read_json(run_dir.encoder).get("feature_names", []))
