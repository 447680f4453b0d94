"""Manifest options (column names, sex codes, required covariates, ROI, threshold, smallest image) and plausible
ranges."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from osteo_tf.errors import OsteoInputError
from osteo_tf.vocabulary import (
    COVARIATE_RANGES,
    COVARIATES,
    DEFAULT_SEX_CODES,
    MIN_IMAGE_SIZE,
    ROI_ANCHORS,
)

__all__ = ["ManifestColumns", "ManifestConfig", "ManifestConfigError"]

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


_RANGES = {name: _Range(*bounds) for name, bounds in COVARIATE_RANGES.items()}


# ------------------------------------------------------------------------------ config


class ManifestConfigError(OsteoInputError):
    """A bad manifest-config value, at ``key`` (its path in the config, e.g. ``columns.age``;
    "" for the config as a whole).

    ``str(error)`` reads ``manifest config: columns.age: must be …``; the reader of a file
    names the file instead with :meth:`at` (``cohort.yaml: columns.age: must be …``).
    """

    def __init__(self, key: str, problem: str) -> None:
        self.key, self.problem = key, problem
        super().__init__(self.at("manifest config: "))

    def at(self, where: str, parent: str = "") -> str:
        """The message as given at ``where`` (e.g. ``"cohort.yaml: "``), under the key ``parent``.

        Args:
            where: the source and ": ", or "".
            parent: the key path the config sits at in its file (``cohort.manifest_config``).

        Returns:
            ``"WHERE PARENT.KEY: problem"``.
        """
        key = ".".join(k for k in (parent, self.key) if k)
        return f"{where}{key}: {self.problem}" if key else f"{where}{self.problem}"


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
    roi_status: str = "roi_status"

    def __post_init__(self) -> None:
        for f in fields(self):
            name = getattr(self, f.name)
            if not isinstance(name, str) or not name.strip():
                raise ManifestConfigError(f"columns.{f.name}", f"must be a non-empty column name, got {name!r}")
            object.__setattr__(self, f.name, name.strip())
        names = self.as_dict()
        for user in set(names.values()):
            canon = [c for c, u in names.items() if u == user]
            if len(canon) > 1:
                raise ManifestConfigError(
                    "columns", f"{', '.join(canon)} all map to the same column {user!r}; give each its own column"
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
            raise ManifestConfigError("columns", f"must be a mapping of column names, got {d!r}")
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
        min_image_size: smallest side in pixels of an image, or of its ROI crop when the row
            has one (default :data:`~osteo_tf.data.images.MIN_IMAGE_SIZE`, 32: the models'
            smallest input); a smaller one is a row problem ("image too small" / "ROI too
            small"). 1 turns the check off.

    Raises:
        ManifestConfigError: a value of the wrong type or out of range, naming its key.
    """

    columns: ManifestColumns = field(default_factory=ManifestColumns)
    # hash=False: a mapping is unhashable; the config stays usable as a dict key.
    sex_codes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SEX_CODES), hash=False)
    required: tuple[str, ...] = ("age", "sex", "bmi")
    check_images: bool = True
    t_score_threshold: float = -2.5
    roi_size: tuple[int, int] = (250, 400)
    roi_anchor: str = "below"
    allow_missing: bool = False
    min_image_size: int = MIN_IMAGE_SIZE

    def __post_init__(self) -> None:
        if not isinstance(self.columns, ManifestColumns):
            raise ManifestConfigError("columns", f"must be a ManifestColumns, got {self.columns!r}")
        object.__setattr__(self, "sex_codes", _merge_sex_codes(self.sex_codes))
        object.__setattr__(self, "required", _check_required(self.required))
        for name in ("check_images", "allow_missing"):
            if not isinstance(getattr(self, name), bool):
                raise ManifestConfigError(name, f"must be true or false, got {getattr(self, name)!r}")
        t = self.t_score_threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ManifestConfigError("t_score_threshold", f"must be a number (e.g. -2.5), got {t!r}")
        object.__setattr__(self, "roi_size", _check_roi_size(self.roi_size))
        if not isinstance(self.roi_anchor, str) or self.roi_anchor not in ROI_ANCHORS:
            raise ManifestConfigError("roi_anchor", f"must be one of {', '.join(ROI_ANCHORS)}, got {self.roi_anchor!r}")
        object.__setattr__(self, "min_image_size", _check_min_image_size(self.min_image_size))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form that :meth:`from_dict` reads back (saved in a run's config).

        ``min_image_size`` is left out at its default, so a run or experiment configured
        before it existed keeps its settings (and hash).
        """
        values = {
            "columns": self.columns.as_dict(),
            "sex_codes": dict(self.sex_codes),
            "required": list(self.required),
            "check_images": self.check_images,
            "t_score_threshold": self.t_score_threshold,
            "roi_size": list(self.roi_size),
            "roi_anchor": self.roi_anchor,
            "allow_missing": self.allow_missing,
        }
        if self.min_image_size != MIN_IMAGE_SIZE:
            values["min_image_size"] = self.min_image_size
        return values

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ManifestConfig:
        """Build from a YAML-style mapping ``{"columns": {...}, "sex_codes": {...}, ...}``.

        Raises:
            OsteoInputError: unknown keys or bad values.
        """
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise ManifestConfigError("", f"must be a mapping of options, got {d!r}")
        _reject_unknown("", d, [f.name for f in fields(cls)])
        kwargs = {str(k): v for k, v in d.items()}
        if "columns" in kwargs:
            kwargs["columns"] = ManifestColumns.from_dict(kwargs["columns"])
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> ManifestConfig:
        """Read a manifest-config YAML file (``--manifest-config``); an empty file is the defaults.

        Args:
            path: the YAML file, a mapping as :meth:`from_dict` takes.

        Raises:
            OsteoInputError: the file is missing, unreadable or not YAML, or a value is bad;
                the message names the file and the key (``cohort.yaml: columns.age: …``).
        """
        import yaml

        path = Path(path)
        if not path.is_file():
            raise OsteoInputError(f"manifest config {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise OsteoInputError(f"manifest config {path} is not valid YAML: {error}") from None
        except (OSError, UnicodeDecodeError) as error:
            raise OsteoInputError(f"manifest config {path} cannot be read as UTF-8 text ({error})") from None
        try:
            return cls.from_dict({} if values is None else values)
        except ManifestConfigError as error:
            raise OsteoInputError(error.at(f"{path}: ")) from None


def _reject_unknown(section: str, d: Mapping[Any, Any], valid: Sequence[str]) -> None:
    unknown = [str(k) for k in d if str(k) not in valid]
    if unknown:
        raise ManifestConfigError(
            section, f"unknown option(s) {', '.join(map(repr, unknown))}; valid options: {', '.join(valid)}"
        )


def _merge_sex_codes(codes: Mapping[Any, Any]) -> Mapping[str, str]:
    """Defaults + user codes, keys stripped/lower-cased (YAML may give int keys)."""
    if not isinstance(codes, Mapping):
        raise ManifestConfigError("sex_codes", f"must be a mapping of codes to F or M, got {codes!r}")
    merged = dict(DEFAULT_SEX_CODES)
    for key, value in codes.items():
        sex = str(value).strip().upper()
        if sex not in ("F", "M"):
            raise ManifestConfigError(f"sex_codes.{key}", f"must be 'F' or 'M', got {value!r}")
        merged[str(key).strip().lower()] = sex
    return MappingProxyType(merged)


def _check_roi_size(size: Any) -> tuple[int, int]:
    ok = (
        isinstance(size, Sequence)
        and not isinstance(size, str)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    )
    if not ok:
        raise ManifestConfigError(
            "roi_size", f"must be [width, height] in whole pixels > 0 (e.g. [250, 400]), got {size!r}"
        )
    return int(size[0]), int(size[1])


def _check_min_image_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ManifestConfigError(
            "min_image_size", f"must be a whole number of pixels >= 1 (default {MIN_IMAGE_SIZE}), got {size!r}"
        )
    return size


def _check_required(required: Iterable[str]) -> tuple[str, ...]:
    if isinstance(required, (str, Mapping)) or not isinstance(required, Iterable):
        raise ManifestConfigError("required", f"must be a list of covariate names, got {required!r}")
    names = tuple(str(r) for r in required)
    bad = [r for r in names if r not in COVARIATES]
    if bad:
        raise ManifestConfigError(
            "required", f"has unknown covariate(s) {', '.join(map(repr, bad))}; choose from {', '.join(COVARIATES)}"
        )
    return names
