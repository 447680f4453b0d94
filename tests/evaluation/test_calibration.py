"""Calibration metrics, reliability data, pooling, recalibration and the reliability figure.

References: scikit-learn (Brier, calibration_curve, IsotonicRegression), statsmodels
(proportion_confint) and an independent SciPy maximum-likelihood fit with its Wald CI from the
analytic Fisher information, on seeded synthetic cohorts.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit, logit
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss
from statsmodels.stats.proportion import proportion_confint

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.calibration import (
    CALIBRATION_METRICS,
    RECALIBRATION_METHODS,
    Recalibration,
    calibration_metrics,
    fit_recalibration,
    plot_reliability,
    pooled_calibration,
    reliability_data,
    smoothed_calibration,
)

Z95 = 1.959963984540054


def cohort(n: int, seed: int, *, sharpen: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """y ~ Bernoulli(σ(z)) with z ~ N(−0.5, 1.2²); the model predicts σ(sharpen · z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-0.5, 1.2, n)
    y = (rng.uniform(size=n) < expit(z)).astype(int)
    return y, expit(sharpen * z)


CALIBRATED = cohort(20000, 1)
OVERCONFIDENT = cohort(20000, 2, sharpen=2.0)
SMALL = cohort(400, 3)


def _ml_fit(y: np.ndarray, design: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent logistic maximum likelihood (SciPy BFGS) and Wald SEs from the analytic information."""

    def negative_log_likelihood(beta):
        eta = offset + design @ beta
        return np.sum(np.logaddexp(0.0, eta) - y * eta)

    def gradient(beta):
        return design.T @ (expit(offset + design @ beta) - y)

    beta = minimize(negative_log_likelihood, np.zeros(design.shape[1]), jac=gradient, method="BFGS", tol=1e-12).x
    mu = expit(offset + design @ beta)
    information = design.T @ (design * (mu * (1 - mu))[:, None])
    return beta, np.sqrt(np.diag(np.linalg.inv(information)))


def test_intercept_and_slope_match_an_independent_maximum_likelihood_fit():
    y, p = SMALL
    z = logit(p)
    metrics = calibration_metrics(y, p)
    (a,), (se_a,) = _ml_fit(y, np.ones((y.size, 1)), z)
    assert metrics["intercept"] == pytest.approx(a, abs=1e-6)
    assert metrics["intercept_ci_low"] == pytest.approx(a - Z95 * se_a, abs=1e-5)
    assert metrics["intercept_ci_high"] == pytest.approx(a + Z95 * se_a, abs=1e-5)
    (_, b), (_, se_b) = _ml_fit(y, np.column_stack([np.ones(y.size), z]), np.zeros(y.size))
    assert metrics["slope"] == pytest.approx(b, abs=1e-6)
    assert metrics["slope_ci_low"] == pytest.approx(b - Z95 * se_b, abs=1e-5)
    assert metrics["slope_ci_high"] == pytest.approx(b + Z95 * se_b, abs=1e-5)


def test_brier_ece_and_summaries_against_scikit_learn():
    y, p = SMALL
    metrics = calibration_metrics(y, p, n_bins=8)
    assert metrics["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-15)
    assert metrics["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert metrics["scaled_brier"] == pytest.approx(1 - metrics["brier"] / (y.mean() * (1 - y.mean())))
    assert (metrics["n"], metrics["n_bins"]) == (y.size, 8)
    assert metrics["prevalence"] == pytest.approx(y.mean())
    assert metrics["mean_predicted"] == pytest.approx(p.mean())
    # ECE recomputed by hand from numpy's histogram (no value of p lies on a bin edge here)
    edges = np.linspace(0, 1, 9)
    ids = np.clip(np.digitize(p, edges) - 1, 0, 7)
    expected = sum(np.mean(ids == b) * abs(p[ids == b].mean() - y[ids == b].mean()) for b in np.unique(ids))
    assert metrics["ece"] == pytest.approx(expected, abs=1e-12)
    assert set(CALIBRATION_METRICS) <= set(metrics)
    json.dumps(metrics)


def test_reliability_bins_match_calibration_curve_and_wilson_cis_match_statsmodels():
    y, p = SMALL
    table = reliability_data(y, p, n_bins=10)
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(table["observed_rate"], observed)
    np.testing.assert_allclose(table["mean_predicted"], predicted)
    counts, _ = np.histogram(p, bins=np.linspace(0, 1, 11))
    np.testing.assert_array_equal(table["n"], counts[counts > 0])
    assert table["n"].sum() == y.size and table["events"].sum() == y.sum()
    for row in table.itertuples():
        low, high = proportion_confint(row.events, row.n, alpha=0.05, method="wilson")
        assert (row.ci_low, row.ci_high) == pytest.approx((low, high))
        assert row.ci_low <= row.observed_rate <= row.ci_high
        assert row.bin_low < row.mean_predicted <= row.bin_high


def test_bin_edges_follow_scikit_learns_rule():
    table = reliability_data([0, 1, 0, 1], [0.0, 0.1, 0.5, 1.0], n_bins=10)
    assert table["bin_low"].tolist() == pytest.approx([0.0, 0.4, 0.9])  # 0.1 in [0, 0.1]; 0.5 in (0.4, 0.5]
    assert table["n"].tolist() == [2, 1, 1]


def test_a_perfectly_calibrated_cohort_has_slope_one_and_intercept_zero():
    metrics = calibration_metrics(*CALIBRATED)
    assert metrics["slope_ci_low"] <= 1.0 <= metrics["slope_ci_high"]
    assert metrics["intercept_ci_low"] <= 0.0 <= metrics["intercept_ci_high"]
    assert metrics["slope"] == pytest.approx(1.0, abs=0.05)
    assert metrics["intercept"] == pytest.approx(0.0, abs=0.05)
    assert metrics["ece"] < 0.02
    x, smooth = smoothed_calibration(*CALIBRATED)
    assert x.shape == smooth.shape == (101,)
    inner = (x > 0.05) & (x < 0.9)
    assert np.abs(smooth[inner] - x[inner]).max() < 0.04


def test_an_overconfident_model_has_slope_one_half():
    metrics = calibration_metrics(*OVERCONFIDENT)
    assert metrics["slope"] == pytest.approx(0.5, abs=0.03)
    assert metrics["slope_ci_low"] <= 0.5 <= metrics["slope_ci_high"]


@pytest.mark.parametrize("method", ["logistic", "temperature"])
def test_recalibration_on_one_half_fixes_the_other_half(method):
    y, p = OVERCONFIDENT
    half = y.size // 2
    recalibration = fit_recalibration(y[:half], p[:half], method)
    before = calibration_metrics(y[half:], p[half:])
    after = calibration_metrics(y[half:], recalibration.apply(p[half:]))
    assert after["slope"] == pytest.approx(1.0, abs=0.06)
    assert after["slope_ci_low"] <= 1.0 <= after["slope_ci_high"]
    assert after["brier"] < before["brier"]
    if method == "temperature":
        assert recalibration.parameters["temperature"] == pytest.approx(2.0, abs=0.1)
    else:
        assert recalibration.parameters["slope"] == pytest.approx(0.5, abs=0.03)


def test_isotonic_apply_equals_scikit_learns_predict_exactly():
    y, p = OVERCONFIDENT
    half = y.size // 2
    recalibration = fit_recalibration(y[:half], p[:half], "isotonic")
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(p[:half], y[:half])
    for new in (p[half:], p[:half], np.linspace(0, 1, 2001)):
        np.testing.assert_array_equal(recalibration.apply(new), reference.predict(new))
    assert calibration_metrics(y[half:], recalibration.apply(p[half:]))["brier"] < brier_score_loss(y[half:], p[half:])


@pytest.mark.parametrize("method", RECALIBRATION_METHODS)
def test_every_method_is_monotone_and_round_trips_through_json(method):
    y, p = SMALL
    recalibration = fit_recalibration(y, p, method)
    grid = np.linspace(0, 1, 1001)
    out = recalibration.apply(grid)
    assert out.shape == (1001,) and np.all(np.diff(out) >= 0) and out.min() >= 0 and out.max() <= 1
    data = recalibration.to_dict()
    again = Recalibration.from_dict(json.loads(json.dumps(data)))
    assert again == recalibration
    np.testing.assert_array_equal(again.apply(grid), out)
    assert all(isinstance(v, (float, list)) for v in data["parameters"].values())


def test_logistic_recalibration_refuses_anti_correlated_predictions():
    y, p = SMALL
    with pytest.raises(OsteoInputError, match="anti-correlated") as error:
        fit_recalibration(y, 1 - p, "logistic")
    assert error.value.parameter == "probability"
    with pytest.raises(OsteoInputError, match="separate"):
        fit_recalibration([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], "logistic")


def test_slope_is_nan_when_the_predictions_separate_the_classes():
    metrics = calibration_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert np.isnan(metrics["slope"]) and np.isfinite(metrics["intercept"])


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"method": "platt", "parameters": {}}, "method"),
        ({"method": "logistic", "parameters": {"intercept": 0.0}}, "slope"),
        ({"method": "logistic", "parameters": {"intercept": 0.0, "slope": -1.0}}, "slope"),
        ({"method": "logistic", "parameters": {"intercept": "0", "slope": 1.0}}, "intercept"),
        ({"method": "temperature", "parameters": {"temperature": 0.0}}, "temperature"),
        ({"method": "temperature", "parameters": {"temperature": 1.0, "bias": 0.0}}, "bias"),
        ({"method": "isotonic", "parameters": {"x": [0.0, 1.0], "y": [0.5]}}, "y"),
        ({"method": "isotonic", "parameters": {"x": [0.5, 0.2], "y": [0.1, 0.2]}}, "x"),
        ({"method": "isotonic", "parameters": {"x": [0.1, 0.2], "y": [0.3, 0.2]}}, "y"),
        ({"method": "isotonic", "parameters": {"x": [0.1, float("nan")], "y": [0.1, 0.2]}}, "x"),
        ({"parameters": {}}, "method"),
        ({"method": "temperature", "parameters": {"temperature": 1.0}, "extra": 1}, "extra"),
    ],
)
def test_from_dict_refuses_malformed_data_naming_the_key(data, key):
    with pytest.raises(OsteoInputError, match=key) as error:
        Recalibration.from_dict(data)
    assert error.value.parameter == key


@pytest.mark.parametrize(
    ("y", "p", "parameter"),
    [
        ([0, 1, 1], [0.2, 0.8], "probability"),
        ([0, 2, 1], [0.2, 0.8, 0.5], "y_true"),
        ([0, 1, 1], [0.2, 1.5, 0.5], "probability"),
        ([0, 1, 1], [0.2, np.nan, 0.5], "probability"),
        ([1, 1, 1], [0.2, 0.8, 0.5], "y_true"),
        ([], [], "y_true"),
    ],
)
def test_bad_inputs_raise_naming_the_parameter(y, p, parameter):
    for call in (
        lambda: calibration_metrics(y, p),
        lambda: reliability_data(y, p),
        lambda: smoothed_calibration(y, p),
        lambda: fit_recalibration(y, p, "isotonic"),
    ):
        with pytest.raises(OsteoInputError) as error:
            call()
        assert error.value.parameter == parameter and parameter in str(error.value)


def test_bad_options_raise_naming_the_parameter():
    y, p = SMALL
    for call, parameter in (
        (lambda: calibration_metrics(y, p, n_bins=0), "n_bins"),
        (lambda: fit_recalibration(y, p, "beta"), "method"),
        (lambda: smoothed_calibration(y, p, frac=0), "frac"),
        (lambda: pooled_calibration([]), "fits"),
        (lambda: pooled_calibration([(y, p), (y[:3], p)]), "fits"),
        (lambda: Recalibration("temperature", {"temperature": 1.0}).apply([0.5, 2.0]), "probability"),
        (lambda: plot_reliability({}, "unused.png"), "curves"),
    ):
        with pytest.raises(OsteoInputError) as error:
            call()
        assert error.value.parameter == parameter


def test_pooled_calibration_pools_the_predictions_and_summarises_the_fits():
    fits = [cohort(300, seed) for seed in (10, 11, 12)]
    result = pooled_calibration(fits, n_bins=5)
    y = np.concatenate([f[0] for f in fits])
    p = np.concatenate([f[1] for f in fits])
    assert result["pooled"] == calibration_metrics(y, p, n_bins=5)
    assert result["n_fits"] == 3 and len(result["per_fit"]) == 3
    for key in CALIBRATION_METRICS:
        values = [calibration_metrics(*fit, n_bins=5)[key] for fit in fits]
        assert result["mean"][key] == pytest.approx(np.mean(values))
        assert result["sd"][key] == pytest.approx(np.std(values, ddof=1))
    assert pooled_calibration(fits[:1])["sd"]["brier"] is None
    json.dumps(result)


def test_the_reliability_figure_is_written(tmp_path):
    y, p = SMALL
    path = plot_reliability(
        {"image-only": (y, p), "ensemble": (y, expit(2 * logit(p)))}, tmp_path / "figs" / "calibration.png", n_bins=8
    )
    assert path == tmp_path / "figs" / "calibration.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert [f.name for f in path.parent.iterdir()] == ["calibration.png"]  # no temporary left behind
