"""Failure analysis: the most confident errors, checked against an independent sort of predictions.csv."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.threshold import run_threshold, select_threshold
from osteo_tf.explain.failures import CASE_COLUMNS, failure_cases, failure_lines, write_failures
from osteo_tf.io import write_json

COVARIATES = ["age", "sex", "bmi", "hip_fracture_history"]  # the hip phantom's
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def manifest(phantom_cohort):
    return phantom_cohort("hip", 120)


def _train(root: Path, manifest: Path, mode: str) -> Path:
    from osteo_tf.training.train import train

    return train(manifest, root / mode, backbone="resnet18", mode=mode, image_size=32, epochs=1, verbose=0).path


@pytest.fixture(scope="module")
def run(tmp_path_factory, manifest):
    """A tiny ensemble run (32 px, 1 epoch): the failure analysis needs errors, not a good model."""
    return _train(tmp_path_factory.mktemp("failures"), manifest, "ensemble")


def _set_threshold(run: Path, how: str) -> float:
    """ "sensitivity=1.0" (chosen on val by osteo threshold: low, so false positives exist) or
    "high" (the test positives' upper quartile, recorded by hand: false negatives exist)."""
    if how == "high":
        test = pd.read_csv(run / "predictions.csv").query("split == 'test' and label == 1")
        write_json(run / "threshold.json", {"threshold": float(np.quantile(test["probability"], 0.75))})
    else:
        select_threshold(run, how)
    return run_threshold(run)


def _expected(run: Path, threshold: float, split: str = "test") -> tuple[pd.DataFrame, pd.DataFrame]:
    """All errors of ``split``, most confident first, straight from predictions.csv (no calibration here)."""
    rows = pd.read_csv(run / "predictions.csv").query("split == @split")
    fp = rows[(rows["probability"] >= threshold) & (rows["label"] == 0)]
    fn = rows[(rows["probability"] < threshold) & (rows["label"] == 1)]
    return (
        fp.sort_values("probability", ascending=False, kind="stable"),
        fn.sort_values("probability", kind="stable"),
    )


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert min(image.size) > 100


@pytest.mark.parametrize("how, kind", [("sensitivity=1.0", "false positive"), ("high", "false negative")])
def test_cases_are_the_most_confident_errors_with_their_covariates(run, manifest, how, kind):
    threshold = _set_threshold(run, how)
    fp, fn = _expected(run, threshold)
    table = failure_cases(run, per_kind=3)
    assert list(table.columns) == [*CASE_COLUMNS, *COVARIATES]
    assert table.attrs == {"threshold": threshold, "split": "test"}
    assert (table["kind"] == kind).sum() >= 1  # the threshold makes errors of this kind
    got_fp, got_fn = table[table["kind"] == "false positive"], table[table["kind"] == "false negative"]
    assert (got_fp["label"] == 0).all() and (got_fp["probability"] >= threshold).all()
    assert (got_fn["label"] == 1).all() and (got_fn["probability"] < threshold).all()
    for got, expected in ((got_fp, fp.head(3)), (got_fn, fn.head(3))):
        assert got["image"].tolist() == expected["image"].tolist()
        assert got["probability"].to_numpy() == pytest.approx(expected["probability"].to_numpy())
        assert got["rank"].tolist() == list(range(1, len(expected) + 1))
    assert table["kind"].tolist() == ["false positive"] * len(got_fp) + ["false negative"] * len(got_fn)

    # Covariates: the manifest's own values for each image (read here with pandas, paths resolved).
    raw = pd.read_csv(manifest)
    raw.index = [str((manifest.parent / p).resolve()) for p in raw["image"]]
    for case in table.to_dict("records"):
        row = raw.loc[str(Path(case["image"]).resolve())]
        assert case["patient_id"] == row["patient_id"] and case["label"] == row["label"]
        assert case["age"] == pytest.approx(row["age"]) and case["bmi"] == pytest.approx(row["bmi"])
        assert case["sex"] == row["sex"]
        assert case["hip_fracture_history"] == {"yes": 1, "no": 0}[row["hip_fracture_history"]]

    # per_kind beyond the number of errors: every error, none twice.
    everything = failure_cases(run, per_kind=10_000)
    assert everything["image"].tolist() == fp["image"].tolist() + fn["image"].tolist()
    assert everything["image"].is_unique
    assert failure_cases(run, per_kind=10_000, split="val")["image"].tolist() == sum(
        (e["image"].tolist() for e in _expected(run, threshold, "val")), []
    )
    lines = failure_lines(table)
    assert len(lines) == len(table) and all(Path(i).name in line for i, line in zip(table["image"], lines))


def test_write_failures_makes_a_gradcam_figure_per_case_and_the_grid(run, tmp_path):
    threshold = _set_threshold(run, "high")  # false negatives for certain, false positives most likely
    table = write_failures(run, tmp_path / "out", per_kind=2)
    assert 1 <= len(table) <= 4 and table["figure"].str.startswith("gradcam/").all()
    for figure in table["figure"]:
        assert_png(tmp_path / "out" / figure)
    assert_png(tmp_path / "out" / "failures.png")
    written = pd.read_csv(tmp_path / "out" / "failures.csv")
    assert list(written.columns) == [*CASE_COLUMNS, *COVARIATES, "figure"]
    assert written["image"].tolist() == table["image"].tolist()
    assert written["probability"].to_numpy() == pytest.approx(table["probability"].to_numpy())
    assert table.drop(columns="figure").equals(failure_cases(run, per_kind=2))
    lines = failure_lines(table)
    for case, line in zip(table.to_dict("records"), lines):
        assert f"{'≥' if case['kind'] == 'false positive' else '<'} {threshold:.3f}" in line and case["figure"] in line

    default = write_failures(run, per_kind=1)  # default folder: RUN/failures/
    assert (run / "failures" / "failures.csv").is_file() and (run / "failures" / "failures.png").is_file()
    assert len(default) <= 2


def test_a_run_without_errors_gives_an_empty_table(run, tmp_path):
    """A run folder whose predictions are all right (copied settings, perfect probabilities)."""
    perfect = tmp_path / "perfect"
    perfect.mkdir()
    for name in ("config.json", "COMPLETE"):
        shutil.copy(run / name, perfect / name)
    predictions = pd.read_csv(run / "predictions.csv")
    predictions["probability"] = predictions["label"].astype(float)
    predictions.to_csv(perfect / "predictions.csv", index=False)
    table = failure_cases(perfect)
    assert table.empty and list(table.columns) == [*CASE_COLUMNS, *COVARIATES]
    assert failure_lines(table) == ["no false positives or false negatives at threshold 0.5"]
    shutil.copy(run / "model.keras", perfect / "model.keras")
    shutil.copy(run / "covariate_encoder.json", perfect / "covariate_encoder.json")
    written = write_failures(perfect, tmp_path / "out")
    assert written.empty and list(pd.read_csv(tmp_path / "out" / "failures.csv").columns)[-1] == "figure"
    assert not (tmp_path / "out" / "failures.png").exists()


def test_a_covariates_only_run_gets_the_table_only(tmp_path, manifest):
    run = _train(tmp_path, manifest, "covariates_only")
    threshold = _set_threshold(run, "sensitivity=1.0")
    table = write_failures(run, tmp_path / "out", per_kind=3)
    fp, fn = _expected(run, threshold)
    assert table["image"].tolist() == fp["image"].head(3).tolist() + fn["image"].head(3).tolist()
    assert len(table) >= 1 and (table["figure"] == "").all() and table["age"].notna().all()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["failures.csv"]


def test_refusals_name_the_missing_file(run, tmp_path):
    with pytest.raises(OsteoInputError, match="per_kind must be at least 1") as error:
        failure_cases(run, per_kind=0)
    assert error.value.parameter == "per_kind"
    with pytest.raises(OsteoInputError, match="split must be one of val, test"):
        failure_cases(run, split="train")
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("config.json", "COMPLETE"):
        shutil.copy(run / name, partial / name)
    with pytest.raises(OsteoInputError, match="has no predictions.csv"):
        failure_cases(partial)
    shutil.copy(run / "predictions.csv", partial / "predictions.csv")
    with pytest.raises(OsteoInputError, match="has no model.keras"):
        write_failures(partial)
    pd.read_csv(run / "predictions.csv").drop(columns="probability").to_csv(partial / "predictions.csv", index=False)
    with pytest.raises(OsteoInputError, match="lacks column.*probability"):
        failure_cases(partial)
    (partial / "COMPLETE").unlink()
    with pytest.raises(OsteoInputError, match="COMPLETE"):
        failure_cases(partial)
