"""External validation of an experiment grid: every trained model scored on another cohort.

Each fit's run folder is scored with :func:`osteo_tf.evaluation.evaluate.evaluate`
(``manifest=OTHER``), which loads the model and the covariate encoder fitted at training
time — nothing is refitted — and leaves ``evaluation_external_<stem>.json`` in the run
folder. The report then reads those files back, so an external table, once computed, is
regenerated from the experiment folder alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.metrics import METRIC_NAMES

__all__ = ["PREFIX", "collect_external", "score_external"]

PREFIX = "evaluation_external_"


def score_external(
    directory: str | Path, results: pd.DataFrame, manifest: str | Path, *, evaluate_fn: Callable | None = None
) -> str:
    """Score every fit in ``results`` on ``manifest``; returns the cohort's name
    (``external_<stem>``). ``evaluate_fn`` defaults to :func:`evaluate` (imports TensorFlow)."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise OsteoInputError(f"external {manifest} does not exist (expected a manifest CSV)", parameter="external")
    if evaluate_fn is None:
        from osteo_tf.evaluation.evaluate import evaluate as evaluate_fn
    for row in results.itertuples(index=False):
        if not isinstance(row.run_dir, str) or not row.run_dir:
            raise OsteoInputError(f"results/{row.fit_id}.json has no run_dir; cannot score it on {manifest}")
        evaluate_fn(Path(directory) / row.run_dir, manifest=manifest)
    return f"external_{manifest.stem}"


def collect_external(directory: str | Path, results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """External scores already in the fits' run folders: ``{name: one row per fit}``, each
    row with ``backbone, mode, repeat, fold, source``, the metrics and ``test_predictions``
    (the fit's label/probability per external image, for the ROC figures)."""
    found: dict[str, list[dict]] = {}
    for row in results.itertuples(index=False):
        if not isinstance(row.run_dir, str) or not row.run_dir:
            continue
        for path in sorted((Path(directory) / row.run_dir).glob(f"{PREFIX}*.json")):
            if path.name.endswith("_predictions.json") or path.name.startswith("."):
                continue
            record = json.loads(path.read_text())
            name = path.stem[len("evaluation_") :]
            predictions = pd.read_csv(path.with_name(f"{path.stem}_predictions.csv"))
            found.setdefault(name, []).append(
                {
                    "fit_id": row.fit_id,
                    "backbone": row.backbone,
                    "mode": row.mode,
                    "repeat": row.repeat,
                    "fold": row.fold,
                    "source": record.get("source", ""),
                    "n_cases": record.get("n"),
                    # every model scores the whole external cohort: the same images for all
                    "test_images": name,
                    **{m: float(record[m]) for m in METRIC_NAMES},
                    "test_predictions": predictions[["label", "probability"]].to_dict("records"),
                }
            )
    return {name: pd.DataFrame(rows) for name, rows in sorted(found.items())}
