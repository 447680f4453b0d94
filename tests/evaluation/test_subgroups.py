"""Subgroup metrics: each level equals the metrics of its rows alone; levels follow the stated bands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.metrics import binary_metrics
from osteo_tf.evaluation.subgroups import plot_subgroup_forest, subgroup_levels, subgroup_table


def _rows(n=300, seed=0):
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame(
        {
            "patient_id": [f"p{i}" for i in range(n)],
            "label": rng.integers(0, 2, n),
            "sex": rng.choice(["F", "M"], n),
            "age": rng.uniform(40, 90, n).round(1),
            "bmi": rng.uniform(16, 36, n).round(1),
            "hip_fracture_history": rng.integers(0, 2, n),
            "site": rng.choice(["A", "B", ""], n),
        }
    )
    probability = np.clip(0.5 + 0.3 * (rows["label"] - 0.5) + rng.normal(0, 0.25, n), 0, 1)
    return rows, probability.to_numpy()


def test_levels_follow_the_bands():
    rows = pd.DataFrame({"age": [49.9, 50, 79.99, 80, None], "bmi": [18.49, 18.5, 29.9, 30, np.nan]})
    assert subgroup_levels(rows, "age").tolist() == ["< 50", "50–59", "70–79", "≥ 80", "missing"]
    assert subgroup_levels(rows, "bmi").tolist() == [
        "underweight (< 18.5)",
        "normal (18.5–24.9)",
        "overweight (25–29.9)",
        "obese (≥ 30)",
        "missing",
    ]


def test_each_level_equals_the_metrics_of_its_own_rows():
    rows, probability = _rows()
    table = subgroup_table(rows, probability, 0.5, columns=("sex", "age", "site"), n_resamples=200)
    assert table.iloc[0]["level"] == "all" and table.iloc[0]["n"] == 300
    female = table[(table["subgroup"] == "sex") & (table["level"] == "F")].iloc[0]
    mask = (rows["sex"] == "F").to_numpy()
    expected = binary_metrics(rows["label"][mask], probability[mask], 0.5)
    assert female["n"] == mask.sum() and female["auc"] == pytest.approx(expected["auc"])
    assert female["auc_low"] <= female["auc"] <= female["auc_high"]
    assert set(table[table["subgroup"] == "site"]["level"]) == {"A", "B", "missing"}
    for subgroup, levels in table[table["subgroup"] != "all"].groupby("subgroup"):
        assert levels["n"].sum() == 300, subgroup  # every row in exactly one level


def test_one_class_level_has_no_auc_and_unknown_column_is_refused(tmp_path):
    rows, probability = _rows(40)
    rows.loc[rows["sex"] == "M", "label"] = 1
    table = subgroup_table(rows, probability, 0.5, columns=("sex",), n_resamples=200)
    male = table[table["level"] == "M"].iloc[0]
    assert np.isnan(male["auc"]) and "one class" in male["note"] and male["recall"] == male["accuracy"]
    with pytest.raises(OsteoInputError, match="no column 'scanner'"):
        subgroup_table(rows, probability, columns=("sex", "scanner"))
    assert plot_subgroup_forest(table, tmp_path / "forest.png").stat().st_size > 1000
