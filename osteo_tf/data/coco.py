"""Import landmark or bounding-box annotations exported as COCO JSON (CVAT, Label Studio) into manifest columns.

:func:`read_coco` reads one export into a table with one row per annotated image: ``image``
(the COCO image's ``file_name``, as written in the JSON), ``coco_image_id`` and either the
landmark columns of :func:`osteo_tf.data.landmarks.landmark_columns` (target ``"landmarks"``)
or the ROI box columns of :func:`osteo_tf.data.landmarks.box_columns` for each side present
(target ``"box"``). :func:`merge_annotations` then adds those columns to a manifest's rows,
matching ``file_name`` to the manifest's ``image`` (the exact path, else the file name alone).

The file must be a JSON object with the lists ``images`` (``id``, ``file_name``),
``annotations`` (``image_id``, ``category_id`` and ``keypoints`` or ``bbox``) and
``categories`` (``id``, ``name``, and for keypoints the ``keypoints`` names). Three forms are
accepted; a file holds one of them (keypoint and bounding-box-only annotations are not mixed):

1. **Keypoints, one annotation per image.** The category's ``keypoints`` are the full names
   of :func:`~osteo_tf.data.landmarks.keypoint_names` (``left_head_top``, …,
   ``right_shaft_lower``) in any order, and ``annotation["keypoints"]`` is the flat
   ``[x1, y1, v1, x2, y2, v2, …]`` in that order::

       {"images": [{"id": 1, "file_name": "hips/p001.png", "width": 2000, "height": 1600}],
        "categories": [{"id": 1, "name": "hip", "keypoints": ["left_head_top", "…", "right_shaft_lower"]}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "keypoints": [512.0, 300.5, 2, "…"]}]}

2. **Keypoints, one annotation per side.** The category's name contains ``left`` or ``right``
   (any case: ``"left femur"``, ``"Femur_Right"``) and its ``keypoints`` are the per-side
   landmark names of :data:`~osteo_tf.data.landmarks.LANDMARKS` (``head_top``, …), each
   optionally carrying that side's prefix (``left_head_top``)::

       "categories": [{"id": 1, "name": "left femur", "keypoints": ["head_top", "lesser_trochanter",
                                                                   "shaft_upper", "shaft_lower"]},
                      {"id": 2, "name": "right femur", "keypoints": ["head_top", "…"]}]

   In both keypoint forms every landmark of both sides must be labelled on each annotated
   image: a visibility ``v`` of 0 (not labelled; CVAT exports points marked *outside* so)
   is an error, 1 (occluded) and 2 (visible) are accepted alike.

3. **Bounding boxes.** Annotations with ``bbox`` = ``[x, y, w, h]`` and no ``keypoints``,
   whose category's name contains ``left`` or ``right``: that side's ROI box columns
   (``left_roi_x`` …). An image may have one side or both; a side absent from an image is
   NaN there::

       "categories": [{"id": 1, "name": "left ROI"}, {"id": 2, "name": "right ROI"}],
       "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [400, 250, 300, 300]}]

Sides are the patient's (see :mod:`osteo_tf.data.landmarks`): name the categories after the
patient's side, not the side of the image. Coordinates are pixels of the whole image, origin
at its top-left corner, kept exactly as exported (floats): COCO's convention that a pixel's
centre lies at +0.5 is *not* applied. Keypoint names are compared in lower case with spaces
and hyphens read as underscores (``"Head top"`` is ``head_top``). Images listed in ``images``
without any annotation are skipped. Every mistake raises
:class:`~osteo_tf.errors.OsteoInputError` naming the file, the image (``file_name`` and id)
and the keypoint or category at fault.

Tools that rename uploaded files (Label Studio prefixes an upload's name with a short hash)
export a ``file_name`` that matches no manifest row; annotate images served from a storage
folder instead, or rename the ``file_name`` entries.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from osteo_tf.data.landmarks import LANDMARKS, SIDES, box_columns, keypoint_columns, keypoint_names
from osteo_tf.errors import OsteoInputError

__all__ = ["COCO_IMAGE_ID", "IMAGE", "merge_annotations", "read_coco"]

#: The manifest's image column, matched to the COCO ``file_name``.
IMAGE = "image"
#: The column that keeps the COCO image id of each annotated row.
COCO_IMAGE_ID = "coco_image_id"
_SECTIONS = ("images", "annotations", "categories")
_MAX_LISTED = 5


@dataclass(frozen=True)
class _Image:
    id: int
    file_name: str

    def __str__(self) -> str:
        return f"image {self.file_name!r} (id {self.id})"


@dataclass(frozen=True)
class _Annotation:
    label: str
    image: _Image
    category: dict[str, Any]
    raw: dict[str, Any]

    @property
    def is_keypoints(self) -> bool:
        return bool(self.raw.get("keypoints"))

    @property
    def category_label(self) -> str:
        return f"category {self.category.get('name', '')!r} (id {self.category['id']})"


def read_coco(path: str | Path, kind: str) -> tuple[pd.DataFrame, str]:
    """Read a COCO JSON export of landmarks or ROI boxes (the forms of the module docstring).

    Args:
        path: the COCO JSON file.
        kind: "hip" or "dental": whose landmarks the keypoints are.

    Returns:
        ``(table, target)``: one row per annotated image, in the order of ``images``, with
        ``image`` (the ``file_name`` as written), ``coco_image_id`` (int) and either the
        landmark columns (target ``"landmarks"``) or each present side's box columns (target
        ``"box"``), floats in pixels.

    Raises:
        OsteoInputError: the file is missing or not a COCO export, or an annotation is
            incomplete, duplicated or inconsistent (the message names the file, image and
            keypoint or category).
    """
    if kind not in LANDMARKS:
        raise OsteoInputError(f"kind must be one of {tuple(LANDMARKS)}, got {kind!r}", parameter="kind")
    path = Path(path)
    doc = _load(path)
    images = _images(path, doc)
    annotations = _annotations(path, doc, images, _categories(path, doc))
    _check_one_form(path, annotations)
    if annotations[0].is_keypoints:
        table, target = _landmark_table(path, kind, annotations, list(images.values())), "landmarks"
    else:
        table, target = _box_table(path, annotations, list(images.values())), "box"
    _check_unique_file_names(path, table)
    return table, target


def merge_annotations(
    manifest: pd.DataFrame, annotations: pd.DataFrame, *, coco_path: str | Path, manifest_path: str | Path
) -> pd.DataFrame:
    """Add the annotation columns of :func:`read_coco`'s table to the manifest rows of the same image.

    An annotation's ``image`` matches the manifest row whose ``image`` is the same string;
    failing that, the row whose file name (the path without its folders) is the same, when
    that file name occurs once in the manifest and once in the annotations.

    Args:
        manifest: the manifest table (an ``image`` column).
        annotations: :func:`read_coco`'s table.
        coco_path: the COCO file, for the messages.
        manifest_path: the manifest file, for the messages.

    Returns:
        The manifest rows that have an annotation, in manifest order (their index kept), with
        every annotation column but ``image`` added; a manifest column of the same name is
        replaced. Manifest rows without an annotation are left out.

    Raises:
        OsteoInputError: annotated images that match no manifest row, or that match by a file
            name occurring more than once (naming the COCO file and up to five ``file_name``).
    """
    for table, label in ((manifest, f"manifest {manifest_path}"), (annotations, f"COCO file {coco_path}")):
        if IMAGE not in table.columns:
            raise OsteoInputError(f"{label}: no {IMAGE!r} column")
    rows = _match(manifest[IMAGE].tolist(), [str(v) for v in annotations[IMAGE]], coco_path, manifest_path)
    keep = np.flatnonzero(rows >= 0)
    result = manifest.iloc[keep].copy()
    matched = annotations.iloc[rows[keep]]
    for column in annotations.columns:
        if column != IMAGE:
            result[column] = matched[column].to_numpy()
    return result


def _load(path: Path) -> dict[str, Any]:
    """The parsed JSON object, checked to have the three COCO lists."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OsteoInputError(f"COCO file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OsteoInputError(f"COCO file {path} cannot be read as JSON text: {exc}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OsteoInputError(
            f"COCO file {path} is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "export the annotations in COCO JSON format"
        ) from exc
    if not isinstance(doc, dict):
        raise OsteoInputError(f"COCO file {path}: the JSON is a {type(doc).__name__}, not an object with {_SECTIONS}")
    missing = [key for key in _SECTIONS if key not in doc]
    if missing:
        raise OsteoInputError(
            f"COCO file {path} lacks {', '.join(repr(k) for k in missing)}: a COCO export has the lists "
            f"{', '.join(repr(k) for k in _SECTIONS)}"
        )
    for key in _SECTIONS:
        if not isinstance(doc[key], list):
            raise OsteoInputError(f"COCO file {path}: {key!r} must be a list, got {type(doc[key]).__name__}")
    return doc


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _images(path: Path, doc: dict[str, Any]) -> dict[int, _Image]:
    """The images by id, in the order of ``images``."""
    images: dict[int, _Image] = {}
    for i, entry in enumerate(doc["images"]):
        if not isinstance(entry, dict) or not _is_id(entry.get("id")) or not isinstance(entry.get("file_name"), str):
            raise OsteoInputError(
                f"COCO file {path}: images[{i}] must be an object with an integer 'id' and a string 'file_name', "
                f"got {entry!r:.200}"
            )
        image = _Image(entry["id"], entry["file_name"])
        if image.id in images:
            raise OsteoInputError(f"COCO file {path}: image id {image.id} is listed twice in 'images'")
        images[image.id] = image
    return images


def _categories(path: Path, doc: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The categories by id."""
    categories: dict[int, dict[str, Any]] = {}
    for i, entry in enumerate(doc["categories"]):
        if not isinstance(entry, dict) or not _is_id(entry.get("id")) or not isinstance(entry.get("name", ""), str):
            raise OsteoInputError(
                f"COCO file {path}: categories[{i}] must be an object with an integer 'id' and a string 'name', "
                f"got {entry!r:.200}"
            )
        if entry["id"] in categories:
            raise OsteoInputError(f"COCO file {path}: category id {entry['id']} is listed twice in 'categories'")
        categories[entry["id"]] = entry
    return categories


def _annotations(
    path: Path, doc: dict[str, Any], images: dict[int, _Image], categories: dict[int, dict[str, Any]]
) -> list[_Annotation]:
    """Every annotation, its image and category resolved; at least one."""
    if not doc["annotations"]:
        raise OsteoInputError(f"COCO file {path} has no annotations")
    result = []
    for i, raw in enumerate(doc["annotations"]):
        if not isinstance(raw, dict):
            raise OsteoInputError(f"COCO file {path}: annotations[{i}] must be an object, got {raw!r:.200}")
        label = f"annotation {raw['id']}" if "id" in raw else f"annotations[{i}]"
        image_id, category_id = raw.get("image_id"), raw.get("category_id")
        if not _is_id(image_id) or image_id not in images:
            raise OsteoInputError(f"COCO file {path}: {label} refers to image id {image_id!r}, not one of 'images'")
        image = images[image_id]
        if not _is_id(category_id) or category_id not in categories:
            raise OsteoInputError(
                f"COCO file {path}: {image}: {label} refers to category id {category_id!r}, not one of 'categories'"
            )
        keypoints = raw.get("keypoints")
        if keypoints is not None and not isinstance(keypoints, list):
            raise OsteoInputError(f"COCO file {path}: {image}: {label} 'keypoints' must be a list")
        if not keypoints and raw.get("bbox") is None:
            raise OsteoInputError(f"COCO file {path}: {image}: {label} has neither 'keypoints' nor 'bbox'")
        result.append(_Annotation(label, image, categories[category_id], raw))
    return result


def _check_one_form(path: Path, annotations: list[_Annotation]) -> None:
    """Raise if the file mixes keypoint and bounding-box-only annotations."""
    points = next((a for a in annotations if a.is_keypoints), None)
    box = next((a for a in annotations if not a.is_keypoints), None)
    if points is not None and box is not None:
        raise OsteoInputError(
            f"COCO file {path} mixes keypoint annotations ({points.label}, {points.image}, {points.category_label}) "
            f"with bounding-box-only annotations ({box.label}, {box.image}, {box.category_label}); export the "
            "landmarks and the boxes to separate files and import one of them"
        )


def _side_of(name: str) -> str | None:
    """The side a category's name contains ("left" or "right", any case), None for neither or both."""
    found = [side for side in SIDES if side in name.lower()]
    return found[0] if len(found) == 1 else None


def _normalise(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _category_keypoints(path: Path, kind: str, annotation: _Annotation) -> list[str]:
    """The full landmark names (``left_head_top`` …) of the annotation's category, in its order."""
    where = f"COCO file {path}: {annotation.image}: {annotation.label}, {annotation.category_label}"
    raw = annotation.category.get("keypoints")
    if not isinstance(raw, list) or not raw or not all(isinstance(n, str) for n in raw):
        raise OsteoInputError(
            f"{where}: the category has no 'keypoints' list of names, yet the annotation has keypoints"
        )
    side = _side_of(str(annotation.category.get("name", "")))
    names = [_normalise(n) for n in raw]
    if side is not None:
        names = [n if n.startswith(f"{side}_") else f"{side}_{n}" for n in names]
    expected, shown = _expected(kind, side)
    unknown = [r for r, n in zip(raw, names) if n not in expected]
    if unknown:
        raise OsteoInputError(f"{where}: keypoint names {unknown} are not {kind} landmarks; expected {shown}")
    twice = sorted({r for r, n in zip(raw, names) if names.count(n) > 1})
    if twice:
        raise OsteoInputError(f"{where}: keypoint names {twice} name the same landmark twice")
    missing = [n for n in expected if n not in names]
    if missing:
        raise OsteoInputError(
            f"{where}: {_landmarks(missing)} not among the category's keypoints {raw}; every {kind} landmark "
            f"must be labelled: {shown}"
        )
    return names


def _expected(kind: str, side: str | None) -> tuple[tuple[str, ...], str]:
    """The full names a category of ``side`` (None: both sides) must hold, and how to say them in a message."""
    if side is None:
        shown = ", ".join(keypoint_names(kind)) + (
            " (per-side names such as 'head_top' need 'left' or 'right' in the category's name, e.g. 'left femur')"
        )
        return keypoint_names(kind), shown
    shown = f"{', '.join(LANDMARKS[kind])} for the {side} side (each optionally prefixed {side + '_'!r})"
    return tuple(f"{side}_{n}" for n in LANDMARKS[kind]), shown


def _landmarks(names: list[str]) -> str:
    """``"landmark a"`` or ``"landmarks a, b"``."""
    return f"landmark{'s' if len(names) > 1 else ''} {', '.join(names)}"


def _finite(value: object) -> float | None:
    """``value`` as a float when it is a finite JSON number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _annotation_points(path: Path, kind: str, annotation: _Annotation) -> dict[str, tuple[float, float]]:
    """``{full landmark name: (x, y)}`` of one keypoint annotation, every point labelled."""
    names = _category_keypoints(path, kind, annotation)
    values = annotation.raw["keypoints"]
    where = f"COCO file {path}: {annotation.image}: {annotation.label}, {annotation.category_label}"
    if len(values) != 3 * len(names):
        raise OsteoInputError(
            f"{where}: {len(values)} keypoint values for the category's {len(names)} keypoints; expected "
            f"{3 * len(names)} (x, y, v for each of {', '.join(names)})"
        )
    points = {}
    for i, name in enumerate(names):
        x, y, v = (_finite(value) for value in values[3 * i : 3 * i + 3])
        if x is None or y is None or v is None:
            raise OsteoInputError(
                f"{where}: landmark {name}: x, y, v must be finite numbers, got {values[3 * i : 3 * i + 3]}"
            )
        if v == 0:
            raise OsteoInputError(
                f"{where}: landmark {name} not labelled (v=0); place it in the annotation tool (in CVAT, not 'outside')"
            )
        if v not in (1, 2):
            raise OsteoInputError(f"{where}: landmark {name}: visibility v must be 0, 1 or 2, got {values[3 * i + 2]}")
        points[name] = (x, y)
    return points


def _landmark_table(path: Path, kind: str, annotations: list[_Annotation], order: list[_Image]) -> pd.DataFrame:
    """Target "landmarks": every landmark of both sides for each annotated image."""
    found: dict[_Image, dict[str, tuple[float, float]]] = {}
    source: dict[tuple[_Image, str], str] = {}
    for annotation in annotations:
        points = found.setdefault(annotation.image, {})
        for name, xy in _annotation_points(path, kind, annotation).items():
            if name in points:
                raise OsteoInputError(
                    f"COCO file {path}: {annotation.image}: landmark {name} given twice "
                    f"({source[annotation.image, name]} and {annotation.label}); keep one annotation of it"
                )
            points[name] = xy
            source[annotation.image, name] = annotation.label
    for image, points in found.items():
        missing = [name for name in keypoint_names(kind) if name not in points]
        if missing:
            raise OsteoInputError(
                f"COCO file {path}: {image}: {_landmarks(missing)} not labelled; every landmark of both "
                f"sides is needed ({', '.join(keypoint_names(kind))}): with one annotation per side, annotate both"
            )
    images = [image for image in order if image in found]
    columns: dict[str, list[Any]] = {IMAGE: [i.file_name for i in images], COCO_IMAGE_ID: [i.id for i in images]}
    for name, (x_column, y_column) in zip(keypoint_names(kind), keypoint_columns(kind)):
        columns[x_column] = [found[i][name][0] for i in images]
        columns[y_column] = [found[i][name][1] for i in images]
    return _frame(columns)


def _annotation_box(path: Path, annotation: _Annotation) -> tuple[str, tuple[float, float, float, float]]:
    """``(side, (x, y, w, h))`` of one bounding-box annotation."""
    where = f"COCO file {path}: {annotation.image}: {annotation.label}, {annotation.category_label}"
    side = _side_of(str(annotation.category.get("name", "")))
    if side is None:
        raise OsteoInputError(
            f"{where}: a box's category name must contain exactly one of 'left' or 'right' (the patient's side), "
            "e.g. 'left ROI'"
        )
    bbox = annotation.raw["bbox"]
    values = [_finite(v) for v in bbox] if isinstance(bbox, list) else []
    box = tuple(v for v in values if v is not None)
    if len(box) != 4 or len(values) != 4:
        raise OsteoInputError(f"{where}: 'bbox' must be four finite numbers [x, y, w, h] in pixels, got {bbox!r:.200}")
    if box[2] <= 0 or box[3] <= 0:
        raise OsteoInputError(f"{where}: {side} box {bbox} has w or h <= 0; a COCO bbox is [x, y, width, height]")
    return side, box


def _box_table(path: Path, annotations: list[_Annotation], order: list[_Image]) -> pd.DataFrame:
    """Target "box": the box columns of each side present, NaN where an image lacks that side."""
    found: dict[_Image, dict[str, tuple[float, float, float, float]]] = {}
    source: dict[tuple[_Image, str], str] = {}
    for annotation in annotations:
        side, box = _annotation_box(path, annotation)
        boxes = found.setdefault(annotation.image, {})
        if side in boxes:
            raise OsteoInputError(
                f"COCO file {path}: {annotation.image}: two {side} boxes ({source[annotation.image, side]} and "
                f"{annotation.label}, {annotation.category_label}); keep one box per side"
            )
        boxes[side] = box
        source[annotation.image, side] = annotation.label
    images = [image for image in order if image in found]
    columns: dict[str, list[Any]] = {IMAGE: [i.file_name for i in images], COCO_IMAGE_ID: [i.id for i in images]}
    for side in (s for s in SIDES if any(s in boxes for boxes in found.values())):
        for k, column in enumerate(box_columns(side)):
            columns[column] = [found[i][side][k] if side in found[i] else math.nan for i in images]
    return _frame(columns)


def _frame(columns: dict[str, list[Any]]) -> pd.DataFrame:
    table = pd.DataFrame(columns)
    table[COCO_IMAGE_ID] = table[COCO_IMAGE_ID].astype(np.int64)
    for column in table.columns[2:]:
        table[column] = table[column].astype(np.float64)
    return table


def _check_unique_file_names(path: Path, table: pd.DataFrame) -> None:
    """Raise if two annotated images share a ``file_name``."""
    twice = table[table[IMAGE].duplicated(keep=False)]
    if len(twice):
        name = twice[IMAGE].iloc[0]
        ids = twice.loc[twice[IMAGE] == name, COCO_IMAGE_ID].tolist()
        raise OsteoInputError(
            f"COCO file {path}: file_name {name!r} is used by the annotated image ids {ids}; each image once"
        )


def _basename(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def _listed(names: list[str]) -> str:
    """Up to five names, then how many more."""
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _match(
    manifest: list[object], annotated: list[str], coco_path: str | Path, manifest_path: str | Path
) -> np.ndarray:
    """For each manifest row, the position of its annotation row, -1 for none."""
    exact: dict[str, list[int]] = {}
    by_name: dict[str, list[int]] = {}
    for row, image in enumerate(manifest):
        if isinstance(image, str):
            exact.setdefault(image, []).append(row)
            by_name.setdefault(_basename(image), []).append(row)
    annotated_names = Counter(_basename(name) for name in annotated)
    rows = np.full(len(manifest), -1, dtype=np.int64)
    unmatched, ambiguous = [], []
    for position, name in enumerate(annotated):
        targets = exact.get(name)
        if targets is None:
            candidates = by_name.get(_basename(name), [])
            if not candidates:
                unmatched.append(name)
                continue
            if len(candidates) > 1 or annotated_names[_basename(name)] > 1:
                ambiguous.append(name)
                continue
            targets = candidates
        for row in targets:
            if rows[row] >= 0:
                raise OsteoInputError(
                    f"COCO file {coco_path}: annotated images {annotated[rows[row]]!r} and {name!r} both match "
                    f"image {manifest[row]!r} of manifest {manifest_path}"
                )
            rows[row] = position
    _check_matched(ambiguous, unmatched, coco_path, manifest_path)
    return rows


def _check_matched(
    ambiguous: list[str], unmatched: list[str], coco_path: str | Path, manifest_path: str | Path
) -> None:
    """Raise for annotated images matched by an ambiguous file name, or matching no manifest row."""
    if ambiguous:
        raise OsteoInputError(
            f"COCO file {coco_path}: the file name of {len(ambiguous)} annotated image(s) ({_listed(ambiguous)}) "
            f"occurs more than once in manifest {manifest_path} or in the COCO file, so it is not clear which "
            "manifest row each is; make the COCO file_name the manifest's image path exactly"
        )
    if unmatched:
        raise OsteoInputError(
            f"COCO file {coco_path}: {len(unmatched)} annotated image(s) match no image of manifest "
            f"{manifest_path}: {_listed(unmatched)}; a file_name must be a manifest row's image path or its file name"
        )
