"""Image files (existence, readability, size, ROI inside the image) and cross-row checks (duplicates, patient sex)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from osteo_tf.data import images
from osteo_tf.data.manifest.cells import _roi_note, _Rows
from osteo_tf.data.manifest.config import _INVALID, ManifestConfig
from osteo_tf.data.manifest.problems import _format_lines, _show
from osteo_tf.errors import OsteoInputError
from osteo_tf.vocabulary import ROI_COLUMNS

__all__: list[str] = []  # internal to osteo_tf.data.manifest (and its predict reader)


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
            out.append(_check_image(base, raw, box, rows.config))
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


def _check_image(base: Path, raw: str, box: tuple[Any, ...] | None, config: ManifestConfig) -> str:
    """Resolve ``raw`` against ``base``, check the file, ROI fit and size; return the path.

    Args:
        base: the manifest's folder.
        raw: the image cell as written.
        box: the row's ROI ``(x, y, w, h)``, or None / non-int cells when it has none.
        config: ``check_images`` (decode the whole file) and ``min_image_size``.

    Raises:
        _ImageProblem: with the message and the short reason for the exclusion report.
    """
    try:
        path = (base / raw).resolve()
    except (OSError, ValueError, RuntimeError) as exc:
        raise _ImageProblem(f"{_show(raw)} cannot be used as a file path ({exc})", "invalid image path") from exc
    if not _exists(path):
        raise _ImageProblem(f"image file not found: {path}{_path_hint(raw, base)}", "image not found")
    try:
        size = images.verify_image(path) if config.check_images else images.image_size(path)
    except OsteoInputError as exc:
        raise _ImageProblem(str(exc), "image unreadable or unsupported") from exc
    if box is not None and all(isinstance(v, int) for v in box):
        try:
            images.check_roi(path, box, size)  # type: ignore[arg-type]
        except OsteoInputError as exc:
            raise _ImageProblem(str(exc), "ROI outside the image") from exc
        what = f"{raw}: the ROI box (x={box[0]}, y={box[1]}, w={box[2]}, h={box[3]})"
        _check_size(what, box[2:], config.min_image_size, roi=True)
    else:
        _check_size(raw, size, config.min_image_size, roi=False)
    return str(path)


def _check_size(what: str, size: tuple[Any, ...], minimum: int, roi: bool) -> None:
    """Refuse an image, or ROI crop, of ``size`` (width, height) below ``minimum`` px on its shorter side."""
    width, height = size
    if min(width, height) < minimum:
        kind = "ROI crops" if roi else "images"
        raise _ImageProblem(
            f"{what} is {width}×{height} px; {kind} must be at least {minimum}×{minimum} px "
            "(ManifestConfig.min_image_size)",
            "ROI too small" if roi else "image too small",
        )


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
            rows.problems.add(
                f"the same image {p} is listed {len(lines)} times; keep one row per image",
                lines=lines,
                column=rows.present["image"],
                reason="duplicate image",
            )


def _check_patient_sex(rows: _Rows, ids: list[Any], sexes: list[Any]) -> None:
    by_patient: dict[str, dict[str, list[int]]] = {}
    for line, pid, sex in zip(rows.lines, ids, sexes):
        if isinstance(pid, str) and sex in ("F", "M"):
            by_patient.setdefault(pid, {}).setdefault(sex, []).append(line)
    for pid, found in by_patient.items():
        if len(found) > 1:
            detail = "; ".join(f"{s} on {_format_lines(ls)}" for s, ls in sorted(found.items()))
            rows.problems.add(
                f"patient {pid!r} has rows that disagree on sex ({detail}); a patient's rows must agree",
                lines=sorted(sum(found.values(), [])),
                column=rows.present["sex"],
                reason="patient's rows disagree on sex",
            )
