"""The console of the ``osteo`` commands: no library start-up noise, quiet on a closed pipe."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from osteo_tf.console import IMPORT_NOISE

NOISE = re.compile(r"absl::InitializeLog|oneDNN|cuInit|cuda|Traceback|shuffle=True|^[IWE]\d{4} ", re.MULTILINE)


def _osteo(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as on a user's machine
    return subprocess.run(
        [sys.executable, "-m", "osteo_tf.cli", *args], capture_output=True, text=True, env=env, timeout=300, **kwargs
    )


def test_a_tensorflow_command_prints_only_its_own_error(tmp_path):
    (tmp_path / "cohort.csv").write_text("image,patient_id,age,sex,bmi,t_score\nmissing.png,P1,70,F,22,-3\n")
    done = _osteo(
        "train", "--manifest", str(tmp_path / "cohort.csv"), "--out", str(tmp_path / "run"), "--backbone", "resnet18"
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("osteo: error:") and "missing.png" in done.stderr
    assert not NOISE.search(done.stderr), done.stderr


def test_import_noise_pattern_keeps_other_lines():
    assert IMPORT_NOISE.match("I0000 00:00:1796172238.407309   25940 port.cc:153] oneDNN custom operations are on.")
    assert IMPORT_NOISE.match("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert IMPORT_NOISE.match("E0000 00:00:1.0  1 cuda_platform.cc:52] failed call to cuInit: INTERNAL")
    assert not IMPORT_NOISE.match("E0000 00:00:1.0  1 op_kernel.cc:1] OOM when allocating tensor")
    assert not IMPORT_NOISE.match("osteo: error: manifest cohort.csv, line 2: …")


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    rows = "".join(f"nope{i}.png,P{i},abc,F,22,-1\n" for i in range(3000))
    (tmp_path / "bad.csv").write_text("image,patient_id,age,sex,bmi,t_score\n" + rows)
    process = subprocess.Popen(
        [sys.executable, "-m", "osteo_tf.cli", "data", "check", str(tmp_path / "bad.csv")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    first = process.stdout.readline()  # `| head -n 1`
    process.stdout.close()
    errors = process.stderr.read()
    assert process.wait(timeout=120) == 141
    assert first.startswith("excluded line 2") and errors == ""
