"""Problems found in a manifest, collected and reported together with file, line and column."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from osteo_tf.data.manifest.config import _MAX_LINES, _MAX_LISTED
from osteo_tf.errors import OsteoInputError

__all__: list[str] = []  # internal to osteo_tf.data.manifest (and its predict reader)


# ---------------------------------------------------------------------------- problems


@dataclass
class _Problem:
    lines: tuple[int, ...]
    column: str | None
    text: str
    reason: str = ""  # short, counted in exclusion reports (e.g. "missing age")


class _Problems:
    """Collects every problem in one manifest and raises them together."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[_Problem] = []
        self.missing: dict[str, list[int]] = {}
        self.hints: list[str] = []
        self.header_bad = False  # problems that make row checks pointless

    def add_header(self, text: str) -> None:
        """A problem with the header line (columns): row checks will not run."""
        self.add(text, lines=(1,))
        self.header_bad = True

    def add(
        self, text: str, lines: Iterable[int] = (), column: str | None = None, *, reason: str | None = None
    ) -> None:
        if reason is None:
            reason = f"invalid {column}" if column is not None else "malformed row"
        self.items.append(_Problem(tuple(lines), column, text, reason))

    def add_missing(self, column: str, line: int) -> None:
        self.missing.setdefault(column, []).append(line)

    def hint(self, text: str) -> None:
        if text not in self.hints:
            self.hints.append(text)

    def __bool__(self) -> bool:
        return bool(self.items or self.missing)

    def raise_if_any(self) -> None:
        if self:
            raise OsteoInputError(self._message())

    def all_items(self) -> list[_Problem]:
        """Every problem, the missing values grouped per column."""
        return self.items + [
            _Problem(tuple(lines), col, "value is missing (empty) in a required column", f"missing {col}")
            for col, lines in self.missing.items()
        ]

    def _message(self) -> str:
        items = self.all_items()
        if self.missing:
            self.hint(
                "Fill in the missing values; or pass --impute median to impute missing covariates "
                "from the training rows (with a missing-indicator feature per imputed column); or "
                "pass --allow-exclusions to leave those rows out (they are listed in exclusions.csv)."
            )
        items.sort(key=lambda p: min(p.lines, default=0))
        listed = [f"  - {self._format(p)}" for p in items[:_MAX_LISTED]]
        if len(items) > _MAX_LISTED:
            listed.append(f"  ... and {len(items) - _MAX_LISTED} more")
        hints = self.hints + [
            f"How to fix: correct the entries above in {self.path.name} (line numbers count "
            "the header as line 1) and run again."
        ]
        head = f"Manifest {self.path} has {len(items)} problem{'s' * (len(items) != 1)}:"
        return "\n".join([head, *listed, *hints])

    def _format(self, p: _Problem) -> str:
        parts = [self.path.name]
        if p.lines:  # every row with a missing value is listed, other groups are capped
            parts.append(_format_lines(p.lines, cap=not p.reason.startswith("missing ")))
        if p.column is not None:
            parts.append(f"column {p.column!r}")
        return f"{', '.join(parts)}: {p.text}"


def _format_lines(lines: Sequence[int], cap: bool = True) -> str:
    """'line 7', 'lines 3 and 8', 'lines 3, 8, 9', capped with '(+K more)' unless not cap."""
    if len(lines) == 1:
        return f"line {lines[0]}"
    shown = [str(n) for n in (lines[:_MAX_LINES] if cap else lines)]
    more = len(lines) - len(shown)
    if more:
        return f"lines {', '.join(shown)} (+{more} more)"
    if len(shown) == 2:
        return f"lines {shown[0]} and {shown[1]}"
    return f"lines {', '.join(shown)}"


def _show(value: str) -> str:
    """A cell value quoted for a message, cut short if long."""
    return repr(value if len(value) <= 40 else value[:37] + "...")
