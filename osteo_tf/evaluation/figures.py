"""Report figures: ROC curves image-only vs ensemble per backbone, and a forest plot of g.

ROC: with several runs per model, the mean ROC over runs with a ±1 SD band (each run's
curve interpolated onto a common false-positive-rate grid, as scikit-learn's CV ROC
example does), legend "mean AUC ± SD"; with one run, the single curve, and the DeLong
p-value in the legend when given. Every PNG is written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from osteo_tf.evaluation.stats import p_phrase
from osteo_tf.evaluation.tables import METRIC_TITLES, MODE_NAMES
from osteo_tf.io import atomic_path

__all__ = ["GRID", "mean_roc", "new_figure", "plot_forest", "plot_roc_comparison", "save_figure"]

GRID = np.linspace(0.0, 1.0, 201)


def new_figure(figsize: tuple[float, float]):
    """A figure and its axes from Matplotlib's object API (no pyplot state, no backend switch)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=120)
    return figure, figure.subplots()


def save_figure(figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary)
    return path


def mean_roc(runs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray | float]:
    """Mean and SD of the interpolated TPR over runs on :data:`GRID`, and the runs' AUCs."""
    curves, aucs = [], []
    for y_true, y_score in runs:
        fpr, tpr, _ = roc_curve(y_true, y_score)
        curve = np.interp(GRID, fpr, tpr)
        curve[0] = 0.0
        curves.append(curve)
        aucs.append(roc_auc_score(y_true, y_score))
    curves = np.asarray(curves)
    mean = curves.mean(axis=0)
    mean[-1] = 1.0
    sd = curves.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros_like(mean)
    return {
        "fpr": GRID,
        "tpr": mean,
        "sd": sd,
        "auc_mean": float(np.mean(aucs)),
        "auc_sd": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else 0.0,
        "n": len(aucs),
    }


def plot_roc_comparison(
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]],
    path: str | Path,
    title: str,
    *,
    delong_p: float | None = None,
) -> Path:
    """One backbone's ROC figure; ``curves`` maps mode → list of (y_true, y_score) runs."""
    figure, axes = new_figure((5, 5))
    for mode, runs in curves.items():
        label = MODE_NAMES.get(mode, mode)
        if len(runs) > 1:
            roc = mean_roc(runs)
            (line,) = axes.plot(
                roc["fpr"],
                roc["tpr"],
                linewidth=1.8,
                label=f"{label} (mean AUC {roc['auc_mean']:.3f} ± {roc['auc_sd']:.3f}, n={roc['n']})",
            )
            axes.fill_between(
                roc["fpr"],
                np.clip(roc["tpr"] - roc["sd"], 0, 1),
                np.clip(roc["tpr"] + roc["sd"], 0, 1),
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
        else:
            y_true, y_score = runs[0]
            fpr, tpr, _ = roc_curve(y_true, y_score)
            axes.plot(fpr, tpr, linewidth=1.8, label=f"{label} (AUC {roc_auc_score(y_true, y_score):.3f})")
    if delong_p is not None:
        axes.plot([], [], linestyle="none", label=f"DeLong's test, ensemble vs image-only: {p_phrase(delong_p)}")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    band = " (band: ±1 SD over runs)" if any(len(r) > 1 for r in curves.values()) else ""
    axes.set(
        xlabel="1 − specificity (false-positive rate)",
        ylabel="sensitivity (true-positive rate)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=title + band,
        aspect="equal",
    )
    axes.title.set_fontsize(9)
    axes.legend(loc="lower right", fontsize=7)
    return save_figure(figure, Path(path))


def plot_forest(comparison: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Hedges' g with its 95 % CI for every backbone × metric, one row each."""
    import matplotlib

    rows = comparison.reset_index(drop=True)
    figure, axes = new_figure((6.5, 1.2 + 0.25 * len(rows)))
    y = np.arange(len(rows))[::-1]
    backbones = list(dict.fromkeys(rows["backbone"]))
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row in rows.iterrows():
        colour = colours[backbones.index(row["backbone"]) % len(colours)]
        g, low, high = row["hedges_g"], row["g_ci_low"], row["g_ci_high"]
        if np.isfinite(g):
            axes.errorbar(g, y[i], xerr=[[g - low], [high - g]], fmt="o", color=colour, markersize=4, capsize=2)
    axes.axvline(0.0, color="black", linewidth=0.8)
    for bound in (-0.8, -0.5, -0.2, 0.2, 0.5, 0.8):
        axes.axvline(bound, color="grey", linewidth=0.5, linestyle=":")
    axes.set_yticks(
        y, [f"{r.backbone} · {METRIC_TITLES.get(r.metric, r.metric)}" for r in rows.itertuples()], fontsize=7
    )
    axes.set(xlabel="Hedges' g, ensemble vs image-only (95 % CI); > 0: ensemble higher", title=title)
    axes.title.set_fontsize(9)
    return save_figure(figure, Path(path))
