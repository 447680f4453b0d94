import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from osteo_tf.data.splits import (
    check_split_classes,
    derive_seed,
    kfold_split,
    kfold_splits,
    random_split,
    site_names,
    site_split,
    site_splits,
    splits_from_table,
    splits_table,
)
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


# --------------------------------------------------------------------------- k-fold (dental protocol)


def assert_disjoint_patients(table, split):
    patients = {k: set(table["patient_id"].iloc[v]) for k, v in split.items()}
    assert not patients["train"] & patients["val"]
    assert not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    patients=st.integers(30, 150),
    folds=st.integers(2, 6),
    prevalence=st.floats(0.2, 0.8),
    seed=st.integers(0, 2**16),
    repeat=st.integers(0, 30),
)
def test_kfold_partitions_rows_and_keeps_class_ratios_within_one(patients, folds, prevalence, seed, repeat):
    labels = (np.random.default_rng(seed).random(patients) < prevalence).astype(int)
    if min(labels.sum(), patients - labels.sum()) < 2 * folds:
        labels[: 2 * folds], labels[2 * folds : 4 * folds] = 1, 0
    table = pd.DataFrame(
        {
            "image": [f"{p}.png" for p in range(patients)],
            "patient_id": [f"P{p}" for p in range(patients)],
            "label": labels,
        }
    )
    splits = kfold_splits(table, folds, (8, 1), seed=seed, repeat=repeat)
    assert len(splits) == folds
    tests = np.concatenate([s["test"] for s in splits])
    assert sorted(tests.tolist()) == list(range(patients))  # every row is tested exactly once
    for split in splits:
        assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(patients))
        assert_disjoint_patients(table, split)
        for label in (0, 1):  # the test fold holds its share of each class, ±1 sample
            share = (labels == label).sum() / folds
            assert abs((labels[split["test"]] == label).sum() - share) < 1
        assert len(split["val"]) == pytest.approx((len(split["train"]) + len(split["val"])) / 9, abs=2)
        assert set(labels[split["val"]]) == {0, 1}


def test_kfold_groups_every_patients_images():
    table = cohort(patients=120, images_per_patient=3)
    for split in kfold_splits(table, 5, seed=4, repeat=2):
        assert_disjoint_patients(table, split)


def test_kfold_is_reproducible_from_seed_repeat_and_fold():
    table = cohort(patients=100)
    a = kfold_split(table, 3, 5, seed=1, repeat=2)
    b = kfold_split(table, 3, 5, seed=1, repeat=2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    other_repeat = kfold_split(table, 3, 5, seed=1, repeat=3)
    other_seed = kfold_split(table, 3, 5, seed=2, repeat=2)
    assert not np.array_equal(a["test"], other_repeat["test"])
    assert not np.array_equal(a["test"], other_seed["test"])
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3) != derive_seed(1, 3, 2)
    assert 0 <= derive_seed(2**31, 999) < 2**31


def test_kfold_too_few_patients_is_a_clear_error():
    with pytest.raises(OsteoInputError, match="patients per label"):
        kfold_splits(cohort(patients=8, images_per_patient=1), 5)
    with pytest.raises(OsteoInputError, match="out of range"):
        kfold_split(cohort(), 5, 5)


@pytest.mark.parametrize("split", [random_split, kfold_splits])
def test_a_one_class_cohort_is_refused_by_every_protocol(split):
    table = cohort(patients=40).assign(label=1)
    with pytest.raises(OsteoInputError, match="has one class only: 80 osteoporosis and 0 non-osteoporosis rows"):
        split(table)


def test_a_part_of_one_class_is_refused_with_the_counts_of_every_part():
    table = cohort(patients=10, images_per_patient=1)
    labels = table["label"].to_numpy()
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    splits = {
        "train": np.concatenate([positives[1:], negatives[2:]]),
        "val": negatives[:1],
        "test": np.concatenate([positives[:1], negatives[1:2]]),
    }
    with pytest.raises(
        OsteoInputError,
        match=r"the val part of the split has one class only \(train: "
        rf"{len(positives) - 1} osteoporosis and {len(negatives) - 2} non-osteoporosis rows; val: 0 "
        r"osteoporosis and 1 non-osteoporosis rows; test: 1 osteoporosis and 1 non-osteoporosis rows\)",
    ):
        check_split_classes(table, splits)


def test_a_random_split_leaving_the_test_part_one_class_is_refused():
    table = pd.DataFrame(
        {
            "image": [f"/x/{i}.png" for i in range(30)],
            "patient_id": [f"P{i}" for i in range(30)],
            "label": [1, 1] + [0] * 28,
        }
    )
    with pytest.raises(OsteoInputError, match="part.* of the split 8:1:1 .*one class only"):
        random_split(table, seed=0)


# --------------------------------------------------------------------------- leave one site out


def site_cohort(sizes=(("Kyoto", 40), ("Osaka", 30), ("Nagoya", 25), ("Sapporo", 20)), images_per_patient=2, seed=0):
    """Patients at sites (each patient at one site, two images each), with manifest line numbers."""
    rng = np.random.default_rng(seed)
    rows, patient = [], 0
    for site, patients in sizes:
        labels = rng.permutation(np.arange(patients) % 2)  # half of each site's patients are osteoporotic
        for p in range(patients):
            rows += [(f"/x/{patient}_{i}.png", f"P{patient}", int(labels[p]), site) for i in range(images_per_patient)]
            patient += 1
    table = pd.DataFrame(rows, columns=["image", "patient_id", "label", "site"])
    return table.assign(line=np.arange(2, len(table) + 2))


def test_every_site_is_the_test_set_exactly_once():
    table = site_cohort()
    splits = site_splits(table, seed=3)
    assert list(splits) == ["Kyoto", "Nagoya", "Osaka", "Sapporo"] == list(site_names(table))  # folds: sorted sites
    tests = np.concatenate([s["test"] for s in splits.values()])
    assert sorted(tests.tolist()) == list(range(len(table)))  # the test parts partition the rows
    sites = table["site"].to_numpy()
    for site, split in splits.items():
        assert set(sites[split["test"]]) == {site} and (sites == site).sum() == len(split["test"])
        assert site not in set(sites[split["train"]]) | set(sites[split["val"]])
        assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(len(table)))
        assert_disjoint_patients(table, split)
        rest = len(split["train"]) + len(split["val"])
        assert len(split["val"]) == pytest.approx(rest / 9, abs=4)  # val_ratio (8, 1), per label, by patient
        assert set(table["label"].to_numpy()[split["val"]]) == {0, 1}


def test_site_splits_are_seeded_and_the_test_parts_stay():
    table = site_cohort()
    a, b = site_splits(table, seed=1, repeat=2), site_splits(table, seed=1, repeat=2)
    assert all(np.array_equal(a[s][k], b[s][k]) for s in a for k in a[s])
    for other in (site_splits(table, seed=2, repeat=2), site_splits(table, seed=1, repeat=3)):
        assert all(np.array_equal(a[s]["test"], other[s]["test"]) for s in a)
        assert any(not np.array_equal(a[s]["val"], other[s]["val"]) for s in a)
    one = site_split(table, "Osaka", seed=1, repeat=2)
    assert all(np.array_equal(one[k], a["Osaka"][k]) for k in one)
    # the fold (which seeds the train/val draw) is the site's place in `sites`
    pinned = site_splits(table, seed=1, repeat=2, sites=("Kyoto", "Nagoya", "Osaka", "Sapporo"))
    assert all(np.array_equal(a[s]["val"], pinned[s]["val"]) for s in a)
    assert np.array_equal(site_split(table, "Kyoto", "site", seed=0)["val"], site_splits(table)["Kyoto"]["val"])


def test_site_names_are_stripped_and_another_column_can_hold_them():
    table = site_cohort().rename(columns={"site": "hospital"})
    table["hospital"] = table["hospital"].map(lambda s: f" {s} ")
    assert site_names(table, "hospital") == ("Kyoto", "Nagoya", "Osaka", "Sapporo")
    assert set(site_splits(table, "hospital")) == {"Kyoto", "Nagoya", "Osaka", "Sapporo"}


def test_site_split_refusals_name_the_column_line_patient_and_sites():
    table = site_cohort()
    table.attrs["osteo_source"] = "manifest /data/cohort.csv"
    with pytest.raises(OsteoInputError, match="manifest /data/cohort.csv has no column 'hospital'") as error:
        site_splits(table, "hospital")
    assert error.value.parameter == "column"
    empty = table.copy()
    empty.loc[[3, 7], "site"] = ["", "  "]
    with pytest.raises(
        OsteoInputError, match="^manifest /data/cohort.csv, lines 5, 9, column 'site': the site is empty"
    ):
        site_splits(empty)
    empty.loc[7, "site"] = None
    with pytest.raises(OsteoInputError, match="lines 5, 9, column 'site'"):  # a missing cell is empty too
        site_names(empty)
    moved = table.copy()
    moved.loc[1, "site"] = "Osaka"  # P0's second image (line 3) at another site than its first (line 2)
    with pytest.raises(
        OsteoInputError, match=r"patient 'P0' appears at sites 'Kyoto' \(line 2\) and 'Osaka' \(line 3\)"
    ):
        site_splits(moved)
    with pytest.raises(OsteoInputError, match="column 'site': 1 site \\('Kyoto'\\); .* needs at least 2 sites"):
        site_splits(site_cohort(sizes=(("Kyoto", 40),)))
    with pytest.raises(OsteoInputError, match="site 'Kobe' is not one of the split's sites"):
        site_split(table, "Kobe")
    with pytest.raises(OsteoInputError, match="site 'Kobe' has no rows in manifest /data/cohort.csv"):
        site_split(table, "Kobe", sites=("Kobe", "Kyoto"))
    with pytest.raises(OsteoInputError, match="val_ratio of two positive numbers"):
        site_split(table, "Kyoto", val_ratio=(8, 0))


def test_a_site_split_leaving_a_part_one_class_is_refused():
    table = site_cohort()
    table.loc[table["site"] == "Sapporo", "label"] = 1
    with pytest.raises(OsteoInputError, match=r"the test part of the split repeat 0, test site 'Sapporo' \(fold 3\)"):
        site_splits(table)
    tiny = site_cohort(sizes=(("Kyoto", 40), ("Osaka", 2)))
    with pytest.raises(OsteoInputError, match="the training sites of test site 'Kyoto' has 1 patient"):
        site_split(tiny, "Kyoto")
