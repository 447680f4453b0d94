"""``export_run``: a finished run → a SavedModel version in TF Serving's layout.

::

    <root>/<name>/<version>/        e.g. saved_models/osteo/1/
        saved_model.pb, variables/  signatures serving_default (raw inputs) and serving_tensors
        assets/model_card.json      :mod:`.model_card`

The SavedModel is built with ``keras.export.ExportArchive`` (``serving_default`` is the first
endpoint, the signature TF Serving requires), written to a hidden temporary sibling folder
(TF Serving only loads numeric folder names) and renamed into place, so a half-written export
never appears as a version. An existing version is replaced only with ``force=True``: the old
folder is first renamed aside, then the new one renamed in, then the old one deleted.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from osteo_tf.errors import OsteoInputError
from osteo_tf.io import write_json
from osteo_tf.runs.run_dir import RunDir
from osteo_tf.serving.model_card import build_model_card, with_roi_stage
from osteo_tf.serving.spec import ServingSpec
from osteo_tf.vocabulary import DEFAULT_EXPORT_ROOT, DEFAULT_MODEL_NAME

__all__ = ["CARD", "DEFAULT_NAME", "DEFAULT_ROOT", "docker_command", "Export", "export_lines", "export_run", "versions"]

DEFAULT_ROOT = Path(DEFAULT_EXPORT_ROOT)
DEFAULT_NAME = DEFAULT_MODEL_NAME
CARD = Path("assets") / "model_card.json"


@dataclass(frozen=True)
class Export:
    """Where an export went: ``path`` (= root/name/version) and its model card."""

    path: Path
    name: str
    version: int
    card: dict

    @property
    def base_path(self) -> Path:
        return self.path.parent


def versions(base: Path) -> list[int]:
    """The version numbers already exported under ``base`` (= root/name), ascending."""
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def export_run(
    run: str | Path,
    root: str | Path = DEFAULT_ROOT,
    name: str = DEFAULT_NAME,
    *,
    version: int | None = None,
    force: bool = False,
    roi_run: str | Path | None = None,
) -> Export:
    """Exports the run's ``model.keras`` with its preprocessing as ``root/name/version``.

    The SavedModel takes raw inputs (PNG/JPEG bytes, covariates as recorded) in its
    ``serving_default`` signature, holds the run's decision threshold and a model card
    (``assets/model_card.json``), and is written atomically in TF Serving's layout.

    Args:
        run: a complete run folder.
        root: the export root (TF Serving's model base path's parent).
        name: the model name, the folder under ``root``.
        version: a positive integer; None → one more than the highest existing version (1 if none).
        force: replace an existing version (refused otherwise).
        roi_run: a finished ROI detector run (``osteo roi train``): the export is two-stage
            (:mod:`osteo_tf.serving.two_stage`): ``serving_default`` takes the whole radiograph
            and the ``side``, and also returns the ROI box used and its confidence.

    Returns:
        Where the export went and its model card.

    Raises:
        OsteoInputError: an unfinished run, a bad name or version, an existing version
            without ``force``.

    Example::

        >>> from osteo_tf.data.synthetic import make_cohort
        >>> from osteo_tf.training.train import train
        >>> manifest = make_cohort("hip", 40, "phantom_export", seed=0, image_size=32)
        >>> run = train(manifest, "run_export", backbone="resnet18", image_size=32, epochs=1,
        ...             verbose=0)  # doctest: +ELLIPSIS
        [osteo...
        >>> export = export_run(run.path, "saved_models", "osteo")
        >>> export.path.as_posix(), sorted(export.card["signatures"])
        ('saved_models/osteo/1', ['serving_default', 'serving_tensors'])
    """
    import keras

    from osteo_tf.serving.signature import ServingGraph

    run_dir = RunDir(run).require_complete()
    if not name or not all(c.isalnum() or c in "_-." for c in name) or name.startswith("."):
        raise OsteoInputError(f"model name {name!r}: use letters, digits, '_', '-' or '.'")
    base = Path(root) / name
    version = (versions(base) or [0])[-1] + 1 if version is None else int(version)
    if version < 1:
        raise OsteoInputError(f"version must be a positive integer, got {version}", parameter="version")
    target = base / str(version)
    if target.exists() and not force:
        raise OsteoInputError(f"{target} already exists; choose another version=, or pass force=True to replace it")

    spec = ServingSpec.from_run(run_dir.path)
    roi = _roi_stage(roi_run, spec) if roi_run is not None else None
    model = run_dir.load_model()  # keras safe_mode=True; a refused file is an OsteoInputError
    if roi is None:
        graph = ServingGraph(model, spec)
    else:
        from osteo_tf.runs.roi_predict import load_detector
        from osteo_tf.serving.two_stage import RoiServingGraph

        detector, settings = load_detector(roi_run)
        graph = RoiServingGraph(model, spec, detector, settings)
    archive = keras.export.ExportArchive()
    archive.track(model)
    if roi is not None:
        archive.track(graph.detector)
    for table in graph.tables.values():
        archive.track(table)
    archive.add_endpoint("serving_default", graph.serve, input_signature=[graph.raw_signature()])
    archive.add_endpoint("serving_tensors", graph.serve_tensors, input_signature=[graph.tensor_signature()])

    card = build_model_card(run_dir.path, spec, name, version)
    if roi is not None:
        card = with_roi_stage(card, roi)
    base.mkdir(parents=True, exist_ok=True)
    temporary = base / f".{version}.tmp-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        archive.write_out(str(temporary), verbose=False)
        write_json(temporary / CARD, card)
        _move_into_place(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return Export(path=target, name=name, version=version, card=card)


def _roi_stage(roi_run: str | Path, spec: ServingSpec) -> dict:
    """The ROI run's description for the model card; refuses a run that cannot feed this classifier."""
    from osteo_tf.runs.roi_run import RoiRun

    roi = RoiRun(roi_run)
    settings = roi.settings()  # refuses an unfinished run by name
    if not spec.uses_images:
        raise OsteoInputError(
            f"roi_run: the run's model ({spec.mode}) reads no image; a two-stage export needs an image model",
            parameter="roi_run",
        )
    return {"run": str(roi.path.resolve()), **settings.to_dict()}


def _move_into_place(temporary: Path, target: Path) -> None:
    if not target.exists():
        os.replace(temporary, target)
        return
    aside = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(target, aside)
    try:
        os.replace(temporary, target)
    except OSError:
        os.replace(aside, target)  # put the old version back
        raise
    shutil.rmtree(aside, ignore_errors=True)


def docker_command(export: Export, port: int = 8501) -> str:
    """The TF Serving command line that serves ``export``'s model (all its versions' latest)."""
    base = export.base_path.resolve()
    return (
        f"docker run --rm -p {port}:8501 "
        f"--mount type=bind,source={base},target=/models/{export.name} "
        f"-e MODEL_NAME={export.name} -t tensorflow/serving"
    )


def export_lines(run: str | Path, export: Export) -> list[str]:
    """What ``osteo export`` prints: where the export went, its inputs, and how to serve it.

    Args:
        run: the run folder (as the user named it).
        export: what :func:`export_run` returned.

    Returns:
        The lines (the last one the ``docker run`` command, indented).
    """
    card = export.card
    return [
        f"exported {run} → {export.path} (signatures serving_default, serving_tensors; "
        f"threshold {card['threshold']['value']:.6g}; model card {export.path / CARD})",
        f"inputs: {', '.join(card['signatures']['serving_default']['inputs'])}",
        "serve it with TF Serving:",
        f"  {docker_command(export)}",
    ]
