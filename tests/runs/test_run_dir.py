"""A run's model loads in a fresh process that imported nothing but the run folder's reader."""

from __future__ import annotations

import subprocess
import sys


def test_a_saved_ensemble_loads_in_a_fresh_process(tmp_path):
    path = tmp_path / "model.keras"
    save = (
        "from osteo_tf.models import build_model\n"
        f"build_model('resnet18', 'ensemble', 32, covariate_dim=6, fusion='late').save({str(path)!r})\n"
    )
    subprocess.run([sys.executable, "-c", save], check=True, capture_output=True)
    load = (
        "from osteo_tf.runs.run_dir import RunDir\n"
        f"model = RunDir({str(tmp_path)!r}).load_model({str(path)!r})\n"
        "print(sorted(layer.__class__.__name__ for layer in model.layers if 'Gradient' in layer.__class__.__name__))"
    )
    result = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-1500:]
    assert "GradientScale" in result.stdout
