"""The cohort table on a synthetic hip manifest: counts, and p-values equal to scipy's."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from osteo_tf.cli import main
from osteo_tf.data.manifest import ManifestConfig, read_manifest
from osteo_tf.evaluation.cohort import categorical_test, cohort_table, write_cohort_table


@pytest.fixture(scope="module")
def manifest(phantom_cohort):
    return phantom_cohort("hip", 60, image_size=32)


def _expected_continuous(a, b):
    if st.shapiro(a).pvalue > 0.05 and st.shapiro(b).pvalue > 0.05:
        return "Welch two-sample t-test", st.ttest_ind(a, b, equal_var=False).pvalue
    return "Mann–Whitney U test", st.mannwhitneyu(a, b, alternative="two-sided").pvalue


def test_cohort_table_counts_and_p_values_equal_scipy(manifest):
    cohort = read_manifest(manifest, ManifestConfig(check_images=False))
    table, notes = cohort_table(cohort)
    rows = table.set_index("characteristic")
    sick, healthy = cohort[cohort["label"] == 1], cohort[cohort["label"] == 0]
    assert rows.at["Number of patients", "osteoporosis"] == str(len(sick))
    assert rows.at["Number of patients", "non_osteoporosis"] == str(len(healthy))
    women = int((sick["sex"] == "F").sum())
    assert rows.at["Sex: female, n (%)", "osteoporosis"] == f"{women} ({100 * women / len(sick):.1f})"
    assert rows.at["Age, years: mean (SD, min–max)", "osteoporosis"] == (
        f"{sick['age'].mean():.1f} ({sick['age'].std():.1f}, {sick['age'].min():.1f}–{sick['age'].max():.1f})"
    )
    for column, name in (("age", "Age, years: mean (SD, min–max)"), ("bmi", "BMI, kg/m²: mean (SD, min–max)")):
        test, p = _expected_continuous(sick[column].to_numpy(), healthy[column].to_numpy())
        assert rows.at[name, "test"] == test and rows.at[name, "p_value"] == pytest.approx(p)
    for column, level, name in (
        ("sex", "F", "Sex: female, n (%)"),
        ("hip_fracture_history", 1, "History of hip fracture, n (%)"),
    ):
        counts = np.array([[(g[column] == level).sum(), (g[column] != level).sum()] for g in (sick, healthy)])
        expected = st.contingency.expected_freq(counts)
        if (expected < 5).any():
            test, p = "Fisher's exact test", st.fisher_exact(counts).pvalue
        else:
            test, p = "Pearson's χ² test", st.chi2_contingency(counts, correction=False).pvalue
        assert rows.at[name, "test"] == test and rows.at[name, "p_value"] == pytest.approx(p)
    assert notes == []


def test_categorical_test_switches_to_fisher_on_small_expected_counts():
    big = np.array([[40, 20], [25, 35]])
    assert categorical_test(big)[0] == "Pearson's χ² test"
    assert categorical_test(big)[2] == pytest.approx(st.chi2_contingency(big, correction=False).pvalue)
    small = np.array([[8, 2], [3, 7]])
    assert categorical_test(small)[0] == "Fisher's exact test"
    assert categorical_test(small)[2] == pytest.approx(st.fisher_exact(small).pvalue)


def test_patients_with_several_images_count_once():
    cohort = pd.DataFrame(
        {
            "patient_id": ["a", "a", "b", "c", "d", "e", "f"],
            "label": [1, 1, 1, 1, 0, 0, 0],
            "age": [70.0, 71.0, 80.0, 75.0, 60.0, 62.0, 65.0],
            "sex": list("FFFMMFM"),
        }
    )
    table, notes = cohort_table(cohort)
    rows = table.set_index("characteristic")
    assert rows.at["Number of patients", "osteoporosis"] == "3"
    assert rows.at["Number of images", "osteoporosis"] == "4" and "first image" in notes[0]
    mixed = cohort.assign(label=[1, 0, 1, 1, 0, 0, 0])
    table, notes = cohort_table(mixed)
    assert table.iloc[0]["characteristic"] == "Number of images" and "both classes" in notes[0]


def test_cli_cohort_writes_markdown_and_csv(manifest, tmp_path, capsys):
    assert main(["cohort", str(manifest), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "Osteoporosis (T-score ≤ -2.5)" in printed and "History of hip fracture" in printed
    assert (tmp_path / "cohort_table.md").read_text() in printed
    csv = pd.read_csv(tmp_path / "cohort_table.csv")
    assert list(csv.columns) == ["characteristic", "osteoporosis", "non_osteoporosis", "p_value", "test"]
    text, _ = write_cohort_table(manifest, tmp_path / "again")
    assert text == (tmp_path / "cohort_table.md").read_text()


def test_cli_cohort_missing_manifest_exits_2(tmp_path, capsys):
    assert main(["cohort", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err
