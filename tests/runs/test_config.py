"""TrainConfig validates every option's type and range, whatever the caller (Python, CLI, YAML)."""

import math
from pathlib import Path

import numpy as np
import pytest

from osteo_tf.errors import OsteoInputError
from osteo_tf.runs.config import TrainConfig, TrainOptionError


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("epochs", "two", r"epochs='two': not an integer in \[1, inf\)"),
        ("epochs", 2.5, r"epochs=2.5: not an integer in \[1, inf\)"),
        ("epochs", 3.0, r"epochs=3.0: not an integer in \[1, inf\); write 3"),
        ("epochs", True, "epochs=True: not an integer"),
        ("image_size", "big", r"image_size='big': not an integer in \[32, inf\)"),
        ("image_size", 16, r"image_size=16: not an integer in \[32, inf\)"),
        ("patience", [5], r"patience=\[5\]: not an integer in \[1, inf\)"),
        ("batch_size", 0, "batch_size=0: not an integer"),
        ("seed", -1, r"seed=-1: not an integer in \[0, 2147483647\]"),
        ("seed", 2**31, "seed=2147483648: not an integer"),
        ("learning_rate", "fast", r"learning_rate='fast': not a number in \(0, inf\)"),
        ("learning_rate", 0, "learning_rate=0: not a number"),
        ("momentum", 1.0, r"momentum=1.0: not a number in \[0, 1\)"),
        ("weight_decay", -0.1, r"weight_decay=-0.1: not a number in \[0, inf\)"),
        ("weight_decay", math.inf, "weight_decay=inf: not a number"),
        ("threshold", 1, r"threshold=1: not a number in \(0, 1\)"),
        ("threshold", math.nan, "threshold=nan: not a number"),
        ("aux_loss_weight", "x", "aux_loss_weight='x': not a number"),
        ("covariate_dropout", 1.0, r"covariate_dropout=1.0: not a number in \[0, 1\)"),
        ("allow_exclusions", "yes", "allow_exclusions='yes': not true or false"),
        ("deterministic", 1, "deterministic=1: not true or false"),
        ("split", (8, 1), r"split=\(8, 1\): not three positive numbers"),
        ("split", [8, 1, 0], "split=.*: not three positive numbers"),
        ("covariates", 5, "covariates=5: not a covariate set"),
        ("covariates", [], "covariates=.*: not a covariate set"),
        ("weights", 5, "weights=5: not a weights name or path"),
        ("backbone", ["resnet18"], "backbone=.*: not a backbone name; choose one of: .*resnet18"),
        ("mode", "both", "mode='both'; choose one of: image_only, ensemble, covariates_only"),
        ("cache", ["disk"], "cache=.*; choose one of: memory"),
        ("precision", 16, "precision=16; choose one of: auto"),
        ("jit", 5, "jit=5; choose auto, true or false"),
        ("extra", [], "extra=.*: not a mapping"),
    ],
)
def test_a_wrong_type_or_range_names_the_option(option, value, message):
    with pytest.raises(TrainOptionError, match=rf"^invalid training option {message}") as error:
        TrainConfig(**{"backbone": "resnet18", option: value})
    assert isinstance(error.value, OsteoInputError) and error.value.option == option


def test_the_message_can_name_where_the_value_came_from():
    with pytest.raises(TrainOptionError) as error:
        TrainConfig(epochs="two")
    assert error.value.at("demo.yaml: train.epochs") == "demo.yaml: train.epochs: 'two' is not an integer in [1, inf)"
    with pytest.raises(TrainOptionError) as error:
        TrainConfig(cache="ram")
    assert error.value.at("x.yaml: train.cache").startswith(
        "x.yaml: train.cache: 'ram' is not a valid choice; choose one of"
    )


def test_valid_values_are_normalised_and_round_trip():
    config = TrainConfig(
        backbone="resnet18",
        epochs=np.int64(3),
        learning_rate=np.float32(0.5),
        momentum=0,
        covariates=["age", "sex"],
        split=[8, 1, 1],
        weights=Path("w.weights.h5"),
        jit="off",
        deterministic=True,
    )
    assert (type(config.epochs), config.learning_rate, type(config.momentum)) == (int, 0.5, float)
    assert config.covariates == ("age", "sex") and config.split == (8.0, 1.0, 1.0)
    assert config.weights == "w.weights.h5" and config.jit is False and config.deterministic is True
    assert config.image_size == 224 and TrainConfig.from_dict(config.to_dict()) == config


def test_train_and_demo_refuse_bad_options_before_any_work(tmp_path):
    from osteo_tf.demo import DemoSettings, run_demo
    from osteo_tf.training.train import train

    with pytest.raises(OsteoInputError, match=r"unknown training option\(s\) \['epoch'\]"):
        train(tmp_path / "absent.csv", tmp_path / "run", epoch=3)
    with pytest.raises(TrainOptionError, match="epochs=0"):
        run_demo(tmp_path / "demo", DemoSettings(epochs=0))
    assert not (tmp_path / "run").exists() and not (tmp_path / "demo").exists()  # no phantom generated
