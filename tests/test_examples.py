"""The runnable example in the docstring of each public entry point runs as written (doctest).

Each example is self-contained (it writes its own tiny phantom cohort, 40 subjects at 32 px, and
trains for one epoch) and runs in a fresh folder.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

ENTRY_POINTS = {
    "build_model": "osteo_tf.models",
    "train": "osteo_tf.training.train",
    "evaluate": "osteo_tf.evaluation.evaluate",
    "export_run": "osteo_tf.serving.archive",
    "run_experiment": "osteo_tf.experiments.runner",
}


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_docstring_example_runs(name, tmp_path, monkeypatch):
    module = importlib.import_module(ENTRY_POINTS[name])
    function = getattr(module, name)
    for section in ("Args:", "Returns:", "Raises:", "Example::", ">>> "):
        assert section in function.__doc__, f"{name}'s docstring has no {section!r}"
    monkeypatch.chdir(tmp_path)
    tests = doctest.DocTestFinder(recurse=False).find(function, name, globs=dict(vars(module)))
    assert tests and tests[0].examples
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0 and runner.tries >= 2, f"{name}'s example failed (see the output above)"
