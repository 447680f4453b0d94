"""Statistics over repeated runs: mean / SD / 95 % CI, Hedges' g, and the two-group test.

The dental paper's protocol (Sukegawa et al. 2022): for each metric, the mean, SD and 95 %
CI over the repeated runs; the Shapiro–Wilk test decides between a parametric and a
non-parametric two-group test; p < 0.05; the effect size is Hedges' g, labelled on
Sawilowsky's extension of Cohen's scale.

Conventions used here (each is stated in every report, never implied):

* CI of a mean: ``mean ± t(1 − α/2, n − 1) · SD / √n`` (SD with ``ddof=1``).
* Unpaired (default, the paper's design): Shapiro–Wilk on each group; when both have
  p > α the **Welch two-sample t-test** (unequal variances) is used, otherwise the
  **Mann–Whitney U test** (two-sided). A group whose values are all equal cannot be tested
  for normality and counts as non-normal.
* Paired (runs matched by repeat/fold on the same splits): Shapiro–Wilk on the
  differences; **paired t-test** when p > α, otherwise the **Wilcoxon signed-rank test**.
* Hedges' g = (mean(a) − mean(b)) / pooled SD × (1 − 3 / (4(n₁ + n₂) − 9)), pooled SD =
  √(((n₁−1)s₁² + (n₂−1)s₂²) / (n₁ + n₂ − 2)); its CI uses the large-sample standard error
  √((n₁+n₂)/(n₁n₂) + g²/(2(n₁+n₂))) (Hedges & Olkin 1985). Positive g: ``a`` is larger.
* Effect-size labels: the thresholds the dental paper states and applies (very small 0.01,
  small 0.2, medium 0.5, large 0.8, very large 1.0, huge 2.0 — its g = 1.056 is "very
  large"); Sawilowsky's (2009) own table puts "very large" at 1.2 (:data:`SAWILOWSKY_2009`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as st

from osteo_tf.errors import OsteoInputError

__all__ = [
    "ALPHA",
    "EFFECT_SIZE_SCALE",
    "MIN_RUNS_FOR_TEST",
    "SAWILOWSKY_2009",
    "compare",
    "Comparison",
    "describe",
    "effect_size_label",
    "format_p",
    "hedges_g",
    "hedges_g_ci",
    "p_phrase",
    "unpaired_test",
]

ALPHA = 0.05
#: Effect-size scale as the dental paper states and applies it (lower bound → label).
EFFECT_SIZE_SCALE: tuple[tuple[float, str], ...] = (
    (2.0, "huge"),
    (1.0, "very large"),
    (0.8, "large"),
    (0.5, "medium"),
    (0.2, "small"),
    (0.01, "very small"),
)
#: Sawilowsky (2009), "New effect size rules of thumb", Table 1.
SAWILOWSKY_2009: tuple[tuple[float, str], ...] = (
    (2.0, "huge"),
    (1.2, "very large"),
    (0.8, "large"),
    (0.5, "medium"),
    (0.2, "small"),
    (0.01, "very small"),
)
MIN_RUNS_FOR_TEST = 3  # Shapiro–Wilk needs at least three values


def _values(values, name: str = "values") -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise OsteoInputError(f"{name} is empty: nothing to summarise")
    if not np.isfinite(array).all():
        raise OsteoInputError(f"{name} has non-finite values (NaN/inf)")
    return array


def describe(values, confidence: float = 0.95) -> dict[str, float | int | None]:
    """``n, mean, sd, ci_low, ci_high`` of a sample; the CI is t-based for the mean.

    With one value the SD and the CI are undefined and returned as ``None``.
    """
    x = _values(values)
    n, mean = int(x.size), float(x.mean())
    if n < 2:
        return {"n": n, "mean": mean, "sd": None, "ci_low": None, "ci_high": None}
    sd = float(x.std(ddof=1))
    half = float(st.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}


def hedges_g(a, b) -> float:
    """Hedges' g of ``a`` relative to ``b`` (positive when ``a``'s mean is larger).

    Raises OsteoInputError with fewer than two values in a group; returns NaN when both
    groups have zero variance (the effect is then undefined, and reports say so).
    """
    a, b = _values(a, "a"), _values(b, "b")
    n1, n2 = a.size, b.size
    if n1 < 2 or n2 < 2:
        raise OsteoInputError(f"Hedges' g needs at least 2 values per group, got {n1} and {n2}")
    pooled = math.sqrt(((n1 - 1) * a.var(ddof=1) + (n2 - 1) * b.var(ddof=1)) / (n1 + n2 - 2))
    if pooled == 0.0:
        return math.nan
    correction = 1.0 - 3.0 / (4.0 * (n1 + n2) - 9.0)
    return float((a.mean() - b.mean()) / pooled * correction)


def hedges_g_ci(g: float, n1: int, n2: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Large-sample normal CI of Hedges' g (Hedges & Olkin 1985)."""
    if not math.isfinite(g):
        return math.nan, math.nan
    se = math.sqrt((n1 + n2) / (n1 * n2) + g * g / (2.0 * (n1 + n2)))
    z = float(st.norm.ppf(0.5 + confidence / 2))
    return g - z * se, g + z * se


def effect_size_label(g: float, scale: tuple[tuple[float, str], ...] = EFFECT_SIZE_SCALE) -> str:
    """Label of ``|g|`` on ``scale`` (default: the dental paper's); below 0.01 "negligible"."""
    if not math.isfinite(g):
        return "undefined (no variance)"
    for bound, label in scale:
        if abs(g) >= bound:
            return label
    return "negligible"


def _looks_normal(x: np.ndarray, alpha: float) -> tuple[bool, float | None]:
    """Shapiro–Wilk: (p > alpha, p). A constant sample cannot be tested: (False, None)."""
    if np.ptp(x) == 0:
        return False, None
    p = float(st.shapiro(x).pvalue)
    return p > alpha, p


def unpaired_test(a, b, alpha: float = ALPHA) -> tuple[str, float, float, bool, tuple[float | None, float | None]]:
    """Welch t-test when both groups pass Shapiro–Wilk, else Mann–Whitney U (two-sided).

    Returns ``(test name, statistic, p, normal, (shapiro p of a, shapiro p of b))``.
    """
    a, b = _values(a, "a"), _values(b, "b")
    if min(a.size, b.size) < MIN_RUNS_FOR_TEST:
        raise OsteoInputError(
            f"a two-group test needs at least {MIN_RUNS_FOR_TEST} values per group, got {a.size} and {b.size}"
        )
    normal_a, p_a = _looks_normal(a, alpha)
    normal_b, p_b = _looks_normal(b, alpha)
    if normal_a and normal_b:
        result, test = st.ttest_ind(a, b, equal_var=False), "Welch two-sample t-test"
    else:
        result, test = st.mannwhitneyu(a, b, alternative="two-sided"), "Mann–Whitney U test"
    return test, float(result[0]), float(result[1]), normal_a and normal_b, (p_a, p_b)


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare` (``a`` vs ``b``); ``test`` names the test that was used."""

    test: str
    statistic: float
    p_value: float
    hedges_g: float
    g_ci_low: float
    g_ci_high: float
    effect_size: str
    paired: bool
    normal: bool
    shapiro_p_a: float | None
    shapiro_p_b: float | None
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float

    def to_dict(self) -> dict:
        return asdict(self)


def compare(
    a, b, paired: bool = False, *, alpha: float = ALPHA, scale: tuple[tuple[float, str], ...] = EFFECT_SIZE_SCALE
) -> Comparison:
    """Two-group comparison of ``a`` against ``b`` with the test chosen by Shapiro–Wilk.

    Unpaired: Welch t-test if both groups pass Shapiro–Wilk (p > alpha), else Mann–Whitney U.
    Paired (``a[i]`` and ``b[i]`` from the same split): paired t-test if the differences
    pass Shapiro–Wilk, else Wilcoxon signed-rank (all-zero differences: p = 1). For paired
    data ``shapiro_p_a`` holds the differences' p and ``shapiro_p_b`` is None. Needs at
    least :data:`MIN_RUNS_FOR_TEST` values per group; raises OsteoInputError otherwise.
    """
    a, b = _values(a, "a"), _values(b, "b")
    if min(a.size, b.size) < MIN_RUNS_FOR_TEST:
        raise OsteoInputError(
            f"a test needs at least {MIN_RUNS_FOR_TEST} runs per model (Shapiro–Wilk's minimum), "
            f"got {a.size} and {b.size}"
        )
    if paired:
        if a.size != b.size:
            raise OsteoInputError(f"paired comparison needs equal-length samples, got {a.size} and {b.size}")
        normal, p_a = _looks_normal(a - b, alpha)
        p_b = None
        if normal:
            test, result = "paired t-test", st.ttest_rel(a, b)
        elif np.all(a == b):  # scipy would divide by zero; no difference at all
            test, result = "Wilcoxon signed-rank test", (0.0, 1.0)
        else:
            test, result = "Wilcoxon signed-rank test", st.wilcoxon(a, b)
    else:
        test, statistic, p_value, normal, (p_a, p_b) = unpaired_test(a, b, alpha)
        result = (statistic, p_value)
    statistic, p_value = (float(result[0]), float(result[1]))
    g = hedges_g(a, b)
    low, high = hedges_g_ci(g, a.size, b.size)
    return Comparison(
        test=test,
        statistic=statistic,
        p_value=p_value,
        hedges_g=g,
        g_ci_low=low,
        g_ci_high=high,
        effect_size=effect_size_label(g, scale),
        paired=paired,
        normal=normal,
        shapiro_p_a=p_a,
        shapiro_p_b=p_b,
        n_a=int(a.size),
        n_b=int(b.size),
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
    )


def format_p(p: float | None) -> str:
    """p as the papers print it: ``<0.0001``, ``0.0004``, ``0.003``; ``n/a`` when undefined."""
    if p is None or not math.isfinite(p):
        return "n/a"
    if p < 0.0001:
        return "<0.0001"
    if p < 0.001:
        return f"{p:.4f}"
    return f"{p:.3f}"


def p_phrase(p: float | None) -> str:
    """``p < 0.0001`` or ``p = 0.031`` for running text."""
    text = format_p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"
