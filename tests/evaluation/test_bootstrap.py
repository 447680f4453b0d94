"""Bootstrap CIs and the paired comparison, against direct computations on the same resamples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st
from sklearn.metrics import roc_auc_score

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.bootstrap import _Resampled, bootstrap_metrics, compare_predictions, metric_cis
from osteo_tf.evaluation.delong import delong_ci
from osteo_tf.evaluation.metrics import METRIC_NAMES, binary_metrics, ci_text


def _cohort(n_patients=60, seed=0):
    """Patients with one to three images each; scores informative but noisy."""
    rng = np.random.default_rng(seed)
    images = rng.integers(1, 4, n_patients)
    patient = np.repeat(np.arange(n_patients), images)
    label = np.repeat(rng.integers(0, 2, n_patients), images)
    score = np.clip(0.5 + 0.25 * (label - 0.5) + rng.normal(0, 0.2, patient.size), 0, 1).round(2)  # ties
    return label, score, patient.astype(str)


def test_statistic_equals_binary_metrics_on_the_concatenated_resample():
    label, score, patient = _cohort()
    statistic = _Resampled(label, score, patient, 0.5)
    rng = np.random.default_rng(1)
    drawn = rng.integers(0, statistic.n_groups, (5, statistic.n_groups))
    values = statistic(drawn)
    for b in range(5):
        rows = np.concatenate([np.flatnonzero(statistic.group_of_row == g) for g in drawn[b]])
        expected = binary_metrics(label[rows], score[rows], 0.5)
        for i, name in enumerate(METRIC_NAMES):
            assert values[i, b] == pytest.approx(expected[name], abs=1e-12), name
        weights = np.bincount(drawn[b], minlength=statistic.n_groups)  # draws per patient
        assert values[-1, b] == pytest.approx(
            roc_auc_score(label, score, sample_weight=weights[statistic.group_of_row])
        )


def test_intervals_equal_scipy_bootstrap_of_the_naive_statistic_with_the_same_seed():
    label, score, patient = _cohort(40)
    groups = np.unique(patient)
    rows_of = {g: np.flatnonzero(patient == g) for g in groups}

    def naive(name):
        def statistic(drawn):
            rows = np.concatenate([rows_of[groups[int(g)]] for g in drawn])
            return binary_metrics(label[rows], score[rows], 0.5)[name]

        return statistic

    cis = bootstrap_metrics(label, score, 0.5, groups=patient, n_resamples=300, seed=7)
    for name in ("accuracy", "recall", "auc"):
        reference = st.bootstrap(
            (np.arange(groups.size),),
            naive(name),
            n_resamples=300,
            vectorized=False,
            method="percentile",
            rng=np.random.default_rng(7),
        ).confidence_interval
        assert cis[name] == pytest.approx((reference.low, reference.high), abs=1e-12), name


def test_bca_and_seeding():
    label, score, patient = _cohort(80)
    a = bootstrap_metrics(label, score, groups=patient, method="bca", seed=3)
    b = bootstrap_metrics(label, score, groups=patient, method="bca", seed=3)
    c = bootstrap_metrics(label, score, groups=patient, method="bca", seed=4)
    assert a == b and a != c
    point = binary_metrics(label, score)
    for name in METRIC_NAMES:
        low, high = a[name]
        assert low <= point[name] <= high, name


def test_bootstrap_auc_interval_agrees_with_delong_on_independent_images():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 600)
    score = 1 / (1 + np.exp(-(1.5 * label - 0.75 + rng.normal(0, 1, 600))))
    boot = bootstrap_metrics(label, score)["auc"]
    _, low, high = delong_ci(label, score)
    assert boot == pytest.approx((low, high), abs=0.01)


def test_patient_resampling_is_wider_than_image_resampling_for_clustered_images():
    rng = np.random.default_rng(0)
    patient = np.repeat(np.arange(50), 6)  # six near-identical images per patient
    label = np.repeat(rng.integers(0, 2, 50), 6)
    score = np.repeat(rng.uniform(0, 1, 50) * 0.6 + 0.4 * np.repeat(rng.integers(0, 2, 50), 1), 6)
    score = score + rng.normal(0, 1e-3, score.size)
    by_patient = bootstrap_metrics(label, score, groups=patient)["accuracy"]
    by_image = bootstrap_metrics(label, score)["accuracy"]
    assert by_patient[1] - by_patient[0] > 1.8 * (by_image[1] - by_image[0])


def test_undefined_intervals_are_none_and_options_are_checked():
    label, score = np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.4, 0.6])
    assert bootstrap_metrics(label, score, n_resamples=200)["auc"] == (None, None)  # some resamples lack a class
    with pytest.raises(OsteoInputError, match="method='exact'"):
        bootstrap_metrics(label, score, method="exact")
    with pytest.raises(OsteoInputError, match="n_resamples=10"):
        bootstrap_metrics(label, score, n_resamples=10)
    with pytest.raises(OsteoInputError, match="groups has 3 values"):
        bootstrap_metrics(label, score, groups=[1, 2, 3])


def test_metric_cis_block_and_text():
    label, score, patient = _cohort()
    metrics = binary_metrics(label, score)
    block = metric_cis(label, score, groups=patient)
    assert block["unit"] == "patient" and block["n_patients"] == 60 and block["n_resamples"] == 2000
    low, high = block["metrics"]["auc"]
    assert ci_text({**metrics, "ci": block}, "auc") == f"{metrics['auc']:.3f} ({low:.3f}–{high:.3f})"
    assert ci_text(metrics, "auc") == f"{metrics['auc']:.3f}"


def test_paired_comparison_against_direct_tests():
    from statsmodels.stats.contingency_tables import mcnemar

    label, score, patient = _cohort(100)
    rng = np.random.default_rng(5)
    other = np.clip(score + rng.normal(0, 0.15, score.size), 0, 1)
    result = compare_predictions(label, score, other, groups=patient, seed=1)
    a, b = binary_metrics(label, score), binary_metrics(label, other)
    assert result["difference"]["auc"]["estimate"] == pytest.approx(a["auc"] - b["auc"])
    low, high = result["difference"]["accuracy"]["low"], result["difference"]["accuracy"]["high"]
    assert low <= a["accuracy"] - b["accuracy"] <= high
    right_a, right_b = (score >= 0.5) == label, (other >= 0.5) == label
    table = [
        [np.sum(right_a & right_b), np.sum(right_a & ~right_b)],
        [np.sum(~right_a & right_b), np.sum(~right_a & ~right_b)],
    ]
    exact = table[0][1] + table[1][0] < 25
    assert result["mcnemar"]["p_value"] == pytest.approx(mcnemar(table, exact=exact).pvalue)
    assert result["delong"]["auc_a"] == pytest.approx(a["auc"])
    same = compare_predictions(label, score, score, groups=patient)
    assert same["difference"]["auc"] == {"estimate": 0.0, "low": 0.0, "high": 0.0}
    assert same["mcnemar"]["p_value"] == 1.0
