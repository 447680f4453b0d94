"""Library errors name Python parameters; the command line shows its own flags in their place."""

import numpy as np
import pytest
from PIL import Image

from osteo_tf.cli import _error_message, _flagged, main, parser
from osteo_tf.data.manifest import check_manifest
from osteo_tf.errors import OsteoInputError
from osteo_tf.runs.config import TrainOptionError


def _command(*names: str):
    """The parser of ``osteo NAMES…``."""
    command = parser()
    for name in names:
        command = next(a for a in command._actions if a.dest.endswith("command")).choices[name]
    return command


def test_flagged_writes_parameter_names_as_the_commands_flags():
    experiment = _command("experiment")
    assert (
        _flagged("cpus_per_fit must be a number > 0, got 0", "cpus_per_fit", experiment)
        == "--cpus-per-fit must be a number > 0, got 0"
    )
    assert (
        _flagged("lower cpus_per_fit=, or pass gpus_per_fit=0 to train on CPUs", None, experiment)
        == "lower --cpus-per-fit, or pass --gpus-per-fit 0 to train on CPUs"
    )  # name=VALUE and name= need no parameter
    assert (
        _flagged("use another out=, or pass force=True to discard it", None, experiment)
        == "use another --out, or pass --force to discard it"
    )  # force is a store_true flag: no value
    assert _flagged("(gpus_per_fit=, cpus_per_fit=)", None, experiment) == "(--gpus-per-fit, --cpus-per-fit)"
    assert (
        _flagged("at address auto; or leave out address= for a local Ray", "address", experiment)
        == "at --address auto; or leave out --address for a local Ray"
    )


def test_flagged_leaves_words_that_are_not_the_parameter_alone():
    experiment, train = _command("experiment"), _command("train")
    message = "cpus_per_fit must be a number > 0"
    assert _flagged(message, None, experiment) == message  # a bare name only for the error's own parameter
    assert _flagged("shard 3/2 and shard 1/2", "shard", experiment) == "--shard 3/2 and shard 1/2"  # first only
    assert _flagged("unknown backbone 'vgg16'", "backbone", train) == "unknown backbone 'vgg16'"  # noun of a value
    assert _flagged("out/run/out is done; out.csv", "out", train) == "out/run/out is done; out.csv"  # paths, file names
    assert _flagged("train.epochs: 'two'", "epochs", train) == "train.epochs: 'two'"  # a YAML key path
    assert _flagged("max_out must be set", "out", train) == "max_out must be set"  # part of a longer name
    assert _flagged("epochs=3", None, _command("data", "check")) == "epochs=3"  # not an option of this command


def test_error_message_maps_other_commands_hints_and_keeps_training_option_errors():
    root = parser()
    evaluate = _command("evaluate")
    error = OsteoInputError(
        "without: the model of r cannot predict without 'bmi'; train with covariate_dropout=P", parameter="without"
    )
    assert (
        _error_message(error, evaluate, root)
        == "--without: the model of r cannot predict without 'bmi'; train with --covariate-dropout P"
    )
    option = TrainOptionError("epochs", 0, "not an integer in [1, inf)")
    assert (
        _error_message(option, _command("train"), root)
        == "invalid training option epochs=0: not an integer in [1, inf)"
    )


@pytest.mark.parametrize(
    "options, message",
    [
        (["--executor", "ray", "--cpus-per-fit", "0"], "--cpus-per-fit must be a number > 0, got 0.0"),
        (["--executor", "ray", "--max-retries", "-1"], "--max-retries must be a whole number >= 0, got -1"),
        (["--shard", "two"], "--shard must look like i/n"),
    ],
)
def test_a_library_error_shows_the_flag_of_its_parameter(tmp_path, capsys, options, message):
    assert main(["experiment", "demo", "--out", str(tmp_path / "o"), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"osteo: error: {message}") and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()


def test_a_refused_manifest_hints_allow_exclusions_by_parameter_and_by_flag(tmp_path, capsys):
    for name, size in (("a.png", 40), ("b.png", 1)):
        Image.fromarray(np.full((size, size), 90, np.uint8)).save(tmp_path / name)
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("image,patient_id,age,sex,bmi,t_score\na.png,P1,70,F,22,-3\nb.png,P2,60,M,25,-1\n")
    check = check_manifest(manifest)
    refusal = check.refusal(tmp_path / "e.csv", name="cohort.csv")
    assert refusal.parameter == "allow_exclusions"
    written = tmp_path / "e.csv"
    assert str(refusal).startswith(f"1 of the 2 rows of cohort.csv are invalid (listed above and in {written}):\n")
    assert str(refusal).endswith("\nOr pass allow_exclusions=True to leave those rows out.")
    assert main(["data", "check", str(manifest), "--exclusions", str(tmp_path / "e.csv")]) == 2
    assert capsys.readouterr().err.endswith("\nOr pass --allow-exclusions to leave those rows out.\n")
