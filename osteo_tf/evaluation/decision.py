"""Decision curve analysis: the net benefit of acting on a model's probability (Vickers & Elkin 2006).

A clinician who would treat (refer for DXA, start therapy) at a threshold probability ``pt``
weighs a missed case against an unnecessary intervention at odds ``pt / (1 − pt)``. Treating
everyone whose probability is at least ``pt`` then has, per patient,

    net benefit = TP/n − FP/n · pt / (1 − pt)

where TP and FP count the true and false positives at ``pt`` among the ``n`` patients. The two
default strategies are *treat none* (net benefit 0) and *treat all*, ``prevalence − (1 −
prevalence) · pt / (1 − pt)``; a model is useful at ``pt`` only where it beats both. The
interventions avoided per 100 patients, at no loss of true positives, are ``(net benefit −
treat all) / (pt / (1 − pt)) · 100``. TRIPOD+AI asks for this (items 12e and 15) beside
discrimination and calibration.

The formula is three lines, so it is computed here: the ``dcurves`` package (Sloan-Kettering's
reference implementation) would add lifelines and its survival machinery to the runtime
dependencies for nothing the binary case needs. ``dcurves`` is the reference in the tests,
which check that both give the same net benefit (model and treat all) to 1e-12 at every
threshold; like ``dcurves``, a patient counts as positive at ``pt`` when its probability is
``>= pt``.

:func:`net_benefit` gives one model's curve (wide: the model, treat all and treat none side by
side); :func:`decision_curve` several models on the same patients in long format; and
:func:`write_decision_curve` writes that table as a CSV and plots it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.figures import new_figure, save_figure
from osteo_tf.io import write_csv
from osteo_tf.vocabulary import MODEL_NAMES

__all__ = [
    "CURVE_COLUMNS",
    "DEFAULT_THRESHOLDS",
    "NET_BENEFIT_COLUMNS",
    "TREAT_ALL",
    "TREAT_NONE",
    "decision_curve",
    "net_benefit",
    "write_decision_curve",
]

#: Threshold probabilities 0.01, 0.02, …, 0.99 (each exactly i / 100, as dcurves builds its grid).
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(i / 100 for i in range(1, 100))
#: The columns of :func:`net_benefit`.
NET_BENEFIT_COLUMNS = (
    "threshold",
    "net_benefit",
    "treat_all",
    "treat_none",
    "tp_rate",
    "fp_rate",
    "interventions_avoided_per_100",
)
#: The columns of :func:`decision_curve`, one row per (model, threshold).
CURVE_COLUMNS = ("model", "threshold", "net_benefit", "tp_rate", "fp_rate", "interventions_avoided_per_100")
#: The names of the two default strategies in :func:`decision_curve` (reserved: no model may use them).
TREAT_ALL, TREAT_NONE = "treat_all", "treat_none"


def net_benefit(y_true, probability, thresholds: Iterable[float] = DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """One model's decision curve, with treat all and treat none at the same thresholds.

    Args:
        y_true: the outcome per patient, 0/1 (1 = osteoporosis).
        probability: the model's probability per patient, in [0, 1].
        thresholds: threshold probabilities, each strictly between 0 and 1 (default
            :data:`DEFAULT_THRESHOLDS`), in the order the rows should have.

    Returns:
        One row per threshold, columns :data:`NET_BENEFIT_COLUMNS`: ``threshold``;
        ``net_benefit`` (the model's, TP/n − FP/n · pt/(1−pt)); ``treat_all``; ``treat_none``
        (0); ``tp_rate`` and ``fp_rate`` (true / false positives at ``probability >= pt`` per
        patient, TP/n and FP/n); ``interventions_avoided_per_100`` (the model against treat all).

    Raises:
        OsteoInputError: labels not 0/1, probabilities outside [0, 1] or not finite, lengths
            that differ, no patients, or a threshold outside (0, 1).
    """
    y, p = _check_outcomes(y_true, probability)
    t = _check_thresholds(thresholds)
    n = len(y)
    odds = t / (1 - t)
    positives, negatives = np.sort(p[y == 1]), np.sort(p[y == 0])
    tp_rate = (len(positives) - np.searchsorted(positives, t, side="left")) / n  # probability >= pt
    fp_rate = (len(negatives) - np.searchsorted(negatives, t, side="left")) / n
    model = tp_rate - fp_rate * odds
    treat_all = _treat_all(len(positives) / n, odds)
    return pd.DataFrame(
        {
            "threshold": t,
            "net_benefit": model,
            "treat_all": treat_all,
            "treat_none": np.zeros_like(t),
            "tp_rate": tp_rate,
            "fp_rate": fp_rate,
            "interventions_avoided_per_100": (model - treat_all) / odds * 100,
        },
        columns=list(NET_BENEFIT_COLUMNS),
    )


def decision_curve(
    curves: Mapping[str, tuple[object, object]], *, thresholds: Iterable[float] = DEFAULT_THRESHOLDS
) -> pd.DataFrame:
    """The decision curves of several models on the same patients, in long format.

    Args:
        curves: model name → (y_true, probability), as :func:`net_benefit` takes them. Every
            model must be scored on patients of the same prevalence (normally the same
            patients), so that treat all is one curve.
        thresholds: as for :func:`net_benefit`.

    Returns:
        Columns :data:`CURVE_COLUMNS`: one row per (model, threshold), the models in the
        order given, then :data:`TREAT_ALL` and :data:`TREAT_NONE` once each (their
        ``tp_rate`` / ``fp_rate`` are those of treating everyone / no one).

    Raises:
        OsteoInputError: no model, a model named treat_all or treat_none, models whose
            outcomes differ in prevalence, or what :func:`net_benefit` refuses.
    """
    if not curves:
        raise OsteoInputError("a decision curve needs at least one model in 'curves'", parameter="curves")
    reserved = [name for name in curves if name in (TREAT_ALL, TREAT_NONE)]
    if reserved:
        raise OsteoInputError(
            f"model name(s) {reserved} in 'curves' are reserved for the default strategies; rename the model",
            parameter="curves",
        )
    tables, prevalence = {}, {}
    for name, (y_true, probability) in curves.items():
        tables[name] = net_benefit(y_true, probability, thresholds)
        y = np.asarray(y_true)
        prevalence[name] = (int((y == 1).sum()), len(y))
    events, n = next(iter(prevalence.values()))
    if any(e * n != events * m for e, m in prevalence.values()):
        shown = ", ".join(f"{name}: {e}/{m}" for name, (e, m) in prevalence.items())
        raise OsteoInputError(
            f"the models in 'curves' are scored on outcomes of different prevalence ({shown}); a decision curve "
            "compares models on the same patients, so that treat all is one curve",
            parameter="curves",
        )
    first = next(iter(tables.values()))
    t, rate = first["threshold"].to_numpy(), events / n
    parts = [
        pd.DataFrame({"model": name, **{c: table[c].to_numpy() for c in CURVE_COLUMNS[1:]}})
        for name, table in tables.items()
    ]
    treat_all = first["treat_all"].to_numpy()
    for name, benefit, tp, fp in ((TREAT_ALL, treat_all, rate, 1 - rate), (TREAT_NONE, np.zeros_like(t), 0.0, 0.0)):
        avoided = (benefit - treat_all) / (t / (1 - t)) * 100
        parts.append(
            pd.DataFrame(
                {
                    "model": name,
                    "threshold": t,
                    "net_benefit": benefit,
                    "tp_rate": np.full_like(t, tp),
                    "fp_rate": np.full_like(t, fp),
                    "interventions_avoided_per_100": avoided,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)[list(CURVE_COLUMNS)]


def write_decision_curve(
    curves: Mapping[str, tuple[object, object]],
    csv_path: str | Path,
    png_path: str | Path,
    *,
    title: str = "Decision curve",
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
) -> tuple[Path, Path]:
    """Writes :func:`decision_curve` of ``curves`` as a CSV and plots it (each file atomically).

    The figure shows every model's net benefit against the threshold probability, with treat
    all and treat none; the y-axis runs from −0.05 to 1.1 × the prevalence (the most any
    strategy can gain), so treat all's plunge at high thresholds does not flatten the curves.

    Args:
        curves: model name → (y_true, probability); see :func:`decision_curve`.
        csv_path: where the long table goes.
        png_path: where the figure goes.
        title: the figure's title.
        thresholds: as for :func:`net_benefit`.

    Returns:
        (csv_path, png_path) as paths.

    Raises:
        OsteoInputError: what :func:`decision_curve` refuses.
    """
    table = decision_curve(curves, thresholds=thresholds)
    y_first = np.asarray(next(iter(curves.values()))[0])
    prevalence = float((y_first == 1).mean())
    figure, axes = new_figure((6, 4.5))
    for name in curves:
        rows = table[table["model"] == name]
        axes.plot(rows["threshold"], rows["net_benefit"], linewidth=1.8, label=MODEL_NAMES.get(name, name))
    everyone = table[table["model"] == TREAT_ALL]
    axes.plot(everyone["threshold"], everyone["net_benefit"], color="grey", linewidth=1.2, label="Treat all")
    axes.axhline(0.0, color="black", linestyle="--", linewidth=1.0, label="Treat none")
    low, high = float(table["threshold"].min()), float(table["threshold"].max())
    axes.set(
        xlabel="threshold probability",
        ylabel="net benefit",
        xlim=(low, high) if high > low else (low - 0.01, high + 0.01),
        ylim=(-0.05, max(1.1 * prevalence, 0.05)),
        title=f"{title} (prevalence {prevalence:.1%}, n={len(y_first)})",
    )
    axes.title.set_fontsize(9)
    axes.legend(loc="upper right", fontsize=7)
    csv_written = write_csv(csv_path, table)
    return csv_written, save_figure(figure, Path(png_path))


def _treat_all(prevalence: float, odds: np.ndarray) -> np.ndarray:
    return prevalence - (1 - prevalence) * odds


def _check_outcomes(y_true, probability) -> tuple[np.ndarray, np.ndarray]:
    y, p = np.asarray(y_true).ravel(), np.asarray(probability, dtype=np.float64).ravel()
    if len(y) != len(p):
        raise OsteoInputError(
            f"y_true has {len(y)} values but probability has {len(p)}; give one of each per patient",
            parameter="probability",
        )
    if len(y) == 0:
        raise OsteoInputError("a decision curve needs at least one patient; y_true is empty", parameter="y_true")
    if not np.isin(y, (0, 1)).all():
        bad = sorted({str(v) for v in y[~np.isin(y, (0, 1))]})[:5]
        raise OsteoInputError(f"y_true must hold 0/1 outcomes, got {', '.join(bad)}", parameter="y_true")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        bad = p[~(np.isfinite(p) & (p >= 0) & (p <= 1))][:5]
        raise OsteoInputError(
            f"probability must hold finite values in [0, 1], got {', '.join(f'{v:g}' for v in bad)}",
            parameter="probability",
        )
    return y.astype(np.int64), p


def _check_thresholds(thresholds: Iterable[float]) -> np.ndarray:
    try:
        t = np.asarray(list(thresholds), dtype=np.float64)
    except (TypeError, ValueError):
        raise OsteoInputError(f"thresholds must be numbers, got {thresholds!r}", parameter="thresholds") from None
    if t.ndim != 1 or len(t) == 0:
        raise OsteoInputError("thresholds must be a non-empty list of numbers", parameter="thresholds")
    bad = t[~((t > 0) & (t < 1))]
    if len(bad):
        raise OsteoInputError(
            f"thresholds must lie strictly between 0 and 1 (the odds pt/(1−pt) are 0 or undefined at the ends), "
            f"got {', '.join(f'{v:g}' for v in bad[:5])}",
            parameter="thresholds",
        )
    return t
