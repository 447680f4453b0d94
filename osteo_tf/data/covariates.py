"""Clinical covariates → the fixed-length vector the covariate branch reads.

The papers' encoding: age and BMI by *mean normalization* ``(x − mean) / (max − min)``,
sex and hip-fracture history as one-hot vectors — 1×6 for the hip protocol
(age, BMI, sex×2, fracture×2), 1×4 for the dental one (age, BMI, sex×2). The statistics are
fitted on the training split only and saved with the run (``to_dict`` / ``from_dict``), so
validation, test, external cohorts and the exported model are encoded with the training
cohort's numbers.

Missing values (an empty cell, NaN) are an error listing every row and column that has
one, unless the encoder imputes (``impute="median"``, ``--impute median``): then a numeric
column's gap is filled with the training rows' median and a categorical one's with the
training rows' most frequent category (ties: the first in sorted order), and each imputed
column gets a missing-indicator feature ``<column>_missing`` (1.0 where the value was
missing), appended after the other features. Which columns are imputed is fixed when the
encoder is made (:meth:`CovariateEncoder.for_columns`: the columns with a gap anywhere in the
cohort, a pattern, not a statistic), so every split is encoded with the same layout; the
fill values come from the training rows only.

scikit-learn has one-hot and scalers, but no mean-normalization scaler, and its fitted
objects would have to be pickled; a JSON-able dict of a few numbers is safer to ship with a
model, so this small encoder is our own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from osteo_tf.errors import OsteoInputError

__all__ = ["CATEGORICAL_DEFAULTS", "IMPUTE_METHODS", "CovariateEncoder", "missing_mask"]

CATEGORICAL_DEFAULTS = ("sex", "hip_fracture_history")
IMPUTE_METHODS = ("none", "median")
_MAX_MISSING_LISTED = 200  # rows listed in one missing-values message


@dataclass
class CovariateEncoder:
    """Encodes covariate columns of a cohort table into a float32 matrix.

    numeric: column names mean-normalised with training statistics.
    categorical: column names one-hot encoded over the categories seen in training
      (sorted, so the layout does not depend on row order).
    impute: "none" (a missing value is an error) or "median" (see the module docstring).
    imputed: the columns that are imputed and get a missing indicator.
    fill: the fitted fill value of each imputed column.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    impute: str = "none"
    imputed: tuple[str, ...] = ()
    fill: dict[str, float | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.impute not in IMPUTE_METHODS:
            raise OsteoInputError(f"unknown imputation {self.impute!r}; choose one of: {', '.join(IMPUTE_METHODS)}")

    @classmethod
    def for_columns(
        cls,
        columns: tuple[str, ...] | list[str],
        table: pd.DataFrame | None = None,
        impute: str = "none",
        *,
        impute_all: bool = False,
    ) -> "CovariateEncoder":
        """Splits ``columns`` into numeric and categorical.

        sex and hip_fracture_history are categorical; any other column is numeric when the
        table's values are numbers, categorical otherwise. With
        ``impute="median"``, the columns with a missing value anywhere in ``table`` are
        imputed. ``impute_all`` (training with covariate dropout) imputes every column, with
        ``impute`` "median" whatever was asked, so each may be missing at prediction time.
        """
        numeric, categorical = [], []
        for name in columns:
            is_categorical = name in CATEGORICAL_DEFAULTS or (
                table is not None and name in table and not pd.api.types.is_numeric_dtype(table[name])
            )
            (categorical if is_categorical else numeric).append(name)
        imputed: tuple[str, ...] = ()
        if impute_all:
            impute, imputed = "median", tuple(columns)
        elif impute != "none" and table is not None:
            imputed = tuple(name for name in columns if name in table and missing_mask(table[name]).any())
        return cls(numeric=tuple(numeric), categorical=tuple(categorical), impute=impute, imputed=imputed)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    @property
    def dim(self) -> int:
        """Length of the encoded vector (needs a fitted encoder)."""
        return len(self.feature_names)

    @property
    def feature_names(self) -> list[str]:
        self._require_fitted()
        names = list(self.numeric)
        for name in self.categorical:
            names += [f"{name}={value}" for value in self.categories[name]]
        return names + [f"{name}_missing" for name in self.imputed]

    def fit(self, train: pd.DataFrame) -> "CovariateEncoder":
        """Fits mean/min/max, category lists and fill values on the training rows only."""
        self._check_columns(train, "training rows")
        self._check_missing(train, "training rows")
        for name in self.numeric:
            values = _observed(train[name], name)
            values = pd.to_numeric(values, errors="raise").astype(float)
            low, high = float(values.min()), float(values.max())
            self.stats[name] = {"mean": float(values.mean()), "min": low, "max": high}
            if name in self.imputed:
                self.fill[name] = float(values.median())
        for name in self.categorical:
            codes = [_category(v) for v in _observed(train[name], name)]
            self.categories[name] = sorted(set(codes))
            if name in self.imputed:
                counts = pd.Series(codes).value_counts()
                self.fill[name] = sorted(counts.index[counts == counts.max()])[0]
        return self

    def transform(self, table: pd.DataFrame) -> np.ndarray:
        """Returns a (rows, dim) float32 matrix; unseen categories are an error, not zeros."""
        self._require_fitted()
        self._check_columns(table, "rows to encode")
        self._check_missing(table, "rows to encode")
        parts = []
        masks = {name: missing_mask(table[name]) for name in self.imputed}
        for name in self.numeric:
            s = self.stats[name]
            spread = s["max"] - s["min"] or 1.0  # a constant training column encodes as 0
            column = table[name].where(~masks[name], self.fill[name]) if name in masks else table[name]
            values = pd.to_numeric(column, errors="raise").to_numpy(dtype=np.float64)
            parts.append(((values - s["mean"]) / spread)[:, None])
        for name in self.categorical:
            known = self.categories[name]
            column = table[name].astype(object).where(~masks[name], self.fill[name]) if name in masks else table[name]
            codes = [_category(v) for v in column]
            unseen = sorted(set(codes) - set(known))
            if unseen:
                raise OsteoInputError(
                    f"covariate '{name}' has value(s) {unseen} that the training rows never had "
                    f"(known: {known}); the encoder cannot one-hot encode them"
                )
            one_hot = np.zeros((len(codes), len(known)))
            one_hot[np.arange(len(codes)), [known.index(c) for c in codes]] = 1.0
            parts.append(one_hot)
        for name in self.imputed:
            parts.append(masks[name].to_numpy(dtype=np.float64)[:, None])
        if not parts:
            return np.zeros((len(table), 0), dtype=np.float32)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def withholding_groups(self) -> list[dict]:
        """Per imputed covariate: the indices of its features (missing indicator included) and
        the values they take when it is missing — the layout
        :class:`osteo_tf.models.layers.CovariateWithholding` needs."""
        names, groups = self.feature_names, []
        valid_row = {c: [self.fill.get(c, _any_value(self, c))] for c in self.columns}
        for name in self.imputed:
            encoded = self.transform(pd.DataFrame({**valid_row, name: [None]}))[0]
            features = [
                i
                for i, feature in enumerate(names)
                if feature == name or feature.startswith(f"{name}=") or feature == f"{name}_missing"
            ]
            groups.append({"features": features, "values": [float(encoded[i]) for i in features]})
        return groups

    def to_dict(self) -> dict:
        self._require_fitted()
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "stats": self.stats,
            "categories": self.categories,
            "impute": self.impute,
            "imputed": list(self.imputed),
            "fill": self.fill,
            "feature_names": self.feature_names,
        }

    @classmethod
    def from_dict(cls, state: dict) -> "CovariateEncoder":
        return cls(
            numeric=tuple(state["numeric"]),
            categorical=tuple(state["categorical"]),
            stats={k: dict(v) for k, v in state["stats"].items()},
            categories={k: list(v) for k, v in state["categories"].items()},
            impute=state.get("impute", "none"),
            imputed=tuple(state.get("imputed", ())),
            fill=dict(state.get("fill", {})),
        )

    def _require_fitted(self) -> None:
        if (
            any(n not in self.stats for n in self.numeric)
            or any(n not in self.categories for n in self.categorical)
            or any(n not in self.fill for n in self.imputed)
        ):
            raise RuntimeError("CovariateEncoder is not fitted: call fit(train_rows) first")

    def _check_missing(self, table: pd.DataFrame, what: str) -> None:
        """Every missing value in a column that is not imputed: one error listing them all."""
        found: dict[int, list[str]] = {}
        where = table["line"].to_numpy() if "line" in table else np.arange(1, len(table) + 1)
        for name in self.columns:
            if name in self.imputed:
                continue
            for position in np.flatnonzero(missing_mask(table[name]).to_numpy()):
                found.setdefault(int(where[position]), []).append(name)
        if not found:
            return
        unit = "line" if "line" in table else "row"
        listed = [f"  - {unit} {row}: {', '.join(map(repr, names))}" for row, names in sorted(found.items())]
        if len(listed) > _MAX_MISSING_LISTED:
            listed = listed[:_MAX_MISSING_LISTED] + [f"  ... and {len(listed) - _MAX_MISSING_LISTED} more rows"]
        if self.impute != "none":
            advice = (
                "these columns had no missing value in the training cohort, so the model has no missing "
                "indicator for them: fill the values in"
            )
        else:
            advice = (
                "fill them in, pass --impute median (training-row medians plus a missing-indicator "
                "feature per imputed column), or --allow-exclusions to leave those rows out"
            )
        raise OsteoInputError(
            f"covariate values are missing in {len(found)} of the {what} "
            f"({sum(map(len, found.values()))} cells); {advice}:\n" + "\n".join(listed)
        )

    def _check_columns(self, table: pd.DataFrame, what: str) -> None:
        missing = [name for name in self.columns if name not in table]
        if missing:
            raise OsteoInputError(
                f"covariate column(s) {missing} are not in the {what} (columns: {list(table.columns)}); "
                "choose covariates that the manifest has"
            )


def _any_value(encoder: CovariateEncoder, name: str) -> float | str:
    """A valid value of a column (to fill a one-row table; its encoding is not used)."""
    return encoder.stats[name]["mean"] if name in encoder.stats else encoder.categories[name][0]


def missing_mask(column: pd.Series) -> pd.Series:
    """True where a covariate value is missing: NaN / None / NA, or a blank string."""
    mask = column.isna()
    if column.dtype == object or pd.api.types.is_string_dtype(column):
        mask |= column.map(lambda v: isinstance(v, str) and not v.strip()).astype(bool)
    return mask


def _observed(column: pd.Series, name: str) -> pd.Series:
    """The non-missing training values of a column; none at all is an error."""
    values = column[~missing_mask(column)]
    if values.empty:
        raise OsteoInputError(
            f"covariate '{name}' has no value at all in the training rows; "
            "it cannot be encoded or imputed: drop it from --covariates or fill it in"
        )
    return values


def _category(value: object) -> str:
    """Category key: integers and their float spellings (1, 1.0) are the same category."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value)
