"""The ROI box rule shared by every image reader (Pillow and DICOM): a box wholly inside the image.

Its own module so that :mod:`osteo_tf.data.images` and :mod:`osteo_tf.data.dicom` both
import it and neither imports the other for it.
"""

from __future__ import annotations

import os

from osteo_tf.errors import OsteoInputError

__all__ = ["Roi", "check_roi"]

#: ``(x, y, w, h)`` in pixels, origin top-left.
Roi = tuple[int, int, int, int]


def check_roi(p: str | os.PathLike[str], roi: Roi, size: tuple[int, int]) -> None:
    """Raise unless ``roi=(x, y, w, h)`` (pixels) is a non-empty box wholly inside ``size``.

    Args:
        p: the image file, for the message.
        roi: ``(x, y, w, h)`` in pixels, origin top-left.
        size: the image's ``(width, height)`` in pixels.

    Raises:
        OsteoInputError: naming the file, the box and the image size.
    """
    width, height = size
    try:
        x, y, w, h = (_as_int(v) for v in roi)
    except (TypeError, ValueError) as exc:
        raise OsteoInputError(f"image {p}: ROI {roi!r} must be four whole numbers (x, y, w, h) in pixels") from exc
    inside = x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= width and y + h <= height
    if not inside:
        raise OsteoInputError(
            f"image {p}: ROI box (x={x}, y={y}, w={w}, h={h}) does not lie inside the "
            f"image, which is {width}×{height} px (width×height); need x ≥ 0, y ≥ 0, "
            f"w, h > 0, x + w ≤ {width}, y + h ≤ {height}"
        )


def _as_int(v: object) -> int:
    """Accept ints and integral floats (e.g. 12.0) as pixel coordinates."""
    if isinstance(v, bool):
        raise TypeError("bool is not a pixel coordinate")
    f = float(v)  # type: ignore[arg-type]
    if not f.is_integer():
        raise ValueError(f"{v!r} is not a whole number")
    return int(f)
