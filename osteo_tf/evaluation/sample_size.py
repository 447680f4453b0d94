"""Sample size for a prediction-model study (TRIPOD+AI 10, CLAIM 21): ``osteo plan``.

**Development** (binary outcome): the minimum sample size of Riley et al. 2020 (*Stat Med*
39:1296; *BMJ* 368:m441), the larger of

1. expected uniform shrinkage ≥ ``shrinkage`` (0.9): ``n = P / ((S − 1) ln(1 − R²cs / S))``;
2. a small optimism in apparent Nagelkerke R² (``r2_difference`` 0.05):
   ``S₂ = R²cs / (R²cs + δ · max R²cs)``, then (1) with S₂;
3. the overall risk estimated within ± ``margin`` (0.05): ``n = (1.96 / margin)² φ(1 − φ)``;

where P is the number of candidate predictor parameters, φ the prevalence and ``max R²cs =
1 − (φ^φ (1 − φ)^(1−φ))²``. Each criterion is rounded up, as the R package ``pmsampsize``
does. An anticipated C-statistic is turned into Cox–Snell R² as ``pmsampsize`` ≥ 1.1 does
(Riley et al. 2021, *Diagn Progn Res*): the linear predictor is N(0, 1) in non-events and
N(√2 Φ⁻¹(C), 1) in events, a logistic model is fitted on it, and its Nagelkerke R² times
max R²cs is the answer. ``pmsampsize`` fits that model to one million simulated patients;
here the same large-sample fit is computed exactly (Gauss–Hermite quadrature of the expected
log-likelihood), so the value is deterministic and equals the simulation's up to its Monte
Carlo error (checked in the tests).

**Test set**: the smallest n (at the expected prevalence) whose 95 % CI of the AUC is at most
``ci_width`` wide, with the AUC's standard error of Hanley & McNeil (1982, *Radiology*
143:29), ``SE² = [A(1−A) + (n₁−1)(Q₁−A²) + (n₀−1)(Q₂−A²)] / (n₁ n₀)``, Q₁ = A/(2−A),
Q₂ = 2A²/(1+A).

The Python ``pmsampsize`` package requires Python ≥ 3.12 (this project supports 3.10), so the
formulas are written here with numpy/SciPy; the tests check them against the published worked
example (Riley et al. 2020 / ``pmsampsize``'s documentation: R²cs 0.288, 24 parameters,
prevalence 0.174 → 623, 662, 221; n = 662, EPP 4.8), against a seeded simulation of the C → R²
conversion, and the Hanley–McNeil SE against the empirical SD of simulated AUCs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize
from scipy.special import log_expit
from scipy.stats import norm

from osteo_tf.errors import OsteoInputError

__all__ = [
    "DevelopmentSampleSize",
    "ValidationSampleSize",
    "auc_standard_error",
    "cox_snell_from_c",
    "development_sample_size",
    "max_cox_snell",
    "plan_lines",
    "validation_sample_size",
]

_Z = 1.959963984540054  # Φ⁻¹(0.975)
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(80)  # ∫ f(x) φ(x) dx ≈ Σ w f(x) / √(2π)
_WEIGHTS = _WEIGHTS / math.sqrt(2 * math.pi)


@dataclass(frozen=True)
class DevelopmentSampleSize:
    """Riley et al.'s criteria (each rounded up) and the minimum development sample size."""

    prevalence: float
    predictors: int
    cox_snell_r2: float
    c_statistic: float | None
    shrinkage: float
    criterion_shrinkage: int
    criterion_optimism: int
    criterion_risk: int
    n: int
    events: int
    events_per_parameter: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ValidationSampleSize:
    """The test-set size for a wanted AUC CI width, and the SE and width it gives."""

    auc: float
    prevalence: float
    ci_width: float
    n: int
    positives: int
    negatives: int
    standard_error: float
    achieved_width: float

    def to_dict(self) -> dict:
        return asdict(self)


def _check_fraction(value: float, name: str) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise OsteoInputError(f"{name}={value} must be between 0 and 1 (exclusive)", parameter=name)
    return value


def max_cox_snell(prevalence: float) -> float:
    """The largest Cox–Snell R² a binary outcome of this prevalence allows: 1 − (φ^φ (1−φ)^(1−φ))²."""
    p = _check_fraction(prevalence, "prevalence")
    return 1.0 - math.exp(2.0 * (p * math.log(p) + (1.0 - p) * math.log(1.0 - p)))


def cox_snell_from_c(c_statistic: float, prevalence: float) -> float:
    """Cox–Snell R² of a logistic model with the given C-statistic (Riley et al. 2021's approach).

    Args:
        c_statistic: the anticipated AUC, in (0.5, 1).
        prevalence: the outcome proportion φ.

    Returns:
        R²cs of the large-sample logistic fit on a binormal linear predictor (events N(μ, 1),
        non-events N(0, 1), μ = √2 Φ⁻¹(C)).
    """
    c = float(c_statistic)
    if not 0.5 < c < 1.0:
        raise OsteoInputError(f"c_statistic={c} must be between 0.5 and 1 (exclusive)", parameter="c_statistic")
    phi = _check_fraction(prevalence, "prevalence")
    mu = math.sqrt(2.0) * norm.ppf(c)

    def negative_loglik(theta: np.ndarray) -> float:
        a, b = theta
        events = np.sum(_WEIGHTS * log_expit(a + b * (_NODES + mu)))
        non_events = np.sum(_WEIGHTS * log_expit(-(a + b * _NODES)))
        return -(phi * events + (1.0 - phi) * non_events)

    fit = optimize.minimize(negative_loglik, x0=np.array([math.log(phi / (1 - phi)) - mu / 2, 1.0]), method="BFGS")
    null = phi * math.log(phi) + (1.0 - phi) * math.log(1.0 - phi)
    return float(1.0 - math.exp(2.0 * (null + fit.fun)))  # per-patient log-likelihoods: 1 − exp(2(ℓ₀ − ℓ)/n)


def _criterion(predictors: int, r2: float, shrinkage: float) -> int:
    return math.ceil(predictors / ((shrinkage - 1.0) * math.log(1.0 - r2 / shrinkage)))


def development_sample_size(
    prevalence: float,
    predictors: int,
    *,
    c_statistic: float | None = None,
    cox_snell_r2: float | None = None,
    shrinkage: float = 0.9,
    r2_difference: float = 0.05,
    margin: float = 0.05,
) -> DevelopmentSampleSize:
    """The minimum development sample size for a binary outcome (Riley et al. 2020).

    Args:
        prevalence: expected outcome proportion φ, in (0, 1).
        predictors: candidate predictor parameters P (≥ 1).
        c_statistic: anticipated C-statistic (converted to Cox–Snell R²); or
        cox_snell_r2: anticipated Cox–Snell R² (exactly one of the two).
        shrinkage: required expected shrinkage S (default 0.9).
        r2_difference: allowed optimism in Nagelkerke R² (default 0.05).
        margin: allowed absolute error of the overall risk (default 0.05).

    Returns:
        The three criteria, the final n, its events and events per parameter.
    """
    phi = _check_fraction(prevalence, "prevalence")
    if int(predictors) != predictors or predictors < 1:
        raise OsteoInputError(f"predictors={predictors} must be a whole number ≥ 1", parameter="predictors")
    if (c_statistic is None) == (cox_snell_r2 is None):
        raise OsteoInputError("give exactly one of c_statistic and cox_snell_r2", parameter="c_statistic")
    shrinkage = _check_fraction(shrinkage, "shrinkage")
    r2 = cox_snell_from_c(c_statistic, phi) if c_statistic is not None else float(cox_snell_r2)
    limit = max_cox_snell(phi)
    if not 0.0 < r2 < min(limit, shrinkage):
        raise OsteoInputError(
            f"cox_snell_r2={r2:.4g} must be above 0 and below {min(limit, shrinkage):.4g} (the largest Cox–Snell "
            f"R² a prevalence of {phi:g} allows, and the shrinkage)",
            parameter="cox_snell_r2",
        )
    n1 = _criterion(int(predictors), r2, shrinkage)
    s2 = r2 / (r2 + r2_difference * limit)
    n2 = _criterion(int(predictors), r2, s2)
    n3 = math.ceil((_Z / margin) ** 2 * phi * (1.0 - phi))
    n = max(n1, n2, n3)
    return DevelopmentSampleSize(
        prevalence=phi,
        predictors=int(predictors),
        cox_snell_r2=r2,
        c_statistic=None if c_statistic is None else float(c_statistic),
        shrinkage=shrinkage,
        criterion_shrinkage=n1,
        criterion_optimism=n2,
        criterion_risk=n3,
        n=n,
        events=math.ceil(n * phi),
        events_per_parameter=n * phi / int(predictors),
    )


def auc_standard_error(auc: float, positives, negatives):
    """Hanley & McNeil's (1982) standard error of an AUC.

    Args:
        auc: the AUC A, in (0, 1).
        positives: number of cases with the outcome n₁ (scalar or array).
        negatives: number without n₀.

    Returns:
        SE(A), like ``positives``.
    """
    a = float(auc)
    q1, q2 = a / (2.0 - a), 2.0 * a * a / (1.0 + a)
    n1, n0 = np.asarray(positives, dtype=np.float64), np.asarray(negatives, dtype=np.float64)
    return np.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0))


def validation_sample_size(
    auc: float, prevalence: float, *, ci_width: float = 0.1, confidence: float = 0.95
) -> ValidationSampleSize:
    """The smallest test set whose AUC CI (``AUC ± z·SE``, Hanley–McNeil) is at most ``ci_width`` wide.

    Args:
        auc: the anticipated AUC, in (0.5, 1).
        prevalence: expected outcome proportion; positives = round(n · prevalence).
        ci_width: the CI's full width (default 0.1).
        confidence: the CI's coverage (default 0.95).

    Returns:
        n, its positives and negatives, the SE and the width achieved.
    """
    if not 0.5 < float(auc) < 1.0:
        raise OsteoInputError(f"auc={auc} must be between 0.5 and 1 (exclusive)", parameter="auc")
    phi = _check_fraction(prevalence, "prevalence")
    ci_width = _check_fraction(ci_width, "ci_width")
    z = float(norm.ppf(0.5 + _check_fraction(confidence, "confidence") / 2))
    n = np.arange(2, 2_000_001)
    positives = np.rint(n * phi)
    ok = (positives >= 1) & (positives <= n - 1)
    width = np.full(n.size, np.inf)
    width[ok] = 2 * z * auc_standard_error(auc, positives[ok], n[ok] - positives[ok])
    index = int(np.flatnonzero(width <= ci_width)[0])
    return ValidationSampleSize(
        auc=float(auc),
        prevalence=phi,
        ci_width=ci_width,
        n=int(n[index]),
        positives=int(positives[index]),
        negatives=int(n[index] - positives[index]),
        standard_error=float(width[index] / (2 * z)),
        achieved_width=float(width[index]),
    )


def plan_lines(
    prevalence: float,
    predictors: int,
    *,
    c_statistic: float | None = None,
    cox_snell_r2: float | None = None,
    auc_ci_width: float = 0.1,
) -> list[str]:
    """What ``osteo plan`` prints: the development criteria and size, then the test-set size.

    Args:
        prevalence, predictors, c_statistic, cox_snell_r2: as :func:`development_sample_size`.
        auc_ci_width: the wanted width of the test set's 95 % AUC CI.

    Returns:
        The lines.
    """
    d = development_sample_size(prevalence, predictors, c_statistic=c_statistic, cox_snell_r2=cox_snell_r2)
    auc = c_statistic if c_statistic is not None else None
    source = f"C-statistic {c_statistic:g} → Cox–Snell R² {d.cox_snell_r2:.4f}" if auc else f"R² {d.cox_snell_r2:g}"
    lines = [
        f"Development (Riley et al. 2020; prevalence {d.prevalence:g}, {d.predictors} predictor parameters, {source}):",
        f"  criterion 1, expected shrinkage ≥ {d.shrinkage:g}:         n = {d.criterion_shrinkage}",
        f"  criterion 2, optimism in Nagelkerke R² ≤ 0.05: n = {d.criterion_optimism}",
        f"  criterion 3, overall risk within ± 0.05:       n = {d.criterion_risk}",
        f"  minimum: n = {d.n} ({d.events} with osteoporosis, {d.events_per_parameter:.1f} events per parameter)",
    ]
    if auc:
        v = validation_sample_size(auc, prevalence, ci_width=auc_ci_width)
        lines.append(
            f"Test set (Hanley & McNeil 1982): n = {v.n} ({v.positives} with osteoporosis) gives a 95 % AUC CI "
            f"of width {v.achieved_width:.4f} ≤ {auc_ci_width:g} at AUC {auc:g}"
        )
    else:
        lines.append("Test set: give --c-statistic to size it for an AUC CI width")
    return lines
