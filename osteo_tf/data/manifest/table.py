"""Reading the manifest CSV (encoding, shape, blank lines) and mapping its header to canonical columns."""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from osteo_tf.data.manifest.config import ManifestColumns, ManifestConfig
from osteo_tf.data.manifest.problems import _Problems
from osteo_tf.errors import OsteoInputError
from osteo_tf.vocabulary import ROI_COLUMNS, ROI_POINT_COLUMNS

__all__ = ["check_roi_columns"]


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
        raise OsteoInputError(f"manifest {path} is empty: expected a header line and one row per image")
    (_, header), data = records[0], records[1:]
    if not data:
        raise OsteoInputError(f"manifest {path} has a header but no rows: add one row per image below the header line")
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
        raise OsteoInputError(f"manifest {path} is UTF-16 encoded; save it as 'CSV UTF-8 (comma delimited)'")
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
        raise OsteoInputError(f"manifest {path} is not a valid CSV file: line {reader.line_num}: {exc}") from exc


def _check_shape(
    header: list[str], data: list[tuple[int, list[str]]], problems: _Problems
) -> tuple[list[list[str]], list[int]]:
    """Rows with as many cells as the header; the others become problems."""
    for name in {h for h in header if h and header.count(h) > 1}:
        cols = [str(i + 1) for i, h in enumerate(header) if h == name]
        problems.add_header(
            f"column name {name!r} appears more than once (columns {', '.join(cols)}); give each column a unique name"
        )
    rows, lines = [], []
    for line, row in data:
        if len(row) != len(header):
            problems.add(
                f"row has {len(row)} values but the header has {len(header)} columns "
                "(a missing or extra comma, or a comma inside an unquoted value?)",
                lines=(line,),
                reason="wrong number of values in the row",
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
            problems.add(
                f"column {j + 1} has values but no name in the header line; add a column name",
                lines=used,
                reason="value in a column without a name",
            )
    return [header[j] for j in keep], [[row[j] for j in keep] for row in rows]


# ---------------------------------------------------------------------- column mapping


def _map_columns(table: _Table, config: ManifestConfig) -> dict[str, str]:
    """Canonical name → user column for the columns present; structural problems raise."""
    wanted = config.columns.as_dict()
    present = {c: u for c, u in wanted.items() if u in table.header}
    problems = table.problems
    for canon in _missing_required(present, config):
        problems.add_header(_missing_column_text(canon, wanted, table.header))
    check_roi_columns(present, wanted, problems)
    _check_reserved(table.header, present, problems)
    if problems.header_bad:
        problems.hint(_rename_hint(table.header))
        problems.raise_if_any()
    return present


def check_roi_columns(present: Mapping[str, str], wanted: Mapping[str, str], problems: _Problems) -> None:
    """Header problems of the ROI columns: the box's four all or none, the point's two both or
    neither, not both kinds. ``present``/``wanted``: canonical name → the manifest's column."""
    roi = [c for c in ROI_COLUMNS if c in present]
    if roi and len(roi) < len(ROI_COLUMNS):
        absent = [wanted[c] for c in ROI_COLUMNS if c not in present]
        problems.add_header(f"ROI columns must come all four or none; missing {', '.join(map(repr, absent))}")
    point = [c for c in ROI_POINT_COLUMNS if c in present]
    if point and len(point) < len(ROI_POINT_COLUMNS):
        absent = [wanted[c] for c in ROI_POINT_COLUMNS if c not in present]
        problems.add_header(f"ROI point columns must come both or neither; missing {', '.join(map(repr, absent))}")
    if roi and point:
        problems.add_header(
            f"the manifest has both ROI box columns ({', '.join(wanted[c] for c in roi)}) and ROI "
            f"point columns ({', '.join(wanted[c] for c in point)}); keep one kind"
        )


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
            why = (
                "is reserved for the CSV line numbers"
                if name == "line"
                else "is a canonical column name but your config maps that column elsewhere"
            )
            problems.add_header(f"column {name!r} {why}; rename it")


def _rename_hint(header: list[str]) -> str:
    hint = (
        "If your columns have other names, map them: ManifestConfig(columns="
        "ManifestColumns(age='Age_years', ...)) in Python, or `columns: {age: Age_years}` "
        "under the manifest section of a YAML config."
    )
    if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
        hint += " The header looks ';'- or tab-separated: save the file comma-separated."
    return hint
