"""The README's "Bring your own data" walk-through runs as written: a DICOM export plus a
spreadsheet → manifest → ``osteo data check`` passing."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osteo_tf.cli import main

pydicom = pytest.importorskip("pydicom", reason="the walk-through reads DICOM: pip install '.[dicom]'")

README = Path(__file__).resolve().parents[1] / "README.md"


def _section_blocks(language: str) -> list[str]:
    text = README.read_text()
    section = text.split("## Bring your own data", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def _pacs_export(folder: Path, write_dicom) -> None:
    rng = np.random.default_rng(0)
    (folder / "export").mkdir()
    clinical = []
    for i in range(4):
        write_dicom(
            folder / "export" / f"IM{i:04d}",
            rng.integers(0, 4096, (450, 300)).astype(np.uint16),
            "MONOCHROME1",
            12,
            PatientID=f"{1000 + i}",
        )
        clinical.append(
            {
                "MRN": f"{1000 + i}",
                "Age": 60 + i,
                "Gender": i % 2,
                "Height": 160,
                "Weight": 60 + i,
                "T_lowest": -3.0 + i,
                "foramen_x": 150,
                "foramen_y": 20,
            }
        )
    pd.DataFrame(clinical).to_csv(folder / "dxa.csv", index=False)


def test_bring_your_own_data_walkthrough(tmp_path, monkeypatch, capsys, write_dicom):
    (snippet,), (yaml_text,) = _section_blocks("python"), _section_blocks("yaml")
    _pacs_export(tmp_path, write_dicom)
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "README.md", "exec"), {})
    (tmp_path / "cols.yaml").write_text(yaml_text)
    assert main(["data", "check", "cohort.csv", "--manifest-config", "cols.yaml"]) == 0
    assert "4 valid rows" in capsys.readouterr().out
    pd.read_csv("cohort.csv").drop(index=2).assign(Age=lambda t: t["Age"].where(t.index != 1)).to_csv(
        "cohort.csv", index=False
    )
    assert main(["data", "check", "cohort.csv", "--manifest-config", "cols.yaml"]) == 2  # an empty Age cell
    assert main(["data", "check", "cohort.csv", "--manifest-config", "cols.yaml", "--impute", "median"]) == 0
