"""The outcome of checking a manifest: the valid rows, and every excluded row with its reason.

:func:`osteo_tf.data.manifest.check_manifest` returns a :class:`ManifestCheck`. The strict
default (:meth:`ManifestCheck.raise_if_any`) turns any problem into one error listing them
all; with ``--allow-exclusions`` the invalid rows are left out instead, but never silently:
they are listed in ``exclusions.csv`` (one line per row and problem) and counted per reason,
like the exclusion lists of the papers' cohort descriptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from osteo_tf.errors import OsteoInputError

__all__ = ["EXCLUSION_COLUMNS", "ManifestCheck"]

#: Columns of ``exclusions.csv``: the CSV line of the row (header = line 1), its raw image
#: and patient cells, the column at fault, a short reason (counted) and the full message.
EXCLUSION_COLUMNS = ("line", "image", "patient_id", "column", "reason", "detail")
#: A problem list that already says how to leave invalid rows out (``allow_exclusions``).
_ALLOWS = re.compile(r"allow[-_]exclusions")


@dataclass(frozen=True)
class ManifestCheck:
    """A checked manifest.

    Attributes:
        path: the manifest file.
        cohort: the valid rows (the table :func:`osteo_tf.data.manifest.read_manifest` documents), in file order.
        exclusions: one row per (excluded row, problem), columns :data:`EXCLUSION_COLUMNS`,
            sorted by line.
        n_rows: data rows in the file (blank lines not counted).
        message: the strict error message listing every problem ("" when there is none).
    """

    path: Path
    cohort: pd.DataFrame
    exclusions: pd.DataFrame
    n_rows: int
    message: str = ""

    @property
    def n_excluded(self) -> int:
        """Number of rows excluded (a row with several problems counts once)."""
        return int(self.exclusions["line"].nunique())

    @property
    def counts(self) -> dict[str, int]:
        """Reason → number of rows excluded for it, most frequent first."""
        per_reason = self.exclusions.drop_duplicates(["line", "reason"])["reason"].value_counts()
        return {str(k): int(v) for k, v in sorted(per_reason.items(), key=lambda kv: (-kv[1], kv[0]))}

    def raise_if_any(self) -> None:
        """The strict rule: any invalid row is an error listing every problem."""
        if self.message:
            raise OsteoInputError(self.message)

    def require_rows(self) -> None:
        """Raise when exclusions left no valid row at all."""
        if self.cohort.empty:
            raise OsteoInputError(
                f"every one of the {self.n_rows} rows of {self.path} is invalid; nothing is left to use:\n"
                + self.message
            )

    def summary(self) -> str:
        """Human-readable counts: rows read, excluded per reason, kept."""
        lines = [f"{self.path}: {self.n_rows} rows, {self.n_excluded} excluded, {len(self.cohort)} valid"]
        lines += [f"  excluded, {reason}: {count}" for reason, count in self.counts.items()]
        return "\n".join(lines)

    @property
    def default_exclusions_path(self) -> Path:
        """Where the exclusion list goes by default: ``MANIFEST_exclusions.csv`` beside the manifest."""
        return self.path.with_name(f"{self.path.stem}_exclusions.csv")

    def exclusion_lines(self) -> list[str]:
        """One line per exclusion record, e.g. ``excluded line 4 (c.png): image too small — …``.

        Returns:
            The lines, in :attr:`exclusions` order (by line).
        """
        return [
            f"excluded line {row.line}" + (f" ({row.image})" if row.image else "") + f": {row.reason} — {row.detail}"
            for row in self.exclusions.itertuples(index=False)
        ]

    def cohort_line(self, name: str | Path | None = None) -> str:
        """The valid rows in one line: ``NAME: 20 valid rows, 18 patients, 7 osteoporosis / 13 non-osteoporosis``.

        Args:
            name: how to name the manifest (default its ``path``).

        Returns:
            The line.
        """
        positives = int(self.cohort["label"].sum())
        return (
            f"{name or self.path}: {len(self.cohort)} valid rows, {self.cohort['patient_id'].nunique()} patients, "
            f"{positives} osteoporosis / {len(self.cohort) - positives} non-osteoporosis"
        )

    def refusal(self, written: str | Path, *, name: str | Path | None = None) -> OsteoInputError | None:
        """The error that refuses a manifest with invalid rows when they may not be left out.

        Args:
            written: where the exclusion list was written (named in the message).
            name: how to name the manifest (default its ``path``).

        Returns:
            None when no row is excluded; else an OsteoInputError listing every problem, ending
            with a hint to pass ``allow_exclusions=True`` unless the problem list gives one.
        """
        if not self.n_excluded:
            return None
        hint = "" if _ALLOWS.search(self.message) else "\nOr pass allow_exclusions=True to leave those rows out."
        return OsteoInputError(
            f"{self.n_excluded} of the {self.n_rows} rows of {name or self.path} are invalid "
            f"(listed above and in {written}):\n{self.message}{hint}",
            parameter="allow_exclusions",
        )

    def write(self, path: str | Path) -> Path:
        """Write :attr:`exclusions` as CSV (header only when nothing is excluded), atomically."""
        from osteo_tf.io import write_csv

        return write_csv(path, self.exclusions)

    def records(self) -> list[dict]:
        """The exclusions as plain dicts (JSON-able), for a run's config or a cohort's attrs."""
        return [
            {k: (int(v) if k == "line" else str(v)) for k, v in row.items()}
            for row in self.exclusions.to_dict("records")
        ]


def exclusion_table(records: list[dict]) -> pd.DataFrame:
    """Records with the :data:`EXCLUSION_COLUMNS` keys → the sorted exclusions table."""
    table = pd.DataFrame(records, columns=list(EXCLUSION_COLUMNS))
    table["line"] = table["line"].astype("int64")
    return table.sort_values(["line", "reason"], kind="stable").reset_index(drop=True)
