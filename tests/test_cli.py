"""The command line as a user meets it: exit codes and messages, no tracebacks."""

import json
import subprocess
import sys

import pytest

from osteo_tf.cli import main


def osteo(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "osteo_tf.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_help_answers_without_importing_tensorflow():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from osteo_tf.cli import main; "
            "sys.argv=['osteo','--help']\ntry: main()\nexcept SystemExit: pass\nprint('tensorflow' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "demo" in result.stdout and result.stdout.strip().endswith("False")


def test_data_synth_then_check(tmp_path, capsys):
    assert (
        main(["data", "synth", "--kind", "dental", "--n", "20", "--out", str(tmp_path / "d"), "--image-size", "32"])
        == 0
    )
    assert main(["data", "check", str(tmp_path / "d" / "manifest.csv")]) == 0
    assert "20 valid rows" in capsys.readouterr().out


def test_data_synth_head_neck_variant_and_its_refusal_for_dental(tmp_path, capsys):
    out = tmp_path / "h"
    assert (
        main(
            ["data", "synth", "--n", "12", "--out", str(out), "--image-size", "32", "--informative-region", "head_neck"]
        )
        == 0
    )
    assert json.loads((out / "cohort.json").read_text())["informative_region"] == "head_neck"
    assert (
        main(
            [
                "data",
                "synth",
                "--kind",
                "dental",
                "--n",
                "12",
                "--out",
                str(tmp_path / "d"),
                "--informative-region",
                "head_neck",
            ]
        )
        == 2
    )
    assert "informative_region must be one of ('bone',) for a dental phantom" in capsys.readouterr().err
    assert not (tmp_path / "d" / "manifest.csv").exists()


def test_bad_manifest_exits_2_with_the_row_and_no_traceback(tmp_path):
    (tmp_path / "a.png").write_bytes(b"not a png")
    (tmp_path / "m.csv").write_text("image,patient_id,age,sex,bmi,t_score\na.png,P1,abc,F,22,-3\n")
    result = osteo("train", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "m.csv" in result.stderr and "line 2" in result.stderr and "age" in result.stderr


def test_unknown_backbone_and_missing_run(tmp_path):
    result = osteo("train", "--manifest", "x.csv", "--out", str(tmp_path / "r"), "--backbone", "vgg16")
    assert result.returncode == 2 and "unknown backbone 'vgg16'" in result.stderr
    result = osteo("evaluate", "--run", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_demo_small_writes_summary(tmp_path):
    result = osteo(
        "demo", "--out", str(tmp_path / "demo"), "--n", "120", "--image-size", "32", "--epochs", "1", "--verbose", "2"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert set(summary) >= {"image_only", "ensemble"}
    for metrics in summary.values():
        assert set(metrics) == {"accuracy", "precision", "recall", "specificity", "npv", "f1", "auc"}
    assert "stage 1/4" in result.stdout and "roc.png" in result.stdout
    assert (tmp_path / "demo" / "roc.png").is_file()


def test_train_and_evaluate_with_renamed_columns(tmp_path):
    import pandas as pd

    from osteo_tf.data.synthetic import make_cohort

    manifest = make_cohort("dental", 60, tmp_path / "c", seed=2, image_size=32)
    renamed = pd.read_csv(manifest).rename(columns={"age": "Age", "sex": "gender"})
    renamed["gender"] = renamed["gender"].map({"F": "0", "M": "1"})
    renamed.to_csv(tmp_path / "c" / "renamed.csv", index=False)
    (tmp_path / "cols.yaml").write_text('columns: {age: Age, sex: gender}\nsex_codes: {"0": F, "1": M}\n')
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--manifest",
                str(tmp_path / "c" / "renamed.csv"),
                "--manifest-config",
                str(tmp_path / "cols.yaml"),
                "--out",
                str(run),
                "--mode",
                "covariates_only",
                "--epochs",
                "2",
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    assert json.loads((run / "covariate_encoder.json").read_text())["categories"]["sex"] == ["F", "M"]
    assert main(["evaluate", "--run", str(run)]) == 0


def _tiny_cohort(folder):
    """A valid 3-row manifest whose last image is 1×1 px."""
    import numpy as np
    from PIL import Image

    folder.mkdir()
    for name, size in (("a.png", 40), ("b.png", 40), ("c.png", 1)):
        Image.fromarray(np.full((size, size), 90, np.uint8)).save(folder / name)
    (folder / "cohort.csv").write_text(
        "image,patient_id,age,sex,bmi,t_score\na.png,P1,70,F,22,-3\nb.png,P2,60,M,25,-1\nc.png,P3,65,F,23,-2\n"
    )
    return folder / "cohort.csv"


def test_a_too_small_image_is_refused_or_listed_as_excluded(tmp_path, capsys):
    manifest = _tiny_cohort(tmp_path / "c")
    assert main(["data", "check", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("osteo: error:") and "Traceback" not in err
    assert "cohort.csv, line 4, column 'image': c.png is 1×1 px; images must be at least 32×32 px" in err
    assert main(["data", "check", str(manifest), "--allow-exclusions"]) == 0
    assert "excluded line 4 (c.png): image too small" in capsys.readouterr().out
    (tmp_path / "small.yaml").write_text("min_image_size: 1\n")
    assert main(["data", "check", str(manifest), "--manifest-config", str(tmp_path / "small.yaml")]) == 0


@pytest.mark.parametrize(
    "text, key",
    [
        ("columns: {age: 5}\n", "columns.age: must be a non-empty column name, got 5"),
        ("min_image_size: 0\n", "min_image_size: must be a whole number of pixels >= 1"),
        ("roi_size: big\n", "roi_size: must be [width, height]"),
        ("[columns]\n", "must be a mapping of options"),
    ],
)
def test_manifest_config_errors_name_the_yaml_file_and_key(tmp_path, capsys, text, key):
    manifest = _tiny_cohort(tmp_path / "c")
    (tmp_path / "cohort.yaml").write_text(text)
    assert main(["data", "check", str(manifest), "--manifest-config", str(tmp_path / "cohort.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"osteo: error: {tmp_path / 'cohort.yaml'}: {key}") and "Traceback" not in err, err


def test_training_options_are_checked_before_anything_is_built(tmp_path, capsys):
    manifest = _tiny_cohort(tmp_path / "c")
    for flags, message in [
        (["--epochs", "0"], r"epochs=0: not an integer in [1, inf)"),
        (["--threshold", "1.5"], "threshold=1.5: not a number in (0, 1)"),
        (["--learning-rate", "nan"], "learning_rate=nan: not a number in (0, inf)"),
        (["--image-size", "8"], "image_size=8: not an integer in [32, inf)"),
    ]:
        assert main(["train", "--manifest", str(manifest), "--out", str(tmp_path / "run"), *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"osteo: error: invalid training option {message}") and "Traceback" not in err, err
        assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit) as exit_:  # not a number at all: argparse's own usage error
        main(["train", "--manifest", str(manifest), "--out", str(tmp_path / "run"), "--epochs", "two"])
    assert exit_.value.code == 2 and "argument --epochs: invalid int value: 'two'" in capsys.readouterr().err


def test_experiment_yaml_type_errors_name_the_file_and_key_path(tmp_path, capsys):
    study = tmp_path / "demo.yaml"
    base = (
        "name: t\ncohort: {phantom: {kind: hip, n: 40, image_size: 32}}\nbackbones: [resnet18]\n"
        "modes: [image_only]\nsplit: {kind: kfold, folds: 2}\n"
    )
    for train, message in [
        ("{epochs: two}", "train.epochs: 'two' is not an integer in [1, inf)"),
        ("{image_size: big}", "train.image_size: 'big' is not an integer in [32, inf)"),
        ("{learning_rate: fast}", "train.learning_rate: 'fast' is not a number in (0, inf)"),
        ("{patience: [5]}", "train.patience: [5] is not an integer in [1, inf)"),
        ("{epochs: 2.5}", "train.epochs: 2.5 is not an integer in [1, inf)"),
    ]:
        study.write_text(base + f"train: {train}\n")
        assert main(["experiment", str(study), "--out", str(tmp_path / "x"), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"osteo: error: {study}: {message}") and "Traceback" not in err, err
    study.write_text(base.replace("image_size: 32}}", "image_size: 32}, manifest_config: {columns: {age: 5}}}"))
    assert main(["experiment", str(study), "--out", str(tmp_path / "x"), "--dry-run"]) == 2
    assert f"{study}: cohort.manifest_config.columns.age: must be a non-empty column name" in capsys.readouterr().err
    study.write_text(base + "train: {epochs: 1, deterministic: true}\n")
    assert main(["experiment", str(study), "--out", str(tmp_path / "x"), "--dry-run"]) == 0  # as --deterministic
    assert "2 fit(s)" in capsys.readouterr().out


def test_weights_that_cannot_load_are_refused_before_the_run_folder_exists(tmp_path, capsys, phantom_cohort):
    manifest = phantom_cohort("hip", 40)
    (tmp_path / "empty").mkdir()
    for weights, message in [
        (tmp_path / "missing", f"--weights {tmp_path / 'missing'} does not exist; pass --weights none, imagenet"),
        (tmp_path / "empty", f"--weights folder {tmp_path / 'empty'} has no config.json"),
    ]:
        flags = ["--backbone", "resnet18", "--weights", str(weights), "--image-size", "32"]
        assert main(["train", "--manifest", str(manifest), "--out", str(tmp_path / "run"), *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"osteo: error: {message}") and "Traceback" not in err, err
        assert not (tmp_path / "run").exists()
