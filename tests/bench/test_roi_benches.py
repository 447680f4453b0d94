"""Smoke runs of bench/roi_detectors.py and bench/roi_study.py at the smallest sizes (no timing checked)."""

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}


def _json_lines(process: subprocess.CompletedProcess, bench: str) -> list[dict]:
    assert process.returncode == 0, process.stderr[-3000:]
    return [json.loads(line) for line in process.stdout.splitlines() if line.startswith(f'{{"bench": "{bench}"')]


def _run(script: str, *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(BENCH / script), *options]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600, cwd=BENCH.parent)


def test_roi_detectors_scores_both_detectors_on_the_same_held_out_images(tmp_path):
    options = ["--out", str(tmp_path), "--width", "64", "--budget", "12", "--test", "6"]
    rows = _json_lines(
        _run("roi_detectors.py", *options, "--heatmap-epochs", "1", "--max-epochs", "1"), "roi_detectors"
    )
    assert [r["model"].split()[0] for r in rows] == ["heatmap", "keras-hub"]
    for row in rows:
        assert row["n"] == 6 and 0 <= row["share_iou_50"] <= 1 and 0 <= row["iou_median"] <= 1
        assert row["params"] > 0
    assert rows[1]["train_seconds"] >= rows[0]["train_seconds"] or rows[1]["epochs"] == 1
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2


def test_roi_study_budget_curve_runs(tmp_path):
    options = ["--out", str(tmp_path), "--width", "64", "--budgets", "10", "--no-compare", "--max-epochs", "1"]
    (row,) = _json_lines(_run("roi_study.py", *options), "roi_budget")
    assert row["budget"] == 10 and row["n"] == 100 and 0 <= row["share_iou_50"] <= 1
    assert (tmp_path / "summary.md").read_text().startswith("| annotated images")
