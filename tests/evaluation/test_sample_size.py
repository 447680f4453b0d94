"""Sample size: Riley et al. 2020's worked example, the C → R² conversion by simulation, Hanley–McNeil's SE."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from osteo_tf.cli import main
from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.sample_size import (
    auc_standard_error,
    cox_snell_from_c,
    development_sample_size,
    max_cox_snell,
    validation_sample_size,
)


def test_riley_2020_published_binary_example():
    # Riley et al., BMJ 2020;368:m441 (and pmsampsize's documented example):
    # R²cs 0.288, 24 parameters, prevalence 0.174 → criteria 623, 662, 221; n = 662, 116 events, EPP 4.8.
    result = development_sample_size(0.174, 24, cox_snell_r2=0.288)
    assert (result.criterion_shrinkage, result.criterion_optimism, result.criterion_risk) == (623, 662, 221)
    assert result.n == 662 and result.events == 116 and round(result.events_per_parameter, 1) == 4.8
    assert max_cox_snell(0.174) == pytest.approx(0.6032, abs=1e-4)  # Riley et al.'s max(R²cs) for φ = 0.174


def test_c_statistic_conversion_equals_the_large_simulation_pmsampsize_fits():
    import statsmodels.api as sm

    rng = np.random.default_rng(1234)
    c, phi, n = 0.85, 0.45, 400_000
    mu = math.sqrt(2) * norm.ppf(c)
    events = int(phi * n)
    lp = np.concatenate([rng.normal(mu, 1, events), rng.normal(0, 1, n - events)])
    y = np.concatenate([np.ones(events), np.zeros(n - events)])
    fit = sm.Logit(y, sm.add_constant(lp)).fit(disp=0)
    simulated = 1 - math.exp(2 * (fit.llnull - fit.llf) / n)
    assert roc_auc_score(y, lp) == pytest.approx(c, abs=0.003)
    assert cox_snell_from_c(c, phi) == pytest.approx(simulated, abs=0.003)


def test_hanley_mcneil_standard_error_matches_simulated_aucs():
    rng = np.random.default_rng(0)
    auc, n1, n0 = 0.8, 60, 90
    mu = math.sqrt(2) * norm.ppf(auc)
    aucs = [
        roc_auc_score(np.r_[np.ones(n1), np.zeros(n0)], np.r_[rng.normal(mu, 1, n1), rng.normal(0, 1, n0)])
        for _ in range(2000)
    ]
    assert float(auc_standard_error(auc, n1, n0)) == pytest.approx(np.std(aucs), rel=0.1)


def test_validation_size_is_the_smallest_that_reaches_the_width():
    result = validation_sample_size(0.85, 0.45, ci_width=0.1)
    assert result.achieved_width <= 0.1
    smaller = result.n - 1
    positives = round(smaller * 0.45)
    assert 2 * 1.959964 * float(auc_standard_error(0.85, positives, smaller - positives)) > 0.1


def test_bad_inputs_are_refused_by_name(capsys):
    with pytest.raises(OsteoInputError, match="prevalence=1.2"):
        development_sample_size(1.2, 6, c_statistic=0.8)
    with pytest.raises(OsteoInputError, match="exactly one of c_statistic and cox_snell_r2"):
        development_sample_size(0.4, 6)
    with pytest.raises(OsteoInputError, match="c_statistic=0.4"):
        development_sample_size(0.4, 6, c_statistic=0.4)
    with pytest.raises(OsteoInputError, match="cox_snell_r2=0.7"):
        development_sample_size(0.174, 6, cox_snell_r2=0.7)
    assert main(["plan", "--prevalence", "0.45", "--c-statistic", "0.85", "--predictors", "6"]) == 0
    printed = capsys.readouterr().out
    assert "minimum: n = " in printed and "Test set (Hanley & McNeil 1982): n = " in printed
    assert main(["plan", "--prevalence", "0", "--c-statistic", "0.85", "--predictors", "6"]) == 2
    assert "--prevalence" in capsys.readouterr().err
