"""Train / validation / test splits that keep every patient inside one split.

The hip protocol (Yamamoto 2020): a random 8:1:1 split. We stratify by label so each split
has the cohort's prevalence, and split *patients*, not images, so that no patient's images
appear in two splits (a patient is osteoporotic if any of their rows is). The split is a
pure function of (cohort, ratios, seed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from osteo_tf.errors import OsteoInputError

SPLIT_NAMES = ("train", "val", "test")


def patient_labels(cohort: pd.DataFrame) -> pd.Series:
    """One label per patient (index: patient_id): 1 if any of the patient's rows is 1."""
    return cohort.groupby("patient_id", sort=True)["label"].max()


def random_split(
    cohort: pd.DataFrame, ratios: tuple[float, float, float] = (8, 1, 1), seed: int = 0
) -> dict[str, np.ndarray]:
    """Splits the rows of ``cohort`` (needs ``patient_id`` and ``label``) into train/val/test.

    Returns ``{"train": rows, "val": rows, "test": rows}``, each a sorted int array of
    positional row indices; together they cover every row exactly once.
    """
    if len(ratios) != 3 or min(ratios) <= 0:
        raise OsteoInputError(f"split ratios must be three positive numbers (train, val, test), got {ratios}")
    per_patient = patient_labels(cohort)
    counts = per_patient.value_counts().to_dict()
    total = float(sum(ratios))
    try:
        rest, test = train_test_split(
            per_patient.index.to_numpy(), test_size=ratios[2] / total,
            stratify=per_patient.to_numpy(), random_state=seed,
        )
        train, val = train_test_split(
            rest, test_size=ratios[1] / (ratios[0] + ratios[1]),
            stratify=per_patient.loc[rest].to_numpy(), random_state=seed + 1,
        )
    except ValueError as error:
        raise OsteoInputError(
            f"cannot make a stratified {ratios[0]:g}:{ratios[1]:g}:{ratios[2]:g} split of "
            f"{len(per_patient)} patients (patients per label: {counts}): {error}. "
            "Each split needs patients of both labels; use a larger cohort."
        ) from None
    patient_split = {p: name for name, ps in zip(SPLIT_NAMES, (train, val, test)) for p in ps}
    assigned = cohort["patient_id"].map(patient_split).to_numpy()
    return {name: np.flatnonzero(assigned == name) for name in SPLIT_NAMES}


def splits_table(cohort: pd.DataFrame, splits: dict[str, np.ndarray]) -> pd.DataFrame:
    """The split assignment as a table (image, patient_id, label, split) to save in a run."""
    split = np.empty(len(cohort), dtype=object)
    for name, rows in splits.items():
        split[rows] = name
    return pd.DataFrame(
        {"image": cohort["image"].to_numpy(), "patient_id": cohort["patient_id"].to_numpy(),
         "label": cohort["label"].to_numpy(), "split": split}
    )


def splits_from_table(cohort: pd.DataFrame, table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Inverse of :func:`splits_table` for the same cohort (rows matched by image path)."""
    by_image = dict(zip(table["image"], table["split"]))
    missing = [img for img in cohort["image"] if img not in by_image]
    if missing:
        raise OsteoInputError(f"{len(missing)} image(s) of the cohort are not in the saved splits, e.g. {missing[0]}")
    assigned = cohort["image"].map(by_image).to_numpy()
    return {name: np.flatnonzero(assigned == name) for name in SPLIT_NAMES}
