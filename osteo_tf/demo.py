"""``osteo demo``: the whole method on the embedded phantom, in a few minutes on a CPU.

Generates a synthetic hip cohort, trains an image-only, an ensemble (image + covariates)
and a covariate-only model on one shared patient-grouped 8:1:1 split, and prints the
papers' seven metrics side by side. Everything lands in ``out``::

    out/phantom/            the cohort (manifest.csv, images/, masks/, cohort.json)
    out/runs/<mode>/        one complete run folder per model (see RunDir)
    out/roc.png             test ROC curves of the three models in one figure
    out/summary.json        {"image_only": {metric: value}, "ensemble": {...}, "covariates_only": {...}}
    out/summary.csv         the printed table
    out/comparison.json     each model's test AUC with its 95 % DeLong CI, DeLong's test of
                            ensemble vs image-only, and the naive late fusion reference

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
from osteo_tf.evaluation.delong import delong_ci, delong_test
from osteo_tf.evaluation.fusion import naive_late_probability
from osteo_tf.evaluation.metrics import METRIC_NAMES, plot_roc
from osteo_tf.io import read_json, write_csv, write_json
from osteo_tf.runs.cohort import load_cohort
from osteo_tf.runs.config import TrainConfig
from osteo_tf.training.train import train
from osteo_tf.vocabulary import MODES as DEMO_MODES

__all__ = ["compare_models", "DemoSettings", "format_table", "run_demo"]


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
    table = pd.DataFrame({mode: {k: summary[mode][k] for k in METRIC_NAMES} for mode in DEMO_MODES})
    write_csv(out / "summary.csv", table.reset_index(names="metric"))
    write_json(out / "summary.json", {mode: {k: summary[mode][k] for k in METRIC_NAMES} for mode in DEMO_MODES})
    comparison = compare_models(curves)
    write_json(out / "comparison.json", comparison)
    log(f"stage 4/4: done in {time.time() - started:.0f} s")
    print()
    print(format_table(table))
    print()
    for mode, (auc, low, high) in comparison["auc_ci"].items():
        print(f"AUC {mode:16} {auc:.3f} (95 % CI {low:.3f}–{high:.3f}, DeLong)")
    test = comparison["ensemble_vs_image_only"]
    print(
        f"ensemble vs image_only: AUC difference {test['auc_a'] - test['auc_b']:+.3f}, DeLong p = {test['p_value']:.3g}"
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


def compare_models(curves: dict[str, tuple]) -> dict:
    """AUC CIs, DeLong ensemble vs image-only and naive late fusion from the test (labels, probabilities)."""
    labels = curves["ensemble"][0]
    naive = naive_late_probability(curves["image_only"][1], curves["covariates_only"][1])
    return {
        "auc_ci": {mode: list(delong_ci(y, p)) for mode, (y, p) in curves.items()},
        "ensemble_vs_image_only": delong_test(labels, curves["ensemble"][1], curves["image_only"][1]).to_dict(),
        "naive_late_fusion_auc": delong_ci(labels, naive)[0],
        "test_subjects": int(len(labels)),
    }


def _read_test_metrics(run: Path) -> dict:
    return read_json(run / "metrics.json")["test"]


def format_table(table: pd.DataFrame) -> str:
    """Metric rows × model columns, 3 decimals, as plain text."""
    return table.map(lambda v: f"{v:.3f}").to_string()
