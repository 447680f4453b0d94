"""The papers' seven metrics, ROC curve data and the image-only vs ensemble ROC figure.

Conventions for degenerate cases (documented, never a silent NaN): a ratio whose
denominator is zero (no predicted positives → precision; no negatives → specificity; …)
is 0.0, as scikit-learn's ``zero_division=0``; AUC needs both classes in ``y_true`` and
raises :class:`OsteoInputError` otherwise, because no number would be honest there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from osteo_tf.errors import OsteoInputError
from osteo_tf.io import atomic_path

__all__ = [
    "METRIC_NAMES",
    "binary_metrics",
    "ci_text",
    "format_metrics",
    "format_threshold",
    "metrics_line",
    "plot_roc",
    "roc_curve_data",
]

METRIC_NAMES = ("accuracy", "precision", "recall", "specificity", "npv", "f1", "auc")


def _ratio(numerator: int, denominator: int) -> float:
    return float(numerator) / denominator if denominator else 0.0


def _check(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).reshape(-1)
    y_score = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if y_true.shape != y_score.shape:
        raise OsteoInputError(f"y_true has {y_true.size} values but y_score has {y_score.size}")
    if y_true.size == 0:
        raise OsteoInputError("no predictions to score (empty y_true)")
    if not np.isin(y_true, (0, 1)).all():
        raise OsteoInputError(f"y_true must be 0/1, got values {sorted(set(y_true.tolist()))[:5]}")
    if not np.isfinite(y_score).all():
        raise OsteoInputError("y_score has non-finite values (NaN/inf): the model diverged")
    return y_true.astype(int), y_score


def binary_metrics(y_true, y_score, threshold: float = 0.5) -> dict[str, float | int]:
    """Accuracy, precision (PPV), recall (sensitivity), specificity, NPV, F1 and ROC AUC.

    y_true: (n,) 0/1 labels, 1 = osteoporosis. y_score: (n,) predicted probabilities.
    A case is called positive when ``y_score >= threshold``. Also returns the confusion
    counts ``tp, fp, tn, fn`` and ``n``.
    """
    y_true, y_score = _check(y_true, y_score)
    if len(np.unique(y_true)) < 2:
        raise OsteoInputError(
            f"AUC is undefined: all {y_true.size} cases have label {int(y_true[0])}; "
            "the evaluation set needs both classes"
        )
    predicted = (y_score >= threshold).astype(int)
    tp = int(np.sum((predicted == 1) & (y_true == 1)))
    fp = int(np.sum((predicted == 1) & (y_true == 0)))
    tn = int(np.sum((predicted == 0) & (y_true == 0)))
    fn = int(np.sum((predicted == 0) & (y_true == 1)))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "accuracy": _ratio(tp + tn, y_true.size),
        "precision": precision,
        "recall": recall,
        "specificity": _ratio(tn, tn + fp),
        "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "auc": float(roc_auc_score(y_true, y_score)),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "n": int(y_true.size),
        "threshold": float(threshold),
    }


def _confusion(metrics: dict) -> str:
    return f"tp={metrics['tp']} fp={metrics['fp']} tn={metrics['tn']} fn={metrics['fn']}"


def format_metrics(metrics: dict) -> list[str]:
    """:func:`binary_metrics` as a column: one indented line per metric, then the confusion counts.

    Args:
        metrics: a dict of :func:`binary_metrics`.

    Returns:
        Lines such as ``"  accuracy     0.8125"`` and ``"  confusion    tp=5 fp=1 tn=8 fn=2"``.
    """
    lines = [f"  {name:12} {metrics[name]:.4f}{_ci_suffix(metrics, name)}" for name in METRIC_NAMES]
    return lines + [f"  confusion    {_confusion(metrics)}"] + _ci_note(metrics)


def _ci_bounds(metrics: dict, name: str) -> tuple[float | None, float | None]:
    return tuple((metrics.get("ci") or {}).get("metrics", {}).get(name, (None, None)))


def _ci_suffix(metrics: dict, name: str) -> str:
    low, high = _ci_bounds(metrics, name)
    return "" if low is None else f"  (95 % CI {low:.4f}–{high:.4f})"


def _ci_note(metrics: dict) -> list[str]:
    block = metrics.get("ci")
    if not block:
        return []
    low, high = block["auc_delong"]
    return [
        f"  CIs: {block['method']}, {block['n_resamples']} resamples of {block['n_patients']} {block['unit']}s, "
        f"seed {block['seed']}; AUC DeLong 95 % CI {low:.4f}–{high:.4f}"
    ]


def ci_text(metrics: dict, name: str, digits: int = 3) -> str:
    """``"0.812 (0.741–0.870)"``: a metric and its bootstrap CI, or the value alone when it has none.

    Args:
        metrics: a metrics dict, with or without a ``ci`` block.
        name: one of METRIC_NAMES.
        digits: decimals.

    Returns:
        The text.
    """
    value = f"{metrics[name]:.{digits}f}"
    low, high = _ci_bounds(metrics, name)
    return value if low is None else f"{value} ({low:.{digits}f}–{high:.{digits}f})"


def metrics_line(metrics: dict) -> str:
    """:func:`binary_metrics` in one line: ``"accuracy 0.8125  …  auc 0.9000  (n=16, tp=5 fp=1 tn=8 fn=2)"``.

    Args:
        metrics: a dict of :func:`binary_metrics`.

    Returns:
        The line.
    """
    values = "  ".join(f"{name} {metrics[name]:.4f}" for name in METRIC_NAMES)
    return f"{values}  (n={metrics['n']}, {_confusion(metrics)})"


def format_threshold(run: str | Path, record: dict) -> list[str]:
    """A chosen threshold and the metrics at it, as ``osteo threshold`` prints them.

    Args:
        run: the run folder (as the user named it).
        record: the record of :func:`osteo_tf.evaluation.threshold.select_threshold`.

    Returns:
        The threshold line, then one line per split (val, test) that has metrics.
    """
    lines = [
        f"{run}: threshold {record['threshold']:.6g} ({record['target']}, chosen on the validation split; "
        f"recorded in threshold.json)"
    ]
    lines += [f"  {split:5} {metrics_line(record[split])}" for split in ("val", "test") if record[split]]
    return lines + [f"every metric with its 95 % CI at thresholds 0.05 … 0.95: {Path(run) / 'threshold_table.csv'}"]


def roc_curve_data(y_true, y_score) -> dict[str, list[float]]:
    """ROC curve points: false-positive rate, true-positive rate and the score thresholds."""
    y_true, y_score = _check(y_true, y_score)
    fpr, tpr, thresholds = roc_curve(y_true, y_score)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": np.minimum(thresholds, 1.0).tolist()}


def plot_roc(curves: dict[str, tuple], path: str | Path, title: str = "ROC") -> Path:
    """One figure with a ROC curve per model (e.g. image-only vs ensemble), AUC in the legend.

    curves: ``{model_name: (y_true, y_score)}``. Writes a PNG atomically; returns its path.
    """
    from matplotlib.figure import Figure  # the object API: no pyplot state, no backend switch

    path = Path(path)
    figure = Figure(figsize=(5, 5), dpi=120)
    axes = figure.subplots()
    for name, (y_true, y_score) in curves.items():
        roc = roc_curve_data(y_true, y_score)
        auc = roc_auc_score(*_check(y_true, y_score))
        axes.plot(roc["fpr"], roc["tpr"], label=f"{name} (AUC {auc:.3f})", linewidth=1.8)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    axes.set(
        xlabel="1 − specificity (false-positive rate)",
        ylabel="sensitivity (true-positive rate)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=title,
        aspect="equal",
    )
    axes.legend(loc="lower right")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary)
    return path
