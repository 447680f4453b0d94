"""The dental study (Sukegawa 2022) through the Python API: what `osteo experiment dental_2022` does.

    python examples/dental_2022.py COHORT.csv [OUT] [i/n]

Six CNNs × image-only / ensemble, stratified patient-grouped 5-fold CV (train/val 8:1 inside
each fold) repeated 30 times: 1,800 fits. Run shards 1/n … n/n on n machines sharing OUT;
each rerun skips what is done. The table printed is the mean over all folds and repeats.
"""

import sys

import osteo_tf
from osteo_tf.experiments.runner import parse_shard

if __name__ == "__main__":
    manifest, out = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "runs/dental_2022"
    config = osteo_tf.load_experiment("dental_2022", manifest=manifest)
    osteo_tf.run_experiment(config, out, shard=parse_shard(sys.argv[3] if len(sys.argv) > 3 else "1/1"))
    table = osteo_tf.read_results(out)
    print(
        table.groupby(["backbone", "mode"])[["test_auc", "test_accuracy", "test_recall", "test_specificity"]].agg(
            ["mean", "std"]
        )
    )
