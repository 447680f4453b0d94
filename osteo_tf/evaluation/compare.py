"""``osteo compare A B``: two runs scored on the same test patients, compared pairwise.

Both runs' reported probabilities (recalibrated where ``osteo calibrate`` was run) on the test
images they share, each at its own threshold: DeLong's test of the AUCs, bootstrap CIs of
every metric's difference (the same resampled patients for both runs) and McNemar's test of
the accuracies (:func:`osteo_tf.evaluation.bootstrap.compare_predictions`). The runs must
have the same test images with the same labels (e.g. image-only and ensemble trained on one
split, as ``osteo demo`` and ``osteo experiment`` do); anything else is refused, naming the
first difference, because an unpaired comparison on different patients is a different test.
"""

from __future__ import annotations

from pathlib import Path

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.bootstrap import compare_predictions
from osteo_tf.evaluation.metrics import METRIC_NAMES
from osteo_tf.evaluation.threshold import run_seed, run_threshold, split_predictions
from osteo_tf.io import write_json
from osteo_tf.runs.run_dir import RunDir

__all__ = ["compare_lines", "compare_runs"]


def compare_runs(run_a: str | Path, run_b: str | Path, *, out: str | Path | None = None) -> dict:
    """Paired comparison of two runs on their shared test split.

    Args:
        run_a, run_b: complete run folders with the same test images.
        out: also write the result as JSON here.

    Returns:
        :func:`compare_predictions`'s dict plus ``run_a``, ``run_b``, ``thresholds``.

    Raises:
        OsteoInputError: unfinished runs, or test splits that differ in images or labels.
    """
    tests = [split_predictions(run)["test"].sort_values("image").reset_index(drop=True) for run in (run_a, run_b)]
    images = [set(t["image"]) for t in tests]
    if images[0] != images[1]:
        only = sorted(images[0] ^ images[1])[0]
        raise OsteoInputError(
            f"{run_a} and {run_b} were tested on different images (e.g. {only} is in one test split only); "
            "a paired comparison needs the same test patients: train both on the same split"
        )
    if (tests[0]["label"].to_numpy() != tests[1]["label"].to_numpy()).any():
        raise OsteoInputError(f"{run_a} and {run_b} disagree on the labels of their test images")
    thresholds = (run_threshold(run_a), run_threshold(run_b))
    result = compare_predictions(
        tests[0]["label"].to_numpy(),
        tests[0]["probability"].to_numpy(),
        tests[1]["probability"].to_numpy(),
        thresholds=thresholds,
        groups=tests[0]["patient_id"].to_numpy(),
        seed=run_seed(RunDir(run_a)),
    )
    result = {"run_a": str(run_a), "run_b": str(run_b), "thresholds": list(thresholds), **result}
    if out is not None:
        write_json(out, result)
    return result


def compare_lines(result: dict) -> list[str]:
    """What ``osteo compare`` prints: A, B and A − B (95 % CI) per metric, then the tests.

    Args:
        result: what :func:`compare_runs` returned.

    Returns:
        The lines.
    """
    a, b = result["metrics_a"], result["metrics_b"]
    lines = [
        f"A = {result['run_a']} (threshold {result['thresholds'][0]:.4g}), "
        f"B = {result['run_b']} (threshold {result['thresholds'][1]:.4g}); {result['n']} shared test images",
        f"  {'metric':12} {'A':>7} {'B':>7} {'A − B (95 % CI, bootstrap over patients)':>44}",
    ]
    for name in METRIC_NAMES:
        d = result["difference"][name]
        ci = "undefined" if d["low"] is None else f"{d['low']:+.4f} to {d['high']:+.4f}"
        lines.append(f"  {name:12} {a[name]:7.4f} {b[name]:7.4f} {d['estimate']:+10.4f}  ({ci})")
    delong, mcnemar = result["delong"], result["mcnemar"]
    lines.append(f"  AUC: DeLong's test z = {delong['z']:.3f}, p = {delong['p_value']:.4g}")
    lines.append(
        f"  accuracy: {mcnemar['test']}, p = {mcnemar['p_value']:.4g} "
        f"(A right/B wrong {mcnemar['a_right_b_wrong']}, A wrong/B right {mcnemar['a_wrong_b_right']})"
    )
    return lines
