"""``explain_run``: Grad-CAM figures for images scored by a finished run (``osteo explain``).

Everything comes from the run folder, as in :func:`osteo_tf.evaluation.evaluate.evaluate`:
the model, the image size and backbone, and the covariate encoder fitted on the training
rows. Images are read with :func:`osteo_tf.data.pipeline.load_image` (the pipeline's own
decoding, ROI crop, scaling and resize), so the maps explain exactly what evaluation scores.

Which images:

- ``images``: the given files. Their label, ROI and covariates come from their row in
  ``manifest`` (default: the run's own manifest) when they have one; an ensemble model
  needs that row (the covariates are the patient's own), an image-only model does not.
- ``manifest`` alone: up to ``limit`` rows, half osteoporosis and half not (in manifest
  order, topped up from the other class when one runs short).

Writes into ``out`` (default ``RUN/explain/``): ``<image stem>.png`` per image (radiograph,
Grad-CAM overlay with colour bar, Guided Grad-CAM), ``grid.png`` (osteoporosis vs
non-osteoporosis examples) and ``explain.csv`` (image, label, probability, figure; with
``mask_column``, also each map's mass inside the image's region mask and the mask's share).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from osteo_tf.data.covariates import CovariateEncoder
from osteo_tf.data.manifest import ManifestConfig
from osteo_tf.data.pipeline import load_image, rois_of
from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.threshold import run_threshold
from osteo_tf.explain.figures import Example, plot_explanation, plot_grid
from osteo_tf.explain.gradcam import Explainer
from osteo_tf.explain.localization import load_masks, mass_inside
from osteo_tf.io import read_json, write_csv
from osteo_tf.runs.cohort import load_cohort
from osteo_tf.runs.loading import load_run
from osteo_tf.vocabulary import COVARIATES, uses_covariates, uses_images

__all__ = ["BATCH", "explain_lines", "explain_run"]

BATCH = 16


def explain_run(
    run: str | Path,
    images: list[str | Path] | None = None,
    manifest: str | Path | None = None,
    *,
    limit: int = 8,
    out: str | Path | None = None,
    method: str = "gradcam",
    target: str = "osteoporosis",
    layer: str | None = None,
    mask_column: str | None = None,
) -> pd.DataFrame:
    """Writes the figures (see the module docstring) and returns the ``explain.csv`` table.

    method: "gradcam" or "gradcam++", the map overlaid and multiplied into Guided Grad-CAM.
    target: "osteoporosis" (default), "non_osteoporosis" or "predicted". layer: the feature
    map to explain; None → the backbone's last one (the registry's ``feature_layer``).
    mask_column: a manifest column of region masks (:func:`~osteo_tf.explain.localization.load_masks`);
    the table then has ``mask_share`` (the mask's share of the image) and ``mass_inside_mask``
    (the fraction of the map's mass inside it), per image.
    """
    run_dir, config, settings, model = load_run(run)
    if not uses_images(config.mode):
        raise OsteoInputError(f"run {run_dir.path} is a {config.mode} model: it reads no image to explain")
    if not images and manifest is None:
        raise OsteoInputError("pass images=FILE … or manifest=CSV (with limit=N)", parameter="images")
    if limit < 1:
        raise OsteoInputError(f"limit must be at least 1, got {limit}", parameter="limit")
    manifest_config = ManifestConfig.from_dict(settings.get("manifest_config"))
    source = manifest or settings["manifest"]
    rows = (
        _rows_for_images(images, source, manifest is not None, config, manifest_config)
        if images
        else _balanced(load_cohort(manifest, config, manifest_config), limit)
    )
    # Images given by path that have no manifest row (no "line") have no mask cell either.
    unmatched = rows["image"][rows["line"].isna()] if "line" in rows else rows["image"]
    if mask_column is not None and len(unmatched):
        raise OsteoInputError(f"no mask for {', '.join(map(str, unmatched))}: not in manifest {source}")
    masks = None if mask_column is None else load_masks(rows, source, config.image_size, column=mask_column)
    encoded = None
    if uses_covariates(config.mode):
        encoded = CovariateEncoder.from_dict(read_json(run_dir.encoder)).transform(rows)
    pixels = np.stack(
        [
            load_image(
                path, None if box[0] < 0 else tuple(int(v) for v in box), config.image_size, intensity=config.intensity
            )
            for path, box in zip(rows["image"], rois_of(rows))
        ]
    )
    explainer = Explainer(model, config.backbone, layer=layer)
    parts = [
        explainer.explain(
            pixels[i : i + BATCH], None if encoded is None else encoded[i : i + BATCH], method, target=target
        )
        for i in range(0, len(rows), BATCH)
    ]
    probability = np.concatenate([p.probability for p in parts])
    cams = np.concatenate([p.cam for p in parts])
    guided = np.concatenate([p.guided_gradcam for p in parts])

    out = _folder(run_dir.path, out)
    shown = list(settings.get("covariate_columns") or [c for c in COVARIATES if c in rows])
    examples, figures = [], []
    for i, (_, row) in enumerate(rows.iterrows()):
        label = None if pd.isna(row.get("label")) else int(row["label"])
        example = Example(
            name=Path(row["image"]).name,
            image=pixels[i],
            cam=cams[i],
            guided_gradcam=guided[i],
            probability=float(probability[i]),
            label=label,
            covariates={c: row[c] for c in shown if c in row and not pd.isna(row[c])},
        )
        examples.append(example)
        figures.append(plot_explanation(example, _unique(out, Path(row["image"]).stem, figures), method, target=target))
    plot_grid(examples, out / "grid.png", method, threshold=run_threshold(run_dir.path), target=target)
    table = pd.DataFrame(
        {
            "image": rows["image"].to_numpy(),
            "label": rows["label"].to_numpy(),
            "probability": np.round(probability, 6),
            "figure": [f.name for f in figures],
        }
    )
    if masks is not None:
        table["mask_share"] = np.round(masks.mean(axis=(1, 2)), 4)
        table["mass_inside_mask"] = np.round(mass_inside(cams, masks), 4)
    write_csv(out / "explain.csv", table)
    return table


def _rows_for_images(images, manifest, manifest_given: bool, config, manifest_config) -> pd.DataFrame:
    """One row per image: its manifest row when it has one, else just the path (image-only)."""
    paths = [Path(p) for p in images]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise OsteoInputError(f"image file(s) not found: {', '.join(missing)}")
    cohort = None
    if manifest_given or Path(manifest).is_file():
        cohort = load_cohort(manifest, config, manifest_config)
    by_path = {} if cohort is None else {str(Path(p).resolve()): i for i, p in enumerate(cohort["image"])}
    rows, unmatched = [], []
    for path in paths:
        index = by_path.get(str(path.resolve()))
        if index is None:
            unmatched.append(str(path))
            rows.append(pd.DataFrame({"image": [str(path)], "label": [np.nan]}))
        else:
            rows.append(cohort.iloc[[index]])
    if unmatched and uses_covariates(config.mode):
        raise OsteoInputError(
            f"no covariates for {', '.join(unmatched)}: not in manifest {manifest}. An ensemble model "
            "needs each patient's covariates; pass manifest= with a row for each image"
        )
    return pd.concat(rows, ignore_index=True)


def _balanced(cohort: pd.DataFrame, limit: int) -> pd.DataFrame:
    """Up to ``limit`` rows, half per class in manifest order, topped up from the other class."""
    positives = list(np.flatnonzero(cohort["label"].to_numpy() == 1))
    negatives = list(np.flatnonzero(cohort["label"].to_numpy() == 0))
    take_pos = min(len(positives), max(limit - len(negatives), (limit + 1) // 2))
    chosen = positives[:take_pos] + negatives[: limit - take_pos]
    return cohort.iloc[sorted(chosen)].reset_index(drop=True)


def explain_lines(table: pd.DataFrame, run: str | Path, out: str | Path | None = None) -> list[str]:
    """What ``osteo explain`` prints: one line per image, the masks' mean (with a mask column), the files.

    Args:
        table: what :func:`explain_run` returned.
        run, out: as given to :func:`explain_run`.

    Returns:
        The lines.
    """
    out, masks = _folder(run, out), "mass_inside_mask" in table
    lines = []
    for row in table.itertuples():
        label = "" if row.label != row.label else f" (true label {int(row.label)})"
        inside = (
            f"; map mass inside the mask {row.mass_inside_mask:.2f} (mask share {row.mask_share:.2f})" if masks else ""
        )
        lines.append(f"{row.image}: p(osteoporosis) = {row.probability:.3f}{label}{inside} → {out / row.figure}")
    if masks:
        lines.append(
            f"mean map mass inside the mask: {table['mass_inside_mask'].mean():.3f} "
            f"(mean mask share {table['mask_share'].mean():.3f})"
        )
    return lines + [f"grid: {out / 'grid.png'}; table: {out / 'explain.csv'}"]


def _folder(run: str | Path, out: str | Path | None) -> Path:
    """Where the figures go: ``out``, by default the run's ``explain/`` folder."""
    return Path(out) if out is not None else Path(run) / "explain"


def _unique(out: Path, stem: str, taken: list[Path]) -> Path:
    path, k = out / f"{stem}.png", 1
    while path in taken:
        k += 1
        path = out / f"{stem}_{k}.png"
    return path
