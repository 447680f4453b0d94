"""``osteo report`` on fabricated experiment folders (result records with synthetic predictions)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import fit_record
from PIL import Image

from osteo_tf.cli import main
from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.metrics import METRIC_NAMES, binary_metrics
from osteo_tf.evaluation.stats import compare
from osteo_tf.experiments.report import load_results, make_report
from osteo_tf.io import write_json

# ensemble signal strength relative to image-only (1.0): better, worse, identical
EFFECTS = {"resnet18": 2.5, "efficientnet_b0": 0.4, "googlenet": 1.0}


def _fit_record(backbone, mode, repeat, fold, images, labels, strength, rng_seed):
    rng = np.random.default_rng(rng_seed)
    probability = 1 / (1 + np.exp(-(strength * (2 * labels - 1) + rng.normal(0, 1.5, labels.size))))
    return fit_record(
        backbone,
        mode,
        repeat,
        fold,
        images,
        labels,
        probability,
        config_hash="abc123",
        seed=1000 * repeat + fold,
        epochs_run=3,
        best_epoch=2,
        finished_at="2026-11-01T00:00:00",
    )


def fabricate(out: Path, kind="kfold", repeats=5, folds=5, n=100, effects=EFFECTS) -> Path:
    """An experiment folder: experiment.yaml and results/*.json as the runner writes them."""
    (out / "results").mkdir(parents=True)
    (out / "experiment.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "fake",
                "backbones": list(effects),
                "modes": ["image_only", "ensemble"],
                "split": {"kind": kind, "folds": folds, "repeats": repeats},
            }
        )
    )
    images = np.array([f"img_{i:03d}.png" for i in range(n)])
    labels = np.arange(n) % 2
    for repeat in range(repeats):
        order = np.random.default_rng(repeat).permutation(n)
        parts = np.array_split(order, folds) if kind == "kfold" else [order[: n // 2]]
        for fold, test in enumerate(parts):
            seed = 100 * repeat + fold
            fits = [("none", "covariates_only", 0.7)]
            for backbone, effect in effects.items():
                fits += [(backbone, "image_only", 1.0), (backbone, "ensemble", effect)]
            for backbone, mode, strength in fits:
                record = _fit_record(backbone, mode, repeat, fold, images[test], labels[test], strength, seed)
                (out / record["run_dir"]).mkdir(parents=True)
                write_json(out / "results" / f"{record['fit_id']}.json", record)
    return out


@pytest.fixture(scope="module")
def cv_folder(tmp_path_factory):
    folder = fabricate(tmp_path_factory.mktemp("cv") / "exp")
    make_report(folder)
    return folder


def _valid_png(path: Path) -> bool:
    with Image.open(path) as image:
        image.verify()
        return image.format == "PNG"


def test_cv_report_writes_every_table_and_figure(cv_folder):
    report = cv_folder / "report"
    for name in (
        "report.md",
        "report.html",
        "pooled_metrics.csv",
        "calibration.csv",
        "summary.csv",
        "comparison.csv",
        "units.csv",
        "dental_tables.md",
        "per_model.csv",
        "per_model.md",
        "ratio.csv",
        "ratio.md",
    ):
        assert (report / name).is_file(), name
    assert not (report / "delong.csv").exists()
    figures = sorted(p.name for p in (report / "figures").iterdir())
    backbones = ("efficientnet_b0", "googlenet", "resnet18")
    assert figures == sorted(
        ["effect_sizes.png"]
        + [f"{kind}_{b}.png" for kind in ("decision_curve", "reliability", "roc") for b in backbones]
    )
    page = (report / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(figures) and 'id="checklist"' in page
    assert all(_valid_png(report / "figures" / name) for name in figures)
    summary = pd.read_csv(report / "summary.csv")
    assert set(summary["mode"]) == {"image_only", "ensemble", "covariates_only"}
    assert set(summary["n"]) == {5}  # 5 repeats, folds averaged
    ratio = pd.read_csv(report / "ratio.csv").set_index("backbone")
    means = summary.set_index(["backbone", "mode", "metric"])["mean"]
    assert ratio.at["resnet18", "auc"] == pytest.approx(
        100 * means["resnet18", "ensemble", "auc"] / means["resnet18", "image_only", "auc"]
    )
    assert ratio.at["googlenet", "accuracy"] == pytest.approx(100.0)


def test_cv_report_statistics_equal_compare_on_repeat_means(cv_folder):
    results = load_results(cv_folder)
    part = results[results["backbone"] == "resnet18"]
    per_repeat = part.groupby(["mode", "repeat"])["auc"].mean()
    expected = compare(per_repeat["ensemble"].to_numpy(), per_repeat["image_only"].to_numpy())
    row = pd.read_csv(cv_folder / "report" / "comparison.csv").set_index(["backbone", "metric"]).loc["resnet18", "auc"]
    assert row["test"] == expected.test and row["p_value"] == pytest.approx(expected.p_value)
    assert row["hedges_g"] == pytest.approx(expected.hedges_g) and row["effect_size"] == expected.effect_size


def test_cv_report_states_the_winner_per_backbone(cv_folder):
    text = (cv_folder / "report" / "report.md").read_text()
    lines = {b: next(line for line in text.splitlines() if line.startswith(f"- **{b}**")) for b in EFFECTS}
    assert "the ensemble beat image-only on AUC" in lines["resnet18"]
    assert "image-only beat the ensemble on AUC" in lines["efficientnet_b0"]
    assert "did not differ significantly" in lines["googlenet"]
    for line in lines.values():
        assert "Hedges' g = " in line and ("t-test" in line or "Mann–Whitney" in line) and "p " in line
    assert "unit of analysis: repeat" in text
    dental = (cv_folder / "report" / "dental_tables.md").read_text()
    assert "| Test | " in dental and "| Effect size (Hedges' g) | " in dental
    assert "![roc_resnet18](figures/roc_resnet18.png)" in text and "## Methods" in text


def test_single_split_report_uses_delong(tmp_path):
    folder = fabricate(tmp_path / "hip", kind="random", repeats=1, folds=1, n=200)
    text = make_report(folder).read_text()
    delong = pd.read_csv(folder / "report" / "delong.csv").set_index("backbone")
    assert delong.at["resnet18", "p_value"] < 0.05 and delong.at["googlenet", "p_value"] == 1.0
    assert "the ensemble beat image-only on AUC" in text and "DeLong's test" in text
    assert "Hedges' g needs repeated runs" in text and not (folder / "report" / "figures" / "effect_sizes.png").exists()
    assert _valid_png(folder / "report" / "figures" / "roc_resnet18.png")


def test_paired_report_and_mismatched_splits(tmp_path):
    folder = fabricate(tmp_path / "p", repeats=3, folds=2, n=60, effects={"resnet18": 2.5})
    make_report(folder, paired=True)
    comparison = pd.read_csv(folder / "report" / "comparison.csv")
    assert set(comparison["test"]) <= {"paired t-test", "Wilcoxon signed-rank test"} and comparison["paired"].all()
    path = folder / "results" / "resnet18__ensemble__r01__f00.json"
    record = json.loads(path.read_text())
    record["test_predictions"][0]["image"] = "elsewhere.png"
    path.write_text(json.dumps(record))
    with pytest.raises(OsteoInputError, match="different images in run r01"):
        make_report(folder, paired=True)


def test_few_repeats_fall_back_to_fits_with_a_caveat(tmp_path):
    folder = fabricate(tmp_path / "one", repeats=1, folds=5, n=100, effects={"resnet18": 2.5})
    text = make_report(folder).read_text()
    assert "unit of analysis: fit" in text and "optimistic" in text


def test_external_validation_table_is_kept_in_the_folder(tmp_path):
    folder = fabricate(tmp_path / "ext", repeats=3, folds=2, n=60, effects={"resnet18": 2.5})
    other = tmp_path / "other.csv"
    other.write_text("image,patient_id\n")
    calls = []

    def fake_evaluate(run, manifest):
        calls.append(Path(run).name)
        strength = 2.0 if "ensemble" in Path(run).name else 1.0
        seed = len(calls)
        labels = np.arange(40) % 2
        p = 1 / (1 + np.exp(-(strength * (2 * labels - 1) + np.random.default_rng(seed).normal(0, 1.5, 40))))
        write_json(
            Path(run) / f"evaluation_external_{Path(manifest).stem}.json",
            {"source": str(manifest), "rows": "external", **binary_metrics(labels, p)},
        )
        pd.DataFrame({"image": [f"x{i}.png" for i in range(40)], "label": labels, "probability": p}).to_csv(
            Path(run) / f"evaluation_external_{Path(manifest).stem}_predictions.csv", index=False
        )

    text = make_report(folder, external=other, evaluate_fn=fake_evaluate).read_text()
    assert len(calls) == len(load_results(folder))
    assert "## External validation: external_other" in text and "never refitted" in text
    for name in (
        "external_other_summary.csv",
        "external_other_comparison.csv",
        "external_other_fits.csv",
        "external_other.md",
    ):
        assert (folder / "report" / name).is_file()
    figure = folder / "report" / "figures" / "external_other_roc_resnet18.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "figures/external_other_roc_resnet18.png" in text
    assert "test_predictions" not in (folder / "report" / "external_other_fits.csv").read_text()
    assert "## External validation: external_other" in make_report(folder).read_text()  # regenerated, no rescoring
    with pytest.raises(OsteoInputError, match="does not exist"):
        make_report(folder, external=tmp_path / "missing.csv", evaluate_fn=fake_evaluate)


def test_cli_report(cv_folder, tmp_path, capsys):
    assert main(["report", str(cv_folder)]) == 0
    assert "the ensemble beat image-only" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert str(tmp_path / "empty") in capsys.readouterr().err


def test_bad_record_is_named(tmp_path):
    folder = fabricate(tmp_path / "bad", repeats=3, folds=2, n=40, effects={"resnet18": 2.5})
    (folder / "results" / "broken.json").write_text('{"fit_id": "x"}')
    with pytest.raises(OsteoInputError, match="broken.json lacks"):
        load_results(folder)
    assert set(METRIC_NAMES) <= set(
        load_results(fabricate(tmp_path / "ok", repeats=3, folds=2, n=40, effects={"resnet18": 2.5})).columns
    )


def test_leave_one_site_out_experiment_reports_each_held_out_site(tmp_path, phantom_cohort):
    """Real covariates-only fits on a phantom given three sites: report.html has the site table and subgroups."""
    from osteo_tf.experiments.config import parse_experiment
    from osteo_tf.experiments.runner import run_experiment

    source = phantom_cohort("hip", 90)
    table = pd.read_csv(source)
    table["site"] = np.array(["Osaka", "Kyoto", "Nagoya"])[np.arange(len(table)) % 3]
    table["image"] = [str(source.parent / p) for p in table["image"]]
    manifest = tmp_path / "sites.csv"
    table.to_csv(manifest, index=False)
    config = parse_experiment(
        {
            "name": "sites",
            "cohort": {"manifest": str(manifest)},
            "backbones": ["resnet18"],
            "modes": ["covariates_only"],
            "covariates": "hip",
            "split": {"kind": "site", "val_ratio": 0.15},
            "train": {"epochs": 2, "batch_size": 16, "image_size": 32},
        }
    )
    out = tmp_path / "experiment"
    run_experiment(config, out)
    assert main(["report", str(out), "--subgroups", "site"]) == 0
    sites = pd.read_csv(out / "report" / "sites.csv")
    assert sorted(sites["site"]) == ["Kyoto", "Nagoya", "Osaka"] and set(sites["n"]) == {30}
    subgroups = pd.read_csv(out / "report" / "subgroups.csv")
    assert set(subgroups.loc[subgroups["subgroup"] == "site", "level"]) == {"Kyoto", "Nagoya", "Osaka"}
    page = (out / "report" / "report.html").read_text()
    assert "Leave-one-site-out" in page and 'id="subgroups"' in page and 'id="cohort"' in page
