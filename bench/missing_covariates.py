"""Missing covariates at prediction time: test AUC with all, each one missing, and none.

For every ensemble fit of an experiment folder whose models were trained with covariate
dropout (``train: {covariate_dropout: P}``), scores the fit's test split through
:func:`osteo_tf.evaluation.evaluate.evaluate` with ``without=`` each subset — none missing,
each covariate missing alone, all missing — and prints one JSON line with the mean (and
per-fold) AUC of each, beside the image-only fits of the same folds (of this experiment, or
of ``--reference``, another experiment on the same cohort, seed and split). With every
covariate missing the ensemble should come close to image-only: it then sees the image and
the missing indicators only.

    python bench/missing_covariates.py demo_missing --reference demo_experiment
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", help="experiment folder whose ensemble fits used covariate_dropout > 0")
    parser.add_argument("--reference", help="experiment folder holding the image-only fits of the same folds")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from osteo_tf.evaluation.evaluate import evaluate
    from osteo_tf.experiments.report import load_results
    from osteo_tf.io import read_json

    results = load_results(args.experiment)
    ensembles = results[results["mode"].str.startswith("ensemble")]
    if not len(ensembles):
        print(f"{args.experiment} has no ensemble fits", file=sys.stderr)
        return 2
    encoder = read_json(Path(args.experiment) / ensembles["run_dir"].iloc[0] / "covariate_encoder.json")
    columns = encoder["numeric"] + encoder["categorical"]
    subsets = {"none_missing": (), **{f"without_{c}": (c,) for c in columns}, "all_missing": tuple(columns)}
    per_fold: dict[str, dict[str, float]] = {name: {} for name in subsets}
    for fit in ensembles.itertuples():
        run = Path(args.experiment) / fit.run_dir
        for name, without in subsets.items():
            per_fold[name][f"r{fit.repeat:02d}f{fit.fold:02d}"] = evaluate(run, without=without)["auc"]
    reference = load_results(args.reference) if args.reference else results
    image = reference[reference["mode"] == "image_only"]
    image_auc = {f"r{r.repeat:02d}f{r.fold:02d}": r.auc for r in image.itertuples()}
    keys = sorted(per_fold["none_missing"])
    summary = {name: round(sum(v.values()) / len(v), 4) for name, v in per_fold.items()}
    shared = [k for k in keys if k in image_auc]
    summary["image_only"] = round(sum(image_auc[k] for k in shared) / len(shared), 4) if shared else None
    print(
        json.dumps(
            {
                "experiment": args.experiment,
                "covariate_dropout": read_json(Path(args.experiment) / ensembles["run_dir"].iloc[0] / "config.json")[
                    "train"
                ]["covariate_dropout"],
                "mean_test_auc": summary,
                "per_fold": per_fold,
                "image_only_per_fold": {k: image_auc[k] for k in shared},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
