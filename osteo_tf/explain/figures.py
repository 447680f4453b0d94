"""Figures of explanations: one per image, and a grid of examples by class.

Per image (:func:`plot_explanation`): the radiograph as the model sees it, the Grad-CAM map
overlaid in a rainbow colour map ("jet", like the papers' iridescent maps) with a colour
bar, and the Guided Grad-CAM map, side by side; the title gives the predicted probability,
the true label when known and the covariates. The grid (:func:`plot_grid`) sets
osteoporosis examples beside non-osteoporosis ones, like hip Figure 4 / dental Figure 1.

Matplotlib's object API (no pyplot state); every PNG is written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from osteo_tf.io import atomic_path

__all__ = [
    "CAM_COLORMAP",
    "CAM_NAMES",
    "OVERLAY_ALPHA",
    "TARGET_NAMES",
    "class_name",
    "Example",
    "plot_explanation",
    "plot_grid",
    "title_of",
]

CAM_COLORMAP = "jet"
OVERLAY_ALPHA = 0.45
CAM_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}
TARGET_NAMES = {
    "osteoporosis": "osteoporosis",
    "non_osteoporosis": "non-osteoporosis",
    "predicted": "the predicted class",
}


@dataclass(frozen=True)
class Example:
    """One explained image. image: (h, w, 3) or (h, w) in [0, 255]; cam, guided_gradcam:
    (h, w) in [0, 1]; label: 1/0 or None when unknown; covariates: name → raw value."""

    name: str
    image: np.ndarray
    cam: np.ndarray
    guided_gradcam: np.ndarray
    probability: float
    label: int | None = None
    covariates: dict[str, object] = field(default_factory=dict)


def class_name(label: int | None) -> str:
    return "unknown" if label is None else ("osteoporosis" if label else "non-osteoporosis")


def title_of(example: Example) -> str:
    """ "p(osteoporosis) 0.83 · true: osteoporosis" and, on a second line, the covariates."""
    first = f"p(osteoporosis) = {example.probability:.3f}"
    if example.label is not None:
        first += f" · true: {class_name(example.label)}"
    if not np.any(example.cam > 0):
        first += " · no positive evidence (map is 0)"
    covariates = ", ".join(f"{k} {_fmt(v)}" for k, v in example.covariates.items())
    return f"{example.name}\n{first}" + (f"\n{covariates}" if covariates else "")


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def _gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.float32)
    return image[..., 0] if image.ndim == 3 else image


def _draw_row(figure: Figure, axes, example: Example, cam_method: str, colorbar: bool) -> None:
    """Radiograph | overlay (+ colour bar) | Guided Grad-CAM on three axes."""
    gray = _gray(example.image)
    axes[0].imshow(gray, cmap="gray", vmin=0, vmax=255)
    axes[1].imshow(gray, cmap="gray", vmin=0, vmax=255)
    heat = axes[1].imshow(example.cam, cmap=CAM_COLORMAP, vmin=0, vmax=1, alpha=OVERLAY_ALPHA)
    axes[2].imshow(example.guided_gradcam, cmap="gray", vmin=0, vmax=1)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    if colorbar:
        figure.colorbar(heat, ax=axes[1], fraction=0.046, pad=0.04, label=f"{CAM_NAMES[cam_method]} (relative)")


def plot_explanation(
    example: Example, path: str | Path, cam_method: str = "gradcam", *, target: str = "osteoporosis"
) -> Path:
    """The three panels of one image with its title; writes a PNG atomically, returns its path.

    target: the class whose score the maps explain (named in the panel titles)."""
    figure = Figure(figsize=(11, 4.4), dpi=110, layout="constrained")
    axes = figure.subplots(1, 3)
    _draw_row(figure, axes, example, cam_method, colorbar=True)
    cam_name = f"{CAM_NAMES[cam_method]} for {TARGET_NAMES[target]}"
    for axis, label in zip(axes, ("radiograph", cam_name, f"Guided {cam_name}")):
        axis.set_title(label, fontsize=10)
    figure.suptitle(title_of(example), fontsize=10)
    return _save(figure, path)


def plot_grid(
    examples: list[Example],
    path: str | Path,
    cam_method: str = "gradcam",
    *,
    threshold: float = 0.5,
    target: str = "osteoporosis",
) -> Path:
    """Osteoporosis examples (left) beside non-osteoporosis ones (right), one row each.

    Examples are grouped by ``label``; an example without one by its prediction
    (p ≥ ``threshold``), and the title says so.
    """
    groups = {1: [], 0: []}
    for example in examples:
        groups[example.label if example.label is not None else int(example.probability >= threshold)].append(example)
    by = (
        "true label"
        if all(e.label is not None for e in examples)
        else f"true label, else prediction (p ≥ {threshold:g})"
    )
    rows = max(1, len(groups[1]), len(groups[0]))
    figure = Figure(figsize=(13, 2.3 * rows + 0.9), dpi=100, layout="constrained")
    axes = np.asarray(figure.subplots(rows, 6, squeeze=False))
    for block, label in enumerate((1, 0)):
        for row in range(rows):
            cells = axes[row, 3 * block : 3 * block + 3]
            if row >= len(groups[label]):
                for axis in cells:
                    axis.axis("off")
                continue
            example = groups[label][row]
            _draw_row(figure, cells, example, cam_method, colorbar=False)
            cells[0].set_ylabel(f"p = {example.probability:.2f}", fontsize=8)
            cells[0].set_title(example.name, fontsize=7)
        for axis, header in zip(axes[0, 3 * block : 3 * block + 3], ("", CAM_NAMES[cam_method], "Guided")):
            if header:
                axis.set_title(header, fontsize=9)
    figure.suptitle(
        f"osteoporosis (left) vs non-osteoporosis (right), by {by}; maps for {TARGET_NAMES[target]}", fontsize=11
    )
    heat = axes[0, 1].images[-1] if axes[0, 1].images else None
    if heat is not None:
        figure.colorbar(
            heat, ax=axes[:, -1].tolist(), fraction=0.05, pad=0.02, label=f"{CAM_NAMES[cam_method]} (relative)"
        )
    return _save(figure, path)


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    return path
