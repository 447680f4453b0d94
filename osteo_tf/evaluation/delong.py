"""DeLong's test for two correlated ROC AUCs on one test set (hip-style single split).

DeLong, DeLong & Clarke-Pearson (1988), *Biometrics* 44:837, computed with the fast
algorithm of Sun & Xu (2014), *IEEE Signal Processing Letters* 21:1389: the placement
values come from mid-ranks, O(n log n) instead of the O(m·n) pairwise comparisons.
No maintained Python library provides DeLong's test (scipy and scikit-learn do not), so it
is implemented here in numpy; the tests check it against the direct pairwise computation
of the placement values and a small example worked by hand.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm

from osteo_tf.errors import OsteoInputError

__all__ = ["delong_ci", "delong_covariance", "delong_test", "DeLongResult", "midranks", "placement_values"]


def midranks(x: np.ndarray) -> np.ndarray:
    """Mid-ranks (1-based; ties share the mean of their ranks), Sun & Xu's Algorithm 1."""
    _, inverse, counts = np.unique(np.asarray(x), return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)  # rank of the last member of each tie group
    return (upper - (counts - 1) / 2.0)[inverse.reshape(-1)]


def placement_values(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong's structural components for k classifiers on the same cases.

    scores: (k, n) or (n,). Returns ``auc`` (k,), ``v10`` (k, m) — for each positive case the
    fraction of negatives it outranks (ties ½) — and ``v01`` (k, n_neg) — for each negative
    the fraction of positives that outrank it.
    """
    y_true = np.asarray(y_true).reshape(-1)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if scores.shape[1] != y_true.size:
        raise OsteoInputError(f"{y_true.size} labels but {scores.shape[1]} scores per classifier")
    if not np.isin(y_true, (0, 1)).all():
        raise OsteoInputError("labels must be 0/1")
    positive = y_true == 1
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        raise OsteoInputError("DeLong's test needs both classes in the test set")
    if not np.isfinite(scores).all():
        raise OsteoInputError("scores have non-finite values (NaN/inf)")
    aucs, v10, v01 = [], [], []
    for row in scores:
        x, y = row[positive], row[~positive]
        tx, ty, tz = midranks(x), midranks(y), midranks(np.concatenate([x, y]))
        aucs.append((tz[:m].sum() - m * (m + 1) / 2.0) / (m * n))
        v10.append((tz[:m] - tx) / n)
        v01.append(1.0 - (tz[m:] - ty) / m)
    return np.asarray(aucs), np.asarray(v10), np.asarray(v01)


def delong_covariance(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance matrix (k, k): S10/m + S01/n."""
    aucs, v10, v01 = placement_values(y_true, scores)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(aucs), len(aucs)))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(aucs), len(aucs)))
    return aucs, s10 / m + s01 / n


@dataclass(frozen=True)
class DeLongResult:
    """Two correlated AUCs, the z statistic of their difference and its two-sided p."""

    test: str
    auc_a: float
    auc_b: float
    z: float
    p_value: float
    variance: float  # of auc_a − auc_b

    def to_dict(self) -> dict:
        return asdict(self)


def delong_test(y_true, score_a, score_b) -> DeLongResult:
    """DeLong's test of AUC(a) = AUC(b) for two models scored on the same cases.

    ``z = (AUC_a − AUC_b) / √Var``; p two-sided from the standard normal. When the
    difference has zero variance (e.g. identical rankings) and the AUCs are equal, z = 0
    and p = 1.
    """
    aucs, cov = delong_covariance(y_true, np.vstack([np.reshape(score_a, -1), np.reshape(score_b, -1)]))
    difference = float(aucs[0] - aucs[1])
    variance = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if variance <= 1e-300:
        z = 0.0 if abs(difference) < 1e-15 else math.copysign(math.inf, difference)
    else:
        z = difference / math.sqrt(variance)
    p = float(2.0 * norm.sf(abs(z)))
    return DeLongResult("DeLong's test", float(aucs[0]), float(aucs[1]), z, p, max(variance, 0.0))


def delong_ci(y_true, scores, confidence: float = 0.95) -> tuple[float, float, float]:
    """AUC of one model with DeLong's (1988) confidence interval: (auc, low, high).

    The normal interval ``AUC ± z·SE`` from DeLong's variance, clipped to [0, 1]
    (as pROC's ``ci.auc(method="delong")``).
    """
    aucs, cov = delong_covariance(y_true, np.reshape(scores, (1, -1)))
    half = float(norm.ppf(0.5 + confidence / 2)) * math.sqrt(max(float(cov[0, 0]), 0.0))
    auc = float(aucs[0])
    return auc, max(0.0, auc - half), min(1.0, auc + half)
