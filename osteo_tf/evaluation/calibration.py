"""Calibration of predicted probabilities: metrics, reliability diagrams, pooling and recalibration.

TRIPOD+AI (Collins et al., BMJ 2024;385:e078378) items 12e/12f (how calibration was assessed, how
the model was updated) and 23a (calibration reported with its uncertainty). The measures follow
the calibration hierarchy of Van Calster et al. (J Clin Epidemiol 2016;74:167–176; "Calibration:
the Achilles heel of predictive analytics", BMC Med 2019;17:230) and Steyerberg (Clinical
Prediction Models, 2nd ed., Springer 2019):

* **mean calibration** — calibration-in-the-large (CITL): the intercept ``a`` of the logistic
  model ``logit P(y = 1) = a + logit(p)`` (``logit(p)`` an offset, no slope); 0 is ideal, > 0 means
  the model under-predicts the risk on average. Also the prevalence and the mean prediction.
* **weak calibration** — the calibration slope ``b`` of ``logit P(y = 1) = c + b · logit(p)``;
  1 is ideal, < 1 means predictions too extreme (over-fitting, over-confidence), > 1 too modest.
  Both with 95 % Wald CIs (estimate ± 1.96 SE from the observed information).
* **moderate calibration** — the reliability diagram: binned observed rates with Wilson 95 % CIs
  (Wilson 1927) and a LOWESS smoother of y on p (Austin & Steyerberg, Stat Med 2014;33:517–535);
  the expected calibration error (ECE; Naeini et al. 2015, Guo et al. 2017) summarises the bins.
* overall: the Brier score and the scaled Brier ``1 − Brier / (ȳ(1 − ȳ))`` (Steyerberg et al.,
  Epidemiology 2010;21:128–138): 0 for the model that predicts the prevalence for everyone, 1 perfect.

Recalibration (:func:`fit_recalibration`), fitted on **validation** predictions and applied to
the test predictions, never fitted on the test set itself:

* ``"logistic"`` — logistic (Platt 1999) recalibration on the logit: ``p' = σ(a + b · logit(p))``;
* ``"temperature"`` — temperature scaling (Guo et al., ICML 2017): ``p' = σ(logit(p) / T)``, T > 0;
* ``"isotonic"`` — isotonic regression (Zadrozny & Elkan, KDD 2002): a non-decreasing step-linear
  map, stored as its knots.

Every method is monotone non-decreasing in ``p``, so the ranking of the cases (and the ROC AUC)
is unchanged, except that isotonic regression may tie cases that were ordered (flat segments).
A logistic fit with slope ``b ≤ 0`` would reverse (or erase) the ranking; it is refused.

Conventions: probabilities are clipped to ``[1e-7, 1 − 1e-7]`` (:data:`PROBABILITY_CLIP`) before
every logit, so outputs of exactly 0 or 1 stay finite; the Brier score, the bins and the ECE use
the unclipped probabilities. Bins are equal-width on [0, 1], the rule of scikit-learn's
``calibration_curve(strategy="uniform")``: ``[0, 1/k]``, then ``(j/k, (j + 1)/k]``. Every input
needs both classes. The calibration slope is NaN (documented, and shown as "n/a" in figures) when
it does not exist: predictions that separate the classes completely or quasi-completely (the
maximum-likelihood slope is infinite) or that are all equal.

Libraries: statsmodels fits the logistic GLMs (``GLM``, Binomial family, Wald CIs), the Wilson
intervals (``proportion_confint(method="wilson")``) and the LOWESS smoother (``lowess``);
scikit-learn gives the Brier score (``brier_score_loss``), the bins (``calibration_curve``) and
``IsotonicRegression``; SciPy the logit/sigmoid and the temperature search
(``minimize_scalar``); Matplotlib's object API draws the figure. No Keras or TensorFlow.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss
from statsmodels.genmod import families
from statsmodels.genmod.generalized_linear_model import GLM
from statsmodels.nonparametric.smoothers_lowess import lowess
from statsmodels.stats.proportion import proportion_confint

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.figures import save_figure

__all__ = [
    "CALIBRATION_METRICS",
    "PROBABILITY_CLIP",
    "RECALIBRATION_METHODS",
    "SMOOTHING_FRAC",
    "TEMPERATURE_BOUNDS",
    "Recalibration",
    "calibration_metrics",
    "fit_recalibration",
    "plot_reliability",
    "pooled_calibration",
    "reliability_data",
    "smoothed_calibration",
]

#: Probabilities are clipped to [PROBABILITY_CLIP, 1 − PROBABILITY_CLIP] before a logit.
PROBABILITY_CLIP = 1e-7
#: The recalibration methods :func:`fit_recalibration` knows.
RECALIBRATION_METHODS = ("logistic", "isotonic", "temperature")
#: LOWESS span: the fraction of the cases in each local regression (statsmodels' default, 2/3).
SMOOTHING_FRAC = 2.0 / 3.0
#: The temperature search interval (T), searched on log T; an optimum at a bound is refused.
TEMPERATURE_BOUNDS = (1e-3, 1e3)
#: The keys of :func:`calibration_metrics` that are numbers to average over fits.
CALIBRATION_METRICS = (
    "intercept",
    "intercept_ci_low",
    "intercept_ci_high",
    "slope",
    "slope_ci_low",
    "slope_ci_high",
    "brier",
    "scaled_brier",
    "ece",
    "prevalence",
    "mean_predicted",
)
_Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
_PARAMETER_KEYS = {"logistic": ("intercept", "slope"), "temperature": ("temperature",), "isotonic": ("x", "y")}


# --------------------------------------------------------------------------- input checks


def _check(y_true, probability) -> tuple[np.ndarray, np.ndarray]:
    """(n,) int 0/1 labels and (n,) float64 probabilities, or OsteoInputError naming the parameter."""
    try:
        p = np.asarray(probability, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise OsteoInputError("probability must be numbers in [0, 1]", parameter="probability") from None
    y = np.asarray(y_true).reshape(-1)
    if y.shape != p.shape:
        raise OsteoInputError(
            f"y_true has {y.size} values but probability has {p.size}; they must be the same cases",
            parameter="probability",
        )
    if y.size == 0:
        raise OsteoInputError("y_true is empty: no predictions to assess", parameter="y_true")
    try:
        labels_ok = bool(np.isin(y, (0, 1)).all())
    except TypeError:
        labels_ok = False
    if not labels_ok:
        shown = sorted({str(v) for v in y.tolist()})[:5]
        raise OsteoInputError(f"y_true must be 0/1 labels (1 = osteoporosis), got values {shown}", parameter="y_true")
    if not np.isfinite(p).all():
        raise OsteoInputError(
            f"probability has {int(np.sum(~np.isfinite(p)))} non-finite values (NaN/inf)", parameter="probability"
        )
    if p.min() < 0.0 or p.max() > 1.0:
        raise OsteoInputError(
            f"probability must lie in [0, 1], got values in [{p.min():g}, {p.max():g}]; pass probabilities, not logits",
            parameter="probability",
        )
    y = y.astype(int)
    if np.unique(y).size < 2:
        raise OsteoInputError(
            f"all {y.size} cases in y_true have label {int(y[0])}; calibration needs both classes", parameter="y_true"
        )
    return y, p


def _check_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral) or n_bins < 1:
        raise OsteoInputError(f"n_bins must be an integer >= 1, got {n_bins!r}", parameter="n_bins")
    return int(n_bins)


def _logit(p: np.ndarray) -> np.ndarray:
    return logit(np.clip(p, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP))


_MAX_INTERCEPT = 2.0 * float(-np.log(PROBABILITY_CLIP))  # twice the largest |logit| a clipped p has


def _separated(y: np.ndarray, z: np.ndarray) -> bool:
    """True when z separates the classes completely or quasi-completely (the logistic slope is infinite)."""
    negatives, positives = z[y == 0], z[y == 1]
    return bool(negatives.max() <= positives.min() or positives.max() <= negatives.min())


# --------------------------------------------------------------------------- metrics


def _citl(y: np.ndarray, z: np.ndarray) -> tuple[float, float, float]:
    """Calibration-in-the-large: intercept of ``y ~ 1 + offset(z)`` and its Wald 95 % CI."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow in exp near separation: judged by the checks below
        result = GLM(y, np.ones((y.size, 1)), family=families.Binomial(), offset=z).fit()
    low, high = result.conf_int(alpha=0.05)[0]
    estimate = float(result.params[0])
    # No finite intercept (e.g. in-sample isotonic probabilities of exactly 0 and 1 agreeing with every
    # label): statsmodels stops at a huge value instead of failing. Beyond the clipped logits' range.
    if not np.isfinite([estimate, low, high]).all() or abs(estimate) > _MAX_INTERCEPT:
        return math.nan, math.nan, math.nan
    return estimate, float(low), float(high)


def _slope_fit(y: np.ndarray, z: np.ndarray):
    """The statsmodels fit of ``y ~ 1 + z``, or None when the slope does not exist (separation, constant z)."""
    if np.ptp(z) == 0.0 or _separated(y, z):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GLM(y, np.column_stack([np.ones(y.size), z]), family=families.Binomial()).fit()


def _bins(y: np.ndarray, p: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    """The non-empty equal-width bins: index, n, events, mean prediction, observed rate."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)  # scikit-learn's rule: [0, e1], (e1, e2], ...
    counts = np.bincount(ids, minlength=n_bins)
    events = np.bincount(ids, weights=y, minlength=n_bins)
    observed, predicted = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    occupied = np.flatnonzero(counts)
    if occupied.size != observed.size:  # scikit-learn changed its bin rule: say so rather than misalign
        raise RuntimeError("scikit-learn's calibration_curve binning differs from osteo_tf's; update _bins")
    return {
        "index": occupied,
        "low": edges[occupied],
        "high": edges[occupied + 1],
        "n": counts[occupied],
        "events": np.rint(events[occupied]).astype(int),
        "mean_predicted": predicted,
        "observed_rate": observed,
    }


def calibration_metrics(y_true, probability, *, n_bins: int = 10) -> dict[str, float | int]:
    """Calibration of one set of predictions: CITL, slope, Brier, scaled Brier and ECE.

    Args:
        y_true: (n,) labels, 0/1 (1 = osteoporosis); both classes needed.
        probability: (n,) predicted probabilities of label 1, in [0, 1]; clipped to
            ``[1e-7, 1 − 1e-7]`` before the logit (the Brier score and the bins use them unclipped).
        n_bins: number of equal-width bins on [0, 1] for the ECE (``[0, 1/k]``, then
            ``(j/k, (j+1)/k]``, scikit-learn's ``calibration_curve(strategy="uniform")``).

    Returns:
        A JSON-safe dict of floats (probabilities and log-odds unitless):

        - ``intercept``, ``intercept_ci_low``, ``intercept_ci_high``: the calibration intercept
          (calibration-in-the-large, log-odds), the intercept of a statsmodels Binomial GLM of y
          with offset logit(p) and no other term, with its 95 % Wald CI; 0 is ideal.
        - ``slope``, ``slope_ci_low``, ``slope_ci_high``: the calibration slope, the coefficient of
          logit(p) in a Binomial GLM ``y ~ 1 + logit(p)``, with its 95 % Wald CI; 1 is ideal.
          NaN when undefined (predictions that separate the classes, or all equal).
        - ``brier``: mean squared error of p (scikit-learn ``brier_score_loss``), in [0, 1].
        - ``scaled_brier``: ``1 − brier / (ȳ(1 − ȳ))``; ≤ 1, 0 = no better than the prevalence.
        - ``ece``: expected calibration error, ``Σ_bins (n_b / n) · |mean p_b − observed rate_b|``
          over the non-empty equal-width bins, in [0, 1].
        - ``n`` (int), ``n_bins`` (int), ``prevalence`` (ȳ), ``mean_predicted`` (mean of p).

    Raises:
        OsteoInputError: mismatched lengths, labels not 0/1, probabilities NaN/inf or outside [0, 1],
            only one class, or ``n_bins`` < 1.
    """
    y, p = _check(y_true, probability)
    n_bins = _check_bins(n_bins)
    z = _logit(p)
    intercept, intercept_low, intercept_high = _citl(y, z)
    slope_fit = _slope_fit(y, z)
    if slope_fit is None:
        slope = slope_low = slope_high = math.nan
    else:
        slope = float(slope_fit.params[1])
        slope_low, slope_high = (float(v) for v in slope_fit.conf_int(alpha=0.05)[1])
    brier = float(brier_score_loss(y, p))
    prevalence = float(y.mean())
    bins = _bins(y, p, n_bins)
    ece = float(np.sum(bins["n"] / y.size * np.abs(bins["mean_predicted"] - bins["observed_rate"])))
    return {
        "intercept": intercept,
        "intercept_ci_low": intercept_low,
        "intercept_ci_high": intercept_high,
        "slope": slope,
        "slope_ci_low": slope_low,
        "slope_ci_high": slope_high,
        "brier": brier,
        "scaled_brier": 1.0 - brier / (prevalence * (1.0 - prevalence)),
        "ece": ece,
        "n": int(y.size),
        "n_bins": n_bins,
        "prevalence": prevalence,
        "mean_predicted": float(p.mean()),
    }


def reliability_data(y_true, probability, *, n_bins: int = 10) -> pd.DataFrame:
    """The binned reliability diagram: one row per non-empty equal-width bin.

    Args:
        y_true: (n,) labels, 0/1; both classes needed.
        probability: (n,) predicted probabilities in [0, 1].
        n_bins: number of equal-width bins on [0, 1] (``[0, 1/k]``, then ``(j/k, (j+1)/k]``).

    Returns:
        A DataFrame, rows in increasing probability, columns ``bin_low``, ``bin_high`` (the bin's
        edges), ``n`` (cases), ``events`` (label-1 cases), ``mean_predicted``, ``observed_rate``
        (both from scikit-learn's ``calibration_curve``), ``ci_low``, ``ci_high`` (Wilson 95 % CI of
        the observed rate, statsmodels ``proportion_confint(method="wilson")``, widened by at most a
        rounding error so that it always contains the observed rate). Probabilities.

    Raises:
        OsteoInputError: as :func:`calibration_metrics`.
    """
    y, p = _check(y_true, probability)
    bins = _bins(y, p, _check_bins(n_bins))
    ci_low, ci_high = proportion_confint(bins["events"], bins["n"], alpha=0.05, method="wilson")
    # statsmodels' Wilson bound can miss 0 or 1 by an ulp when every or no case is an event
    ci_low = np.minimum(np.asarray(ci_low, dtype=np.float64), bins["observed_rate"])
    ci_high = np.maximum(np.asarray(ci_high, dtype=np.float64), bins["observed_rate"])
    return pd.DataFrame(
        {
            "bin_low": bins["low"],
            "bin_high": bins["high"],
            "n": bins["n"],
            "events": bins["events"],
            "mean_predicted": bins["mean_predicted"],
            "observed_rate": bins["observed_rate"],
            "ci_low": ci_low,
            "ci_high": ci_high,
        }
    )


def smoothed_calibration(
    y_true, probability, *, frac: float = SMOOTHING_FRAC, points: int = 101
) -> tuple[np.ndarray, np.ndarray]:
    """A LOWESS calibration curve: the smoothed observed rate as a function of the prediction.

    statsmodels ``lowess`` of y on p (locally linear, tricube weights, span ``frac`` of the cases,
    no robustness iterations — ``it=0``, as robustness weights make no sense for 0/1 outcomes),
    evaluated on an even grid from the smallest to the largest prediction (no extrapolation).

    Args:
        y_true: (n,) labels, 0/1; both classes needed.
        probability: (n,) predicted probabilities in [0, 1].
        frac: the LOWESS span in (0, 1], the fraction of the cases in each local fit
            (default 2/3, :data:`SMOOTHING_FRAC`).
        points: number of grid points (≥ 2).

    Returns:
        ``(x, y)``: (points,) grid of predicted probabilities and (points,) smoothed observed rate
        there, clipped to [0, 1] (a local line can overshoot near the ends).

    Raises:
        OsteoInputError: as :func:`calibration_metrics`, or ``frac``/``points`` out of range.
    """
    y, p = _check(y_true, probability)
    if isinstance(frac, bool) or not isinstance(frac, numbers.Real) or not 0.0 < frac <= 1.0:
        raise OsteoInputError(f"frac must be a number in (0, 1], got {frac!r}", parameter="frac")
    if isinstance(points, bool) or not isinstance(points, numbers.Integral) or points < 2:
        raise OsteoInputError(f"points must be an integer >= 2, got {points!r}", parameter="points")
    grid = np.linspace(p.min(), p.max(), int(points))
    smooth = lowess(y.astype(np.float64), p, frac=float(frac), it=0, xvals=grid)
    return grid, np.clip(np.asarray(smooth, dtype=np.float64), 0.0, 1.0)


def pooled_calibration(fits: list[tuple[np.ndarray, np.ndarray]], *, n_bins: int = 10) -> dict:
    """Calibration over repeated fits: the pooled test predictions and the spread over fits.

    Args:
        fits: one ``(y_true, probability)`` pair per fit (run), each (n_i,) labels 0/1 and (n_i,)
            probabilities in [0, 1], usually each fit's test predictions; each needs both classes.
        n_bins: equal-width bins for the ECE (see :func:`calibration_metrics`).

    Returns:
        ``{"pooled": metrics, "per_fit": [metrics, ...], "mean": {key: float}, "sd": {key: float | None},
        "n_fits": int}``: ``pooled`` is :func:`calibration_metrics` of all fits' predictions
        concatenated (a case predicted by several fits counts once per fit); ``mean`` and ``sd``
        (``ddof=1``; None with one fit) of each key of :data:`CALIBRATION_METRICS` over the fits
        (NaN when some fit's value is NaN).

    Raises:
        OsteoInputError: ``fits`` empty, or a fit with bad input (the message names ``fits[i]``).
    """
    n_bins = _check_bins(n_bins)
    try:
        fits = [] if isinstance(fits, (str, bytes)) else list(fits)
    except TypeError:
        fits = []
    if not fits:
        raise OsteoInputError("fits is empty: pass one (y_true, probability) pair per fit", parameter="fits")
    per_fit, labels, probabilities = [], [], []
    for i, pair in enumerate(fits):
        try:
            y_true, probability = pair
            y, p = _check(y_true, probability)
            per_fit.append(calibration_metrics(y, p, n_bins=n_bins))
        except (TypeError, ValueError) as error:
            raise OsteoInputError(f"fits[{i}]: {error}", parameter="fits") from None
        labels.append(y)
        probabilities.append(p)
    pooled = calibration_metrics(np.concatenate(labels), np.concatenate(probabilities), n_bins=n_bins)
    mean, sd = {}, {}
    for key in CALIBRATION_METRICS:
        values = np.array([metrics[key] for metrics in per_fit], dtype=np.float64)
        mean[key] = float(values.mean())
        sd[key] = float(values.std(ddof=1)) if values.size > 1 else None
    return {"pooled": pooled, "per_fit": per_fit, "mean": mean, "sd": sd, "n_fits": len(per_fit)}


# --------------------------------------------------------------------------- figure


def _label(name: str, metrics: dict) -> str:
    slope = metrics["slope"]
    slope_text = f"{slope:.2f}" if math.isfinite(slope) else "n/a"
    return f"{name}: slope {slope_text}, CITL {metrics['intercept']:+.2f}, ECE {metrics['ece']:.3f}, n={metrics['n']}"


def plot_reliability(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    *,
    title: str = "Calibration (reliability diagram)",
    n_bins: int = 10,
) -> Path:
    """A reliability diagram of one or more models, written atomically as an image.

    Top panel: the diagonal (perfect calibration); per entry, in its own colour, the binned
    observed rate against the bin's mean prediction with Wilson 95 % CI error bars
    (:func:`reliability_data`) and the LOWESS curve (:func:`smoothed_calibration`); the legend gives
    the calibration slope, CITL and ECE. Bottom panel: histograms (steps) of the predicted
    probabilities, 50 equal-width bins.

    Args:
        curves: label → ``(y_true, probability)``, each (n,) labels 0/1 and (n,) probabilities in [0, 1].
        path: the image to write (its suffix picks the format, e.g. ``.png``); folders are created.
        title: the figure's title.
        n_bins: equal-width bins for the points (see :func:`reliability_data`).

    Returns:
        ``path`` as a Path.

    Raises:
        OsteoInputError: ``curves`` empty, or an entry with bad input (the message names it).
    """
    import matplotlib
    from matplotlib.figure import Figure

    n_bins = _check_bins(n_bins)
    if not curves:
        raise OsteoInputError("curves is empty: pass label → (y_true, probability)", parameter="curves")
    prepared = []
    for name, pair in curves.items():
        try:
            y_true, probability = pair
            y, p = _check(y_true, probability)
        except (TypeError, ValueError) as error:
            raise OsteoInputError(f"curves[{name!r}]: {error}", parameter="curves") from None
        prepared.append((str(name), y, p))

    figure = Figure(figsize=(5.5, 6.5), dpi=120)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="perfect calibration")
    histogram_edges = np.linspace(0.0, 1.0, 51)
    for index, (name, y, p) in enumerate(prepared):
        colour = colours[index % len(colours)]
        table = reliability_data(y, p, n_bins=n_bins)
        error = np.vstack(
            [
                np.clip(table["observed_rate"] - table["ci_low"], 0.0, None),
                np.clip(table["ci_high"] - table["observed_rate"], 0.0, None),
            ]
        )
        top.errorbar(
            table["mean_predicted"],
            table["observed_rate"],
            yerr=error,
            fmt="o",
            color=colour,
            markersize=4,
            capsize=2,
            linewidth=1.0,
            label=_label(name, calibration_metrics(y, p, n_bins=n_bins)),
        )
        x_smooth, y_smooth = smoothed_calibration(y, p)
        top.plot(x_smooth, y_smooth, color=colour, linewidth=1.5)
        bottom.hist(p, bins=histogram_edges, histtype="step", color=colour, linewidth=1.0)
    top.plot([], [], color="black", linewidth=1.5, label=f"LOWESS (span {SMOOTHING_FRAC:.2f})")
    top.set(
        ylabel="observed rate (95 % Wilson CI)",
        xlim=(0, 1),
        ylim=(-0.02, 1.02),
        title=title,
    )
    top.title.set_fontsize(9)
    top.legend(loc="upper left", fontsize=6)
    bottom.set(xlabel=f"predicted probability ({n_bins} equal-width bins)", ylabel="count")
    bottom.yaxis.label.set_fontsize(8)
    return save_figure(figure, Path(path))


# --------------------------------------------------------------------------- recalibration


def _number(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise OsteoInputError(f"parameters[{key!r}] must be a finite number, got {value!r}", parameter=key)
    return float(value)


def _numbers(value, key: str) -> list[float]:
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or len(value) == 0:
        raise OsteoInputError(f"parameters[{key!r}] must be a non-empty list of numbers", parameter=key)
    return [_number(v, key) for v in value]


def _normalise(method, parameters) -> dict:
    """JSON-safe, validated parameters for ``method`` (OsteoInputError names the bad key)."""
    if method not in RECALIBRATION_METHODS:
        raise OsteoInputError(
            f"unknown recalibration method {method!r}; use one of {', '.join(RECALIBRATION_METHODS)}",
            parameter="method",
        )
    if not isinstance(parameters, dict):
        raise OsteoInputError(f"parameters must be a dict, got {type(parameters).__name__}", parameter="parameters")
    expected = _PARAMETER_KEYS[method]
    for key in expected:
        if key not in parameters:
            raise OsteoInputError(
                f"{method} recalibration needs parameters[{key!r}] (expected keys {', '.join(expected)})",
                parameter=key,
            )
    for key in parameters:
        if key not in expected:
            raise OsteoInputError(
                f"unknown key parameters[{key!r}] for {method} recalibration (expected {', '.join(expected)})",
                parameter=str(key),
            )
    if method == "logistic":
        slope = _number(parameters["slope"], "slope")
        if slope <= 0.0:
            raise OsteoInputError(
                f"parameters['slope'] must be > 0 (monotone increasing), got {slope}", parameter="slope"
            )
        return {"intercept": _number(parameters["intercept"], "intercept"), "slope": slope}
    if method == "temperature":
        temperature = _number(parameters["temperature"], "temperature")
        if temperature <= 0.0:
            raise OsteoInputError(f"parameters['temperature'] must be > 0, got {temperature}", parameter="temperature")
        return {"temperature": temperature}
    x, y = _numbers(parameters["x"], "x"), _numbers(parameters["y"], "y")
    if len(x) != len(y):
        raise OsteoInputError(f"parameters['x'] has {len(x)} knots but parameters['y'] {len(y)}", parameter="y")
    if np.any(np.diff(x) <= 0.0):
        raise OsteoInputError("parameters['x'] must be strictly increasing", parameter="x")
    if np.any(np.diff(y) < 0.0) or min(y) < 0.0 or max(y) > 1.0:
        raise OsteoInputError("parameters['y'] must be non-decreasing values in [0, 1]", parameter="y")
    return {"x": x, "y": y}


@dataclass(frozen=True)
class Recalibration:
    """A fitted monotone map from predicted probabilities to recalibrated ones.

    Build it with :func:`fit_recalibration` (on validation predictions), store it with
    :meth:`to_dict`, read it back with :meth:`from_dict`, use it with :meth:`apply`.

    Args:
        method: one of :data:`RECALIBRATION_METHODS`.
        parameters: ``"logistic"``: ``{"intercept": a, "slope": b}`` (b > 0), p' = σ(a + b·logit(p));
            ``"temperature"``: ``{"temperature": T}`` (T > 0), p' = σ(logit(p) / T);
            ``"isotonic"``: ``{"x": [...], "y": [...]}``, knots (x strictly increasing, y
            non-decreasing in [0, 1]), p' = ``np.interp(p, x, y)`` (constant beyond the end knots).
            Stored as plain floats and lists.

    Raises:
        OsteoInputError: an unknown method or malformed parameters (the error names the key).
    """

    method: str
    parameters: dict

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", _normalise(self.method, self.parameters))

    def apply(self, probability) -> np.ndarray:
        """Recalibrated probabilities.

        Args:
            probability: (n,) predicted probabilities in [0, 1] (clipped to [1e-7, 1 − 1e-7]
                before the logit for ``"logistic"`` and ``"temperature"``).

        Returns:
            (n,) float64 recalibrated probabilities in [0, 1], non-decreasing in ``probability``.

        Raises:
            OsteoInputError: probabilities NaN/inf or outside [0, 1].
        """
        try:
            p = np.asarray(probability, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise OsteoInputError("probability must be numbers in [0, 1]", parameter="probability") from None
        if not np.isfinite(p).all() or (p.size and (p.min() < 0.0 or p.max() > 1.0)):
            raise OsteoInputError("probability must be finite values in [0, 1]", parameter="probability")
        parameters = self.parameters
        if self.method == "logistic":
            return expit(parameters["intercept"] + parameters["slope"] * _logit(p))
        if self.method == "temperature":
            return expit(_logit(p) / parameters["temperature"])
        return np.interp(p, np.asarray(parameters["x"]), np.asarray(parameters["y"]))

    def to_dict(self) -> dict:
        """``{"method": str, "parameters": {...}}`` with floats and lists of floats only (JSON-safe)."""
        parameters = {key: list(value) if isinstance(value, list) else value for key, value in self.parameters.items()}
        return {"method": self.method, "parameters": parameters}

    @classmethod
    def from_dict(cls, data: dict) -> Recalibration:
        """The recalibration that :meth:`to_dict` wrote.

        Args:
            data: ``{"method": str, "parameters": dict}`` (e.g. read from JSON).

        Returns:
            The Recalibration.

        Raises:
            OsteoInputError: not a dict, a missing or unknown key, an unknown method or malformed
                parameters; the error names the key.
        """
        if not isinstance(data, dict):
            raise OsteoInputError(f"a recalibration must be a dict, got {type(data).__name__}", parameter="data")
        for key in ("method", "parameters"):
            if key not in data:
                raise OsteoInputError(f"the recalibration has no {key!r} key", parameter=key)
        extra = sorted(str(key) for key in data if key not in ("method", "parameters"))
        if extra:
            raise OsteoInputError(f"unknown key {extra[0]!r} in the recalibration", parameter=extra[0])
        return cls(method=data["method"], parameters=data["parameters"])


def _fit_logistic(y: np.ndarray, p: np.ndarray) -> dict:
    z = _logit(p)
    if np.ptp(z) == 0.0:
        raise OsteoInputError(
            "all validation predictions are equal: a logistic recalibration slope cannot be fitted",
            parameter="probability",
        )
    result = _slope_fit(y, z)
    if result is None:
        raise OsteoInputError(
            "the validation predictions separate the classes completely: the logistic recalibration slope is "
            "infinite; use method='isotonic' or more validation cases",
            parameter="probability",
        )
    intercept, slope = (float(v) for v in result.params)
    if slope <= 0.0:
        raise OsteoInputError(
            f"the validation predictions are anti-correlated with the labels (fitted calibration slope "
            f"b = {slope:.3g} <= 0): a logistic recalibration would reverse or erase the model's ranking. "
            "Check the labels and the positive class (1 = osteoporosis) of the validation split",
            parameter="probability",
        )
    return {"intercept": intercept, "slope": slope}


def _fit_temperature(y: np.ndarray, p: np.ndarray) -> dict:
    z = _logit(p)

    def log_loss(log_t: float) -> float:  # mean binary cross-entropy of σ(z / T), numerically stable
        s = z * math.exp(-log_t)
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    low, high = (math.log(bound) for bound in TEMPERATURE_BOUNDS)
    # The loss is convex in 1/T, hence unimodal in log T: a bounded scalar search finds the optimum.
    result = minimize_scalar(log_loss, bounds=(low, high), method="bounded", options={"xatol": 1e-9})
    log_t = float(result.x)
    if log_t - low < 1e-3 or high - log_t < 1e-3:
        raise OsteoInputError(
            f"the temperature ran to the end of its search interval {TEMPERATURE_BOUNDS}: the validation "
            "predictions separate the classes (T -> 0) or are unrelated or anti-correlated with the labels "
            "(T -> infinity)",
            parameter="probability",
        )
    return {"temperature": math.exp(log_t)}


def _fit_isotonic(y: np.ndarray, p: np.ndarray) -> dict:
    model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y.astype(np.float64))
    return {"x": model.X_thresholds_.astype(np.float64).tolist(), "y": model.y_thresholds_.astype(np.float64).tolist()}


def fit_recalibration(y_true, probability, method: str) -> Recalibration:
    """Fits a recalibration map on (validation) predictions.

    Args:
        y_true: (n,) validation labels, 0/1; both classes needed.
        probability: (n,) validation predicted probabilities in [0, 1].
        method: ``"logistic"`` (statsmodels Binomial GLM of y on logit(p): p' = σ(a + b·logit(p))),
            ``"temperature"`` (p' = σ(logit(p)/T), T minimising the mean log loss, searched on log T
            in :data:`TEMPERATURE_BOUNDS` with SciPy's ``minimize_scalar``) or ``"isotonic"``
            (scikit-learn ``IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1)``, kept as
            its knots ``X_thresholds_``/``y_thresholds_``, so that ``np.interp`` reproduces ``predict``).

    Returns:
        The fitted :class:`Recalibration`; every method is monotone non-decreasing in p.

    Raises:
        OsteoInputError: bad input (as :func:`calibration_metrics`), an unknown method, or a fit that
            does not exist: logistic with slope b <= 0 ("the validation predictions are anti-correlated
            with the labels"), separated classes or all-equal predictions; a temperature at the end
            of its search interval.
    """
    if method not in RECALIBRATION_METHODS:
        raise OsteoInputError(
            f"unknown recalibration method {method!r}; use one of {', '.join(RECALIBRATION_METHODS)}",
            parameter="method",
        )
    y, p = _check(y_true, probability)
    fitters = {"logistic": _fit_logistic, "temperature": _fit_temperature, "isotonic": _fit_isotonic}
    return Recalibration(method=method, parameters=fitters[method](y, p))
