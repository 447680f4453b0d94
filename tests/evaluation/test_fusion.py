"""The fusion comparison (naive late fusion, paired per fold) on fabricated records with known truth."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import fit_record
from scipy.special import expit

from osteo_tf.evaluation.fusion import NAIVE_LATE, fusion_table, naive_late_fusion
from osteo_tf.experiments.report import load_results, make_report
from osteo_tf.io import write_json

REPO = Path(__file__).resolve().parents[2]
FOLDS = 5


def _record(model, fold, images, labels, probability):
    mode, _, fusion = model.partition("_") if model.startswith("ensemble_") else (model, "", "concat")
    backbone = "none" if model == "covariates_only" else "resnet18"
    return fit_record(
        backbone,
        mode,
        0,
        fold,
        images,
        labels,
        probability,
        fusion=fusion or "concat",
        model=model,
        config_hash="h",
        seed=fold,
        epochs_run=2,
        best_epoch=1,
        finished_at="x",
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Image and covariates as independent evidence (logits a·(2y−1) + noise each). ``ensemble``
    adds the two logits (the ideal fusion); ``ensemble_late`` ignores the covariates."""
    out = tmp_path_factory.mktemp("fusion") / "exp"
    (out / "results").mkdir(parents=True)
    (out / "experiment.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "fake",
                "backbones": ["resnet18"],
                "modes": ["image_only", "ensemble", "covariates_only"],
                "split": {"kind": "kfold", "folds": FOLDS, "repeats": 1},
            }
        )
    )
    rng = np.random.default_rng(0)
    for fold in range(FOLDS):
        labels = np.arange(120) % 2
        images = [f"f{fold}_{i:03d}.png" for i in range(labels.size)]
        image = 1.0 * (2 * labels - 1) + rng.normal(0, 1.5, labels.size)
        covariates = 0.8 * (2 * labels - 1) + rng.normal(0, 1.5, labels.size)
        for model, logit in {
            "image_only": image,
            "covariates_only": covariates,
            "ensemble": image + covariates,
            "ensemble_late": image,
        }.items():
            write_json(out / "results" / f"{model}_{fold}.json", _record(model, fold, images, labels, expit(logit)))
    return out


def test_naive_late_fusion_adds_the_logits_of_the_same_images(folder):
    results = load_results(folder)
    naive = naive_late_fusion(results)
    assert len(naive) == FOLDS and set(naive["mode"]) == {NAIVE_LATE} and set(naive["backbone"]) == {"resnet18"}
    ideal = results[results["mode"] == "ensemble"].sort_values("fold")
    np.testing.assert_allclose(naive.sort_values("fold")["auc"].to_numpy(), ideal["auc"].to_numpy(), atol=1e-9)


def test_fusion_table_pairs_folds_and_measures_against_both_references(folder):
    table = fusion_table(load_results(folder)).set_index("model")
    assert list(table.index) == ["ensemble", "ensemble_late", NAIVE_LATE]
    ideal, blind = table.loc["ensemble"], table.loc["ensemble_late"]
    # Two independent sources of evidence: their sum beats the image alone in every fold.
    assert ideal["higher"] == FOLDS and ideal["min_diff"] > 0 and ideal["diff"] > 0.03
    assert ideal["diff_ci_low"] > 0 and ideal["p_value"] < 0.05
    assert abs(ideal["diff_naive"]) < 1e-9
    # A "fusion" that ignores the covariates is image-only again.
    assert blind["diff"] == 0 and blind["higher"] == 0 and blind["diff_naive"] < -0.03


def test_report_has_a_fusion_section_and_the_check_script_judges_it(folder):
    make_report(folder)
    text = (folder / "report" / "report.md").read_text()
    assert "## Fusion: does the ensemble use the covariates?" in text and "Ensemble (late)" in text
    assert (folder / "report" / "fusion.csv").is_file()
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fusion_check.py"), str(folder)], capture_output=True, text=True
    )
    verdict = json.loads(done.stdout)
    assert verdict["passed"] == {"resnet18/ensemble": True, "resnet18/ensemble_late": False}
    assert done.returncode == 0
