"""The hip study (Yamamoto 2020) through the Python API: what `osteo experiment hip_2020` does.

    python examples/hip_2020.py COHORT.csv [OUT] [i/n]

Five CNNs × image-only / ensemble on one random, patient-grouped 8:1:1 split of your cohort
(the manifest needs age, sex, BMI and hip-fracture history). Rerun the same command to resume;
give a shard i/n to spread the fits over n processes writing to the same OUT.
"""

import sys

import osteo_tf
from osteo_tf.experiments.runner import parse_shard

if __name__ == "__main__":
    manifest, out = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "runs/hip_2020"
    config = osteo_tf.load_experiment("hip_2020", manifest=manifest)
    osteo_tf.run_experiment(config, out, shard=parse_shard(sys.argv[3] if len(sys.argv) > 3 else "1/1"))
    table = osteo_tf.read_results(out)
    print(table.groupby(["backbone", "mode"])[["test_auc", "test_accuracy", "test_recall", "test_specificity"]].mean())
