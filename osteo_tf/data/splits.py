"""Train / validation / test splits that keep every patient inside one split.

The hip protocol (Yamamoto 2020): a random 8:1:1 split. We stratify by label so each split
has the cohort's prevalence, and split *patients*, not images, so that no patient's images
appear in two splits (a patient is osteoporotic if any of their rows is). The split is a
pure function of (cohort, ratios, seed).

The dental protocol (Sukegawa 2022): stratified k-fold cross-validation grouped by patient
(scikit-learn's ``StratifiedGroupKFold``), each training fold split again train/val 8:1
(patient-grouped, stratified), the whole repeated R times with different shuffles. Every
split is a pure function of (cohort, folds, val_ratio, seed, repeat, fold); the seeds of the
repeats and folds are derived from the base seed by :func:`derive_seed`.

Leave one site out (TRIPOD+AI 23b, CLAIM 32–33; :func:`site_splits`): with a ``site`` column in
the manifest, each site in turn is the test set — an external validation on a site the model
never saw — and the other sites' patients are split train/val by ``val_ratio`` as in k-fold
(patient-grouped, stratified, seeded by ``derive_seed(seed, repeat, fold)``, the fold being the
site's place in the list of sites). A patient must belong to one site.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from osteo_tf.errors import OsteoInputError
from osteo_tf.vocabulary import SPLIT_NAMES

__all__ = [
    "SPLIT_NAMES",
    "check_split_classes",
    "class_counts",
    "derive_seed",
    "describe_counts",
    "kfold_split",
    "kfold_splits",
    "patient_labels",
    "random_split",
    "require_both_classes",
    "site_names",
    "site_split",
    "site_splits",
    "splits_from_table",
    "splits_table",
]


def patient_labels(cohort: pd.DataFrame) -> pd.Series:
    """One label per patient (index: patient_id): 1 if any of the patient's rows is 1."""
    return cohort.groupby("patient_id", sort=True)["label"].max()


def class_counts(labels) -> dict[int, int]:
    """{1: osteoporosis rows, 0: non-osteoporosis rows} of a label array (0/1)."""
    labels = np.asarray(labels)
    return {1: int((labels == 1).sum()), 0: int((labels == 0).sum())}


def describe_counts(counts: dict[int, int]) -> str:
    """'3 osteoporosis and 0 non-osteoporosis rows' for :func:`class_counts`."""
    return f"{counts[1]} osteoporosis and {counts[0]} non-osteoporosis rows"


#: ``cohort.attrs`` keys that :func:`osteo_tf.training.train.load_cohort` sets for messages:
#: the manifest ("manifest /path/cohort.csv") and its label columns in the user's names.
SOURCE_ATTR, LABEL_FROM_ATTR = "osteo_source", "osteo_label_from"


def require_both_classes(cohort: pd.DataFrame, source: str | None = None) -> None:
    """Raises unless the ``label`` column of ``cohort`` holds both classes: training, early
    stopping and the AUC are undefined on one class, so this is refused before any model is
    built. The message names ``source`` (default: the manifest in ``cohort.attrs``) and the
    columns the labels came from.
    """
    counts = class_counts(cohort["label"].to_numpy())
    if min(counts.values()) == 0:
        source = source or cohort.attrs.get(SOURCE_ATTR, "the cohort")
        label_from = cohort.attrs.get(LABEL_FROM_ATTR, "column 'label' / 't_score'")
        raise OsteoInputError(
            f"{source} has one class only: {describe_counts(counts)} (labels from {label_from}); a model needs "
            "subjects with and without osteoporosis to train, and the AUC needs both to be defined"
        )


def check_split_classes(cohort: pd.DataFrame, splits: dict[str, np.ndarray], where: str = "") -> None:
    """Raises unless each of the train, val and test rows of ``splits`` holds both classes.

    A validation part of one class makes early stopping follow a loss blind to the other
    class; a test part of one class has no AUC. ``where`` names the split (e.g. "repeat 0,
    fold 3") in the message, which gives the counts of every part.
    """
    labels = cohort["label"].to_numpy()
    counts = {name: class_counts(labels[rows]) for name, rows in splits.items()}
    bad = [name for name in SPLIT_NAMES if name in counts and min(counts[name].values()) == 0]
    if bad:
        parts = "; ".join(f"{name}: {describe_counts(counts[name])}" for name in SPLIT_NAMES if name in counts)
        raise OsteoInputError(
            f"the {' and '.join(bad)} part{'s' if len(bad) > 1 else ''} of the split{' ' + where if where else ''} "
            f"{'have' if len(bad) > 1 else 'has'} one class only ({parts}); every part needs both classes: use a "
            "larger cohort, or other split ratios / fewer folds"
        )


def random_split(
    cohort: pd.DataFrame, ratios: tuple[float, float, float] = (8, 1, 1), seed: int = 0
) -> dict[str, np.ndarray]:
    """Splits the rows of ``cohort`` (needs ``patient_id`` and ``label``) into train/val/test.

    Returns ``{"train": rows, "val": rows, "test": rows}``, each a sorted int array of
    positional row indices; together they cover every row exactly once.
    """
    if len(ratios) != 3 or min(ratios) <= 0:
        raise OsteoInputError(f"split ratios must be three positive numbers (train, val, test), got {ratios}")
    require_both_classes(cohort)
    per_patient = patient_labels(cohort)
    counts = per_patient.value_counts().to_dict()
    total = float(sum(ratios))
    try:
        rest, test = train_test_split(
            per_patient.index.to_numpy(),
            test_size=ratios[2] / total,
            stratify=per_patient.to_numpy(),
            random_state=seed,
        )
        train, val = train_test_split(
            rest,
            test_size=ratios[1] / (ratios[0] + ratios[1]),
            stratify=per_patient.loc[rest].to_numpy(),
            random_state=seed + 1,
        )
    except ValueError as error:
        raise OsteoInputError(
            f"cannot make a stratified {ratios[0]:g}:{ratios[1]:g}:{ratios[2]:g} split of "
            f"{len(per_patient)} patients (patients per label: {counts}): {error}. "
            "Each split needs patients of both labels; use a larger cohort."
        ) from None
    patient_split = {p: name for name, ps in zip(SPLIT_NAMES, (train, val, test)) for p in ps}
    assigned = cohort["patient_id"].map(patient_split).to_numpy()
    splits = {name: np.flatnonzero(assigned == name) for name in SPLIT_NAMES}
    check_split_classes(cohort, splits, f"{ratios[0]:g}:{ratios[1]:g}:{ratios[2]:g} (seed {seed})")
    return splits


def derive_seed(seed: int, *keys: int) -> int:
    """A 31-bit seed for (seed, *keys), e.g. (seed, repeat, fold); stable across platforms."""
    state = np.random.SeedSequence([int(seed), *(int(k) for k in keys)]).generate_state(1, dtype=np.uint32)
    return int(state[0] >> 1)


def kfold_splits(
    cohort: pd.DataFrame, folds: int = 5, val_ratio: tuple[float, float] = (8, 1), *, seed: int = 0, repeat: int = 0
) -> list[dict[str, np.ndarray]]:
    """All ``folds`` train/val/test splits of one repeat of stratified, patient-grouped k-fold CV.

    Fold f's test rows are the f-th ``StratifiedGroupKFold`` fold (shuffled with
    ``derive_seed(seed, repeat)``); the remaining patients are split train:val by
    ``val_ratio``, stratified by patient label, with ``derive_seed(seed, repeat, f)``.
    Each element is ``{"train", "val", "test"}`` → sorted positional row indices; the test
    sets of the folds partition the rows.
    """
    if folds < 2 or len(val_ratio) != 2 or min(val_ratio) <= 0:
        raise OsteoInputError(
            f"k-fold needs folds >= 2 and val_ratio of two positive numbers, got {folds}, {val_ratio}"
        )
    require_both_classes(cohort)
    per_patient = patient_labels(cohort)
    counts = per_patient.value_counts().to_dict()
    if len(counts) < 2 or min(counts.values()) < folds:
        raise OsteoInputError(
            f"cannot make a stratified {folds}-fold split of {len(per_patient)} patients (patients per label: "
            f"{counts}): every fold needs patients of both labels; use fewer folds or a larger cohort"
        )
    outer = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=derive_seed(seed, repeat))
    labels, groups = cohort["label"].to_numpy(), cohort["patient_id"].to_numpy()
    result = []
    for fold, (rest, test) in enumerate(outer.split(np.zeros(len(cohort)), labels, groups)):
        val = _stratified_sample(
            per_patient.loc[np.unique(groups[rest])],
            val_ratio[1] / sum(val_ratio),
            np.random.default_rng(derive_seed(seed, repeat, fold)),
            f"fold {fold}'s training part",
        )
        val_rows = np.flatnonzero(np.isin(groups, val))
        result.append({"train": np.setdiff1d(rest, val_rows), "val": val_rows, "test": np.sort(test)})
        check_split_classes(cohort, result[-1], f"repeat {repeat}, fold {fold} of {folds}")
    return result


def _stratified_sample(
    patients: pd.Series,
    fraction: float,
    rng: np.random.Generator,
    where: str,
    advice: str = "use fewer folds or a larger cohort",
) -> np.ndarray:
    """round(fraction × n) patients of each label (at least 1, never all), chosen at random.

    ``where`` names the patients' part in the message ("fold 3's training part"), ``advice`` the fix.
    """
    chosen = []
    for label, members in patients.groupby(patients, sort=True):
        if len(members) < 2:
            raise OsteoInputError(
                f"{where} has {len(members)} patient(s) of label {label}: too few to split "
                f"train/val with both labels in each; {advice}"
            )
        size = min(max(1, round(fraction * len(members))), len(members) - 1)
        chosen.append(rng.choice(members.index.to_numpy(), size, replace=False))
    return np.concatenate(chosen)


def kfold_split(
    cohort: pd.DataFrame,
    fold: int,
    folds: int = 5,
    *,
    val_ratio: tuple[float, float] = (8, 1),
    seed: int = 0,
    repeat: int = 0,
) -> dict[str, np.ndarray]:
    """Fold ``fold`` (0-based) of :func:`kfold_splits`."""
    if not 0 <= fold < folds:
        raise OsteoInputError(f"fold {fold} is out of range for {folds} folds")
    return kfold_splits(cohort, folds, val_ratio, seed=seed, repeat=repeat)[fold]


# ------------------------------------------------------------------------------ leave one site out


def site_names(cohort: pd.DataFrame, column: str = "site") -> tuple[str, ...]:
    """The sites of a cohort for a leave-one-site-out split, checked.

    Site names are the cells of ``column`` with surrounding blanks removed (`` Osaka `` is
    ``Osaka``). Messages name the manifest (``cohort.attrs``) and, where the cohort has the
    manifest's ``line`` column, the CSV lines at fault.

    Args:
        cohort: the cohort table (needs ``patient_id`` and ``column``; ``line`` is optional).
        column: the column holding each row's site.

    Returns:
        The distinct sites, sorted: the order of the folds of :func:`site_splits`.

    Raises:
        OsteoInputError: no such column, an empty site cell, a patient at two sites, or fewer
            than two sites.
    """
    source = cohort.attrs.get(SOURCE_ATTR, "the cohort")
    if column not in cohort.columns:
        raise OsteoInputError(
            f"{source} has no column {column!r}, which a leave-one-site-out split (split kind site) reads each "
            f"row's site from; add it, or name the column that holds the sites (split.column). Columns: "
            f"{', '.join(map(str, cohort.columns))}",
            parameter="column",
        )
    sites = _site_cells(cohort[column])
    lines = cohort["line"].to_numpy() if "line" in cohort.columns else None
    empty = np.flatnonzero(sites == "")
    if len(empty):
        where = _lines(lines[empty]) if lines is not None else _rows(empty)
        raise OsteoInputError(
            f"{source}, {where}, column {column!r}: the site is empty; a leave-one-site-out split needs the "
            "site of every row: fill it in, or leave those rows out of the manifest",
            parameter="column",
        )
    patients = cohort["patient_id"].astype(str).to_numpy()
    table = pd.DataFrame({"patient_id": patients, "site": sites})
    per_patient = table.groupby("patient_id", sort=True)["site"].unique()
    crossing = per_patient[per_patient.map(len) > 1]
    if len(crossing):
        described = []
        for patient, at in list(crossing.items())[:3]:
            at = sorted(at)
            places = []
            for site in at:
                rows = np.flatnonzero((patients == patient) & (sites == site))
                places.append(f"{site!r} ({_lines(lines[rows]) if lines is not None else _rows(rows)})")
            described.append(f"patient {patient!r} appears at sites {' and '.join(places)}")
        more = f" (and {len(crossing) - 3} more patients)" if len(crossing) > 3 else ""
        raise OsteoInputError(
            f"{source}, column {column!r}: {'; '.join(described)}{more}. A leave-one-site-out split keeps every "
            "patient at one site, so that no test patient is also trained on: correct the site cells, or give the "
            "patient one site",
            parameter="column",
        )
    names = tuple(sorted(set(sites.tolist())))
    if len(names) < 2:
        raise OsteoInputError(
            f"{source}, column {column!r}: {len(names)} site{'s' * (len(names) != 1)} "
            f"({', '.join(map(repr, names))}); a leave-one-site-out split needs at least 2 sites (one to test on, "
            "the others to train on): use split kind random or kfold",
            parameter="column",
        )
    return names


def site_split(
    cohort: pd.DataFrame,
    site: str,
    column: str = "site",
    *,
    val_ratio: tuple[float, float] = (8, 1),
    seed: int = 0,
    repeat: int = 0,
    sites: tuple[str, ...] | None = None,
) -> dict[str, np.ndarray]:
    """The split of :func:`site_splits` whose test part is ``site``.

    Args:
        cohort: the cohort table (``patient_id``, ``label`` and ``column``).
        site: the test site.
        column: the column holding each row's site.
        val_ratio: (train, val) proportions of the other sites' patients, e.g. (8, 1).
        seed: the base seed.
        repeat: the repeat; with ``seed`` and the site's fold, it seeds the train/val draw.
        sites: the sites in fold order (default: :func:`site_names` of the cohort); the fold
            of ``site`` is its place here.

    Returns:
        ``{"train", "val", "test"}`` → sorted positional row indices; test holds every row of
        ``site``, train and val the other sites' rows, no patient in two parts.

    Raises:
        OsteoInputError: what :func:`site_names` refuses, a bad ``val_ratio``, a site not
            among ``sites`` or without rows in the cohort, or a part of one class.
    """
    if len(val_ratio) != 2 or min(val_ratio) <= 0:
        raise OsteoInputError(
            f"a site split needs val_ratio of two positive numbers (train, val), got {val_ratio}",
            parameter="val_ratio",
        )
    present = site_names(cohort, column)
    order = tuple(present if sites is None else sites)
    if site not in order:
        raise OsteoInputError(
            f"site {site!r} is not one of the split's sites ({', '.join(map(repr, order))})", parameter="site"
        )
    if site not in present:
        source = cohort.attrs.get(SOURCE_ATTR, "the cohort")
        raise OsteoInputError(
            f"site {site!r} has no rows in {source} (its sites: {', '.join(map(repr, present))}); the manifest "
            "changed since the split was planned: plan the experiment again on this manifest",
            parameter="site",
        )
    require_both_classes(cohort)
    fold = order.index(site)
    cells = _site_cells(cohort[column])
    groups = cohort["patient_id"].to_numpy()
    test, rest = np.flatnonzero(cells == site), np.flatnonzero(cells != site)
    val = _stratified_sample(
        patient_labels(cohort).loc[np.unique(groups[rest])],
        val_ratio[1] / sum(val_ratio),
        np.random.default_rng(derive_seed(seed, repeat, fold)),
        f"the training sites of test site {site!r}",
        "a site split needs at least 2 patients of each label outside the test site",
    )
    val_rows = np.flatnonzero(np.isin(groups, val))
    split = {"train": np.setdiff1d(rest, val_rows), "val": val_rows, "test": test}
    check_split_classes(cohort, split, f"repeat {repeat}, test site {site!r} (fold {fold})")
    return split


def site_splits(
    cohort: pd.DataFrame,
    column: str = "site",
    val_ratio: tuple[float, float] = (8, 1),
    *,
    seed: int = 0,
    repeat: int = 0,
    sites: tuple[str, ...] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Leave one site out: one train/val/test split per site, that site's rows the test part.

    Args:
        cohort: the cohort table (``patient_id``, ``label`` and ``column``).
        column: the column holding each row's site.
        val_ratio: (train, val) proportions of the other sites' patients, e.g. (8, 1).
        seed: the base seed.
        repeat: the repeat (a different train/val draw per repeat; the test parts stay).
        sites: the sites in fold order (default: :func:`site_names`, sorted).

    Returns:
        site → ``{"train", "val", "test"}`` (sorted positional row indices), in fold order;
        the test parts partition the rows of those sites.

    Raises:
        OsteoInputError: what :func:`site_split` refuses, for any site.
    """
    order = tuple(site_names(cohort, column) if sites is None else sites)
    return {
        site: site_split(cohort, site, column, val_ratio=val_ratio, seed=seed, repeat=repeat, sites=order)
        for site in order
    }


def _site_cells(values: pd.Series) -> np.ndarray:
    """Site names as stripped strings; a missing cell (None / NaN) is ""."""
    return np.asarray(["" if pd.isna(v) else str(v).strip() for v in values], dtype=object)


def _lines(lines: np.ndarray) -> str:
    """'line 7' or 'lines 3, 8, 9 (+2 more)'."""
    shown = [str(int(n)) for n in lines[:5]]
    if len(lines) == 1:
        return f"line {shown[0]}"
    more = f" (+{len(lines) - 5} more)" if len(lines) > 5 else ""
    return f"lines {', '.join(shown)}{more}"


def _rows(rows: np.ndarray) -> str:
    """The rows of a table without manifest lines, 0-based: 'row 3' or 'rows 3, 8'."""
    return _lines(rows).replace("line", "row")


def splits_table(cohort: pd.DataFrame, splits: dict[str, np.ndarray]) -> pd.DataFrame:
    """The split assignment as a table (image, patient_id, label, split) to save in a run."""
    split = np.empty(len(cohort), dtype=object)
    for name, rows in splits.items():
        split[rows] = name
    return pd.DataFrame(
        {
            "image": cohort["image"].to_numpy(),
            "patient_id": cohort["patient_id"].to_numpy(),
            "label": cohort["label"].to_numpy(),
            "split": split,
        }
    )


def splits_from_table(cohort: pd.DataFrame, table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Inverse of :func:`splits_table` for the same cohort (rows matched by image path)."""
    by_image = dict(zip(table["image"], table["split"]))
    missing = [img for img in cohort["image"] if img not in by_image]
    if missing:
        raise OsteoInputError(f"{len(missing)} image(s) of the cohort are not in the saved splits, e.g. {missing[0]}")
    assigned = cohort["image"].map(by_image).to_numpy()
    return {name: np.flatnonzero(assigned == name) for name in SPLIT_NAMES}
