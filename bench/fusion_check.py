"""Does the ensemble use the covariates? The fusion acceptance check on an experiment folder.

Reads ``DIR/results/*.json`` (written by ``osteo experiment``; no training, no TensorFlow)
and, per backbone, compares each ensemble variant with image-only and with naive late
fusion (the image-only and covariates-only models' logits added) fold by fold, through
:func:`osteo_tf.evaluation.fusion.fusion_table`. The bar a fusion passes (issue 14):

- above image-only in every fold (``min_diff > 0``),
- by at least 0.03 test AUC on average (``diff >= 0.03``),
- no more than 0.02 below naive late fusion of the same folds (``diff_naive >= -0.02``).

Prints one JSON line: ``{"experiment": DIR, "rows": [...], "passed": {model: bool}}``; exit
status 0 when the default ensemble (``ensemble``) of every backbone passes, 1 otherwise.

    python bench/fusion_check.py demo_experiment
"""

from __future__ import annotations

import argparse
import json
import sys

MIN_MEAN_GAIN = 0.03
MAX_BELOW_NAIVE = 0.02


def passes(row: dict) -> bool:
    naive = row["diff_naive"]  # None when the experiment has no covariates-only fits
    return row["min_diff"] > 0 and row["diff"] >= MIN_MEAN_GAIN and naive is not None and naive >= -MAX_BELOW_NAIVE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", help="experiment folder (osteo experiment --out)")
    args = parser.parse_args(argv)
    from osteo_tf.evaluation.fusion import NAIVE_LATE, fusion_table
    from osteo_tf.experiments.report import load_results

    table = fusion_table(load_results(args.experiment))
    rows = [
        {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
        for row in table.to_dict("records")
    ]
    verdicts = {f"{r['backbone']}/{r['model']}": passes(r) for r in rows if r["model"] != NAIVE_LATE}
    print(
        json.dumps(
            {
                "experiment": args.experiment,
                "bar": {"min_mean_gain": MIN_MEAN_GAIN, "max_below_naive": MAX_BELOW_NAIVE},
                "rows": rows,
                "passed": verdicts,
            }
        )
    )
    defaults = [ok for name, ok in verdicts.items() if name.endswith("/ensemble")]
    return 0 if defaults and all(defaults) else 1


if __name__ == "__main__":
    sys.exit(main())
