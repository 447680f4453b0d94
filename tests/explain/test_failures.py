"""Failure analysis: the most confident errors, against an independent sort of predictions.csv."""

from __future__ import annotations

import pandas as pd
import pytest

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.threshold import select_threshold
from osteo_tf.explain.failures import failure_cases, failure_lines, write_failures


@pytest.fixture(scope="module")
def run(tmp_path_factory, phantom_cohort):
    from osteo_tf.training.train import train

    manifest = phantom_cohort("hip", 120)
    path = train(
        manifest,
        tmp_path_factory.mktemp("failures") / "run",
        backbone="resnet18",
        mode="ensemble",
        image_size=32,
        epochs=1,
        verbose=0,
    ).path
    select_threshold(path, "sensitivity=1.0")  # a low threshold: false positives exist
    return path


def test_cases_are_the_most_confident_errors_with_their_covariates(run, phantom_cohort):
    threshold = float(pd.read_json(run / "threshold.json", typ="series")["threshold"])
    test = pd.read_csv(run / "predictions.csv").query("split == 'test'")
    fp = test[(test["probability"] >= threshold) & (test["label"] == 0)].nlargest(3, "probability")
    fn = test[(test["probability"] < threshold) & (test["label"] == 1)].nsmallest(3, "probability")
    table = failure_cases(run, per_kind=3)
    got_fp = table[table["kind"] == "false positive"]
    assert len(got_fp) == min(3, len(fp)) >= 1
    assert got_fp["image"].tolist() == fp["image"].tolist() and got_fp["rank"].tolist() == list(range(1, len(fp) + 1))
    assert table[table["kind"] == "false negative"]["image"].tolist() == fn["image"].tolist()
    manifest = pd.read_csv(phantom_cohort("hip", 120))
    first = got_fp.iloc[0]
    row = manifest[manifest["image"].map(lambda p: first["image"].endswith(p))].iloc[0]
    assert first["age"] == pytest.approx(row["age"]) and first["sex"] == row["sex"]
    everything = failure_cases(run, per_kind=1000)
    assert len(everything) == len(test[(test["probability"] >= threshold) != (test["label"] == 1)])
    assert len(failure_lines(table)) == len(table)


def test_write_failures_makes_a_gradcam_figure_per_case(run, tmp_path):
    table = write_failures(run, tmp_path / "out", per_kind=2)
    assert (tmp_path / "out" / "failures.png").stat().st_size > 1000
    for figure in table["figure"]:
        assert (tmp_path / "out" / figure).is_file()
    assert pd.read_csv(tmp_path / "out" / "failures.csv")["image"].tolist() == table["image"].tolist()
    with pytest.raises(OsteoInputError, match="per_kind must be at least 1"):
        failure_cases(run, per_kind=0)
