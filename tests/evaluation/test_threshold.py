"""Decision threshold: chosen on the validation split only, recorded in the run, used by evaluate/export."""

import json

import numpy as np
import pandas as pd
import pytest

from osteo_tf.cli import main
from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.metrics import binary_metrics
from osteo_tf.evaluation.threshold import choose_threshold, parse_target, run_threshold, select_threshold

RNG = np.random.default_rng(3)
Y = np.array([0] * 30 + [1] * 20)
SCORES = np.clip(np.where(Y == 1, 0.65, 0.35) + RNG.normal(0, 0.2, Y.size), 0.001, 0.999)


def test_parse_target():
    assert parse_target("sensitivity=0.90") == ("sensitivity", 0.9)
    assert parse_target("Youden") == ("youden", None)
    assert parse_target("specificity=0.8") == ("specificity", 0.8)
    for bad in ("sensitivity", "sensitivity=1.5", "accuracy=0.9", "sensitivity=abc"):
        with pytest.raises(OsteoInputError, match="not understood"):
            parse_target(bad)


def test_sensitivity_target_is_the_highest_threshold_reaching_it():
    t = choose_threshold(Y, SCORES, "sensitivity=0.90")
    assert t in SCORES
    assert binary_metrics(Y, SCORES, t)["recall"] >= 0.90
    higher = SCORES[SCORES > t].min()
    assert binary_metrics(Y, SCORES, higher)["recall"] < 0.90


def test_specificity_and_youden_targets():
    t = choose_threshold(Y, SCORES, "specificity=0.80")
    assert binary_metrics(Y, SCORES, t)["specificity"] >= 0.80
    lower = SCORES[SCORES < t].max()
    assert binary_metrics(Y, SCORES, lower)["specificity"] < 0.80
    youden = choose_threshold(Y, SCORES, "youden")
    j = lambda t: (lambda m: m["recall"] + m["specificity"] - 1)(binary_metrics(Y, SCORES, t))  # noqa: E731
    assert j(youden) == pytest.approx(max(j(s) for s in SCORES))
    assert choose_threshold([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9], "youden") == 0.7


@pytest.fixture
def run(tmp_path):
    """A finished run folder with predictions only (no model needed to choose a threshold)."""
    predictions = pd.DataFrame(
        {
            "image": [f"{i}.png" for i in range(2 * Y.size)],
            "patient_id": range(2 * Y.size),
            "label": np.concatenate([Y, Y]),
            "probability": np.concatenate([SCORES, SCORES[::-1]]),
            "split": ["val"] * Y.size + ["test"] * Y.size,
        }
    )
    predictions.to_csv(tmp_path / "predictions.csv", index=False)
    (tmp_path / "config.json").write_text(json.dumps({"train": {"threshold": 0.5}}))
    (tmp_path / "COMPLETE").write_text("{}")
    return tmp_path


def test_select_records_the_threshold_chosen_on_val_only(run):
    assert run_threshold(run) == 0.5  # nothing chosen yet: the papers' default
    record = select_threshold(run, "sensitivity=0.9")
    assert record["threshold"] == choose_threshold(Y, SCORES, "sensitivity=0.9")
    assert record["chosen_on"] == "val" and record["val"]["recall"] >= 0.9
    assert {k: v for k, v in record["test"].items() if k != "ci"} == binary_metrics(
        Y, SCORES[::-1], record["threshold"]
    )
    assert json.loads((run / "threshold.json").read_text())["threshold"] == record["threshold"]
    assert run_threshold(run) == record["threshold"]
    # changing the test rows does not move the threshold
    table = pd.read_csv(run / "predictions.csv")
    table.loc[table["split"] == "test", "probability"] = 0.5
    table.to_csv(run / "predictions.csv", index=False)
    assert select_threshold(run, "sensitivity=0.9")["threshold"] == record["threshold"]


def test_cli_threshold(run, capsys):
    assert main(["threshold", "--run", str(run), "--target", "youden"]) == 0
    out = capsys.readouterr().out
    assert "chosen on the validation split" in out and "test" in out
    assert main(["threshold", "--run", str(run), "--target", "accuracy=0.9"]) == 2
    assert main(["threshold", "--run", str(run / "missing"), "--target", "youden"]) == 2
