"""Reading the ROI detector's manifests: whole images, their sides, and (for training) their annotations.

A whole-image manifest is a CSV with an ``image`` column (paths relative to the CSV's folder,
as in the data contract), optionally ``patient_id`` and ``side`` (``left`` / ``right``, the
patient's; missing = left), and for training either the landmark columns of
:func:`osteo_tf.data.landmarks.landmark_columns` or each side's box columns
(:func:`osteo_tf.data.landmarks.box_columns`), in the manifest or imported from a COCO file
(:mod:`osteo_tf.data.coco`). Other columns are kept and passed through to ``osteo roi detect``'s
output. Every problem is refused before any training starts, naming the CSV line (the header
is line 1) and the column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from osteo_tf.data.coco import merge_annotations, read_coco
from osteo_tf.data.images import image_size
from osteo_tf.data.landmarks import SIDE_COLUMN, SIDES, box_columns, keypoint_columns, landmark_columns
from osteo_tf.errors import OsteoInputError

__all__ = ["Annotations", "WholeImages", "read_annotations", "read_whole_images"]

_LIST = 5  # problems listed per message


@dataclass(frozen=True)
class WholeImages:
    """The rows of a whole-image manifest.

    Attributes:
        manifest: the CSV.
        table: its rows as read (strings), in file order, index = CSV line − 2.
        paths: each row's image file, resolved.
        sizes: (N, 2) int (width, height) in pixels.
        sides: each row's side.
    """

    manifest: Path
    table: pd.DataFrame
    paths: list[str]
    sizes: np.ndarray
    sides: list[str]


@dataclass(frozen=True)
class Annotations:
    """Annotated whole images: :class:`WholeImages` plus ``keypoints`` (N, K, 2) normalised
    (x / width, y / height) in :func:`osteo_tf.data.landmarks.keypoint_names` order for ``target``."""

    images: WholeImages
    keypoints: np.ndarray
    target: str

    def pixels(self) -> np.ndarray:
        """(N, K, 2) keypoints in pixels of each whole image."""
        return self.keypoints * self.images.sizes[:, None, :].astype(np.float64)


def _read_csv(manifest: str | Path) -> pd.DataFrame:
    path = Path(manifest)
    if not path.is_file():
        raise OsteoInputError(f"manifest file not found: {path}", parameter="manifest")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise OsteoInputError(f"cannot read manifest {path}: {error}", parameter="manifest") from None
    table.columns = [str(c).strip() for c in table.columns]
    if "image" not in table:
        raise OsteoInputError(f"{path}: no 'image' column (the whole radiographs' paths)", parameter="manifest")
    if table.empty:
        raise OsteoInputError(f"{path}: no data rows", parameter="manifest")
    return table


def _refuse(path: Path, problems: list[str]) -> None:
    if problems:
        more = f"\n  … and {len(problems) - _LIST} more" if len(problems) > _LIST else ""
        raise OsteoInputError(
            f"{path}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems[:_LIST]) + more, parameter="manifest"
        )


def read_whole_images(manifest: str | Path, table: pd.DataFrame | None = None) -> WholeImages:
    """Read and check a whole-image manifest: every image readable, every side valid.

    Args:
        manifest: the CSV.
        table: its rows if already read (e.g. merged with COCO annotations), else read here.

    Returns:
        The :class:`WholeImages`.

    Raises:
        OsteoInputError: listing every missing or unreadable image and every bad side, by line.
    """
    path = Path(manifest)
    table = _read_csv(path) if table is None else table
    problems, paths, sizes, sides = [], [], [], []
    for index, row in table.iterrows():
        line = int(index) + 2
        file = Path(row["image"].strip())
        file = file if file.is_absolute() else path.parent / file
        try:
            sizes.append(image_size(file))
        except OsteoInputError as error:
            problems.append(f"line {line}, column 'image': {error}")
            sizes.append((0, 0))
        paths.append(str(file))
        side = row.get(SIDE_COLUMN, "").strip().lower() or "left"
        if side not in SIDES:
            problems.append(f"line {line}, column '{SIDE_COLUMN}': {row[SIDE_COLUMN]!r} is not one of {SIDES}")
        sides.append(side)
    _refuse(path, problems)
    return WholeImages(path, table, paths, np.asarray(sizes, dtype=np.int64), sides)


def _number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        return float("nan")


def read_annotations(
    manifest: str | Path, kind: str, *, coco: str | Path | None = None, target: str | None = None
) -> Annotations:
    """Read an annotated manifest (landmark or box columns, or a COCO file's) for ``kind``.

    Args:
        manifest: the CSV of whole images.
        kind: "hip" or "dental".
        coco: a COCO keypoint or bounding-box JSON whose annotations replace the manifest's;
            only the manifest rows it annotates are used.
        target: "landmarks" or "box"; default: landmarks if the manifest (or COCO file) has
            every landmark column, else boxes.

    Returns:
        The :class:`Annotations`.

    Raises:
        OsteoInputError: no annotation columns, or an empty, non-numeric or outside-the-image
            value, named by line and column.
    """
    path = Path(manifest)
    table = _read_csv(path)
    if coco is not None:
        found, coco_target = read_coco(coco, kind)
        table = merge_annotations(table, found, coco_path=coco, manifest_path=path)
        if table.empty:
            raise OsteoInputError(f"{coco}: none of its images is a row of {path}", parameter="coco")
        target = target or coco_target
    columns = {"landmarks": landmark_columns(kind), "box": tuple(c for s in SIDES for c in box_columns(s))}
    if target is None:
        target = next((t for t in ("landmarks", "box") if all(c in table for c in columns[t])), None)
    if target is None or not all(c in table for c in columns[target]):
        want = target or "landmarks"
        missing = [c for c in columns[want] if c not in table]
        raise OsteoInputError(
            f"{path}: no {kind} annotations: missing column(s) {', '.join(missing[:8])}"
            f"{' …' if len(missing) > 8 else ''}; add landmark columns ({', '.join(columns['landmarks'][:2])}, …), "
            f"box columns ({', '.join(columns['box'][:4])}, …) or pass a COCO file (coco=)",
            parameter="manifest",
        )
    images = read_whole_images(path, table.reset_index(drop=True) if coco is not None else table)
    values = np.stack([[_number(str(v)) for v in images.table[c]] for c in columns[target]], axis=1)  # (N, columns)
    problems = []
    for i, row in enumerate(values):
        bad = [c for c, v in zip(columns[target], row) if not np.isfinite(v)]
        line = int(images.table.index[i]) + 2
        if bad:
            problems.append(f"line {line}, column '{bad[0]}': empty or not a number (all of {len(bad)} listed: {bad})")
    _refuse(path, problems)
    if target == "landmarks":
        pixels = values.reshape(len(values), -1, 2)
    else:  # x, y, w, h per side → top-left and bottom-right corners
        boxes = values.reshape(len(values), len(SIDES), 4)
        corners = np.stack([boxes[:, :, :2], boxes[:, :, :2] + boxes[:, :, 2:]], axis=2)
        pixels = corners.reshape(len(values), -1, 2)
    sizes = images.sizes[:, None, :].astype(np.float64)
    outside = np.argwhere((pixels < 0).any(-1) | (pixels > sizes).any(-1))
    names = [c for pair in keypoint_columns(kind) for c in pair] if target == "landmarks" else None
    for i, k in outside[:_LIST]:
        line = int(images.table.index[i]) + 2
        x_out = not 0 <= pixels[i, k, 0] <= sizes[i, 0, 0]
        what = f"column '{names[2 * k + (0 if x_out else 1)]}'" if names else f"box {SIDES[k // 2]}"
        problems.append(
            f"line {line}, {what}: point ({pixels[i, k, 0]:.1f}, {pixels[i, k, 1]:.1f}) lies outside the "
            f"{images.sizes[i, 0]}×{images.sizes[i, 1]} px image"
        )
    _refuse(path, problems)
    return Annotations(images, pixels / sizes, target)
