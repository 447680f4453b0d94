"""The experiment runner: the grid backbone × mode × repeat × fold, resumable and shardable.

``run_experiment(config, out)`` trains every fit of :func:`plan` that has no result record
yet. Layout of ``out``::

    experiment.yaml            the resolved config as run (a different config is refused)
    phantom/                   the synthetic cohort, when the config asks for one
    results/<fit_id>.json      one record per finished fit, written atomically
    runs/<fit_id>/             the fit's run folder (osteo_tf.training.train)

A killed run loses at most its unfinished fit, which resumes from its last epoch on the next
run; a fit whose run folder is complete but whose record is missing is recorded without
retraining. ``shard=(i, n)`` (1-based) runs fits i, i+n, i+2n, … of the plan: shards are
disjoint, cover the grid, and write to the same store without locks (one file per fit). A
finished fit's ``checkpoints/`` is deleted once recorded (``model.keras`` holds the same
best-epoch weights), halving the disk a large grid needs. covariates_only ignores
the image, so it is fitted once per (repeat, fold), recorded with backbone ``"none"``.

Executors: ``"local"`` trains the fits one after another in this process; ``"ray"`` (or a
:class:`osteo_tf.experiments.ray_executor.RayExecutor`) runs each as a Ray task. Both call
:func:`osteo_tf.experiments.fits.run_fit` — train one fit, write its record — so their folders are interchangeable.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import yaml

from osteo_tf.errors import OsteoInputError
from osteo_tf.experiments.config import ExperimentConfig, parse_experiment
from osteo_tf.experiments.fits import Fit, LocalExecutor, plan, say
from osteo_tf.experiments.results import read_records, read_results
from osteo_tf.io import atomic_path
from osteo_tf.vocabulary import uses_images

__all__ = ["parse_shard", "plan", "read_results", "resolve_executor", "run_experiment", "shard_fits"]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → (i, n) with 1 <= i <= n; anything else raises OsteoInputError."""
    try:
        i, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise OsteoInputError(
            f"shard must look like i/n (e.g. 2/4: the second of four shards), got {text!r}", parameter="shard"
        ) from None
    check_shard((i, n))
    return i, n


def check_shard(shard: tuple[int, int]) -> None:
    i, n = shard
    if not (n >= 1 and 1 <= i <= n):
        raise OsteoInputError(f"bad shard {i}/{n}: need n >= 1 and 1 <= i <= n (shards are numbered from 1)")


def resolve_executor(executor: Any) -> Callable:
    """The callable that runs a list of fits: ``"local"`` → :class:`LocalExecutor`, ``"ray"`` →
    :class:`~osteo_tf.experiments.ray_executor.RayExecutor` with its defaults, or any executor
    object (checked with its ``check()`` where it has one, before the experiment folder is touched).

    Raises:
        OsteoInputError: an unknown name, or an executor whose check fails (e.g. Ray missing).
    """
    if executor == "local":
        executor = LocalExecutor()
    elif executor == "ray":
        from osteo_tf.experiments.ray_executor import RayExecutor

        executor = RayExecutor()
    elif isinstance(executor, str) or not callable(executor):
        raise OsteoInputError(f"unknown executor {executor!r}; choose local or ray", parameter="executor")
    if hasattr(executor, "check"):
        executor.check()
    return executor


def shard_fits(fits: list[Fit], shard: tuple[int, int]) -> list[Fit]:
    check_shard(shard)
    return fits[shard[0] - 1 :: shard[1]]


def run_experiment(
    config: ExperimentConfig | str | Path,
    out: str | Path,
    shard: tuple[int, int] = (1, 1),
    *,
    dry_run: bool = False,
    force: bool = False,
    verbose: int | str = 0,
    fit_function: Callable | None = None,
    executor: Any = "local",
) -> list[dict]:
    """Runs this shard's unfinished fits into ``out``; returns the records of this shard's fits.

    Args:
        config: an :class:`~osteo_tf.experiments.config.ExperimentConfig`, or a YAML path or
            packaged name for :func:`~osteo_tf.experiments.config.load_experiment`.
        out: the experiment folder (created, or resumed: recorded fits are not trained again).
        shard: ``(i, n)``, 1-based: run fits i, i+n, i+2n, … of the plan.
        dry_run: print the plan and return [] without touching ``out``.
        force: discard the results of a different config in ``out``.
        verbose: Keras progress per fit (0, 1, 2).
        fit_function: replaces :func:`osteo_tf.training.train.train` (same signature; for tests).
        executor: ``"local"`` (default), ``"ray"``, or an executor object such as a configured
            ``RayExecutor(address=..., gpus_per_fit=..., max_retries=...)``.

    Returns:
        The result records (dicts, :data:`osteo_tf.experiments.results.RECORD_KEYS`) of this
        shard's finished fits, in plan order.

    Raises:
        OsteoInputError: a bad config or shard, a folder holding another config (without
            ``force``), a cohort or fold with one class only, an unusable executor.

    Example::

        >>> from osteo_tf.experiments.config import parse_experiment
        >>> config = parse_experiment({
        ...     "name": "tiny", "cohort": {"phantom": {"kind": "hip", "n": 40, "image_size": 32}},
        ...     "backbones": ["resnet18"], "modes": ["covariates_only"], "covariates": "hip",
        ...     "split": {"kind": "kfold", "folds": 2}, "train": {"epochs": 2, "image_size": 32}})
        >>> records = run_experiment(config, "experiment_tiny")  # doctest: +ELLIPSIS
        [osteo...
        >>> [record["fit_id"] for record in records]
        ['none__covariates_only__r00__f00', 'none__covariates_only__r00__f01']
    """
    if not isinstance(config, ExperimentConfig):
        from osteo_tf.experiments.config import load_experiment

        config = load_experiment(config)
    out = Path(out)
    fits = plan(config)
    mine = shard_fits(fits, shard)
    if dry_run:
        print_plan(config, out, fits, mine, shard)
        return []
    run_fits = resolve_executor(executor)
    from osteo_tf.models import check_weights  # Keras: not at import (osteo --help)

    for backbone in sorted({f.backbone for f in fits if uses_images(f.mode)}):  # before the cohort is made
        check_weights(backbone, config.train.get("weights"))
    _prepare_out(config, out, force)
    manifest = _cohort_manifest(config, out)
    done = {r["fit_id"] for r in read_records(out)}
    todo = [f for f in mine if f.fit_id not in done]
    say(
        f"experiment {config.name} ({config.hash()}): {len(fits)} fits, shard {shard[0]}/{shard[1]} has {len(mine)}, "
        f"{len(mine) - len(todo)} already done, {len(todo)} to run"
    )
    if todo:
        run_fits(config, out, manifest, todo, verbose, fit_function)
    records = {r["fit_id"]: r for r in read_records(out)}
    return [records[f.fit_id] for f in mine if f.fit_id in records]


def print_plan(config: ExperimentConfig, out: Path, fits: list[Fit], mine: list[Fit], shard: tuple[int, int]) -> None:
    split = config.split.to_dict()
    p = config.phantom
    cohort = (
        f"{p.kind} phantom, {p.n} subjects at {p.image_size} px, seed {p.seed}"
        if p
        else (config.manifest or "none given (pass --manifest)")
    )
    print(f"experiment {config.name} (config hash {config.hash()}) → {out}")
    print(f"  cohort: {cohort}\n  covariates: {', '.join(config.covariates)}\n  split: {split}")
    print(
        f"  grid: {len(config.backbones)} backbone(s) {list(config.backbones)} × modes {list(config.modes)} × "
        f"{config.split.repeats} repeat(s) × {config.split.n_folds} fold(s) = {len(fits)} fits"
    )
    done = {r["fit_id"] for r in read_records(out)} if (out / "results").is_dir() else set()
    print(f"  shard {shard[0]}/{shard[1]}: {len(mine)} fits, {sum(f.fit_id in done for f in mine)} already done")
    for fit in mine:
        print(f"    {fit.fit_id}  seed {fit.seed}{'  (done)' if fit.fit_id in done else ''}")
    print(f"{len(mine)} fit(s) in shard {shard[0]}/{shard[1]} of {len(fits)}")


def _prepare_out(config: ExperimentConfig, out: Path, force: bool) -> None:
    """Writes experiment.yaml once; refuses (or with force, clears) a folder of another config."""
    path = out / "experiment.yaml"
    if path.is_file():
        previous = parse_experiment(yaml.safe_load(path.read_text()), source=str(path))
        if previous.hash() == config.hash():
            return
        if not force:
            raise OsteoInputError(
                f"{out} holds experiment '{previous.name}' with config hash {previous.hash()}, but this config's hash "
                f"is {config.hash()}; use another out=, or pass force=True to discard its results"
            )
        for name in ("results", "runs", "phantom"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(
            f"# resolved config of experiment {config.name}; config hash {config.hash()}\n"
            + yaml.safe_dump(config.to_dict(), sort_keys=False)
        )


def _cohort_manifest(config: ExperimentConfig, out: Path) -> Path:
    if config.phantom is not None:
        manifest = out / "phantom" / "manifest.csv"
        if not manifest.is_file():  # written last by make_cohort: its presence means complete
            from osteo_tf.data.synthetic import make_cohort

            p = config.phantom
            say(f"generating a {p.kind} phantom of {p.n} subjects at {p.image_size} px in {manifest.parent}")
            make_cohort(p.kind, p.n, manifest.parent, seed=p.seed, image_size=p.image_size, information=p.information)
        return manifest
    if config.manifest is None:
        raise OsteoInputError(f"experiment {config.name} names no cohort: pass manifest=CSV (or set cohort.manifest)")
    return Path(config.manifest)
