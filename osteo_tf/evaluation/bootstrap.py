"""Confidence intervals for one run's metrics, and the paired comparison of two runs.

TRIPOD+AI 23a and CLAIM 29 ask for every performance measure with its uncertainty. Here:

* **Bootstrap over patients, not images** (images of one patient are not independent): the
  resampling unit is ``patient_id``; a drawn patient brings all of their images. SciPy's
  :func:`scipy.stats.bootstrap` draws the resamples and forms the interval (``percentile``
  by default, ``bca`` on request); the statistic it is handed computes all seven metrics of
  :mod:`osteo_tf.evaluation.metrics` at once from per-patient confusion counts and, for the
  AUC, a weighted Mann–Whitney sum (a drawn patient's weight = how often they were drawn), so
  2,000 resamples of a few hundred patients take milliseconds. Seeded: the same seed, data
  and options give the same interval on every machine.
* **DeLong's CI for the AUC** (:func:`osteo_tf.evaluation.delong.delong_ci`) beside the
  bootstrap one; DeLong treats images as independent cases (say so when patients have
  several images).
* **Paired comparison** of two models scored on the same test patients: DeLong's test for
  the AUCs; bootstrap CIs of each metric's difference, both models evaluated on the *same*
  resampled patients; McNemar's test (statsmodels; exact binomial when fewer than 25
  discordant images) for accuracy at each model's own threshold.

A resample may lack a class (tiny test sets): the AUC is then undefined in that resample;
its interval is reported as ``None`` when any resample is undefined, never a number formed
by silently dropping resamples. Degenerate data (every resample giving the same value) give
a zero-width percentile interval and an undefined (None) BCa one.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats as st

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.delong import delong_ci, delong_test
from osteo_tf.evaluation.metrics import METRIC_NAMES, binary_metrics

__all__ = [
    "BOOTSTRAP_METHODS",
    "CONFIDENCE",
    "N_RESAMPLES",
    "bootstrap_metrics",
    "compare_predictions",
    "metric_cis",
    "with_intervals",
]

N_RESAMPLES = 2000
CONFIDENCE = 0.95
BOOTSTRAP_METHODS = ("percentile", "bca")
_SCIPY_METHOD = {"percentile": "percentile", "bca": "BCa"}


class _Resampled:
    """The seven metrics of many patient resamples at once (the statistic handed to SciPy).

    Rows (images) are grouped by patient; ``__call__`` gets index arrays (..., n_drawn) of
    drawn patients and returns (len(METRIC_NAMES), ...) metric values.
    """

    def __init__(self, y_true: np.ndarray, y_score: np.ndarray, groups: np.ndarray, threshold: float) -> None:
        _, self.group_of_row = np.unique(groups, return_inverse=True)
        self.n_groups = int(self.group_of_row.max()) + 1
        predicted = y_score >= threshold
        cells = {
            "tp": predicted & (y_true == 1),
            "fp": predicted & (y_true == 0),
            "tn": ~predicted & (y_true == 0),
            "fn": ~predicted & (y_true == 1),
        }
        self.counts = {k: np.bincount(self.group_of_row, v, self.n_groups) for k, v in cells.items()}
        levels, self.level = np.unique(y_score, return_inverse=True)
        self.n_levels = levels.size
        self.positive = y_true == 1

    def weights(self, drawn: np.ndarray) -> np.ndarray:
        """(B, n_groups): how often each patient was drawn in each of the B resamples."""
        b = drawn.shape[0]
        flat = drawn + self.n_groups * np.arange(b)[:, None]
        return np.bincount(flat.ravel(), minlength=b * self.n_groups).reshape(b, self.n_groups).astype(np.float64)

    def auc(self, weight: np.ndarray) -> np.ndarray:
        """(B,) weighted Mann–Whitney AUC (ties ½); NaN where a resample lacks a class."""
        b = weight.shape[0]
        row_weight = weight[:, self.group_of_row]  # (B, n_rows)
        per_level = []
        for mask in (self.positive, ~self.positive):
            flat = (self.level[mask] + self.n_levels * np.arange(b)[:, None]).ravel()
            per_level.append(
                np.bincount(flat, row_weight[:, mask].ravel(), b * self.n_levels).reshape(b, self.n_levels)
            )
        pos, neg = per_level
        below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each level
        pairs = pos.sum(1) * neg.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, (pos * (below + 0.5 * neg)).sum(1) / pairs, np.nan)

    def __call__(self, drawn: np.ndarray, axis: int = -1) -> np.ndarray:
        drawn = np.moveaxis(np.asarray(drawn), axis, -1)
        lead = drawn.shape[:-1]
        drawn = drawn.reshape(-1, drawn.shape[-1])
        weight = self.weights(drawn)
        tp, fp, tn, fn = (weight @ self.counts[k] for k in ("tp", "fp", "tn", "fn"))

        def ratio(a, b):
            return np.divide(a, b, out=np.zeros_like(a), where=b > 0)  # metrics.py's zero_division=0

        values = {
            "accuracy": ratio(tp + tn, tp + fp + tn + fn),
            "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn),
            "specificity": ratio(tn, tn + fp),
            "npv": ratio(tn, tn + fn),
            "f1": ratio(2 * tp, 2 * tp + fp + fn),
            "auc": self.auc(weight),
        }
        return np.stack([values[name] for name in METRIC_NAMES]).reshape((len(METRIC_NAMES), *lead))


def _check_options(n_resamples: int, confidence: float, method: str) -> None:
    if method not in BOOTSTRAP_METHODS:
        raise OsteoInputError(
            f"method={method!r} is not a bootstrap interval; choose one of {', '.join(BOOTSTRAP_METHODS)}",
            parameter="method",
        )
    if not 0.5 < confidence < 1.0:
        raise OsteoInputError(f"confidence={confidence} must be in (0.5, 1), e.g. 0.95", parameter="confidence")
    if int(n_resamples) < 100:
        raise OsteoInputError(
            f"n_resamples={n_resamples} is too few for an interval; use at least 100 (default {N_RESAMPLES})",
            parameter="n_resamples",
        )


def _groups(groups, n: int) -> np.ndarray:
    if groups is None:
        return np.arange(n)
    groups = np.asarray(groups).reshape(-1)
    if groups.size != n:
        raise OsteoInputError(f"groups has {groups.size} values for {n} predictions", parameter="groups")
    return groups.astype(str)


def _interval(statistic, n_groups: int, n_resamples: int, confidence: float, method: str, seed: int) -> np.ndarray:
    """(len(METRIC_NAMES), 2) bootstrap bounds of ``statistic`` over ``n_groups`` patients; NaN where undefined."""
    data = (np.arange(n_groups),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy's DegenerateDataWarning: reported as None below
        result = st.bootstrap(
            data,
            statistic,
            n_resamples=int(n_resamples),
            vectorized=True,
            confidence_level=confidence,
            method=_SCIPY_METHOD[method],
            rng=np.random.default_rng(seed),
        )
    bounds = np.stack([result.confidence_interval.low, result.confidence_interval.high], axis=1)
    undefined = np.isnan(result.bootstrap_distribution).any(axis=-1)
    bounds[undefined] = np.nan
    return bounds


def bootstrap_metrics(
    y_true,
    y_score,
    threshold: float = 0.5,
    *,
    groups=None,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    method: str = "percentile",
    seed: int = 0,
) -> dict[str, tuple[float | None, float | None]]:
    """Bootstrap confidence intervals of the seven metrics, resampling patients.

    Args:
        y_true: (n,) 0/1 labels, one per image.
        y_score: (n,) predicted probabilities.
        threshold: a case is positive when ``y_score >= threshold``.
        groups: (n,) patient of each image (the resampling unit); None → each image its own.
        n_resamples: bootstrap resamples (≥ 100; default 2,000).
        confidence: the interval's coverage (default 0.95).
        method: ``"percentile"`` or ``"bca"`` (bias-corrected and accelerated).
        seed: seeds the resampling (numpy's default_rng).

    Returns:
        ``{metric: (low, high)}`` for every name in METRIC_NAMES; ``(None, None)`` where the
        interval is undefined (a resample without both classes, or BCa on degenerate data).
    """
    _check_options(n_resamples, confidence, method)
    y_true = np.asarray(y_true).astype(int).reshape(-1)
    y_score = np.asarray(y_score, dtype=np.float64).reshape(-1)
    binary_metrics(y_true, y_score, threshold)  # the same input checks and messages
    resampled = _Resampled(y_true, y_score, _groups(groups, y_true.size), threshold)
    bounds = _interval(resampled, resampled.n_groups, n_resamples, confidence, method, seed)
    return {name: _pair(bounds[i]) for i, name in enumerate(METRIC_NAMES)}


def _pair(bounds) -> tuple[float | None, float | None]:
    low, high = (float(b) for b in bounds)
    return (None, None) if math.isnan(low) or math.isnan(high) else (low, high)


def metric_cis(
    y_true,
    y_score,
    threshold: float = 0.5,
    *,
    groups=None,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    method: str = "percentile",
    seed: int = 0,
) -> dict:
    """The ``ci`` block written beside a run's metrics (``metrics.json``, ``evaluation_*.json``).

    Args:
        y_true, y_score, threshold, groups, n_resamples, confidence, method, seed: as
            :func:`bootstrap_metrics`.

    Returns:
        ``{"method", "confidence", "n_resamples", "seed", "unit", "n_patients", "metrics":
        {metric: [low, high]}, "auc_delong": [low, high]}``.
    """
    cis = bootstrap_metrics(
        y_true,
        y_score,
        threshold,
        groups=groups,
        n_resamples=n_resamples,
        confidence=confidence,
        method=method,
        seed=seed,
    )
    _, low, high = delong_ci(y_true, y_score, confidence)
    n_patients = len(np.unique(_groups(groups, np.size(y_true))))
    return {
        "method": f"bootstrap ({method}) over patients",
        "confidence": confidence,
        "n_resamples": int(n_resamples),
        "seed": int(seed),
        "unit": "patient" if groups is not None else "image",
        "n_patients": n_patients,
        "metrics": {name: list(bounds) for name, bounds in cis.items()},
        "auc_delong": [low, high],
    }


def with_intervals(metrics: dict, y_true, y_score, *, groups=None, seed: int = 0) -> dict:
    """``metrics`` (a :func:`binary_metrics` dict) with its ``ci`` block added (:func:`metric_cis`).

    Args:
        metrics: the point estimates, at ``metrics["threshold"]``.
        y_true, y_score, groups: the predictions they were computed from.
        seed: seeds the bootstrap.

    Returns:
        A new dict: ``metrics`` plus ``"ci"``.
    """
    return {**metrics, "ci": metric_cis(y_true, y_score, metrics["threshold"], groups=groups, seed=seed)}


def compare_predictions(
    y_true,
    score_a,
    score_b,
    *,
    thresholds: tuple[float, float] = (0.5, 0.5),
    groups=None,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict:
    """Paired comparison of two models scored on the same test images.

    Args:
        y_true: (n,) 0/1 labels.
        score_a, score_b: (n,) probabilities of model A and model B for the same images.
        thresholds: each model's decision threshold.
        groups: (n,) patient of each image (the bootstrap's resampling unit).
        n_resamples, confidence, seed: as :func:`bootstrap_metrics` (percentile intervals).

    Returns:
        ``{"n", "metrics_a", "metrics_b", "difference": {metric: {"estimate", "low", "high"}}
        (A − B, same resampled patients for both), "delong": DeLong's test of the AUCs,
        "mcnemar": {"statistic", "p_value", "exact", "a_right_b_wrong", "a_wrong_b_right"}}``.
    """
    from statsmodels.stats.contingency_tables import mcnemar

    _check_options(n_resamples, confidence, "percentile")
    y_true = np.asarray(y_true).astype(int).reshape(-1)
    a, b = (np.asarray(s, dtype=np.float64).reshape(-1) for s in (score_a, score_b))
    if a.size != y_true.size or b.size != y_true.size:
        raise OsteoInputError(f"{y_true.size} labels but {a.size} and {b.size} scores", parameter="score_b")
    metrics_a, metrics_b = binary_metrics(y_true, a, thresholds[0]), binary_metrics(y_true, b, thresholds[1])
    patients = _groups(groups, y_true.size)
    stat_a, stat_b = _Resampled(y_true, a, patients, thresholds[0]), _Resampled(y_true, b, patients, thresholds[1])

    def difference(drawn, axis=-1):
        return stat_a(drawn, axis) - stat_b(drawn, axis)

    bounds = _interval(difference, stat_a.n_groups, n_resamples, confidence, "percentile", seed)
    right_a, right_b = (a >= thresholds[0]) == y_true, (b >= thresholds[1]) == y_true
    table = np.array([[np.sum(right_a & right_b), np.sum(right_a & ~right_b)], [np.sum(~right_a & right_b), 0]])
    table[1, 1] = np.sum(~right_a & ~right_b)
    exact = bool(table[0, 1] + table[1, 0] < 25)
    test = mcnemar(table, exact=exact, correction=True)
    return {
        "n": int(y_true.size),
        "metrics_a": metrics_a,
        "metrics_b": metrics_b,
        "difference": {
            name: {"estimate": metrics_a[name] - metrics_b[name], **dict(zip(("low", "high"), _pair(bounds[i])))}
            for i, name in enumerate(METRIC_NAMES)
        },
        "delong": delong_test(y_true, a, b).to_dict(),
        "mcnemar": {
            "test": "McNemar's test" + (" (exact binomial)" if exact else " (χ², continuity-corrected)"),
            "statistic": float(test.statistic),
            "p_value": float(test.pvalue),
            "exact": exact,
            "a_right_b_wrong": int(table[0, 1]),
            "a_wrong_b_right": int(table[1, 0]),
        },
    }
