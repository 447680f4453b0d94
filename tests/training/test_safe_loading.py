"""Safe loading: Keras models only in safe mode, nothing unpickled from user-supplied paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import osteo_tf
from osteo_tf.cli import main
from osteo_tf.errors import OsteoInputError
from osteo_tf.runs.config import TrainConfig
from osteo_tf.runs.run_dir import RunDir

SOURCES = sorted(Path(osteo_tf.__file__).parent.rglob("*.py"))


def test_no_unsafe_deserialisation_in_the_package():
    for path in SOURCES:
        text = path.read_text()
        where = path.relative_to(Path(osteo_tf.__file__).parent)
        assert not re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib|shelve|marshal)\b", text, re.M), where
        for unsafe in (
            "read_pickle(",
            "allow_pickle=True",
            "yaml.load(",
            "unsafe_load(",
            "safe_mode=False",
            "enable_unsafe_deserialization",
        ):
            assert unsafe not in text, (where, unsafe)
        for call in re.finditer(r"(?:models|saving)\.load_model\((.*)", text):  # Keras' loaders
            assert "safe_mode=True" in call.group(1), (where, call.group(0))
        for call in re.finditer(r"torch\.load\((.*)", text):
            assert "weights_only=True" in call.group(1), (where, call.group(0))


def test_a_model_file_holding_code_is_refused(tmp_path, capsys):
    import keras

    inputs = keras.Input((3,), name="covariates")
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Lambda(lambda x: x * 2.0)(inputs))
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    keras.Model(inputs, outputs).save(run.model)
    (run.config).write_text(
        json.dumps(
            {
                "train": TrainConfig(backbone="resnet18", mode="covariates_only").to_dict(),
                "manifest": str(tmp_path / "m.csv"),
            }
        )
    )
    run.complete_marker.write_text("{}")
    with pytest.raises(OsteoInputError, match="refusing to load .*safe mode"):
        run.load_model()
    assert main(["evaluate", "--run", str(run.path)]) == 2
    error = capsys.readouterr().err
    assert "refusing to load" in error and "Lambda" in error and "Traceback" not in error
