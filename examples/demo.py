"""The demo study through the Python API: what `osteo demo` does, as a user's own script.

    python examples/demo.py [OUT]

Trains image-only, ensemble and covariate-only models on the phantom hip cohort and prints
the test metrics; change DemoSettings (or call osteo_tf.train directly on your own
manifest) to run the same on your data.
"""

import sys

from osteo_tf.demo import DemoSettings, run_demo

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "demo_out"
    summary = run_demo(out, DemoSettings(), verbose=2)
    print({mode: round(metrics["auc"], 3) for mode, metrics in summary.items()})
