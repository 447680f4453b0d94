"""One fit on your own cohort through the Python API (the same as `osteo train` + `osteo evaluate`).

python examples/train_own_cohort.py cohort.csv runs/effb0_ensemble
"""

import sys

import osteo_tf

if __name__ == "__main__":
    manifest, out = sys.argv[1], sys.argv[2]
    run = osteo_tf.train(manifest, out, backbone="efficientnet_b0", mode="ensemble", weights="none")
    print(osteo_tf.evaluate(run.path))
