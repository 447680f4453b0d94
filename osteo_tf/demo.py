"""``osteo demo``: the whole method on the embedded phantom, in a few minutes on a CPU.

Generates a synthetic hip cohort, trains an image-only, an ensemble (image + covariates)
and a covariate-only model on one shared patient-grouped 8:1:1 split, and prints the
papers' seven metrics side by side. Everything lands in ``out``::

    out/phantom/            the cohort (manifest.csv, images/, masks/, cohort.json)
    out/runs/<mode>/        one complete run folder per model (see RunDir)
    out/roc.png             test ROC curves of the three models in one figure
    out/summary.json        {"image_only": {metric: value}, "ensemble": {...}, "covariates_only": {...}}
    out/summary.csv         the printed table: each metric and its 95 % CI (bootstrap over
                            patients, 2,000 resamples, seeded) per model
    out/comparison.json     each model's test AUC with its 95 % DeLong CI, the paired comparison
                            of ensemble vs image-only (DeLong, bootstrap CIs of each metric's
                            difference, McNemar), and the naive late fusion reference

The defaults are sized for a 2-core CPU (ResNet-18 from random initialisation, 48 px,
960 training images, up to 40 epochs with patience 12); the papers' own settings are
ImageNet weights at 224–600 px, up to 100 epochs with patience 20.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from osteo_tf.console import log
from osteo_tf.data.synthetic import make_cohort
from osteo_tf.demo_settings import DEMO_OUT, DemoSettings
from osteo_tf.evaluation.bootstrap import compare_predictions, with_intervals
from osteo_tf.evaluation.delong import delong_ci, delong_test
from osteo_tf.evaluation.fusion import naive_late_probability
from osteo_tf.evaluation.metrics import METRIC_NAMES, ci_text, plot_roc
from osteo_tf.io import read_json, write_csv, write_json
from osteo_tf.runs.cohort import load_cohort
from osteo_tf.runs.config import TrainConfig
from osteo_tf.training.train import train
from osteo_tf.vocabulary import MODES as DEMO_MODES

__all__ = ["compare_models", "DemoSettings", "format_table", "run_demo", "summary_frame"]


def run_demo(out: str | Path = DEMO_OUT, settings: DemoSettings = DemoSettings(), verbose: int | str = "auto") -> dict:
    """Runs the demo into ``out`` and returns the summary dict (mode → metrics)."""
    out = Path(out)
    started = time.time()
    configs = {  # checked before the phantom is generated: a bad option costs nothing
        mode: TrainConfig(
            backbone=settings.backbone,
            mode=mode,
            image_size=settings.image_size,
            epochs=settings.epochs,
            patience=settings.patience,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            seed=settings.seed,
        )
        for mode in DEMO_MODES
    }
    log(
        f"stage 1/4: generating a synthetic hip cohort of {settings.n} subjects at {settings.image_size} px "
        f"in {out / 'phantom'}"
    )
    manifest = make_cohort("hip", settings.n, out / "phantom", seed=settings.seed, image_size=settings.image_size)
    cohort = load_cohort(manifest, configs["ensemble"])
    runs, summary, curves = {}, {}, {}
    for index, (mode, config) in enumerate(configs.items(), start=1):
        log(f"stage 2/4: training model {index}/{len(DEMO_MODES)}: {mode}")
        run = out / "runs" / mode
        if (run / "COMPLETE").is_file():
            log(f"{run} is already complete; reusing it")
        else:  # a run killed half-way resumes from its last epoch
            train(manifest, run, config, cohort=cohort, verbose=verbose)
        predictions = pd.read_csv(run / "predictions.csv")
        test = predictions[predictions["split"] == "test"]
        curves[mode] = (test["label"].to_numpy(), test["probability"].to_numpy())
        summary[mode] = _read_test_metrics(run)
        runs[mode] = run
    log("stage 3/4: writing the comparison")
    plot_roc(curves, out / "roc.png", title="Phantom hip cohort — test split")
    write_csv(out / "summary.csv", summary_frame(summary))
    write_json(out / "summary.json", {mode: {k: summary[mode][k] for k in METRIC_NAMES} for mode in DEMO_MODES})
    comparison = compare_models(curves, patients=test["patient_id"].to_numpy(), seed=settings.seed)
    write_json(out / "comparison.json", comparison)
    log(f"stage 4/4: done in {time.time() - started:.0f} s")
    print()
    print(format_table(summary))
    print()
    for mode, (auc, low, high) in comparison["auc_ci"].items():
        print(f"AUC {mode:16} {auc:.3f} (95 % CI {low:.3f}–{high:.3f}, DeLong)")
    test = comparison["ensemble_vs_image_only"]
    paired = comparison["paired"]
    accuracy = paired["difference"]["accuracy"]
    print(
        f"ensemble vs image_only: AUC difference {test['auc_a'] - test['auc_b']:+.3f}, "
        f"DeLong p = {test['p_value']:.3g}; "
        f"accuracy difference {accuracy['estimate']:+.3f} (95 % CI {accuracy['low']:+.3f} to {accuracy['high']:+.3f}), "
        f"McNemar p = {paired['mcnemar']['p_value']:.3g}"
    )
    print(
        "naive late fusion (image-only + covariates-only logits, no training): "
        f"AUC {comparison['naive_late_fusion_auc']:.3f}"
    )
    print()
    print(f"ROC figure:      {out / 'roc.png'}")
    print(f"summary:         {out / 'summary.json'}  ({out / 'summary.csv'})")
    for mode, run in runs.items():
        print(f"{mode:16} model {run / 'model.keras'}, history {run / 'history.csv'}")
    return {mode: {k: summary[mode][k] for k in METRIC_NAMES} for mode in DEMO_MODES}


def compare_models(curves: dict[str, tuple], *, patients=None, seed: int = 0) -> dict:
    """AUC CIs, ensemble vs image-only (paired) and naive late fusion from the test predictions.

    Args:
        curves: ``{mode: (labels, probabilities)}`` on the same test images, in the same order.
        patients: the test images' patient ids (the bootstrap's resampling unit).
        seed: seeds the bootstrap.

    Returns:
        ``{"auc_ci", "ensemble_vs_image_only" (DeLong), "paired"
        (:func:`~osteo_tf.evaluation.bootstrap.compare_predictions`), "naive_late_fusion_auc",
        "test_subjects"}``.
    """
    labels = curves["ensemble"][0]
    naive = naive_late_probability(curves["image_only"][1], curves["covariates_only"][1])
    paired = compare_predictions(labels, curves["ensemble"][1], curves["image_only"][1], groups=patients, seed=seed)
    return {
        "auc_ci": {mode: list(delong_ci(y, p)) for mode, (y, p) in curves.items()},
        "ensemble_vs_image_only": delong_test(labels, curves["ensemble"][1], curves["image_only"][1]).to_dict(),
        "paired": {k: paired[k] for k in ("n", "difference", "mcnemar")},
        "naive_late_fusion_auc": delong_ci(labels, naive)[0],
        "test_subjects": int(len(labels)),
    }


def _read_test_metrics(run: Path) -> dict:
    """The run's test metrics with their CIs (computed now for a run folder from before CIs)."""
    metrics = read_json(run / "metrics.json")["test"]
    if "ci" not in metrics:
        test = pd.read_csv(run / "predictions.csv").query("split == 'test'")
        labels, probability = test["label"].to_numpy(), test["probability"].to_numpy()
        metrics = with_intervals(metrics, labels, probability, groups=test["patient_id"].to_numpy())
    return metrics


def summary_frame(summary: dict[str, dict]) -> pd.DataFrame:
    """One row per metric: each model's value and its 95 % CI bounds (``<mode>_low``, ``<mode>_high``).

    Args:
        summary: ``{mode: test metrics with their "ci" block}``.

    Returns:
        The frame written to ``summary.csv``.
    """
    rows = []
    for name in METRIC_NAMES:
        row = {"metric": name}
        for mode, metrics in summary.items():
            low, high = metrics["ci"]["metrics"][name]
            row.update({mode: metrics[name], f"{mode}_low": low, f"{mode}_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def format_table(summary: dict[str, dict]) -> str:
    """Metric rows × model columns, each ``value (95 % CI)`` with 3 decimals, as plain text.

    Args:
        summary: ``{mode: test metrics with their "ci" block}``.

    Returns:
        The table.
    """
    table = pd.DataFrame({mode: {name: ci_text(m, name) for name in METRIC_NAMES} for mode, m in summary.items()})
    return "test split, 95 % CIs: bootstrap over patients (2,000 resamples)\n" + table.to_string()
