"""Does the ensemble use the covariates? Each fusion variant against image-only and against
naive late fusion, fold by fold, from an experiment's result records.

*Naive late fusion* is the reference any trained fusion must reach: for each (repeat, fold)
the image-only and the covariates-only models' logits of the same test images are added,
``logit(p) = logit(p_image) + logit(p_covariates)``, with no training at all (the two models
are conditionally independent evidence if the inputs are). Only its AUC is a fair reference:
the sum counts the prior log-odds twice, which shifts every thresholded metric.

:func:`fusion_table` gives one row per backbone × model (each ensemble variant, naive late
fusion): mean test AUC over fits, its paired difference to image-only (mean, 95 % t-CI, in
how many fits it is higher, paired test) and to naive late fusion. Pure pandas / SciPy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from osteo_tf.evaluation.metrics import binary_metrics
from osteo_tf.evaluation.stats import compare, describe
from osteo_tf.vocabulary import MODEL_ORDER

__all__ = ["NAIVE_LATE", "NAIVE_LATE_NAME", "fusion_table", "naive_late_fusion", "naive_late_probability"]

NAIVE_LATE = "naive_late_fusion"
NAIVE_LATE_NAME = "Naive late fusion (reference)"
_EPS = 1e-7


def naive_late_fusion(results: pd.DataFrame) -> pd.DataFrame:
    """Rows of a reference model ``naive_late_fusion`` per backbone and (repeat, fold).

    Args:
        results: one row per fit with ``backbone, mode, repeat, fold, test_predictions``
            (as :func:`osteo_tf.experiments.report.load_results` reads them); covariates-only
            fits may carry any backbone (the runner's are ``"none"``).

    Returns:
        Rows with the same columns: ``mode`` = ``naive_late_fusion``, the metrics of the
        summed logits at threshold 0.5, and ``test_predictions``. Empty when no
        (repeat, fold) has both an image-only and a covariates-only fit on the same images.
    """
    covariates = {(r.repeat, r.fold): r for r in results[results["mode"] == "covariates_only"].itertuples()}
    rows = []
    for image in results[results["mode"] == "image_only"].itertuples():
        other = covariates.get((image.repeat, image.fold))
        if other is None:
            continue
        by_image = {p["image"]: p for p in other.test_predictions}
        if set(by_image) != {p["image"] for p in image.test_predictions}:
            continue
        fused = naive_late_probability(
            [p["probability"] for p in image.test_predictions],
            [by_image[p["image"]]["probability"] for p in image.test_predictions],
        )
        predictions = [{**p, "probability": float(q)} for p, q in zip(image.test_predictions, fused)]
        labels = [p["label"] for p in predictions]
        metrics = binary_metrics(labels, [p["probability"] for p in predictions], 0.5)
        row = {c: getattr(image, c) for c in results.columns if c not in metrics and hasattr(image, c)}
        row.update(
            metrics,
            mode=NAIVE_LATE,
            test_predictions=predictions,
            fit_id=f"{image.backbone}__{NAIVE_LATE}__r{image.repeat:02d}__f{image.fold:02d}",
        )
        if "test_images" in results:
            row["test_images"] = image.test_images
        rows.append(row)
    return pd.DataFrame(rows, columns=results.columns) if rows else results.iloc[0:0].copy()


def naive_late_probability(image, covariates) -> np.ndarray:
    """(n,) probabilities of the image-only and covariates-only models of the same cases → (n,)
    probabilities of their summed logits (clipped to [1e-7, 1 − 1e-7] first)."""

    def clipped_logit(p):
        return logit(np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS))

    return expit(clipped_logit(image) + clipped_logit(covariates))


def fusion_table(results: pd.DataFrame, metric: str = "auc") -> pd.DataFrame:
    """Each ensemble variant and naive late fusion against image-only, paired by (repeat, fold).

    Args:
        results: one row per fit (``backbone, mode, repeat, fold`` and the metric); ``mode``
            is the model label (``ensemble``, ``ensemble_late``, …, see
            :func:`osteo_tf.vocabulary.model_label`).
        metric: the test metric compared (default AUC).

    Returns:
        One row per backbone × model: ``n`` paired fits, ``mean`` (the model),
        ``mean_image_only``, ``diff`` (mean paired difference) with ``diff_ci_low/high``
        (95 % t-CI), ``higher`` (fits where the model beat image-only), ``p_value`` and
        ``test`` (paired t-test or Wilcoxon after Shapiro–Wilk; NaN below 3 pairs),
        ``diff_naive`` (mean paired difference to naive late fusion) and
        ``min_diff`` (the smallest per-fit difference to image-only).
    """
    reference = naive_late_fusion(results)
    table = pd.concat([results, reference], ignore_index=True) if len(reference) else results
    key = ["repeat", "fold"]
    rows = []
    for backbone in dict.fromkeys(table.loc[table["mode"] == "image_only", "backbone"]):
        part = table[table["backbone"] == backbone]
        image = part[part["mode"] == "image_only"].set_index(key)[metric]
        naive = part[part["mode"] == NAIVE_LATE].set_index(key)[metric]
        present = set(part["mode"])
        models = [m for m in MODEL_ORDER if m in present and m.startswith("ensemble")]
        models += sorted(m for m in present if m.startswith("ensemble") and m not in MODEL_ORDER)
        models += [NAIVE_LATE] if len(naive) else []
        for model in models:
            values = part[part["mode"] == model].set_index(key)[metric]
            shared = values.index.intersection(image.index)
            if not len(shared):
                continue
            diff = values.loc[shared].to_numpy() - image.loc[shared].to_numpy()
            ci = describe(diff)
            test = (
                compare(values.loc[shared].to_numpy(), image.loc[shared].to_numpy(), paired=True)
                if len(shared) >= 3
                else None
            )
            with_naive = values.index.intersection(naive.index)
            rows.append(
                {
                    "backbone": backbone,
                    "model": model,
                    "metric": metric,
                    "n": len(shared),
                    "mean": float(values.loc[shared].mean()),
                    "mean_image_only": float(image.loc[shared].mean()),
                    "diff": float(diff.mean()),
                    "diff_ci_low": ci["ci_low"],
                    "diff_ci_high": ci["ci_high"],
                    "min_diff": float(diff.min()),
                    "higher": int((diff > 0).sum()),
                    "p_value": np.nan if test is None else test.p_value,
                    "test": "" if test is None else test.test,
                    "diff_naive": float((values.loc[with_naive] - naive.loc[with_naive]).mean())
                    if len(with_naive)
                    else np.nan,
                }
            )
    columns = [
        "backbone",
        "model",
        "metric",
        "n",
        "mean",
        "mean_image_only",
        "diff",
        "diff_ci_low",
        "diff_ci_high",
        "min_diff",
        "higher",
        "p_value",
        "test",
        "diff_naive",
    ]
    return pd.DataFrame(rows, columns=columns)
