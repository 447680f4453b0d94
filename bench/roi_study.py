"""The README's "Automatic ROI" figures: detector accuracy against the annotation budget, and the
classifier's AUC on detected vs hand crops of the same subjects.

    python bench/roi_study.py --kind hip --out /tmp/roi_study_hip [--width 192] [--budgets 25 50 100 200]

1. An annotation pool of whole-view phantoms (seed 1): the first 200 images are the images a
   person would annotate, the last 100 a held-out test set never trained on.
2. For each budget B: ``osteo roi train`` on the first B annotated images (80 % train, 20 %
   validation, as the tool splits them) with ``osteo roi train``'s default epochs (about 600
   steps: ``clip(4800 / n_train, 60, 240)`` at batch 8), then ``osteo roi evaluate`` on the
   100 held-out images: landmark error (px, % of the width), box IoU, share IoU ≥ 0.5 / 0.75, share flagged.
3. A classifier cohort of other subjects (seed 0, 400 whole views): the budget-100 detector
   crops it (``osteo roi detect``); ``osteo roi compare roi_<kind>`` runs the same 2×5-fold
   experiment on the hand (ground-truth) crops and on the detected ones. Rows the detector
   flags for review are left out of both arms (their count is printed).

Prints one JSON line per budget and one for the comparison, then Markdown tables; everything
is also under ``--out`` (each run folder keeps its own figures).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, machine  # noqa: E402

from osteo_tf.data.whole import make_whole_cohort  # noqa: E402


def _budget_rows(kind: str, pool: Path, out: Path, budgets: list[int], max_epochs: int = 240) -> list[dict]:
    from osteo_tf.roi.evaluate import evaluate_roi
    from osteo_tf.training.roi import default_epochs, train_roi

    table = pd.read_csv(pool)
    test = pool.parent / "test.csv"  # beside the images: manifest paths are relative to the CSV
    table.iloc[200:300].to_csv(test, index=False)
    rows = []
    for budget in budgets:
        annotated = pool.parent / f"annotated_{budget}.csv"
        table.iloc[:budget].to_csv(annotated, index=False)
        n_train = budget - max(1, round(0.2 * budget))
        epochs = min(max_epochs, default_epochs(n_train, batch_size=8))  # osteo roi train's default
        run = out / f"roi_{budget}"
        start = time.perf_counter()
        if not (run / "detector.keras").is_file():
            train_roi(annotated, kind, run, epochs=epochs, seed=0, log=lambda line: None)
        seconds = time.perf_counter() - start
        metrics = evaluate_roi(run, test, out=run / "heldout")
        row = {"kind": kind, "budget": budget, "epochs": epochs, "train_seconds": round(seconds, 1), **metrics}
        emit({"bench": "roi_budget", **row, **machine()}, str(out / "results.jsonl"))
        rows.append(row)
    return rows


def _comparison(kind: str, out: Path, width: int, budget: int) -> dict:
    from osteo_tf.experiments.roi_compare import compare_crops
    from osteo_tf.roi.detect import detect_manifest

    hand = make_whole_cohort(kind, 400, out / "cohort", seed=0, image_size=width)
    detected = out / "cohort" / "detected.csv"
    result = detect_manifest(out / f"roi_{budget}", hand, detected)
    table, found = pd.read_csv(hand), pd.read_csv(detected)
    keep = found["roi_status"].to_numpy() != "review"
    table[keep].to_csv(out / "cohort" / "hand_kept.csv", index=False)
    found[keep].to_csv(out / "cohort" / "detected_kept.csv", index=False)
    compared = compare_crops(
        f"roi_{kind}", out / "cohort" / "hand_kept.csv", out / "cohort" / "detected_kept.csv", out / "compare"
    )
    row = {"bench": "roi_compare", "kind": kind, "budget": budget, "flagged": result.n_review, **compared}
    emit({**row, **machine()}, str(out / "results.jsonl"))
    return row


def _markdown(rows: list[dict], compared: dict | None) -> str:
    lines = [
        "| annotated images | median error (% width) | p95 error (% width) | median error (px) | IoU ≥ 0.5 | "
        "IoU ≥ 0.75 | flagged |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['budget']} | {r['error_pct_width_median']:.2f} | {r['error_pct_width_p95']:.2f} | "
            f"{r['error_px_median']:.2f} | {100 * r['share_iou_50']:.0f} % | {100 * r['share_iou_75']:.0f} % | "
            f"{100 * r['share_flagged']:.0f} % |"
        )
    if compared:
        from osteo_tf.experiments.roi_compare import comparison_lines

        lines += ["", *comparison_lines(compared)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("hip", "dental"), default="hip")
    parser.add_argument("--out", required=True)
    parser.add_argument("--width", type=int, default=None, help="whole view width (default hip 192, dental 384)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--compare-budget", type=int, default=100)
    parser.add_argument("--no-compare", action="store_true", help="only the budget curve")
    parser.add_argument("--max-epochs", type=int, default=240, help="cap on the detector's epochs (smoke runs)")
    args = parser.parse_args(argv)
    width = args.width or {"hip": 192, "dental": 384}[args.kind]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pool = out / "pool" / "manifest.csv"
    if not pool.is_file():
        make_whole_cohort(args.kind, 300, out / "pool", seed=1, image_size=width)
    rows = _budget_rows(args.kind, pool, out, args.budgets, args.max_epochs)
    compared = None if args.no_compare else _comparison(args.kind, out, width, args.compare_budget)
    text = _markdown(rows, compared)
    (out / "summary.md").write_text(text + "\n")
    (out / "summary.json").write_text(json.dumps({"budgets": rows, "compare": compared}, indent=2, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
