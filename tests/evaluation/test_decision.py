"""Decision curve analysis: a hand-worked example, and the same numbers as the dcurves package."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.decision import (
    CURVE_COLUMNS,
    DEFAULT_THRESHOLDS,
    NET_BENEFIT_COLUMNS,
    TREAT_ALL,
    TREAT_NONE,
    decision_curve,
    net_benefit,
    write_decision_curve,
)


def seeded(n=300, seed=11):
    """Outcomes and two models' probabilities; rounded to 0.01, so many lie exactly on a threshold,
    with some exactly 0 and 1."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    good = np.round(np.clip(0.3 + 0.35 * (y - 0.3) + rng.normal(0, 0.2, n), 0, 1), 2)
    weak = np.round(np.clip(0.3 + 0.1 * (y - 0.3) + rng.normal(0, 0.25, n), 0, 1), 2)
    return y, good, weak


# Ten patients, three with osteoporosis.
Y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
P = np.array([0.9, 0.6, 0.2, 0.7, 0.4, 0.1, 0.1, 0.05, 0.3, 0.2])


def test_a_hand_worked_example():
    table = net_benefit(Y, P, [0.2, 0.25, 0.5])
    assert list(table.columns) == list(NET_BENEFIT_COLUMNS)
    # pt 0.2 (odds 1/4): >= 0.2 are 0.9, 0.6, 0.2 (the tie counts) of the cases, 0.7, 0.4, 0.3, 0.2 of the others
    #   model 3/10 − 4/10 · 1/4 = 0.2; treat all 0.3 − 0.7 · 1/4 = 0.125; avoided (0.2 − 0.125) · 4 · 100 = 30
    # pt 0.25 (odds 1/3): TP 2, FP 3 → 0.2 − 0.3/3 = 0.1; treat all 0.3 − 0.7/3 = 1/15; avoided (1/30) · 3 · 100 = 10
    # pt 0.5 (odds 1): TP 2, FP 1 → 0.2 − 0.1 = 0.1; treat all 0.3 − 0.7 = −0.4; avoided 0.5 · 100 = 50
    np.testing.assert_allclose(table["net_benefit"], [0.2, 0.1, 0.1], atol=1e-15)
    np.testing.assert_allclose(table["treat_all"], [0.125, 1 / 15, -0.4], atol=1e-15)
    np.testing.assert_allclose(table["interventions_avoided_per_100"], [30, 10, 50], atol=1e-12)
    np.testing.assert_allclose(table["tp_rate"], [0.3, 0.2, 0.2], atol=1e-15)
    np.testing.assert_allclose(table["fp_rate"], [0.4, 0.3, 0.1], atol=1e-15)
    assert (table["treat_none"] == 0).all() and table["threshold"].tolist() == [0.2, 0.25, 0.5]


def test_default_thresholds_are_a_percent_grid():
    assert len(DEFAULT_THRESHOLDS) == 99 and DEFAULT_THRESHOLDS[0] == 0.01 and DEFAULT_THRESHOLDS[-1] == 0.99
    assert net_benefit(Y, P)["threshold"].tolist() == list(DEFAULT_THRESHOLDS)


def test_matches_dcurves_at_every_threshold():
    dcurves = pytest.importorskip("dcurves")
    y, good, weak = seeded()
    data = pd.DataFrame({"osteoporosis": y, "good": good, "weak": weak})
    reference = dcurves.dca(
        data=data, outcome="osteoporosis", modelnames=["good", "weak"], thresholds=list(DEFAULT_THRESHOLDS), nper=100
    )
    for name, probability in (("good", good), ("weak", weak)):
        ours = net_benefit(y, probability)
        theirs = reference[reference["model"] == name].reset_index(drop=True)
        everyone = reference[reference["model"] == "all"].reset_index(drop=True)
        np.testing.assert_array_equal(ours["threshold"], theirs["threshold"])
        np.testing.assert_allclose(ours["net_benefit"], theirs["net_benefit"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours["treat_all"], everyone["net_benefit"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours["tp_rate"], theirs["tp_rate"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours["fp_rate"], theirs["fp_rate"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            ours["interventions_avoided_per_100"], theirs["net_intervention_avoided"], rtol=1e-9, atol=1e-9
        )
    assert reference[reference["model"] == "none"]["net_benefit"].abs().max() == 0


def test_decision_curve_is_long_with_treat_all_and_none_once():
    y, good, weak = seeded()
    table = decision_curve({"image_only": (y, weak), "ensemble": (y, good)}, thresholds=[0.1, 0.3, 0.5])
    assert list(table.columns) == list(CURVE_COLUMNS)
    assert table["model"].tolist() == [m for m in ("image_only", "ensemble", TREAT_ALL, TREAT_NONE) for _ in range(3)]
    wide = net_benefit(y, good, [0.1, 0.3, 0.5])
    rows = table[table["model"] == "ensemble"]
    np.testing.assert_array_equal(rows["net_benefit"], wide["net_benefit"])
    everyone = table[table["model"] == TREAT_ALL]
    np.testing.assert_array_equal(everyone["net_benefit"], wide["treat_all"])
    assert (everyone["interventions_avoided_per_100"] == 0).all()
    np.testing.assert_allclose(everyone["tp_rate"], y.mean())
    assert (table[table["model"] == TREAT_NONE]["net_benefit"] == 0).all()


def test_write_decision_curve_writes_the_table_and_a_figure(tmp_path):
    y, good, weak = seeded()
    csv_path, png_path = write_decision_curve(
        {"image_only": (y, weak), "ensemble": (y, good)}, tmp_path / "dca.csv", tmp_path / "dca.png", title="Hip"
    )
    table = pd.read_csv(csv_path)
    assert list(table.columns) == list(CURVE_COLUMNS) and len(table) == 4 * len(DEFAULT_THRESHOLDS)
    assert set(table["model"]) == {"image_only", "ensemble", TREAT_ALL, TREAT_NONE}
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dca.csv", "dca.png"]  # no temporaries left


@pytest.mark.parametrize(
    "y_true, probability, thresholds, message",
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], [0.5], "y_true must hold 0/1 outcomes, got 2"),
        ([0, 1], [0.1, 1.2], [0.5], r"probability must hold finite values in \[0, 1\], got 1.2"),
        ([0, 1], [0.1, np.nan], [0.5], "probability must hold finite values"),
        ([0, 1, 1], [0.1, 0.2], [0.5], "y_true has 3 values but probability has 2"),
        ([], [], [0.5], "at least one patient"),
        ([0, 1], [0.1, 0.2], [0.0, 0.5], "strictly between 0 and 1.*got 0"),
        ([0, 1], [0.1, 0.2], [1.0], "strictly between 0 and 1.*got 1"),
        ([0, 1], [0.1, 0.2], [], "non-empty"),
    ],
)
def test_bad_inputs_are_clear_errors(y_true, probability, thresholds, message):
    with pytest.raises(OsteoInputError, match=message):
        net_benefit(y_true, probability, thresholds)


def test_decision_curve_refusals():
    with pytest.raises(OsteoInputError, match="at least one model") as error:
        decision_curve({})
    assert error.value.parameter == "curves"
    with pytest.raises(OsteoInputError, match="reserved"):
        decision_curve({TREAT_ALL: (Y, P)})
    with pytest.raises(OsteoInputError, match="different prevalence"):
        decision_curve({"a": (Y, P), "b": (1 - Y, P)})  # 3/10 and 7/10
