"""The command line as a user meets it: exit codes and messages, no tracebacks."""

import json
import subprocess
import sys

import pytest

from osteo_tf.cli import main


def osteo(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "osteo_tf.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_help_answers_without_importing_tensorflow():
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from osteo_tf.cli import main; "
         "sys.argv=['osteo','--help']\ntry: main()\nexcept SystemExit: pass\nprint('tensorflow' in sys.modules)"],
        capture_output=True, text=True, timeout=60)
    assert "demo" in result.stdout and result.stdout.strip().endswith("False")


def test_data_synth_then_check(tmp_path, capsys):
    assert main(["data", "synth", "--kind", "dental", "--n", "20", "--out", str(tmp_path / "d"), "--image-size", "32"]) == 0
    assert main(["data", "check", str(tmp_path / "d" / "manifest.csv")]) == 0
    assert "20 valid rows" in capsys.readouterr().out


def test_data_synth_head_neck_variant_and_its_refusal_for_dental(tmp_path, capsys):
    out = tmp_path / "h"
    assert main(["data", "synth", "--n", "12", "--out", str(out), "--image-size", "32",
                 "--informative-region", "head_neck"]) == 0
    assert json.loads((out / "cohort.json").read_text())["informative_region"] == "head_neck"
    assert main(["data", "synth", "--kind", "dental", "--n", "12", "--out", str(tmp_path / "d"),
                 "--informative-region", "head_neck"]) == 2
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
    result = osteo("demo", "--out", str(tmp_path / "demo"), "--n", "120", "--image-size", "32", "--epochs", "1", "--verbose", "2")
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
    assert main(["train", "--manifest", str(tmp_path / "c" / "renamed.csv"), "--manifest-config", str(tmp_path / "cols.yaml"),
                 "--out", str(run), "--mode", "covariates_only", "--epochs", "2", "--verbose", "0"]) == 0
    assert json.loads((run / "covariate_encoder.json").read_text())["categories"]["sex"] == ["F", "M"]
    assert main(["evaluate", "--run", str(run)]) == 0
