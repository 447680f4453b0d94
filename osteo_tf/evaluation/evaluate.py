"""Scores a finished run: its held-out test split, or an external cohort.

The model, the split and the covariate encoder all come from the run folder — nothing is
refitted — so ``evaluate`` reproduces the numbers ``train`` wrote, and an external cohort
(another hospital's manifest) is encoded with the training cohort's statistics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from osteo_tf.data.covariates import CovariateEncoder
from osteo_tf.data.manifest import ManifestConfig
from osteo_tf.data.splits import require_both_classes, splits_from_table
from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.bootstrap import with_intervals
from osteo_tf.evaluation.metrics import binary_metrics, format_metrics
from osteo_tf.evaluation.recalibration import reported_probability
from osteo_tf.evaluation.threshold import run_threshold
from osteo_tf.io import read_json, write_csv, write_json
from osteo_tf.runs.cohort import exclusions_of, load_cohort
from osteo_tf.runs.loading import load_run, predict_rows
from osteo_tf.runs.run_dir import RunDir
from osteo_tf.vocabulary import uses_covariates

__all__ = ["evaluate", "evaluation_lines"]


def evaluate(
    run: str | Path,
    manifest: str | Path | None = None,
    split: str = "test",
    *,
    without: tuple[str, ...] | list[str] = (),
) -> dict:
    """Metrics of a finished run, at its decision threshold.

    Writes ``evaluation_<name>.json`` and ``evaluation_<name>_predictions.csv`` in the run
    folder. Nothing is refitted: the model, split and covariate encoder come from the run.

    Args:
        run: a complete run folder (written by :func:`osteo_tf.training.train.train`).
        manifest: an external cohort's manifest to score every row of; None → the run's own
            ``split`` rows.
        split: ``"train"``, ``"val"`` or ``"test"`` (default: the held-out test split).
        without: covariate columns treated as missing in every row (the model must impute
            them: trained with ``covariate_dropout`` or ``impute="median"`` on a gap in that
            column), to measure the model when a record lacks them; the output names then end
            in ``_without_<columns>``.

    Returns:
        The metrics dict of :func:`~osteo_tf.evaluation.metrics.binary_metrics` (auc,
        sensitivity, specificity, …, n, tp/fp/tn/fn, threshold) at the run's threshold
        (:func:`~osteo_tf.evaluation.threshold.run_threshold`: ``osteo threshold``'s, else 0.5),
        with their 95 % CIs under ``"ci"`` (:func:`~osteo_tf.evaluation.bootstrap.with_intervals`:
        bootstrap over patients, DeLong for the AUC). A recalibrated run (``osteo calibrate``)
        is scored on its recalibrated probabilities.

    Raises:
        OsteoInputError: an unfinished run, a bad external manifest, a cohort of one class,
            a covariate in ``without`` the model cannot do without.

    Example::

        >>> from osteo_tf.data.synthetic import make_cohort
        >>> from osteo_tf.training.train import train
        >>> manifest = make_cohort("hip", 40, "phantom_eval", seed=0, image_size=32)
        >>> run = train(manifest, "run_eval", backbone="resnet18", image_size=32, epochs=1,
        ...             verbose=0)  # doctest: +ELLIPSIS
        [osteo...
        >>> metrics = evaluate(run.path)
        >>> metrics["n"], 0.0 <= metrics["auc"] <= 1.0
        (4, True)
    """
    run_dir, config, settings, model = load_run(run)
    encoder = CovariateEncoder.from_dict(read_json(run_dir.encoder)) if uses_covariates(config.mode) else None
    _check_without(without, encoder, run_dir)
    manifest_config = ManifestConfig.from_dict(settings.get("manifest_config"))
    source = manifest or settings["manifest"]
    cohort = load_cohort(source, config, manifest_config)
    if manifest is None:
        rows = cohort.iloc[splits_from_table(cohort, pd.read_csv(run_dir.splits))[split]]
        name = split
    else:
        rows, name = cohort, f"external_{Path(manifest).stem}"
        require_both_classes(rows)
        _refuse_other_source(run_dir.path / f"evaluation_{name}.json", Path(manifest))
        if config.allow_exclusions:  # the external rows left out, as the run's exclusions.csv
            write_csv(run_dir.path / f"evaluation_{name}_exclusions.csv", exclusions_of(cohort))
    if without:
        rows = rows.assign(**{column: None for column in without})
        name += "_without_" + "_".join(without)
    encoded = None if encoder is None else encoder.transform(rows)
    probability = predict_rows(model, rows, encoded, config)
    probability = reported_probability(run_dir.path, probability)
    labels = rows["label"].to_numpy()
    metrics = binary_metrics(labels, probability, run_threshold(run_dir.path))
    metrics = with_intervals(metrics, labels, probability, groups=rows["patient_id"].to_numpy(), seed=config.seed)
    write_json(
        run_dir.path / f"evaluation_{name}.json", {"source": str(Path(source).resolve()), "rows": name, **metrics}
    )
    write_csv(
        run_dir.path / f"evaluation_{name}_predictions.csv",
        pd.DataFrame(
            {
                "image": rows["image"].to_numpy(),
                "label": rows["label"].to_numpy(),
                "probability": np.round(probability, 6),
            }
        ),
    )
    return metrics


def evaluation_lines(
    run: str | Path,
    metrics: dict,
    *,
    manifest: str | Path | None = None,
    split: str = "test",
    without: tuple[str, ...] | list[str] = (),
) -> list[str]:
    """What ``osteo evaluate`` prints: which rows were scored, then the metrics (:func:`format_metrics`).

    Args:
        run, manifest, split, without: as given to :func:`evaluate`.
        metrics: what :func:`evaluate` returned.

    Returns:
        The heading line, then one line per metric and the confusion counts.
    """
    where = f"external cohort {manifest}" if manifest else f"{split} split"
    where += f", without {', '.join(without)}" if without else ""
    return [f"{run} on the {where} (n={metrics['n']}, threshold {metrics['threshold']}):", *format_metrics(metrics)]


def _check_without(without, encoder: CovariateEncoder | None, run_dir: RunDir) -> None:
    """Every column in ``without`` must be a covariate the run's model can do without."""
    if not without:
        return
    if encoder is None:
        raise OsteoInputError(
            f"without={','.join(without)}: the model of {run_dir.path} takes no covariates", parameter="without"
        )
    for column in without:
        if column not in encoder.columns:
            raise OsteoInputError(
                f"without: '{column}' is not a covariate of {run_dir.path} "
                f"(its covariates: {', '.join(encoder.columns)})",
                parameter="without",
            )
        if column not in encoder.imputed:
            raise OsteoInputError(
                f"without: the model of {run_dir.path} cannot predict without '{column}' (it was "
                "trained without a missing indicator for it); train with covariate_dropout=P "
                "so that any covariate may be missing",
                parameter="without",
            )


def _refuse_other_source(path: Path, manifest: Path) -> None:
    """External scores are named by the manifest's file name: never overwrite those of another file."""
    if not path.is_file():
        return
    previous = read_json(path).get("source")
    if previous and Path(previous) != manifest.resolve():
        raise OsteoInputError(
            f"{path} already holds the scores of {previous}, another cohort whose manifest has the same file name "
            f"as {manifest}; copy this manifest to another file name (e.g. {manifest.stem}_siteB.csv) and score that"
        )
