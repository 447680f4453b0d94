"""Statistics against scipy, Hedges' g against its formula, DeLong against a slow reference."""

import math

import numpy as np
import pytest
from scipy import stats as st

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.delong import delong_covariance, delong_test, midranks, placement_values
from osteo_tf.evaluation.stats import (
    SAWILOWSKY_2009,
    compare,
    describe,
    effect_size_label,
    format_p,
    hedges_g,
    hedges_g_ci,
    p_phrase,
)

RNG = np.random.default_rng(7)
NORMAL_A = RNG.normal(0.85, 0.01, 30)
NORMAL_B = RNG.normal(0.83, 0.012, 30)
SKEWED_A = 0.9 - RNG.exponential(0.02, 30)  # clearly non-normal
SKEWED_B = 0.88 - RNG.exponential(0.02, 30)


def test_describe_ci_equals_scipy_t_interval():
    d = describe(NORMAL_A)
    low, high = st.t.interval(0.95, len(NORMAL_A) - 1, loc=NORMAL_A.mean(), scale=st.sem(NORMAL_A))
    assert d["n"] == 30 and d["mean"] == pytest.approx(NORMAL_A.mean())
    assert d["sd"] == pytest.approx(NORMAL_A.std(ddof=1))
    assert (d["ci_low"], d["ci_high"]) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))


def test_describe_single_value_has_no_sd():
    assert describe([0.8]) == {"n": 1, "mean": 0.8, "sd": None, "ci_low": None, "ci_high": None}


def test_hedges_g_reproduces_the_formula_on_set_means_and_sds():
    # samples with exact means and SDs: standardise, then scale
    def sample(n, mean, sd):
        z = np.random.default_rng(n).normal(size=n)
        return mean + sd * (z - z.mean()) / z.std(ddof=1)

    a, b = sample(30, 0.824, 0.012), sample(25, 0.809, 0.010)
    pooled = math.sqrt((29 * 0.012**2 + 24 * 0.010**2) / 53)
    expected = (0.824 - 0.809) / pooled * (1 - 3 / (4 * 55 - 9))
    assert hedges_g(a, b) == pytest.approx(expected, rel=1e-10)
    assert hedges_g(b, a) == pytest.approx(-expected, rel=1e-10)


def test_hedges_g_ci_and_labels():
    low, high = hedges_g_ci(1.0, 30, 30)
    se = math.sqrt(60 / 900 + 1 / 120)
    assert (low, high) == (pytest.approx(1 - 1.959964 * se, rel=1e-6), pytest.approx(1 + 1.959964 * se, rel=1e-6))
    labels = [effect_size_label(g) for g in (0.005, 0.1, 0.3, -0.6, 0.9, 1.056, 1.9, 2.5)]
    assert labels == ["negligible", "very small", "small", "medium", "large", "very large", "very large", "huge"]
    assert effect_size_label(1.1, SAWILOWSKY_2009) == "large"
    assert effect_size_label(float("nan")).startswith("undefined")


def test_unpaired_normal_samples_use_welch_t_test_like_scipy():
    c = compare(NORMAL_A, NORMAL_B)
    reference = st.ttest_ind(NORMAL_A, NORMAL_B, equal_var=False)
    assert c.test == "Welch two-sample t-test" and c.normal
    assert c.statistic == pytest.approx(reference.statistic) and c.p_value == pytest.approx(reference.pvalue)
    assert c.shapiro_p_a == pytest.approx(st.shapiro(NORMAL_A).pvalue)
    assert c.shapiro_p_b == pytest.approx(st.shapiro(NORMAL_B).pvalue)
    assert c.hedges_g == pytest.approx(hedges_g(NORMAL_A, NORMAL_B)) and c.hedges_g > 0


def test_unpaired_non_normal_samples_use_mann_whitney_like_scipy():
    assert st.shapiro(SKEWED_A).pvalue < 0.05
    c = compare(SKEWED_A, SKEWED_B)
    reference = st.mannwhitneyu(SKEWED_A, SKEWED_B, alternative="two-sided")
    assert c.test == "Mann–Whitney U test" and not c.normal
    assert c.statistic == pytest.approx(reference.statistic) and c.p_value == pytest.approx(reference.pvalue)


def test_paired_uses_shapiro_on_differences_then_paired_t_or_wilcoxon():
    c = compare(NORMAL_A, NORMAL_B, paired=True)
    assert c.test == "paired t-test" and c.shapiro_p_a == pytest.approx(st.shapiro(NORMAL_A - NORMAL_B).pvalue)
    assert c.p_value == pytest.approx(st.ttest_rel(NORMAL_A, NORMAL_B).pvalue)
    skewed = NORMAL_B + RNG.exponential(0.02, 30)
    assert st.shapiro(skewed - NORMAL_B).pvalue < 0.05
    c = compare(skewed, NORMAL_B, paired=True)
    reference = st.wilcoxon(skewed, NORMAL_B)
    assert c.test == "Wilcoxon signed-rank test"
    assert c.statistic == pytest.approx(reference.statistic) and c.p_value == pytest.approx(reference.pvalue)


def test_degenerate_samples_never_crash():
    same = compare([0.8] * 5, [0.8] * 5)
    assert same.test == "Mann–Whitney U test" and same.p_value == 1.0 and same.effect_size.startswith("undefined")
    assert compare([0.8] * 5, [0.8] * 5, paired=True).p_value == 1.0
    with pytest.raises(OsteoInputError, match="at least 3"):
        compare([0.8, 0.9], [0.7, 0.6, 0.5])


def test_format_p():
    assert [format_p(p) for p in (0.00001, 0.0004, 0.0291, 0.5, float("nan"))] == [
        "<0.0001",
        "0.0004",
        "0.029",
        "0.500",
        "n/a",
    ]
    assert p_phrase(1e-7) == "p < 0.0001" and p_phrase(0.03) == "p = 0.030"


# --------------------------------------------------------------------------- DeLong


def _slow_delong(y, scores):
    """Direct O(m·n) placement values (DeLong 1988, ψ = 1, ½, 0) and the covariance."""
    y = np.asarray(y)
    aucs, v10s, v01s = [], [], []
    for s in scores:
        x, z = s[y == 1], s[y == 0]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        aucs.append(psi.mean())
        v10s.append(psi.mean(axis=1))
        v01s.append(psi.mean(axis=0))
    v10, v01 = np.array(v10s), np.array(v01s)
    cov = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
    return np.array(aucs), v10, v01, cov


def test_midranks_equal_scipy_average_ranks():
    x = np.array([3.0, 1.0, 2.0, 2.0, 5.0, 3.0, 3.0])
    assert np.allclose(midranks(x), st.rankdata(x))


@pytest.mark.parametrize("ties", [False, True])
def test_fast_delong_equals_slow_reference(ties):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    a = y * 0.8 + rng.normal(size=120)
    b = y * 0.5 + rng.normal(size=120)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    aucs, v10, v01 = placement_values(y, np.vstack([a, b]))
    slow_aucs, slow_v10, slow_v01, slow_cov = _slow_delong(y, [a, b])
    assert np.allclose(aucs, slow_aucs) and np.allclose(v10, slow_v10) and np.allclose(v01, slow_v01)
    _, cov = delong_covariance(y, np.vstack([a, b]))
    assert np.allclose(cov, slow_cov)
    result = delong_test(y, a, b)
    z = (slow_aucs[0] - slow_aucs[1]) / math.sqrt(slow_cov[0, 0] + slow_cov[1, 1] - 2 * slow_cov[0, 1])
    assert result.z == pytest.approx(z) and result.p_value == pytest.approx(2 * st.norm.sf(abs(z)))


def test_delong_worked_by_hand():
    # positives score (a) 0.9, 0.6 and (b) 0.9, 0.4; negatives (a) 0.5, 0.7 and (b) 0.5, 0.3.
    y = [1, 1, 0, 0]
    a, b = [0.9, 0.6, 0.5, 0.7], [0.9, 0.4, 0.5, 0.3]
    # a: V10 = (1, 1/2), V01 = (1, 1/2); b: V10 = (1, 1/2), V01 = (1/2, 1)
    # AUC a = b = 3/4; var(V10) = 1/8 each, cov 1/8; var(V01) = 1/8 each, cov −1/8
    # S = S10/2 + S01/2 → var(a) = var(b) = 1/8, cov(a, b) = 0 → var(diff) = 1/4, z = 0
    aucs, cov = delong_covariance(y, np.vstack([a, b]))
    assert np.allclose(aucs, [0.75, 0.75]) and np.allclose(cov, [[0.125, 0.0], [0.0, 0.125]])
    result = delong_test(y, a, b)
    assert result.z == 0.0 and result.p_value == 1.0 and result.variance == pytest.approx(0.25)


def test_delong_identical_models_and_bad_input():
    y = [0, 1, 0, 1, 1]
    s = [0.1, 0.8, 0.3, 0.6, 0.9]
    assert delong_test(y, s, s).p_value == 1.0
    with pytest.raises(OsteoInputError, match="both classes"):
        delong_test([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
