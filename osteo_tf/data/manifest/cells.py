"""Cell validation and the canonical columns built from the raw cells (covariates, BMI, labels, ROI, ids)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from osteo_tf.data.manifest.config import (
    _DECIMAL_COMMA,
    _INVALID,
    _LABEL_CODES,
    _NUMBER,
    _RANGES,
    ManifestConfig,
    _Range,
)
from osteo_tf.data.manifest.problems import _show
from osteo_tf.data.manifest.table import _Table
from osteo_tf.vocabulary import HIP_FRACTURE_CODES, ROI_COLUMNS, ROI_POINT_COLUMNS, ROI_REVIEW

__all__: list[str] = []  # internal to osteo_tf.data.manifest (and its predict reader)


# --------------------------------------------------------------------- cell validation


class _Rows:
    """Per-row validation of one manifest, collecting problems."""

    def __init__(self, table: _Table, present: Mapping[str, str], config: ManifestConfig):
        self.table, self.present, self.config = table, present, config
        self.problems = table.problems
        self.lines = table.lines

    def cells(self, canon: str) -> list[str]:
        return self.table.column(self.present[canon])

    def parse(self, canon: str, parse_one: Callable[[str], Any], required: bool) -> list[Any]:
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
        raise ValueError(f"{_show(raw)} is not a valid ROI value (expected a whole number of pixels ≥ {minimum})")
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
        out["sex"] = rows.parse("sex", lambda r: _parse_code(r, codes, "sex code", accepted), rows.required("sex"))
    for canon in ("height_cm", "weight_kg"):
        if canon in rows.present:
            out[canon] = rows.number(canon, False)
    bmi = _build_bmi(rows, out.get("height_cm"), out.get("weight_kg"))
    if bmi is not None:
        out["bmi"] = bmi
    if "hip_fracture_history" in rows.present:
        out["hip_fracture_history"] = rows.parse(
            "hip_fracture_history",
            lambda r: _parse_code(r, HIP_FRACTURE_CODES, "fracture-history code", "yes/no, y/n, 1/0, true/false"),
            rows.required("hip_fracture_history"),
        )
    return out


def _build_bmi(rows: _Rows, heights: list[Any] | None, weights: list[Any] | None) -> list[Any] | None:
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
        lines=(line,),
        column=cols,
        reason="invalid bmi",
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
    given = (
        rows.parse("label", lambda r: _parse_code(r, _LABEL_CODES, "label", "0 or 1; 1 = osteoporosis"), False)
        if "label" in rows.present
        else [None] * n
    )
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
            lines=(line,),
            column=rows.present["label"],
            reason="label disagrees with T-score",
        )
        return _INVALID
    if from_t is None and given is None:
        names = " or ".join(repr(rows.present[c]) for c in ("t_score", "label") if c in rows.present)
        rows.problems.add(
            f"no label: fill in {names}",
            lines=(line,),
            column=" / ".join(rows.present[c] for c in ("t_score", "label") if c in rows.present),
            reason="no label",
        )
        return _INVALID
    return from_t if from_t is not None else given


def _build_roi(rows: _Rows) -> dict[str, list[Any]]:
    """The four ROI columns (None where a row has no box); partial boxes are problems."""
    if "roi_cx" in rows.present:
        return _build_roi_from_point(rows)
    if "roi_x" not in rows.present:
        return {}
    out = {
        c: rows.parse(c, lambda r, m=(0 if c in ("roi_x", "roi_y") else 1): _parse_roi_value(r, m), False)
        for c in ROI_COLUMNS
    }
    for i, line in enumerate(rows.lines):
        empty = [c for c in ROI_COLUMNS if out[c][i] is None]
        if empty and len(empty) < len(ROI_COLUMNS):
            rows.problems.add(
                f"incomplete ROI box: {', '.join(rows.present[c] for c in empty)} empty; "
                "fill all four ROI values or none",
                lines=(line,),
                column=rows.present[empty[0]],
                reason="incomplete ROI",
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
                rows.problems.add(
                    "incomplete ROI point: fill both roi_cx and roi_cy or neither",
                    lines=(line,),
                    column=rows.present[empty],
                    reason="incomplete ROI",
                )
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
    return (
        f" (the box is the configured roi_size {w}×{h} px {where} the point "
        f"roi_cx={roi['roi_cx'][i]}, roi_cy={roi['roi_cy'][i]}; check the point or roi_size)"
    )


def check_roi_status(rows: _Rows) -> None:
    """Rows whose ROI the detector flagged (``roi_status`` = review, ``osteo roi detect``) are problems."""
    if "roi_status" not in rows.present:
        return
    column = rows.present["roi_status"]
    for line, raw in zip(rows.lines, rows.cells("roi_status")):
        if raw.strip().lower() == ROI_REVIEW:
            rows.problems.add(
                f"ROI awaiting review: the detector flagged this row (low confidence, or its box reached outside "
                f"the image); look at it in the contact sheet, correct roi_x, roi_y, roi_w, roi_h if needed and "
                f"set {column} to checked",
                lines=(line,),
                column=column,
                reason="ROI to review",
            )


def _build_ids(rows: _Rows) -> list[Any]:
    return rows.parse("patient_id", lambda r: r, True)
