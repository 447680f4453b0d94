import numpy as np
import pandas as pd
import pytest

from osteo_tf.data.splits import random_split, splits_from_table, splits_table
from osteo_tf.errors import OsteoInputError


def cohort(patients=200, images_per_patient=2, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, patients)
    rows = [(f"/x/{p}_{i}.png", f"P{p}", labels[p]) for p in range(patients) for i in range(images_per_patient)]
    return pd.DataFrame(rows, columns=["image", "patient_id", "label"])


def test_covers_every_row_once_in_8_1_1():
    table = cohort()
    splits = random_split(table, seed=3)
    joined = np.concatenate(list(splits.values()))
    assert sorted(joined.tolist()) == list(range(len(table)))
    sizes = {k: len(v) / len(table) for k, v in splits.items()}
    assert sizes["train"] == pytest.approx(0.8, abs=0.02)
    assert sizes["val"] == pytest.approx(0.1, abs=0.02)
    assert sizes["test"] == pytest.approx(0.1, abs=0.02)


def test_no_patient_in_two_splits():
    table = cohort(images_per_patient=3)
    splits = random_split(table, seed=1)
    patients = {k: set(table["patient_id"].iloc[v]) for k, v in splits.items()}
    assert not patients["train"] & patients["val"]
    assert not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]


def test_stratified_by_label():
    table = cohort(patients=400)
    splits = random_split(table, seed=0)
    prevalence = table["label"].mean()
    for rows in splits.values():
        assert table["label"].iloc[rows].mean() == pytest.approx(prevalence, abs=0.06)


def test_deterministic_for_a_seed_and_different_across_seeds():
    table = cohort()
    a, b, c = random_split(table, seed=7), random_split(table, seed=7), random_split(table, seed=8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_table_round_trip():
    table = cohort()
    splits = random_split(table, seed=2)
    back = splits_from_table(table, splits_table(table, splits))
    assert all(np.array_equal(splits[k], back[k]) for k in splits)


def test_too_small_cohort_is_a_clear_error():
    with pytest.raises(OsteoInputError, match="patients per label"):
        random_split(cohort(patients=6, images_per_patient=1))
