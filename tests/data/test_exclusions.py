"""Exclusion report: every invalid row listed with its reason and counted per reason;
strict by default, ``--allow-exclusions`` leaves them out and records them in the run."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from osteo_tf.cli import main
from osteo_tf.data.exclusions import EXCLUSION_COLUMNS
from osteo_tf.data.manifest import check_manifest, read_manifest
from osteo_tf.data.synthetic import make_cohort
from osteo_tf.errors import OsteoInputError


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    manifest = make_cohort("dental", 36, tmp_path_factory.mktemp("excl"), seed=6, image_size=32)
    (manifest.parent / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return manifest.parent


@pytest.fixture(scope="module")
def bad_manifest(cohort_dir):
    """The phantom with seven invalid rows (lines 3, 5, 7, 9, 11, 13 and a duplicate of line 2)."""
    lines = (cohort_dir / "manifest.csv").read_text().splitlines()
    header = lines[0].split(",")
    col = {name: header.index(name) for name in header}

    def edit(n, name, value):
        cells = lines[n - 1].split(",")
        cells[col[name]] = value
        lines[n - 1] = ",".join(cells)

    edit(3, "age", "sixty")
    edit(5, "bmi", "")
    edit(7, "image", "images/missing.png")
    edit(9, "image", "images/corrupt.png")
    edit(11, "label", "0" if lines[10].split(",")[col["label"]] == "1" else "1")  # disagrees with t_score
    lines[12] += ",surplus"
    lines.append(lines[1])
    path = cohort_dir / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


REASONS = {
    3: "invalid age",
    5: "missing bmi",
    7: "image not found",
    9: "image unreadable or unsupported",
    11: "label disagrees with T-score",
    13: "wrong number of values in the row",
    2: "duplicate image",
    38: "duplicate image",
}


def test_check_lists_every_invalid_row_with_reason(bad_manifest):
    check = check_manifest(bad_manifest)
    assert check.n_rows == 37 and check.n_excluded == 8 and len(check.cohort) == 29
    table = check.exclusions
    assert list(table.columns) == list(EXCLUSION_COLUMNS)
    assert dict(zip(table["line"], table["reason"])) == REASONS
    assert table.loc[table["line"] == 7, "image"].item() == "images/missing.png"
    assert check.counts["duplicate image"] == 2 and sum(check.counts.values()) == 8
    assert not set(check.cohort["line"]) & set(REASONS)
    with pytest.raises(OsteoInputError, match="has 7 problems"):
        read_manifest(bad_manifest)  # strict: the same problems, all listed


def test_data_check_cli_strict_and_allowed(bad_manifest, tmp_path, capsys):
    out = tmp_path / "excluded.csv"
    assert main(["data", "check", str(bad_manifest), "--exclusions", str(out)]) == 2
    captured = capsys.readouterr()
    for line, reason in REASONS.items():
        assert f"excluded line {line}" in captured.out and reason in captured.out
    assert "8 excluded, 29 valid" in captured.out and "excluded, duplicate image: 2" in captured.out
    assert "8 of the 37 rows" in captured.err and "--allow-exclusions" in captured.err
    written = pd.read_csv(out)
    assert sorted(set(written["line"])) == sorted(REASONS) and list(written.columns) == list(EXCLUSION_COLUMNS)
    assert main(["data", "check", str(bad_manifest), "--exclusions", str(out), "--allow-exclusions"]) == 0


def test_data_check_valid_manifest_and_structural_errors(cohort_dir, tmp_path, capsys):
    assert main(["data", "check", str(cohort_dir / "manifest.csv"), "--exclusions", str(tmp_path / "e.csv")]) == 0
    assert pd.read_csv(tmp_path / "e.csv").empty and "0 excluded, 36 valid" in capsys.readouterr().out
    (tmp_path / "nocol.csv").write_text("image,patient_id,age,sex,t_score\nx.png,P1,60,F,-3\n")
    assert main(["data", "check", str(tmp_path / "nocol.csv"), "--allow-exclusions"]) == 2
    assert "required column 'bmi' (or both" in capsys.readouterr().err


def test_all_rows_invalid_is_an_error(tmp_path):
    (tmp_path / "m.csv").write_text("image,patient_id,age,sex,bmi,t_score\na.png,P1,60,F,22,-3\n")
    check = check_manifest(tmp_path / "m.csv")
    with pytest.raises(OsteoInputError, match="every one of the 1 rows"):
        check.require_rows()


def test_training_records_exclusions_in_the_run(bad_manifest, tmp_path, capsys):
    run = tmp_path / "run"
    common = [
        "train",
        "--manifest",
        str(bad_manifest),
        "--out",
        str(run),
        "--mode",
        "covariates_only",
        "--epochs",
        "1",
        "--verbose",
        "0",
    ]
    assert main(common) == 2 and not run.exists()
    assert main([*common, "--allow-exclusions"]) == 0
    assert "8 excluded, 29 valid" in capsys.readouterr().out
    recorded = pd.read_csv(run / "exclusions.csv")
    assert dict(zip(recorded["line"], recorded["reason"])) == REASONS
    settings = json.loads((run / "config.json").read_text())
    assert settings["train"]["allow_exclusions"] is True
    assert settings["exclusions"]["excluded_rows"] == 8 and settings["exclusions"]["manifest_rows"] == 37
    assert len(pd.read_csv(run / "splits.csv")) == 29
    assert main(["evaluate", "--run", str(run)]) == 0
