"""The experiment results store: one JSON record per finished fit, read back as a table.

``DIR/results/<fit_id>.json`` holds one record (see :func:`record_path`); each is written
atomically, so concurrent shards never collide and a killed run leaves only whole records.
This module imports neither TensorFlow nor Keras, so report code can read results cheaply.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from osteo_tf.errors import OsteoInputError

__all__ = [
    "RECORD_KEYS",
    "REQUIRED_KEYS",
    "RESULTS",
    "SCALAR_KEYS",
    "fit_id",
    "read_records",
    "read_results",
    "record_path",
]

RESULTS = "results"
RECORD_KEYS = (
    "fit_id",
    "config_hash",
    "experiment",
    "backbone",
    "mode",
    "fusion",
    "model",
    "repeat",
    "fold",
    "seed",
    "metrics",
    "test_predictions",
    "seconds",
    "epochs_run",
    "best_epoch",
    "run_dir",
    "finished_at",
)
SCALAR_KEYS = tuple(k for k in RECORD_KEYS if k not in ("metrics", "test_predictions"))
# What a reader cannot do without; a record lacking one is refused, naming its file.
REQUIRED_KEYS = ("fit_id", "backbone", "mode", "repeat", "fold", "metrics", "test_predictions")


def fit_id(backbone: str, mode: str, repeat: int, fold: int) -> str:
    """The name of one fit, its record file and its run folder."""
    return f"{backbone}__{mode}__r{repeat:02d}__f{fold:02d}"


def record_path(out: str | Path, fit: str) -> Path:
    return Path(out) / RESULTS / f"{fit}.json"


def read_records(out: str | Path) -> list[dict]:
    """Every finished fit's record in ``out/results`` (sorted by fit_id); temporary files are ignored."""
    folder = Path(out) / RESULTS
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.name.startswith("."):
            continue
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise OsteoInputError(
                f"result record {path} is not valid JSON ({error}); delete it to rerun that fit"
            ) from None
        _check_record(path, record)
        records.append(record)
    return records


def _check_record(path: Path, record: dict) -> None:
    from osteo_tf.evaluation.metrics import METRIC_NAMES

    missing = [key for key in REQUIRED_KEYS if key not in record]
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    missing += [
        f"metrics.{split}.{name}"
        for split in ("test",)
        for name in METRIC_NAMES
        if name not in (metrics.get(split) or {})
    ]
    if missing:
        raise OsteoInputError(f"{path} lacks {', '.join(missing)}; it is not a result record of `osteo experiment`")


def read_results(out: str | Path) -> pd.DataFrame:
    """One row per finished fit of the experiment in ``out``, metrics flattened.

    Columns: fit_id, config_hash, experiment, backbone, mode, repeat, fold, seed, seconds,
    epochs_run, best_epoch, run_dir, finished_at, then ``val_<metric>`` and ``test_<metric>``
    for every key of :func:`osteo_tf.evaluation.metrics.binary_metrics` (accuracy, precision,
    recall, specificity, npv, f1, auc, tp, fp, tn, fn, n, threshold), and ``test_predictions``
    (the record's list of {image, patient_id, label, probability} dicts). Rows are sorted by
    backbone, mode, repeat, fold. An empty store gives an empty table with these columns.
    Raises OsteoInputError when records of different config hashes are mixed.
    """
    records = read_records(out)
    rows = []
    for record in records:
        row = {key: record.get(key) for key in SCALAR_KEYS}
        for split in ("val", "test"):
            for name, value in record["metrics"][split].items():
                row[f"{split}_{name}"] = value
        row["test_predictions"] = record["test_predictions"]
        rows.append(row)
    hashes = sorted({row["config_hash"] for row in rows})
    if len(hashes) > 1:
        raise OsteoInputError(
            f"{Path(out) / RESULTS} mixes records of {len(hashes)} configs {hashes}; "
            "rerun with --force into a fresh folder"
        )
    if not rows:
        from osteo_tf.evaluation.metrics import METRIC_NAMES

        extra = [f"{s}_{m}" for s in ("val", "test") for m in (*METRIC_NAMES, "tp", "fp", "tn", "fn", "n", "threshold")]
        return pd.DataFrame(columns=[*SCALAR_KEYS, *extra, "test_predictions"])
    table = pd.DataFrame(rows)
    return table.sort_values(["backbone", "mode", "repeat", "fold"], kind="stable").reset_index(drop=True)
