"""Phantom cohort generation speed against the cost of just writing the same PNGs.

What it measures (NumPy/SciPy/Pillow, one process, no TensorFlow)
----------------------------------------------------------------
For each SIZE:N (default ``64:2000,96:500``): seconds of
``osteo_tf.data.synthetic.make_cohort("hip", N, ..., image_size=SIZE)`` — draw subjects,
render image and mask, write both PNGs, then the manifest — against a reference in the same
run: writing N pairs of random uint8 PNGs of the same size with Pillow (the file-writing
floor). ``ratio`` = phantom seconds ÷ reference seconds: how much the rendering adds. The
two alternate ``--repeats`` times and the medians are reported, so load from other jobs hits
both alike. Prints one JSON line.

Target
------
None binding: the phantom is the embedded default of demos and tests, so it should stay a
small fraction of a demo (2,000 subjects at 64 px in seconds). The figures in
``osteo_tf/data/synthetic.py``'s docstring come from this script.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from osteo_tf.data.synthetic import make_cohort  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="64:2000,96:500", help="comma-separated SIZE:N (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timed repeats (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        args.pairs = [tuple(int(v) for v in item.split(":")) for item in args.configs.split(",") if item.strip()]
    except ValueError:
        parser.error(f"--configs must look like 64:2000,96:500, got {args.configs!r}")
    if args.repeats < 1 or any(len(p) != 2 or p[0] < 32 or p[1] < 10 for p in args.pairs):
        parser.error("--repeats must be >= 1, and each SIZE:N needs SIZE >= 32 and N >= 10")
    return args


def time_phantom(size: int, n: int, seed: int) -> float:
    folder = Path(tempfile.mkdtemp(prefix="osteo_bench_phantom_"))
    try:
        started = time.perf_counter()
        make_cohort("hip", n, folder, seed=seed, image_size=size)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def time_reference(size: int, n: int, seed: int) -> float:
    """Writing n image + mask PNG pairs of random pixels: what any generator must pay."""
    folder = Path(tempfile.mkdtemp(prefix="osteo_bench_png_"))
    rng = np.random.default_rng(seed)
    try:
        started = time.perf_counter()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(folder / f"i{i}.png")
            Image.fromarray(rng.integers(0, 2, (size, size), dtype=np.uint8) * 255).save(folder / f"m{i}.png")
        return time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    configs = []
    for size, n in args.pairs:
        phantom, reference = [], []
        for _ in range(args.repeats):
            phantom.append(time_phantom(size, n, args.seed))
            reference.append(time_reference(size, n, args.seed))
        p, r = float(np.median(phantom)), float(np.median(reference))
        configs.append(
            {
                "size": size,
                "n": n,
                "phantom_s": round(p, 3),
                "png_reference_s": round(r, 3),
                "ratio": round(p / r, 3),
                "phantom_images_per_s": round(n / p, 1),
            }
        )
        print(
            f"[bench/phantom] {n} subjects at {size} px: {p:.2f} s (PNG writing alone {r:.2f} s, ratio {p / r:.2f})",
            file=sys.stderr,
        )
    result = {
        "bench": "phantom",
        "configs": configs,
        "settings": {"repeats": args.repeats, "seed": args.seed},
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
