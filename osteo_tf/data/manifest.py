"""Read a user's CSV manifest into a validated cohort table (the data contract).

One row per image. Every value is read as a raw string and checked here; every problem in
the file is collected and reported together in one :class:`OsteoInputError` whose lines
read ``cohort.csv, line 7, column 'age': 'abc' is not a number (expected years, 0–120)``.
Nothing is silently dropped or defaulted; only lines whose cells are all empty (blank
lines, spreadsheet rows of bare commas) are skipped, and line numbers still count them.
Plausible ranges: age 0–120 years, BMI 10–70 kg/m² (also when derived), height 50–250 cm,
weight 10–350 kg, T-score −10 to +10.

The returned table has canonical column names whatever the user's names were:

========================  =================================================================
``image``                 absolute path (str), resolved against the manifest's folder
``patient_id``            str
``age``                   float, years (if the column exists)
``sex``                   ``"F"`` / ``"M"`` (if the column exists)
``bmi``                   float, kg/m²; derived as weight_kg / (height_cm / 100)² when there
                          is no BMI column (or the cell is empty) but height and weight exist
``height_cm, weight_kg``  float (if the columns exist)
``hip_fracture_history``  int 0/1 (if the column exists)
``t_score``               float (NaN where absent)
``label``                 int 0/1, 1 = osteoporosis (``t_score <= threshold``, else the label
                          column)
``roi_x … roi_h``         nullable Int64 pixels (if the box columns exist, or derived from
                          the point columns)
``roi_cx, roi_cy``        nullable Int64 pixels (if the point columns exist): a fixed-size box
                          ``ManifestConfig.roi_size`` placed by ``roi_anchor`` — ``"below"``
                          (the dental paper: top edge centred on the point, e.g. 250×400 px
                          just below the mental foramen) or ``"center"``
``line``                  int, the CSV line the row starts on (header = line 1)
========================  =================================================================

A covariate that is not in ``ManifestConfig.required`` may have empty cells; they become
NaN / None (``hip_fracture_history`` is then nullable ``Int64``); so may a required one
when ``ManifestConfig.allow_missing`` (the columns must still exist; ``--impute``). Every
other column the user had is kept as its raw strings, unchanged, after the canonical ones.

:func:`read_manifest` is strict: any invalid row is an error. :func:`check_manifest` runs
the same checks and returns a :class:`~osteo_tf.data.exclusions.ManifestCheck` with the valid
rows and every excluded row with its reason (``osteo data check``, ``--allow-exclusions``);
problems with the file or its header are always errors.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from osteo_tf.data import images
from osteo_tf.data.exclusions import ManifestCheck, exclusion_table
from osteo_tf.errors import OsteoInputError

__all__ = ["COVARIATES", "DEFAULT_SEX_CODES", "ManifestCheck", "ManifestColumns", "ManifestConfig",
           "check_manifest", "present_columns", "read_manifest"]

#: Canonical names of the clinical covariates a protocol may require.
COVARIATES: tuple[str, ...] = ("age", "sex", "bmi", "hip_fracture_history")
#: Sex codes always accepted (lower-case keys; the config may add more).
DEFAULT_SEX_CODES: Mapping[str, str] = MappingProxyType(
    {"f": "F", "female": "F", "m": "M", "male": "M"}
)
ROI_COLUMNS: tuple[str, ...] = ("roi_x", "roi_y", "roi_w", "roi_h")
ROI_POINT_COLUMNS: tuple[str, ...] = ("roi_cx", "roi_cy")
ROI_ANCHORS: tuple[str, ...] = ("below", "center")

_HIP_CODES = {"yes": 1, "y": 1, "1": 1, "1.0": 1, "true": 1,
              "no": 0, "n": 0, "0": 0, "0.0": 0, "false": 0}
_LABEL_CODES = {"0": 0, "0.0": 0, "1": 1, "1.0": 1}
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+", re.ASCII)
_MAX_LISTED = 30  # problems listed in one error message
_MAX_LINES = 10  # line numbers listed for one grouped problem
_INVALID = object()  # a cell that was present but bad (already reported)


@dataclass(frozen=True)
class _Range:
    """Plausible range of a numeric column, inclusive, with its unit for messages."""

    unit: str
    lo: float
    hi: float

    def describe(self) -> str:
        if self.lo < 0:
            return f"{self.unit}, {self.lo:g} to {self.hi:+g}"
        return f"{self.unit}, {self.lo:g}–{self.hi:g}"


_RANGES = {
    "age": _Range("years", 0, 120),
    "bmi": _Range("kg/m²", 10, 70),
    "height_cm": _Range("cm", 50, 250),
    "weight_kg": _Range("kg", 10, 350),
    "t_score": _Range("DXA T-score", -10, 10),
}


# ------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class ManifestColumns:
    """The user's column name for each canonical column (defaults = the data contract)."""

    image: str = "image"
    patient_id: str = "patient_id"
    age: str = "age"
    sex: str = "sex"
    bmi: str = "bmi"
    height_cm: str = "height_cm"
    weight_kg: str = "weight_kg"
    hip_fracture_history: str = "hip_fracture_history"
    t_score: str = "t_score"
    label: str = "label"
    roi_x: str = "roi_x"
    roi_y: str = "roi_y"
    roi_w: str = "roi_w"
    roi_h: str = "roi_h"
    roi_cx: str = "roi_cx"
    roi_cy: str = "roi_cy"

    def __post_init__(self) -> None:
        for f in fields(self):
            name = getattr(self, f.name)
            if not isinstance(name, str) or not name.strip():
                raise OsteoInputError(
                    f"manifest config: columns.{f.name} must be a non-empty column name, "
                    f"got {name!r}"
                )
            object.__setattr__(self, f.name, name.strip())
        names = self.as_dict()
        for user in set(names.values()):
            canon = [c for c, u in names.items() if u == user]
            if len(canon) > 1:
                raise OsteoInputError(
                    f"manifest config: columns {', '.join(canon)} all map to the same "
                    f"column {user!r}; give each its own column"
                )

    def as_dict(self) -> dict[str, str]:
        """Canonical name → user's column name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ManifestColumns:
        """Build from a YAML-style mapping; unknown canonical names raise OsteoInputError."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise OsteoInputError(f"manifest config: columns must be a mapping, got {d!r}")
        _reject_unknown("columns", d, [f.name for f in fields(cls)])
        return cls(**{str(k): v for k, v in d.items()})


@dataclass(frozen=True)
class ManifestConfig:
    """How to read a manifest.

    Attributes:
        columns: the user's column names.
        sex_codes: extra (or overriding) sex codes, merged over :data:`DEFAULT_SEX_CODES`;
            keys are matched stripped and case-insensitively, values are ``"F"``/``"M"``.
            E.g. ``{"0": "F", "1": "M"}``. After construction it holds the full table.
        required: canonical covariates that must be present and non-empty
            (:data:`COVARIATES`; ``bmi`` is satisfied by height_cm + weight_kg). The image,
            patient id and a T-score or label are always required.
        check_images: fully decode every image (catches corrupt / truncated files). When
            False only each file's header is read (existence, format, size, ROI fit).
        t_score_threshold: label = 1 (osteoporosis) when ``t_score <= t_score_threshold``.
        roi_size: ``(width, height)`` in pixels of the box placed at ``roi_cx, roi_cy``
            (default 250×400, the dental paper's ROI).
        roi_anchor: ``"below"``: the box's top edge is centred on the point (x = cx − w//2,
            y = cy), as the dental paper's box just below the mental foramen; ``"center"``:
            the box is centred on the point.
        allow_missing: required covariate columns may have empty cells (NaN), to be imputed
            from the training rows (``--impute median``); otherwise each is a problem.
    """

    columns: ManifestColumns = field(default_factory=ManifestColumns)
    # hash=False: a mapping is unhashable; the config stays usable as a dict key.
    sex_codes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SEX_CODES),
                                         hash=False)
    required: tuple[str, ...] = ("age", "sex", "bmi")
    check_images: bool = True
    t_score_threshold: float = -2.5
    roi_size: tuple[int, int] = (250, 400)
    roi_anchor: str = "below"
    allow_missing: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.columns, ManifestColumns):
            raise OsteoInputError("manifest config: columns must be a ManifestColumns")
        object.__setattr__(self, "sex_codes", _merge_sex_codes(self.sex_codes))
        object.__setattr__(self, "required", _check_required(self.required))
        if not isinstance(self.check_images, bool):
            raise OsteoInputError(
                f"manifest config: check_images must be true or false, got {self.check_images!r}"
            )
        t = self.t_score_threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise OsteoInputError(
                f"manifest config: t_score_threshold must be a number (e.g. -2.5), got {t!r}"
            )
        object.__setattr__(self, "roi_size", _check_roi_size(self.roi_size))
        if self.roi_anchor not in ROI_ANCHORS:
            raise OsteoInputError(f"manifest config: roi_anchor must be one of "
                                  f"{', '.join(ROI_ANCHORS)}, got {self.roi_anchor!r}")
        if not isinstance(self.allow_missing, bool):
            raise OsteoInputError(f"manifest config: allow_missing must be true or false, "
                                  f"got {self.allow_missing!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form that :meth:`from_dict` reads back (saved in a run's config)."""
        return {
            "columns": self.columns.as_dict(), "sex_codes": dict(self.sex_codes),
            "required": list(self.required), "check_images": self.check_images,
            "t_score_threshold": self.t_score_threshold, "roi_size": list(self.roi_size),
            "roi_anchor": self.roi_anchor, "allow_missing": self.allow_missing,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ManifestConfig:
        """Build from a YAML-style mapping ``{"columns": {...}, "sex_codes": {...}, ...}``.

        Raises:
            OsteoInputError: unknown keys or bad values.
        """
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise OsteoInputError(f"manifest config must be a mapping, got {d!r}")
        _reject_unknown("manifest", d, [f.name for f in fields(cls)])
        kwargs = {str(k): v for k, v in d.items()}
        if "columns" in kwargs:
            kwargs["columns"] = ManifestColumns.from_dict(kwargs["columns"])
        return cls(**kwargs)


def _reject_unknown(section: str, d: Mapping[Any, Any], valid: Sequence[str]) -> None:
    unknown = [str(k) for k in d if str(k) not in valid]
    if unknown:
        raise OsteoInputError(
            f"{section} config: unknown option(s) {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(valid)}"
        )


def _merge_sex_codes(codes: Mapping[Any, Any]) -> Mapping[str, str]:
    """Defaults + user codes, keys stripped/lower-cased (YAML may give int keys)."""
    if not isinstance(codes, Mapping):
        raise OsteoInputError(f"manifest config: sex_codes must be a mapping, got {codes!r}")
    merged = dict(DEFAULT_SEX_CODES)
    for key, value in codes.items():
        sex = str(value).strip().upper()
        if sex not in ("F", "M"):
            raise OsteoInputError(
                f"manifest config: sex_codes[{key!r}] must be 'F' or 'M', got {value!r}"
            )
        merged[str(key).strip().lower()] = sex
    return MappingProxyType(merged)


def _check_roi_size(size: Any) -> tuple[int, int]:
    ok = (isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size))
    if not ok:
        raise OsteoInputError(f"manifest config: roi_size must be [width, height] in whole "
                              f"pixels > 0 (e.g. [250, 400]), got {size!r}")
    return int(size[0]), int(size[1])


def _check_required(required: Iterable[str]) -> tuple[str, ...]:
    if isinstance(required, str) or not isinstance(required, Iterable):
        raise OsteoInputError(
            f"manifest config: required must be a list of covariate names, got {required!r}"
        )
    names = tuple(str(r) for r in required)
    bad = [r for r in names if r not in COVARIATES]
    if bad:
        raise OsteoInputError(
            f"manifest config: required has unknown covariate(s) {', '.join(map(repr, bad))}; "
            f"choose from {', '.join(COVARIATES)}"
        )
    return names


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

    def add(self, text: str, lines: Iterable[int] = (), column: str | None = None,
            reason: str | None = None) -> None:
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
            _Problem(tuple(lines), col, "value is missing (empty) in a required column",
                     f"missing {col}")
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


# ------------------------------------------------------------------------- CSV reading


@dataclass
class _Table:
    """The manifest as raw strings: header, well-formed data rows, each row's first CSV
    line, and the problems found so far."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: list[int]
    problems: _Problems
    malformed: dict[int, list[str]] = field(default_factory=dict)  # line → cells, wrong count

    def column(self, name: str) -> list[str]:
        """Stripped cells of a column."""
        j = self.header.index(name)
        return [row[j].strip() for row in self.rows]


def _read_table(path: Path) -> _Table:
    """Read, decode and parse the CSV; structural problems raise at once."""
    text = _decode(path, _read_bytes(path))
    records = _parse_csv(path, text)
    records = [(n, r) for n, r in records if any(c.strip() for c in r)]  # blank lines
    if not records:
        raise OsteoInputError(
            f"manifest {path} is empty: expected a header line and one row per image"
        )
    (_, header), data = records[0], records[1:]
    if not data:
        raise OsteoInputError(
            f"manifest {path} has a header but no rows: add one row per image below "
            "the header line"
        )
    header = [h.strip() for h in header]
    problems = _Problems(path)
    rows, lines = _check_shape(header, data, problems)
    malformed = {n: r for n, r in data if n not in set(lines)}
    header, rows = _drop_unnamed_empty(header, rows, lines, problems)
    return _Table(path, header, rows, lines, problems, malformed)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.is_dir():
            raise OsteoInputError(f"manifest {path} is a folder; give the path of the CSV file")
        if not path.is_file():
            raise OsteoInputError(f"manifest file not found: {path}")
        return path.read_bytes()
    except (OSError, ValueError) as exc:
        raise OsteoInputError(f"cannot read manifest {path}: {exc}") from exc


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 text (a BOM is fine); binary files and other encodings raise."""
    if data.startswith(b"PK\x03\x04"):
        raise OsteoInputError(
            f"manifest {path} is not a CSV file (it looks like an Excel workbook or a zip); "
            "save it as 'CSV UTF-8 (comma delimited)'"
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise OsteoInputError(
            f"manifest {path} is UTF-16 encoded; save it as 'CSV UTF-8 (comma delimited)'"
        )
    if b"\x00" in data:
        raise OsteoInputError(
            f"manifest {path} is not a CSV text file (it contains NUL bytes); point to the "
            "CSV manifest, saved as 'CSV UTF-8'"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise OsteoInputError(
            f"manifest {path} is not UTF-8 text (undecodable byte 0x{data[exc.start]:02x} "
            f"on line {line}); save it as 'CSV UTF-8 (comma delimited)'"
        ) from exc


def _parse_csv(path: Path, text: str) -> list[tuple[int, list[str]]]:
    """(first line number, cells) for every CSV record, quoted newlines included."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, list[str]]] = []
    try:
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return records
            records.append((start, row))
    except csv.Error as exc:
        raise OsteoInputError(
            f"manifest {path} is not a valid CSV file: line {reader.line_num}: {exc}"
        ) from exc


def _check_shape(
    header: list[str], data: list[tuple[int, list[str]]], problems: _Problems
) -> tuple[list[list[str]], list[int]]:
    """Rows with as many cells as the header; the others become problems."""
    for name in {h for h in header if h and header.count(h) > 1}:
        cols = [str(i + 1) for i, h in enumerate(header) if h == name]
        problems.add_header(f"column name {name!r} appears more than once (columns "
                            f"{', '.join(cols)}); give each column a unique name")
    rows, lines = [], []
    for line, row in data:
        if len(row) != len(header):
            problems.add(
                f"row has {len(row)} values but the header has {len(header)} columns "
                "(a missing or extra comma, or a comma inside an unquoted value?)",
                lines=(line,), reason="wrong number of values in the row",
            )
        else:
            rows.append(row)
            lines.append(line)
    return rows, lines


def _drop_unnamed_empty(
    header: list[str], rows: list[list[str]], lines: list[int], problems: _Problems
) -> tuple[list[str], list[list[str]]]:
    """Drop nameless columns that hold nothing (spreadsheet trailing commas)."""
    keep = []
    for j, name in enumerate(header):
        if name:
            keep.append(j)
            continue
        used = [lines[i] for i, row in enumerate(rows) if row[j].strip()]
        if used:
            problems.add(f"column {j + 1} has values but no name in the header line; "
                         "add a column name", lines=used, reason="value in a column without a name")
    return [header[j] for j in keep], [[row[j] for j in keep] for row in rows]


# ---------------------------------------------------------------------- column mapping


def _map_columns(table: _Table, config: ManifestConfig) -> dict[str, str]:
    """Canonical name → user column for the columns present; structural problems raise."""
    wanted = config.columns.as_dict()
    present = {c: u for c, u in wanted.items() if u in table.header}
    problems = table.problems
    for canon in _missing_required(present, config):
        problems.add_header(_missing_column_text(canon, wanted, table.header))
    roi = [c for c in ROI_COLUMNS if c in present]
    if roi and len(roi) < len(ROI_COLUMNS):
        absent = [wanted[c] for c in ROI_COLUMNS if c not in present]
        problems.add_header(f"ROI columns must come all four or none; missing "
                            f"{', '.join(map(repr, absent))}")
    point = [c for c in ROI_POINT_COLUMNS if c in present]
    if point and len(point) < len(ROI_POINT_COLUMNS):
        absent = [wanted[c] for c in ROI_POINT_COLUMNS if c not in present]
        problems.add_header(f"ROI point columns must come both or neither; missing "
                            f"{', '.join(map(repr, absent))}")
    if roi and point:
        problems.add_header(
            f"the manifest has both ROI box columns ({', '.join(wanted[c] for c in roi)}) and ROI "
            f"point columns ({', '.join(wanted[c] for c in point)}); keep one kind"
        )
    _check_reserved(table.header, present, problems)
    if problems.header_bad:
        problems.hint(_rename_hint(table.header))
        problems.raise_if_any()
    return present


def _missing_required(present: Mapping[str, str], config: ManifestConfig) -> list[str]:
    missing = [c for c in ("image", "patient_id") if c not in present]
    if "t_score" not in present and "label" not in present:
        missing.append("t_score")
    for cov in config.required:
        derivable = cov == "bmi" and {"height_cm", "weight_kg"} <= present.keys()
        if cov not in present and not derivable:
            missing.append(cov)
    return missing


def _missing_column_text(canon: str, wanted: Mapping[str, str], header: list[str]) -> str:
    user = wanted[canon]
    what = {
        "t_score": f"a T-score column {user!r} or a label column {wanted['label']!r}",
        "bmi": f"column {user!r} (or both {wanted['height_cm']!r} and {wanted['weight_kg']!r})",
    }.get(canon, f"column {user!r}")
    text = f"required {what} not found; columns in the file: {', '.join(map(repr, header))}"
    close = difflib.get_close_matches(user, header, n=1, cutoff=0.6)
    close += [h for h in header if h.lower() == user.lower() and h not in close]
    if close:
        text += f" (did you mean {close[0]!r}?)"
    return text


def _check_reserved(header: list[str], present: Mapping[str, str], problems: _Problems) -> None:
    """An unmapped user column may not take a canonical output name."""
    used = set(present.values())
    reserved = set(ManifestColumns().as_dict()) | {"line"}
    for name in header:
        if name in reserved and name not in used:
            why = ("is reserved for the CSV line numbers" if name == "line" else
                   "is a canonical column name but your config maps that column elsewhere")
            problems.add_header(f"column {name!r} {why}; rename it")


def _rename_hint(header: list[str]) -> str:
    hint = ("If your columns have other names, map them: ManifestConfig(columns="
            "ManifestColumns(age='Age_years', ...)) in Python, or `columns: {age: Age_years}` "
            "under the manifest section of a YAML config.")
    if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
        hint += " The header looks ';'- or tab-separated: save the file comma-separated."
    return hint


# --------------------------------------------------------------------- cell validation


class _Rows:
    """Per-row validation of one manifest, collecting problems."""

    def __init__(self, table: _Table, present: Mapping[str, str], config: ManifestConfig):
        self.table, self.present, self.config = table, present, config
        self.problems = table.problems
        self.lines = table.lines

    def cells(self, canon: str) -> list[str]:
        return self.table.column(self.present[canon])

    def parse(
        self, canon: str, parse_one: Callable[[str], Any], required: bool
    ) -> list[Any]:
        """Parse a column cell by cell; None = empty, _INVALID = bad (reported)."""
        col = self.present[canon]
        out: list[Any] = []
        for line, raw in zip(self.lines, self.cells(canon)):
            if raw == "":
                if required:
                    self.problems.add_missing(col, line)
                out.append(None)
                continue
            try:
                out.append(parse_one(raw))
            except ValueError as exc:
                self.problems.add(str(exc), lines=(line,), column=col, reason=f"invalid {canon}")
                out.append(_INVALID)
        return out

    def required(self, canon: str) -> bool:
        """Must cells of this covariate be filled? (not when missing values will be imputed)"""
        return canon in self.config.required and not self.config.allow_missing

    def number(self, canon: str, required: bool) -> list[Any]:
        return self.parse(canon, lambda raw: _parse_number(raw, _RANGES[canon]), required)


def _parse_number(raw: str, rng: _Range) -> float:
    if not _NUMBER.fullmatch(raw):
        hint = " — use '.' as the decimal separator" if _DECIMAL_COMMA.fullmatch(raw) else ""
        raise ValueError(f"{_show(raw)} is not a number (expected {rng.describe()}){hint}")
    value = float(raw)
    if not rng.lo <= value <= rng.hi:
        raise ValueError(f"{_show(raw)} is out of range (expected {rng.describe()})")
    return value


def _parse_code(raw: str, codes: Mapping[str, Any], what: str, accepted: str) -> Any:
    try:
        return codes[raw.lower()]
    except KeyError:
        raise ValueError(f"{_show(raw)} is not a valid {what} (accepted: {accepted})") from None


def _parse_roi_value(raw: str, minimum: int) -> int:
    if not _NUMBER.fullmatch(raw) or not float(raw).is_integer() or float(raw) < minimum:
        raise ValueError(f"{_show(raw)} is not a valid ROI value "
                         f"(expected a whole number of pixels ≥ {minimum})")
    return int(float(raw))


# --------------------------------------------------------------------- column builders


def _build_covariates(rows: _Rows) -> dict[str, list[Any]]:
    """age, sex, hip_fracture_history, height/weight and bmi, as far as present."""
    out: dict[str, list[Any]] = {}
    if "age" in rows.present:
        out["age"] = rows.number("age", rows.required("age"))
    if "sex" in rows.present:
        codes = rows.config.sex_codes
        accepted = ", ".join(map(repr, codes)) + (
            "; add your own with sex_codes in the manifest config, e.g. {'0': 'F', '1': 'M'}"
        )
        out["sex"] = rows.parse(
            "sex", lambda r: _parse_code(r, codes, "sex code", accepted), rows.required("sex")
        )
    for canon in ("height_cm", "weight_kg"):
        if canon in rows.present:
            out[canon] = rows.number(canon, False)
    bmi = _build_bmi(rows, out.get("height_cm"), out.get("weight_kg"))
    if bmi is not None:
        out["bmi"] = bmi
    if "hip_fracture_history" in rows.present:
        out["hip_fracture_history"] = rows.parse(
            "hip_fracture_history",
            lambda r: _parse_code(r, _HIP_CODES, "fracture-history code",
                                  "yes/no, y/n, 1/0, true/false"),
            rows.required("hip_fracture_history"),
        )
    return out


def _build_bmi(rows: _Rows, heights: list[Any] | None, weights: list[Any] | None
               ) -> list[Any] | None:
    """BMI from its column, else (per row) from height and weight; None if neither exists."""
    has_column = "bmi" in rows.present
    if not has_column and (heights is None or weights is None):
        return None
    given = rows.number("bmi", False) if has_column else [None] * len(rows.lines)
    required = rows.required("bmi")
    out = []
    for i, line in enumerate(rows.lines):
        h = heights[i] if heights is not None else None
        w = weights[i] if weights is not None else None
        if given[i] is not None:
            out.append(given[i])
        elif isinstance(h, float) and isinstance(w, float):
            out.append(_derived_bmi(rows, line, h, w))
        else:
            if required and _INVALID not in (h, w):
                _report_missing_bmi(rows, line, h, w)
            out.append(None)
    return out


def _derived_bmi(rows: _Rows, line: int, height_cm: float, weight_kg: float) -> Any:
    bmi = weight_kg / (height_cm / 100.0) ** 2
    rng = _RANGES["bmi"]
    if rng.lo <= bmi <= rng.hi:
        return bmi
    cols = f"{rows.present['height_cm']}/{rows.present['weight_kg']}"
    rows.problems.add(
        f"BMI from height {height_cm:g} cm and weight {weight_kg:g} kg is {bmi:.1f} kg/m², "
        f"outside the plausible {rng.lo:g}–{rng.hi:g}; check both values",
        lines=(line,), column=cols, reason="invalid bmi",
    )
    return _INVALID


def _report_missing_bmi(rows: _Rows, line: int, h: Any, w: Any) -> None:
    """Name the empty cell(s) a required BMI could have come from."""
    if "bmi" in rows.present:
        rows.problems.add_missing(rows.present["bmi"], line)
        return
    for canon, value in (("height_cm", h), ("weight_kg", w)):
        if value is None:
            rows.problems.add_missing(rows.present[canon], line)


def _build_labels(rows: _Rows) -> tuple[list[Any], list[Any]]:
    """(t_score, label) per row; a disagreement or no label at all is a problem."""
    n = len(rows.lines)
    t_scores = rows.number("t_score", False) if "t_score" in rows.present else [None] * n
    given = (rows.parse("label", lambda r: _parse_code(r, _LABEL_CODES, "label",
                                                       "0 or 1; 1 = osteoporosis"), False)
             if "label" in rows.present else [None] * n)
    labels = [_row_label(rows, line, t, g) for line, t, g in zip(rows.lines, t_scores, given)]
    return t_scores, labels


def _row_label(rows: _Rows, line: int, t: Any, given: Any) -> Any:
    if t is _INVALID or given is _INVALID:
        return _INVALID
    threshold = rows.config.t_score_threshold
    from_t = None if t is None else int(t <= threshold)
    if from_t is not None and given is not None and from_t != given:
        rows.problems.add(
            f"label {given} disagrees with {rows.present['t_score']!r} = {t:g} (label is 1 "
            f"exactly when the T-score is ≤ {threshold:g}); correct one of them",
            lines=(line,), column=rows.present["label"], reason="label disagrees with T-score",
        )
        return _INVALID
    if from_t is None and given is None:
        names = " or ".join(repr(rows.present[c]) for c in ("t_score", "label")
                            if c in rows.present)
        rows.problems.add(f"no label: fill in {names}", lines=(line,),
                          column=" / ".join(rows.present[c] for c in ("t_score", "label")
                                            if c in rows.present), reason="no label")
        return _INVALID
    return from_t if from_t is not None else given


def _build_roi(rows: _Rows) -> dict[str, list[Any]]:
    """The four ROI columns (None where a row has no box); partial boxes are problems."""
    if "roi_cx" in rows.present:
        return _build_roi_from_point(rows)
    if "roi_x" not in rows.present:
        return {}
    out = {c: rows.parse(c, lambda r, m=(0 if c in ("roi_x", "roi_y") else 1):
                         _parse_roi_value(r, m), False) for c in ROI_COLUMNS}
    for i, line in enumerate(rows.lines):
        empty = [c for c in ROI_COLUMNS if out[c][i] is None]
        if empty and len(empty) < len(ROI_COLUMNS):
            rows.problems.add(
                f"incomplete ROI box: {', '.join(rows.present[c] for c in empty)} empty; "
                "fill all four ROI values or none", lines=(line,),
                column=rows.present[empty[0]], reason="incomplete ROI",
            )
            for c in ROI_COLUMNS:
                out[c][i] = _INVALID
    return out


def _build_roi_from_point(rows: _Rows) -> dict[str, list[Any]]:
    """roi_cx, roi_cy and the fixed-size box they place (ManifestConfig.roi_size/anchor)."""
    point = {c: rows.parse(c, lambda r: _parse_roi_value(r, 0), False) for c in ROI_POINT_COLUMNS}
    width, height = rows.config.roi_size
    out: dict[str, list[Any]] = {c: [] for c in ROI_COLUMNS}
    for i, line in enumerate(rows.lines):
        cx, cy = point["roi_cx"][i], point["roi_cy"][i]
        if isinstance(cx, int) and isinstance(cy, int):
            y = cy if rows.config.roi_anchor == "below" else cy - height // 2
            box: tuple[Any, ...] = (cx - width // 2, y, width, height)
        elif cx is None and cy is None:
            box = (None,) * 4
        else:
            if (cx is None) != (cy is None) and _INVALID not in (cx, cy):
                empty = "roi_cx" if cx is None else "roi_cy"
                rows.problems.add("incomplete ROI point: fill both roi_cx and roi_cy or neither",
                                  lines=(line,), column=rows.present[empty], reason="incomplete ROI")
            box = (_INVALID,) * 4
        for c, v in zip(ROI_COLUMNS, box):
            out[c].append(v)
    return {**out, **point}


def _roi_note(rows: _Rows, roi: Mapping[str, list[Any]], i: int) -> str:
    """How a point-derived box was placed, for the message when it does not fit."""
    if "roi_cx" not in roi:
        return ""
    w, h = rows.config.roi_size
    where = "just below" if rows.config.roi_anchor == "below" else "centred on"
    return (f" (the box is the configured roi_size {w}×{h} px {where} the point "
            f"roi_cx={roi['roi_cx'][i]}, roi_cy={roi['roi_cy'][i]}; check the point or roi_size)")


def _build_ids(rows: _Rows) -> list[Any]:
    return rows.parse("patient_id", lambda r: r, True)


# ------------------------------------------------------------------------------ images


def _build_images(rows: _Rows, roi: Mapping[str, list[Any]]) -> list[Any]:
    """Absolute image paths; each file is checked (decoded when check_images)."""
    base = rows.table.path.parent
    col = rows.present["image"]
    out: list[Any] = []
    for i, (line, raw) in enumerate(zip(rows.lines, rows.cells("image"))):
        if raw == "":
            rows.problems.add_missing(col, line)
            out.append(None)
            continue
        box = tuple(roi[c][i] for c in ROI_COLUMNS) if roi else None
        try:
            out.append(_check_image(base, raw, box, rows.config.check_images))
        except _ImageProblem as exc:
            note = _roi_note(rows, roi, i) if exc.reason == "ROI outside the image" else ""
            rows.problems.add(f"{exc}{note}", lines=(line,), column=col, reason=exc.reason)
            out.append(_INVALID)
    return out


class _ImageProblem(OsteoInputError):
    """An image-cell problem with its short reason for the exclusion report."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _check_image(base: Path, raw: str, box: tuple[Any, ...] | None, decode: bool) -> str:
    """Resolve ``raw`` against ``base``, check the file (and ROI fit); return the path."""
    try:
        path = (base / raw).resolve()
    except (OSError, ValueError, RuntimeError) as exc:
        raise _ImageProblem(f"{_show(raw)} cannot be used as a file path ({exc})",
                            "invalid image path") from exc
    if not _exists(path):
        raise _ImageProblem(f"image file not found: {path}{_path_hint(raw, base)}",
                            "image not found")
    try:
        size = images.verify_image(path) if decode else images.image_size(path)
    except OsteoInputError as exc:
        raise _ImageProblem(str(exc), "image unreadable or unsupported") from exc
    if box is not None and all(isinstance(v, int) for v in box):
        try:
            images.check_roi(path, box, size)  # type: ignore[arg-type]
        except OsteoInputError as exc:
            raise _ImageProblem(str(exc), "ROI outside the image") from exc
    return str(path)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False  # unusable name: images.* below reports it


def _path_hint(raw: str, base: Path) -> str:
    if "\\" in raw:
        return " (use '/' rather than '\\' in paths)"
    if not Path(raw).is_absolute():
        return f" (relative paths are resolved against the manifest's folder {base})"
    return ""


# ------------------------------------------------------------------------ cross-row


def _check_duplicates(rows: _Rows, paths: list[Any]) -> None:
    seen: dict[str, list[int]] = {}
    for line, p in zip(rows.lines, paths):
        if isinstance(p, str):
            seen.setdefault(p, []).append(line)
    for p, lines in seen.items():
        if len(lines) > 1:
            rows.problems.add(f"the same image {p} is listed {len(lines)} times; "
                              "keep one row per image", lines=lines,
                              column=rows.present["image"], reason="duplicate image")


def _check_patient_sex(rows: _Rows, ids: list[Any], sexes: list[Any]) -> None:
    by_patient: dict[str, dict[str, list[int]]] = {}
    for line, pid, sex in zip(rows.lines, ids, sexes):
        if isinstance(pid, str) and sex in ("F", "M"):
            by_patient.setdefault(pid, {}).setdefault(sex, []).append(line)
    for pid, found in by_patient.items():
        if len(found) > 1:
            detail = "; ".join(f"{s} on {_format_lines(ls)}" for s, ls in sorted(found.items()))
            rows.problems.add(
                f"patient {pid!r} has rows that disagree on sex ({detail}); a patient's "
                "rows must agree", lines=sorted(sum(found.values(), [])),
                column=rows.present["sex"], reason="patient's rows disagree on sex",
            )


# ------------------------------------------------------------------------------ public


def read_manifest(path: str | Path, config: ManifestConfig | None = None) -> pd.DataFrame:
    """Read and validate a CSV manifest; see the module docstring for the columns returned.

    Args:
        path: the CSV file (UTF-8, comma-separated, header on line 1). Image paths in it
            are relative to its folder (absolute paths and ``..`` are fine).
        config: column names, sex codes, required covariates, image checks, threshold.

    Returns:
        The cohort table, one row per image, in file order, index 0..n-1.

    Raises:
        OsteoInputError: listing every problem found, each with file, line and column.
    """
    check = check_manifest(path, config)
    check.raise_if_any()
    return check.cohort


def present_columns(path: str | Path, config: ManifestConfig | None = None) -> set[str]:
    """Canonical names of the columns the manifest has (its header only; no row checks).

    Raises:
        OsteoInputError: the file cannot be read as a CSV manifest.
    """
    config = config or ManifestConfig()
    table = _read_table(Path(path).absolute())
    return {canon for canon, user in config.columns.as_dict().items() if user in table.header}


def check_manifest(path: str | Path, config: ManifestConfig | None = None) -> ManifestCheck:
    """The checks of :func:`read_manifest`, returning the valid rows and the excluded ones.

    Every row with a problem is excluded, with one exclusion record per problem (its line,
    raw image and patient cells, column, short reason and full message); the rows of a
    duplicated image, or of a patient whose rows disagree on sex, are all excluded.

    Raises:
        OsteoInputError: problems with the file itself or its header (unreadable, not a
            CSV, required columns missing …), where no row can be checked.
    """
    config = config or ManifestConfig()
    path = Path(path).absolute()
    table = _read_table(path)
    present = _map_columns(table, config)
    rows = _Rows(table, present, config)
    cols = _validate(rows)
    problems = rows.problems
    records = _exclusion_records(table, present, problems)
    excluded = {r["line"] for r in records}
    keep = [i for i, line in enumerate(table.lines) if line not in excluded]
    return ManifestCheck(
        path=path, cohort=_assemble(table, present, cols, keep), exclusions=exclusion_table(records),
        n_rows=len(table.lines) + len(table.malformed),
        message=problems._message() if problems else "",
    )


def _exclusion_records(table: _Table, present: Mapping[str, str], problems: _Problems
                       ) -> list[dict[str, Any]]:
    """One record per (row line, problem)."""
    cells = dict(zip(table.lines, table.rows))
    index = {c: table.header.index(present[c]) for c in ("image", "patient_id")}
    records = []
    for p in problems.all_items():
        for line in p.lines:
            row = cells.get(line, table.malformed.get(line, []))
            raw = {c: (row[j] if j < len(row) else "") for c, j in index.items()}
            records.append({"line": line, "image": raw["image"], "patient_id": raw["patient_id"],
                            "column": p.column or "", "reason": p.reason, "detail": p.text})
    return records


def _validate(rows: _Rows) -> dict[str, list[Any]]:
    """Every per-cell and cross-row check; the parsed columns by canonical name."""
    cols: dict[str, list[Any]] = {"patient_id": _build_ids(rows)}
    cols.update(_build_covariates(rows))
    cols["t_score"], cols["label"] = _build_labels(rows)
    roi = _build_roi(rows)
    cols["image"] = _build_images(rows, roi)
    cols.update(roi)
    _check_duplicates(rows, cols["image"])
    if "sex" in cols:
        _check_patient_sex(rows, cols["patient_id"], cols["sex"])
    return cols


_ORDER = ("image", "patient_id", "age", "sex", "bmi", "height_cm", "weight_kg",
          "hip_fracture_history", "t_score", "label", *ROI_COLUMNS, *ROI_POINT_COLUMNS)


def _assemble(table: _Table, present: Mapping[str, str], cols: Mapping[str, list[Any]],
              keep: Sequence[int]) -> pd.DataFrame:
    """The rows ``keep`` (positions): canonical columns with their dtypes, then ``line``, then
    the user's other columns."""
    data: dict[str, Any] = {}
    for name in _ORDER:
        if name in cols:
            data[name] = _typed(name, [cols[name][i] for i in keep])
    data["line"] = np.asarray([table.lines[i] for i in keep], dtype=np.int64)
    used = set(present.values())
    for j, name in enumerate(table.header):
        if name not in used:
            data[name] = [table.rows[i][j] for i in keep]
    return pd.DataFrame(data, index=pd.RangeIndex(len(keep)))


def _typed(name: str, values: list[Any]) -> Any:
    if name in ("image", "patient_id", "sex"):
        return values
    if name in ("label",):
        return np.asarray(values, dtype=np.int64)
    if name == "hip_fracture_history" or name in ROI_COLUMNS or name in ROI_POINT_COLUMNS:
        series = pd.Series(values, dtype="Int64")
        if name == "hip_fracture_history" and not series.isna().any():
            return series.astype(np.int64)
        return series
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
