"""Clinical covariates → the fixed-length vector the covariate branch reads.

The papers' encoding: age and BMI by *mean normalization* ``(x − mean) / (max − min)``,
sex and hip-fracture history as one-hot vectors — 1×6 for the hip protocol
(age, BMI, sex×2, fracture×2), 1×4 for the dental one (age, BMI, sex×2). The statistics are
fitted on the training split only and saved with the run (``to_dict`` / ``from_dict``), so
validation, test, external cohorts and the exported model are encoded with the training
cohort's numbers.

scikit-learn has one-hot and scalers, but no mean-normalization scaler, and its fitted
objects would have to be pickled; a JSON-able dict of a few numbers is safer to ship with a
model, so this small encoder is our own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from osteo_tf.errors import OsteoInputError

HIP_COVARIATES = ("age", "bmi", "sex", "hip_fracture_history")
DENTAL_COVARIATES = ("age", "bmi", "sex")
CATEGORICAL_DEFAULTS = ("sex", "hip_fracture_history")


@dataclass
class CovariateEncoder:
    """Encodes covariate columns of a cohort table into a float32 matrix.

    numeric: column names mean-normalised with training statistics.
    categorical: column names one-hot encoded over the categories seen in training
      (sorted, so the layout does not depend on row order).
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def for_columns(cls, columns: tuple[str, ...] | list[str], table: pd.DataFrame | None = None) -> "CovariateEncoder":
        """Splits ``columns`` into numeric and categorical.

        sex and hip_fracture_history are categorical; any other column is numeric when the
        table's values are numbers, categorical otherwise.
        """
        numeric, categorical = [], []
        for name in columns:
            is_categorical = name in CATEGORICAL_DEFAULTS or (
                table is not None and name in table and not pd.api.types.is_numeric_dtype(table[name])
            )
            (categorical if is_categorical else numeric).append(name)
        return cls(numeric=tuple(numeric), categorical=tuple(categorical))

    @property
    def columns(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    @property
    def dim(self) -> int:
        """Length of the encoded vector (needs a fitted encoder)."""
        self._require_fitted()
        return len(self.numeric) + sum(len(self.categories[name]) for name in self.categorical)

    @property
    def feature_names(self) -> list[str]:
        self._require_fitted()
        names = list(self.numeric)
        for name in self.categorical:
            names += [f"{name}={value}" for value in self.categories[name]]
        return names

    def fit(self, train: pd.DataFrame) -> "CovariateEncoder":
        """Fits mean/min/max and category lists on the training rows only."""
        self._check_columns(train, "training rows")
        for name in self.numeric:
            values = pd.to_numeric(train[name], errors="raise").astype(float)
            low, high = float(values.min()), float(values.max())
            self.stats[name] = {"mean": float(values.mean()), "min": low, "max": high}
        for name in self.categorical:
            self.categories[name] = sorted({_category(v) for v in train[name]})
        return self

    def transform(self, table: pd.DataFrame) -> np.ndarray:
        """Returns a (rows, dim) float32 matrix; unseen categories are an error, not zeros."""
        self._require_fitted()
        self._check_columns(table, "rows to encode")
        parts = []
        for name in self.numeric:
            s = self.stats[name]
            spread = s["max"] - s["min"] or 1.0  # a constant training column encodes as 0
            values = pd.to_numeric(table[name], errors="raise").to_numpy(dtype=np.float64)
            parts.append(((values - s["mean"]) / spread)[:, None])
        for name in self.categorical:
            known = self.categories[name]
            codes = [_category(v) for v in table[name]]
            unseen = sorted(set(codes) - set(known))
            if unseen:
                raise OsteoInputError(
                    f"covariate '{name}' has value(s) {unseen} that the training rows never had "
                    f"(known: {known}); the encoder cannot one-hot encode them"
                )
            one_hot = np.zeros((len(codes), len(known)))
            one_hot[np.arange(len(codes)), [known.index(c) for c in codes]] = 1.0
            parts.append(one_hot)
        if not parts:
            return np.zeros((len(table), 0), dtype=np.float32)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def to_dict(self) -> dict:
        self._require_fitted()
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "stats": self.stats,
            "categories": self.categories,
            "feature_names": self.feature_names,
        }

    @classmethod
    def from_dict(cls, state: dict) -> "CovariateEncoder":
        return cls(
            numeric=tuple(state["numeric"]),
            categorical=tuple(state["categorical"]),
            stats={k: dict(v) for k, v in state["stats"].items()},
            categories={k: list(v) for k, v in state["categories"].items()},
        )

    def _require_fitted(self) -> None:
        if any(n not in self.stats for n in self.numeric) or any(n not in self.categories for n in self.categorical):
            raise RuntimeError("CovariateEncoder is not fitted: call fit(train_rows) first")

    def _check_columns(self, table: pd.DataFrame, what: str) -> None:
        missing = [name for name in self.columns if name not in table]
        if missing:
            raise OsteoInputError(
                f"covariate column(s) {missing} are not in the {what} (columns: {list(table.columns)}); "
                "choose covariates that the manifest has"
            )


def _category(value: object) -> str:
    """Category key: integers and their float spellings (1, 1.0) are the same category."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value)
