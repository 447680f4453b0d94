"""End to end on trained runs: CIs in metrics.json, calibrate → evaluate / model card, compare, report --run."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from osteo_tf.cli import main
from osteo_tf.evaluation.calibration import Recalibration
from osteo_tf.evaluation.metrics import METRIC_NAMES, binary_metrics
from osteo_tf.experiments.checklist import ITEMS


@pytest.fixture(scope="module")
def runs(tmp_path_factory, phantom_cohort):
    """An ensemble and an image-only run on one split of a small phantom (one epoch each)."""
    from osteo_tf.training.train import train

    manifest = phantom_cohort("hip", 120)
    out = tmp_path_factory.mktemp("report_runs")
    made = {}
    for mode in ("ensemble", "image_only"):
        made[mode] = train(
            manifest, out / mode, backbone="resnet18", mode=mode, image_size=32, epochs=1, verbose=0
        ).path
    return made


def test_metrics_json_carries_patient_bootstrap_cis(runs):
    metrics = json.loads((runs["ensemble"] / "metrics.json").read_text())
    test = metrics["test"]
    assert test["ci"]["unit"] == "patient" and test["ci"]["n_resamples"] == 2000
    for name in METRIC_NAMES:
        low, high = test["ci"]["metrics"][name]
        assert low is None or low <= test[name] <= high, name


def test_calibrated_run_is_evaluated_and_exported_on_the_recalibrated_scale(runs, tmp_path, capsys):
    import shutil

    from osteo_tf.evaluation.evaluate import evaluate
    from osteo_tf.serving.model_card import build_model_card
    from osteo_tf.serving.spec import ServingSpec

    run = tmp_path / "run"
    shutil.copytree(runs["ensemble"], run)
    assert main(["calibrate", "--run", str(run), "--method", "isotonic"]) == 0
    assert "isotonic recalibration fitted on the validation split" in capsys.readouterr().out
    recalibration = Recalibration.from_dict(json.loads((run / "calibration.json").read_text())["recalibration"])
    metrics = evaluate(run)
    raw = pd.read_csv(run / "predictions.csv").query("split == 'test'")
    scored = pd.read_csv(run / "evaluation_test_predictions.csv")
    np.testing.assert_allclose(scored["probability"], recalibration.apply(raw["probability"]), atol=2e-6)
    assert metrics["auc"] == pytest.approx(binary_metrics(raw["label"], recalibration.apply(raw["probability"]))["auc"])
    spec = ServingSpec.from_run(run)
    assert spec.recalibration == recalibration.to_dict()
    card = build_model_card(run, spec, "osteo", 1)
    assert card["recalibration"]["method"] == "isotonic"
    assert "recalibrated (isotonic" in card["signatures"]["serving_default"]["outputs"]["probability"]


def test_compare_two_runs_on_the_same_test_patients(runs, tmp_path, capsys):
    out = tmp_path / "compare.json"
    assert main(["compare", str(runs["ensemble"]), str(runs["image_only"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "DeLong's test" in printed and "McNemar's test" in printed
    result = json.loads(out.read_text())
    a = pd.read_csv(runs["ensemble"] / "predictions.csv").query("split == 'test'")
    b = pd.read_csv(runs["image_only"] / "predictions.csv").query("split == 'test'")
    expected = binary_metrics(a["label"], a["probability"])["auc"] - binary_metrics(b["label"], b["probability"])["auc"]
    assert result["difference"]["auc"]["estimate"] == pytest.approx(expected)


def test_report_run_writes_one_self_contained_page_with_every_section(runs, capsys):
    run = runs["ensemble"]
    assert main(["report", "--run", str(run), "--subgroups", "sex"]) == 0
    page = (run / "report" / "report.html").read_text()
    anchors = {anchor for _, _, anchor in ITEMS if anchor}
    present = set(re.findall(r'<h2 id="([^"]+)"', page))
    assert anchors - present == {"repeats"}  # one run: robustness over repeats is the experiment report's
    assert page.count("data:image/png;base64,") >= 5 and 'src="http' not in page
    assert "provide yourself" in page
    for name in ("metrics", "cohort_splits", "calibration", "decision_curve", "threshold_table", "subgroups"):
        assert (run / "report" / f"{name}.csv").is_file(), name
    subgroups = pd.read_csv(run / "report" / "subgroups.csv")
    assert {"sex", "age band", "BMI class"} <= set(subgroups["subgroup"])
    splits = pd.read_csv(run / "report" / "cohort_splits.csv")
    assert list(splits.columns) == ["characteristic", "train", "val", "test"]


def test_a_run_folder_from_before_cis_still_reports(runs, tmp_path):
    import shutil

    run = tmp_path / "old"
    shutil.copytree(runs["image_only"], run, ignore=shutil.ignore_patterns("report", "threshold*", "calibration*"))
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(
        json.dumps({k: {m: v for m, v in s.items() if m != "ci"} for k, s in metrics.items()})
    )
    assert main(["report", "--run", str(run)]) == 0
    table = pd.read_csv(run / "report" / "metrics.csv")
    assert table.loc[table["metric"] == "auc", "test_low"].notna().all()


def test_report_refuses_an_unknown_subgroup_column_before_any_work(runs, capsys):
    assert main(["report", "--run", str(runs["image_only"]), "--subgroups", "scanner"]) == 2
    assert "no column 'scanner'" in capsys.readouterr().err
    assert main(["report"]) == 2
    assert main(["report", "--run", str(runs["image_only"]), "--paired"]) == 2
    assert "options of an experiment report" in capsys.readouterr().err
