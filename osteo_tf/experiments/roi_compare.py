"""``osteo roi compare``: the same study on hand crops and on detected crops of the same subjects.

Runs one experiment config twice — on the hand-cropped manifest (the annotators' ROI; for the
whole-view phantoms, the ground-truth boxes) and on the manifest ``osteo roi detect`` wrote
for the same images — into ``OUT/hand`` and ``OUT/detected``, then pairs the fits (same
backbone, mode, repeat and fold: the same patients in every split, because both manifests
hold the same rows in the same order, which is checked first) and reports each arm's mean
test AUC and the mean paired difference (detected − hand) with a 95 % interval from the
corrected resampled t-test (Nadeau & Bengio 2003: the variance of the per-fold differences
inflated by ``1/J + n_test/n_train`` for the overlap of the training sets of repeated
cross-validation). Both experiments resume like any other; ``comparison.json`` and
``comparison.csv`` (one row per paired fit) are written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from osteo_tf.data.manifest import check_manifest
from osteo_tf.errors import OsteoInputError
from osteo_tf.experiments.config import ExperimentConfig, load_experiment
from osteo_tf.experiments.results import read_results
from osteo_tf.experiments.runner import run_experiment
from osteo_tf.io import write_csv, write_json

__all__ = ["ARMS", "compare_crops", "comparison_lines", "paired_difference"]

ARMS = ("hand", "detected")
_KEYS = ["backbone", "mode", "repeat", "fold"]


def _same_subjects(hand: Path, detected: Path) -> None:
    """Refuse two manifests that do not hold the same rows (patients, labels, order)."""
    checks = {arm: check_manifest(path) for arm, path in zip(ARMS, (hand, detected))}
    for check in checks.values():
        check.raise_if_any()  # e.g. rows still flagged roi_status=review, named by line
    a, b = (checks[arm].cohort for arm in ARMS)
    if len(a) != len(b):
        raise OsteoInputError(f"{hand} has {len(a)} rows and {detected} {len(b)}; compare the same subjects")
    for column in ("patient_id", "label"):
        differ = np.flatnonzero(a[column].to_numpy() != b[column].to_numpy())
        if differ.size:
            i = int(differ[0])
            raise OsteoInputError(
                f"row {i + 1} differs in {column}: {a[column].iloc[i]!r} in {hand} vs {b[column].iloc[i]!r} in "
                f"{detected}; the detected manifest must be osteo roi detect's output for the same rows"
            )


def paired_difference(hand: np.ndarray, detected: np.ndarray, test_fraction: float) -> dict[str, float]:
    """Mean of ``detected − hand`` over paired fits, with the corrected resampled t interval.

    Args:
        hand, detected: (J,) test AUCs of the paired fits.
        test_fraction: test rows / training rows of one fit (the correction's ``n_test/n_train``).

    Returns:
        ``mean``, ``sd``, ``ci_low``, ``ci_high`` (95 %), ``p`` (two-sided), ``fits``.
    """
    difference = np.asarray(detected, float) - np.asarray(hand, float)
    j = len(difference)
    mean, sd = float(difference.mean()), float(difference.std(ddof=1)) if j > 1 else 0.0
    scale = np.sqrt((1.0 / j + test_fraction) * sd**2) if j > 1 else float("nan")
    t = stats.t.ppf(0.975, j - 1) if j > 1 else float("nan")
    p = float(2 * stats.t.sf(abs(mean) / scale, j - 1)) if j > 1 and scale > 0 else float("nan")
    return {"mean": mean, "sd": sd, "ci_low": mean - t * scale, "ci_high": mean + t * scale, "p": p, "fits": j}


def compare_crops(
    config: str | Path | ExperimentConfig,
    hand: str | Path,
    detected: str | Path,
    out: str | Path,
    *,
    executor: Any = "local",
    verbose: int = 0,
) -> dict:
    """Run ``config`` on both manifests and compare the classifier's test AUC, fit by fit.

    Args:
        config: an experiment config (path, packaged name or object).
        hand: the hand-cropped manifest.
        detected: ``osteo roi detect``'s output for the same rows.
        out: folder of the two experiments and the comparison.
        executor: as :func:`osteo_tf.experiments.runner.run_experiment`.
        verbose: Keras progress per fit.

    Returns:
        The comparison (``comparison.json``): per arm the mean and SD of the test AUC, and the
        paired difference (:func:`paired_difference`) per backbone and mode.
    """
    hand, detected, out = Path(hand), Path(detected), Path(out)
    study = config if isinstance(config, ExperimentConfig) else load_experiment(config)
    _same_subjects(hand, detected)
    for arm, manifest in zip(ARMS, (hand, detected)):
        run_experiment(study.with_manifest(manifest), out / arm, executor=executor, verbose=verbose)
    tables = {arm: read_results(out / arm) for arm in ARMS}
    paired = tables["hand"][_KEYS + ["test_auc", "test_n"]].merge(
        tables["detected"][_KEYS + ["test_auc"]], on=_KEYS, suffixes=("_hand", "_detected")
    )
    n = int(check_manifest(hand).cohort.shape[0])
    rows = []
    for (backbone, mode), group in paired.groupby(["backbone", "mode"], sort=True):
        test_n = float(group["test_n"].mean())
        rows.append(
            {
                "backbone": backbone,
                "mode": mode,
                **{f"auc_{arm}_mean": float(group[f"test_auc_{arm}"].mean()) for arm in ARMS},
                **{f"auc_{arm}_sd": float(group[f"test_auc_{arm}"].std(ddof=1)) for arm in ARMS},
                "difference": paired_difference(
                    group["test_auc_hand"].to_numpy(), group["test_auc_detected"].to_numpy(), test_n / (n - test_n)
                ),
            }
        )
    result = {"config": study.name, "hand": str(hand), "detected": str(detected), "subjects": n, "results": rows}
    write_csv(out / "comparison.csv", paired)
    write_json(out / "comparison.json", result)
    return result


def comparison_lines(result: dict) -> list[str]:
    """What ``osteo roi compare`` prints."""
    lines = [f"{result['config']}: {result['subjects']} subjects, hand vs detected crops (test AUC, paired fits)"]
    for row in result["results"]:
        d = row["difference"]
        lines.append(
            f"{row['backbone']} {row['mode']}: hand {row['auc_hand_mean']:.3f} (SD {row['auc_hand_sd']:.3f}), "
            f"detected {row['auc_detected_mean']:.3f} (SD {row['auc_detected_sd']:.3f}); "
            f"detected − hand {d['mean']:+.3f} (95 % CI {d['ci_low']:+.3f} to {d['ci_high']:+.3f}, "
            f"corrected resampled t, {d['fits']} fits)"
        )
    return lines
