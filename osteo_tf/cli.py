"""``osteo`` command line: parses arguments and calls the library; nothing else lives here.

TensorFlow is imported only inside the commands that need it, so ``osteo --help`` and the
data commands answer at once; TensorFlow's start-up lines are filtered out (:mod:`osteo_tf.console`).
Defaults and choices come from the library (:class:`~osteo_tf.runs.config.TrainConfig`,
:class:`~osteo_tf.demo_settings.DemoSettings`, :mod:`osteo_tf.vocabulary`), and so do the
lines each command prints. A user mistake (:class:`OsteoInputError`) prints its message, with
the parameters it names written as this command's flags (:func:`_flagged`), and exits 2
without a traceback; a closed stdout pipe (``| head``) ends the command quietly (status 141,
as after SIGPIPE).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from osteo_tf.console import quiet_libraries
from osteo_tf.data.covariates import IMPUTE_METHODS
from osteo_tf.data.landmarks import TARGETS
from osteo_tf.demo_settings import DEMO_OUT, DemoSettings
from osteo_tf.errors import OsteoInputError
from osteo_tf.runs.config import PRECISIONS, TrainConfig, TrainOptionError
from osteo_tf.runs.roi_run import DEFAULT_CONFIDENCE, DEFAULT_STEPS, EPOCH_RANGE
from osteo_tf.vocabulary import (
    CACHE_CHOICES,
    CAM_METHODS,
    CAM_TARGETS,
    CONVERTIBLE_BACKBONES,
    COVARIATE_SETS,
    DEFAULT_EXPORT_ROOT,
    DEFAULT_INFORMATION,
    DEFAULT_MODEL_NAME,
    EXECUTORS,
    FUSIONS,
    INFORMATIVE_REGIONS,
    MODES,
    PHANTOM_INFORMATION,
    PHANTOM_KINDS,
    SPLIT_NAMES,
)

__all__ = ["main", "parser"]

VERBOSITY = (0, 1, 2)
VERBOSE_HELP = "Keras progress: 0 none, 1 bars, 2 a line per epoch and TensorFlow's own log lines (hidden otherwise)"
BACKBONES_NOTE = (
    "params: trainable, with torchvision's 1000-class head; backbone: without it. "
    "--weights imagenet:SOURCE picks another source."
)

# ------------------------------------------------------------------------------ the commands


def _quiet_tensorflow(verbose: int = 0) -> None:
    """TensorFlow imported without its start-up lines; ``--verbose 2`` keeps the libraries' logging."""
    quiet_libraries(show=verbose >= 2)


def _print(lines: Iterable[str]) -> None:
    for line in lines:
        print(line)


def _given(args: argparse.Namespace, settings: type) -> dict:
    """The fields of dataclass ``settings`` given on the command line (the options not None)."""
    return {
        f.name: getattr(args, f.name) for f in dataclasses.fields(settings) if getattr(args, f.name, None) is not None
    }


def _manifest_config(args: argparse.Namespace):
    """The ManifestConfig of ``--manifest-config FILE`` (None without one); errors name the file and key."""
    from osteo_tf.data.manifest import ManifestConfig

    if not getattr(args, "manifest_config", None):
        return None
    return ManifestConfig.from_yaml(args.manifest_config)


def cmd_demo(args: argparse.Namespace) -> None:
    """``osteo demo``: the three models on a phantom cohort (:func:`osteo_tf.demo.run_demo`).

    Args:
        args: the parsed command line.
    """
    _quiet_tensorflow(args.verbose)
    from osteo_tf.demo import run_demo

    run_demo(args.out, DemoSettings(**_given(args, DemoSettings)), verbose=args.verbose)


def cmd_train(args: argparse.Namespace) -> None:
    """``osteo train``: one fit, its TrainConfig made of the flags given.

    Args:
        args: the parsed command line.
    """
    _quiet_tensorflow(args.verbose)
    from osteo_tf.training.train import train

    config = TrainConfig(**_given(args, TrainConfig))
    train(
        args.manifest, args.out, config, manifest_config=_manifest_config(args), force=args.force, verbose=args.verbose
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    """``osteo evaluate``: a finished run's metrics on its test split or an external cohort.

    Args:
        args: the parsed command line.
    """
    _quiet_tensorflow()
    from osteo_tf.evaluation.evaluate import evaluate, evaluation_lines

    metrics = evaluate(args.run, manifest=args.manifest, split=args.split, without=args.without)
    _print(evaluation_lines(args.run, metrics, manifest=args.manifest, split=args.split, without=args.without))


def cmd_experiment(args: argparse.Namespace) -> None:
    """``osteo experiment``: a study grid, this shard's fits (or its plan and cost estimate).

    Args:
        args: the parsed command line.
    """
    _quiet_tensorflow(args.verbose)
    from osteo_tf.experiments.config import load_experiment
    from osteo_tf.experiments.runner import parse_shard, run_experiment

    shard = parse_shard(args.shard)
    executor = _executor(args)
    config = load_experiment(args.config, manifest=args.manifest)
    if args.estimate and not args.dry_run:
        raise OsteoInputError("--estimate goes with --dry-run (it estimates, it runs nothing)")
    records = run_experiment(
        config, args.out, shard=shard, dry_run=args.dry_run, force=args.force, verbose=args.verbose, executor=executor
    )
    if args.estimate:
        from osteo_tf.experiments.estimate import estimate_experiment

        estimate_experiment(config, args.out, shard, devices=args.devices, subjects=args.subjects)
    if not args.dry_run:
        print(f"{len(records)} fit(s) of this shard recorded in {Path(args.out) / 'results'}")


def _executor(args: argparse.Namespace):
    """The executor run_experiment takes: "local", or a RayExecutor built from the --executor ray options."""
    ray_options = {
        "address": args.address,
        "gpus_per_fit": args.gpus_per_fit,
        "cpus_per_fit": args.cpus_per_fit,
        "max_retries": args.max_retries,
    }
    given = {k: v for k, v in ray_options.items() if v is not None}
    if args.executor == "local":
        if given:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in given)
            raise OsteoInputError(f"{flags} only apply with --executor ray")
        return "local"
    from osteo_tf.experiments.ray_executor import RayExecutor

    return RayExecutor(**given)


def cmd_cohort(args: argparse.Namespace) -> None:
    """``osteo cohort``: the cohort table by class.

    Args:
        args: the parsed command line.
    """
    from osteo_tf.evaluation.cohort import write_cohort_table

    text, paths = write_cohort_table(args.manifest, args.out, _manifest_config(args))
    print(text, end="")
    print(f"wrote {paths['markdown']} and {paths['csv']}")


def cmd_report(args: argparse.Namespace) -> None:
    """``osteo report``: an experiment folder's (or with ``--run`` one run's) statistics, tables and figures.

    Args:
        args: the parsed command line.
    """
    if (args.dir is None) == (args.run is None):
        raise OsteoInputError("give an experiment folder (osteo report DIR) or a run folder (--run RUN), not both")
    if args.run is not None:
        if args.external or args.paired:
            raise OsteoInputError(
                "--external and --paired are options of an experiment report (osteo report DIR); for one run, "
                "score another cohort with osteo evaluate --run RUN --manifest CSV"
            )
        _quiet_tensorflow()
        from osteo_tf.experiments.run_report import make_run_report

        print(f"wrote {make_run_report(args.run, subgroups=args.subgroups)} (tables as .csv, figures/, failures/)")
        return
    if args.external:
        _quiet_tensorflow()
    from osteo_tf.experiments.report import make_report, report_summary

    path = make_report(args.dir, external=args.external, paired=args.paired, subgroups=args.subgroups)
    print(report_summary(path))
    print(f"\nwrote {path.parent}/ (report.html, report.md, tables as .md and .csv, figures/)")


def cmd_calibrate(args: argparse.Namespace) -> None:
    """``osteo calibrate``: recalibrate a run on its validation split.

    Args:
        args: the parsed command line.
    """
    from osteo_tf.evaluation.calibrate import calibrate_run, calibration_lines

    _print(calibration_lines(args.run, calibrate_run(args.run, args.method)))


def cmd_compare(args: argparse.Namespace) -> None:
    """``osteo compare``: two runs on the same test patients (DeLong, bootstrap, McNemar).

    Args:
        args: the parsed command line.
    """
    from osteo_tf.evaluation.compare import compare_lines, compare_runs

    _print(compare_lines(compare_runs(args.run_a, args.run_b, out=args.out)))


def cmd_plan(args: argparse.Namespace) -> None:
    """``osteo plan``: minimum development and test-set sizes for a study.

    Args:
        args: the parsed command line.
    """
    from osteo_tf.evaluation.sample_size import plan_lines

    _print(
        plan_lines(
            args.prevalence,
            args.predictors,
            c_statistic=args.c_statistic,
            cox_snell_r2=args.cox_snell_r2,
            auc_ci_width=args.auc_ci_width,
        )
    )


def cmd_threshold(args: argparse.Namespace) -> None:
    """``osteo threshold``: a run's decision threshold, chosen on its validation split.

    Args:
        args: the parsed command line.
    """
    from osteo_tf.evaluation.metrics import format_threshold
    from osteo_tf.evaluation.threshold import select_threshold

    _print(format_threshold(args.run, select_threshold(args.run, args.target)))


def cmd_export(args: argparse.Namespace) -> None:
    """``osteo export``: a run as a SavedModel version for TF Serving.

    Args:
        args: the parsed command line.
    """
    _quiet_tensorflow()
    from osteo_tf.serving.archive import export_lines, export_run

    export = export_run(
        args.run, root=args.root, name=args.name, version=args.version, force=args.force, roi_run=args.roi_run
    )
    _print(export_lines(args.run, export))


def cmd_predict(args: argparse.Namespace) -> None:
    """``osteo predict``: a manifest's predictions by an exported model or a TF Serving server.

    Args:
        args: the parsed command line.
    """
    if args.model:
        _quiet_tensorflow()
    from osteo_tf.serving.predict import predict_manifest

    # Default: a local model's card holds the training run's manifest config (column names, sex codes, ROI size).
    result = predict_manifest(
        args.manifest,
        args.out,
        model=args.model,
        server=args.server,
        model_name=args.model_name,
        version=args.version,
        batch_size=args.batch_size,
        manifest_config=_manifest_config(args),
    )
    print(f"wrote {len(result)} predictions ({int(result['label'].sum())} positive) to {args.out}")


def cmd_explain(args: argparse.Namespace) -> None:
    """``osteo explain``: Grad-CAM figures and their table.

    Args:
        args: the parsed command line.
    """
    _quiet_tensorflow()
    from osteo_tf.explain.run import explain_lines, explain_run

    table = explain_run(
        args.run,
        images=args.images,
        manifest=args.manifest,
        limit=args.limit,
        out=args.out,
        method=args.method,
        target=args.target,
        layer=args.layer,
        mask_column=args.mask_column,
    )
    _print(explain_lines(table, args.run, args.out))


def cmd_synth(args: argparse.Namespace) -> None:
    """``osteo data synth``: a synthetic phantom cohort.

    Args:
        args: the parsed command line.
    """
    if args.whole:
        from osteo_tf.data.whole import make_whole_cohort

        if args.informative_region != "bone":
            raise OsteoInputError("--informative-region applies to the crop phantoms, not to --whole views")
        manifest = make_whole_cohort(
            args.kind, args.n, args.out, seed=args.seed, image_size=args.image_size, information=args.information
        )
        print(
            f"wrote a synthetic whole-view {args.kind} cohort of {args.n} subjects (landmarks, ROI boxes): {manifest}"
        )
        return
    from osteo_tf.data.synthetic import make_cohort

    manifest = make_cohort(
        args.kind,
        args.n,
        args.out,
        seed=args.seed,
        image_size=args.image_size,
        informative_region=args.informative_region,
        information=args.information,
    )
    print(f"wrote a synthetic {args.kind} cohort of {args.n} subjects: {manifest}")


def cmd_roi_train(args: argparse.Namespace) -> None:
    """``osteo roi train``: an ROI landmark detector from annotated whole radiographs.

    Args:
        args: the parsed command line.
    """
    _quiet_tensorflow()
    from osteo_tf.training.roi import train_roi

    metrics = train_roi(
        args.manifest,
        args.kind,
        args.out,
        coco=args.coco,
        target=args.target,
        input_size=None if args.input_size is None else _input_size(args.input_size),
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        val_fraction=args.val_fraction,
        confidence_threshold=args.confidence_threshold,
        force=args.force,
    )
    from osteo_tf.roi.evaluate import evaluation_lines

    _print(evaluation_lines({**metrics, "manifest": args.manifest, "confidence_threshold": args.confidence_threshold}))
    print(f"ROI run written to {args.out}; crop whole images with: osteo roi detect --run {args.out} --manifest …")


def cmd_roi_compare(args: argparse.Namespace) -> None:
    """``osteo roi compare``: one experiment on hand and on detected crops of the same subjects.

    Args:
        args: the parsed command line.
    """
    _quiet_tensorflow(args.verbose)
    from osteo_tf.experiments.roi_compare import compare_crops, comparison_lines

    _print(comparison_lines(compare_crops(args.config, args.hand, args.detected, args.out, verbose=args.verbose)))


def _input_size(text: str) -> tuple[int, int]:
    """``"256x128"`` (width × height) → (128, 256) as (H, W); a user mistake is refused by name."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise OsteoInputError(f"input_size must be WIDTHxHEIGHT in pixels, e.g. 256x128, got {text!r}", "input_size")
    return (int(parts[1]), int(parts[0]))


def cmd_roi_detect(args: argparse.Namespace) -> None:
    """``osteo roi detect``: the ROI columns of a whole-image manifest, with confidences and contact sheets.

    Args:
        args: the parsed command line.
    """
    _quiet_tensorflow()
    from osteo_tf.roi.detect import detect_lines, detect_manifest

    result = detect_manifest(args.run, args.manifest, args.out, threshold=args.threshold, sheets=args.sheets)
    _print(detect_lines(result))


def cmd_roi_evaluate(args: argparse.Namespace) -> None:
    """``osteo roi evaluate``: landmark error and box IoU on annotated images.

    Args:
        args: the parsed command line.
    """
    _quiet_tensorflow()
    from osteo_tf.roi.evaluate import evaluate_roi, evaluation_lines

    _print(evaluation_lines(evaluate_roi(args.run, args.manifest, out=args.out)))


def cmd_check(args: argparse.Namespace) -> None:
    """``osteo data check``: a manifest's valid and excluded rows; exit 2 if rows are invalid (unless allowed).

    Args:
        args: the parsed command line.
    """
    from osteo_tf.data.manifest import ManifestConfig, check_manifest

    config = _manifest_config(args) or ManifestConfig()
    check = check_manifest(args.manifest, dataclasses.replace(config, allow_missing=args.impute != "none"))
    _print(check.exclusion_lines())
    target = Path(args.exclusions) if args.exclusions else check.default_exclusions_path
    try:
        written = check.write(target)
    except OSError as error:
        raise OsteoInputError(
            f"cannot write the exclusion list to {target} ({error}); choose a file with --exclusions"
        ) from None
    print(check.summary())
    print(check.cohort_line(args.manifest))
    print(f"exclusions written to {written} ({check.n_excluded} rows)")
    refusal = None if args.allow_exclusions else check.refusal(written, name=args.manifest)
    if refusal is not None:
        raise refusal
    check.require_rows()


def cmd_backbones(args: argparse.Namespace) -> None:
    """``osteo backbones``: the backbone registry as a table.

    Args:
        args: the parsed command line.
    """
    _quiet_tensorflow()
    from osteo_tf.models.backbones import registry_lines

    _print(registry_lines())
    print(BACKBONES_NOTE)


def cmd_weights_convert(args: argparse.Namespace) -> None:
    """``osteo weights convert``: a torchvision checkpoint as Keras weights.

    Args:
        args: the parsed command line.
    """
    _quiet_tensorflow()
    from osteo_tf.models.backbones import convert_torchvision

    report = convert_torchvision(args.arch, args.checkpoint, args.out)
    print(report.summary())
    print(f"use it with: --backbone {args.arch} --weights {args.out}")


def cmd_weights_fetch(args: argparse.Namespace) -> None:
    """``osteo weights fetch``: ImageNet weights of the named backbones into one folder for offline use.

    Args:
        args: the parsed command line.
    """
    _quiet_tensorflow()
    from osteo_tf.models.weight_fetch import fetch_lines, fetch_weights

    for line in fetch_lines(fetch_weights(args.backbone, args.out, force=args.force), args.out):
        print(line)


# ------------------------------------------------------------------------------ the parser


def _command(
    commands: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], None], help: str
) -> argparse.ArgumentParser:
    """A subcommand's parser that runs ``handler`` and is kept in the namespace (for :func:`_flagged`)."""
    command = commands.add_parser(name, help=help)
    command.set_defaults(handler=handler, command_parser=command)
    return command


def _columns(text: str) -> tuple[str, ...]:
    """``"age, bmi"`` → ``("age", "bmi")``."""
    return tuple(c.strip() for c in text.split(",") if c.strip())


def _add_demo(commands: argparse._SubParsersAction) -> None:
    demo = _command(
        commands, "demo", cmd_demo, "train image-only, ensemble and covariate-only models on a phantom cohort"
    )
    demo.add_argument("--out", default=DEMO_OUT, help=f"output folder (default: {DEMO_OUT})")
    demo.add_argument("--n", type=int, help=f"phantom subjects (default {DemoSettings.n})")
    demo.add_argument("--image-size", type=int, help=f"pixels (default {DemoSettings.image_size})")
    demo.add_argument("--backbone", help=f"backbone (default {DemoSettings.backbone})")
    demo.add_argument("--epochs", type=int, help=f"max epochs (default {DemoSettings.epochs})")
    demo.add_argument("--seed", type=int, help=f"seed (default {DemoSettings.seed})")
    demo.add_argument("--verbose", type=int, default=1, choices=VERBOSITY, help=VERBOSE_HELP)


def _add_train(commands: argparse._SubParsersAction) -> None:
    train = _command(commands, "train", cmd_train, "train one model on a manifest")
    train.add_argument("--manifest", required=True, help="cohort CSV (see README: data contract)")
    train.add_argument("--out", required=True, help="run folder to create (or resume)")
    _add_model_options(train)
    _add_fit_options(train)
    _add_cohort_options(train)
    _add_runtime_options(train)
    train.add_argument("--force", action="store_true", help="discard an existing run folder")
    train.add_argument("--verbose", type=int, default=1, choices=VERBOSITY, help=VERBOSE_HELP)


def _add_model_options(train: argparse.ArgumentParser) -> None:
    """osteo train: the model (TrainConfig's backbone … covariates)."""
    train.add_argument("--backbone", default=TrainConfig.backbone, help="backbone name (see README)")
    train.add_argument("--mode", default=TrainConfig.mode, choices=MODES)
    train.add_argument(
        "--fusion",
        choices=FUSIONS,
        help=f"how the ensemble joins image and covariates: {TrainConfig.fusion} (default, the "
        "papers'), late (a logit per branch, learned weighting) or film (covariates scale and "
        "shift the image features)",
    )
    train.add_argument(
        "--aux-loss-weight",
        type=float,
        help=f"ensemble: weight of each branch's own auxiliary loss (default {TrainConfig.aux_loss_weight:g}: none)",
    )
    train.add_argument(
        "--covariate-dropout",
        type=float,
        help="probability of withholding each covariate of a training subject (default "
        f"{TrainConfig.covariate_dropout:g}); > 0 lets the model predict with any covariate "
        "missing",
    )
    train.add_argument("--image-size", type=int, help="pixels; default: the backbone's paper size")
    train.add_argument(
        "--weights",
        help=f"{TrainConfig.weights} (default), imagenet, imagenet:SOURCE, a folder of osteo weights fetch, "
        "or weights as their source publishes them (timm snapshot folder, keras-hub preset, .pth, "
        "efficientnetbN_notop.h5)",
    )
    train.add_argument(
        "--covariates",
        help=f"{TrainConfig.covariates} (default), {', '.join(COVARIATE_SETS)}, or comma-separated columns",
    )


def _add_fit_options(train: argparse.ArgumentParser) -> None:
    """osteo train: the fit (epochs … threshold)."""
    train.add_argument("--epochs", type=int, help=f"max epochs (default {TrainConfig.epochs})")
    train.add_argument(
        "--patience", type=int, help=f"early-stopping patience in epochs (default {TrainConfig.patience})"
    )
    train.add_argument(
        "--batch-size",
        type=int,
        help=f"batch size per device (default {TrainConfig.batch_size}); with several GPUs the global "
        "batch is this x GPUs",
    )
    train.add_argument("--learning-rate", type=float, help="SGD rate; default by backbone family")
    train.add_argument(
        "--seed", type=int, help=f"seed for split, initialisation and augmentation (default {TrainConfig.seed})"
    )
    train.add_argument(
        "--threshold", type=float, help=f"decision threshold on the probability (default {TrainConfig.threshold})"
    )


def _add_cohort_options(train: argparse.ArgumentParser) -> None:
    """osteo train: reading the cohort (manifest config, intensity, imputation, exclusions, determinism)."""
    train.add_argument("--manifest-config", help="YAML with column names / sex codes (see README)")
    train.add_argument(
        "--intensity",
        help=f"per-image normalisation: {TrainConfig.intensity} (default) or percentile:LOW,HIGH, e.g. percentile:1,99",
    )
    train.add_argument(
        "--impute",
        choices=IMPUTE_METHODS,
        help=f"missing covariates: {TrainConfig.impute} (default: an error) or median (training rows, "
        "plus a missing indicator)",
    )
    train.add_argument(
        "--allow-exclusions",
        action="store_true",
        help="leave invalid manifest rows out (listed in the run's exclusions.csv) instead of stopping",
    )
    train.add_argument(
        "--deterministic", action="store_true", help="seeded TensorFlow op determinism: identical reruns"
    )


def _add_runtime_options(train: argparse.ArgumentParser) -> None:
    """osteo train: how the fit runs (cache, precision, XLA); results do not depend on the cache or XLA."""
    train.add_argument(
        "--cache",
        choices=CACHE_CHOICES,
        help=f"decoded images between epochs: {TrainConfig.cache} (default, RAM), disk (a cache file "
        "under OUT/cache/, for cohorts larger than RAM), none (decode every epoch)",
    )
    train.add_argument(
        "--precision",
        choices=PRECISIONS,
        help=f"numerics: {TrainConfig.precision} (default: mixed precision on a GPU — bfloat16 on "
        "Ampere or later — float32 on CPU); the output layer stays float32",
    )
    train.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="XLA-compile the training step (default: on with a GPU, off on CPU)",
    )


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    evaluate = _command(
        commands, "evaluate", cmd_evaluate, "score a finished run on its test split or an external cohort"
    )
    evaluate.add_argument("--run", required=True, help="run folder written by osteo train")
    evaluate.add_argument("--manifest", help="external cohort CSV to score instead of the run's test split")
    evaluate.add_argument("--split", default="test", choices=SPLIT_NAMES)
    evaluate.add_argument(
        "--without",
        type=_columns,
        default=(),
        help="comma-separated covariates to treat as missing in every row (a model trained with "
        "--covariate-dropout predicts without them)",
    )


def _add_experiment(commands: argparse._SubParsersAction) -> None:
    experiment = _command(
        commands, "experiment", cmd_experiment, "run a study grid (backbone x mode x repeat x fold) from a YAML config"
    )
    experiment.add_argument("config", help="a config YAML path, or a packaged config: demo, hip_2020, dental_2022")
    experiment.add_argument("--out", required=True, help="experiment folder to create (or resume)")
    experiment.add_argument("--manifest", help="cohort CSV; replaces the config's cohort")
    experiment.add_argument("--dry-run", action="store_true", help="print the plan and the number of fits, run nothing")
    experiment.add_argument(
        "--estimate",
        action="store_true",
        help="with --dry-run: time a few training steps per backbone here and estimate the grid's "
        "wall time on 1 and on --devices devices",
    )
    experiment.add_argument(
        "--devices", type=int, default=4, help="devices (GPUs) for --estimate's second figure (default 4)"
    )
    experiment.add_argument("--subjects", type=int, help="cohort size for --estimate when the config names no cohort")
    experiment.add_argument("--shard", default="1/1", help="i/n: run every n-th fit starting at the i-th (1 <= i <= n)")
    experiment.add_argument("--force", action="store_true", help="discard the results of a different config in --out")
    experiment.add_argument("--verbose", type=int, default=0, choices=VERBOSITY, help=VERBOSE_HELP + ", per fit")
    _add_ray_options(experiment)


def _add_ray_options(experiment: argparse.ArgumentParser) -> None:
    """osteo experiment: the executor, and the options of ``--executor ray``."""
    experiment.add_argument(
        "--executor",
        default="local",
        choices=EXECUTORS,
        help="local: fits one after another here (default); ray: each fit a Ray task (pip install "
        "'osteo_tf[ray]'; --out on a file system all nodes share)",
    )
    experiment.add_argument(
        "--address",
        help="with --executor ray: an existing cluster (auto, HOST:6379); default: start Ray on this machine",
    )
    experiment.add_argument(
        "--gpus-per-fit",
        help="with --executor ray: 0, 1, 2, … or 1/k to share a GPU (0.5, 0.25); "
        "default 1 if the cluster has GPUs, else 0",
    )
    experiment.add_argument(
        "--cpus-per-fit", type=float, help="with --executor ray: CPUs (TensorFlow threads) per fit (default 1)"
    )
    experiment.add_argument(
        "--max-retries", type=int, help="with --executor ray: reruns of a fit whose worker died (default 3)"
    )


def _add_cohort(commands: argparse._SubParsersAction) -> None:
    cohort = _command(
        commands, "cohort", cmd_cohort, "cohort characteristics by class with p-values (hip Table 1 / dental Table 3)"
    )
    cohort.add_argument("manifest", help="cohort CSV")
    cohort.add_argument("--manifest-config", help="YAML with column names / sex codes")
    cohort.add_argument("--out", default=".", help="folder for cohort_table.md and cohort_table.csv (default: .)")


def _add_report(commands: argparse._SubParsersAction) -> None:
    report = _command(
        commands, "report", cmd_report, "statistics, tables, figures and an HTML page of an experiment or a run"
    )
    report.add_argument("dir", nargs="?", help="experiment folder written by osteo experiment")
    report.add_argument("--run", help="a run folder written by osteo train, instead of an experiment folder")
    report.add_argument("--external", help="manifest CSV of an external cohort: score every trained model on it")
    report.add_argument(
        "--paired",
        action="store_true",
        help="pair runs by repeat/fold (same splits): paired t-test or Wilcoxon instead of unpaired tests",
    )
    report.add_argument(
        "--subgroups",
        type=_columns,
        default=(),
        help="comma-separated manifest columns tabulated as subgroups besides sex, age band, BMI class and "
        "fracture history (e.g. site,scanner)",
    )


def _add_calibrate(commands: argparse._SubParsersAction) -> None:
    from osteo_tf.evaluation.calibrate import CALIBRATE_CHOICES

    calibrate = _command(
        commands, "calibrate", cmd_calibrate, "recalibrate a run's probabilities on its validation split"
    )
    calibrate.add_argument("--run", required=True, help="run folder written by osteo train")
    calibrate.add_argument(
        "--method", required=True, choices=CALIBRATE_CHOICES, help="recalibration map; none removes it"
    )


def _add_compare(commands: argparse._SubParsersAction) -> None:
    compare = _command(commands, "compare", cmd_compare, "compare two runs on the same test patients")
    compare.add_argument("run_a", help="run folder A")
    compare.add_argument("run_b", help="run folder B (scored on the same test images)")
    compare.add_argument("--out", help="also write the comparison as JSON here")


def _add_plan(commands: argparse._SubParsersAction) -> None:
    plan = _command(commands, "plan", cmd_plan, "sample size: development (Riley et al. 2020) and test set")
    plan.add_argument("--prevalence", type=float, required=True, help="expected share with osteoporosis, 0–1")
    plan.add_argument("--predictors", type=int, required=True, help="candidate predictor parameters")
    anticipated = plan.add_mutually_exclusive_group(required=True)
    anticipated.add_argument("--c-statistic", type=float, help="anticipated C-statistic (AUC), e.g. 0.85")
    anticipated.add_argument("--cox-snell-r2", type=float, help="anticipated Cox–Snell R² instead")
    plan.add_argument(
        "--auc-ci-width", type=float, default=0.1, help="wanted width of the test set's 95 %% AUC CI (default 0.1)"
    )


def _add_threshold(commands: argparse._SubParsersAction) -> None:
    threshold = _command(
        commands, "threshold", cmd_threshold, "choose a run's decision threshold on its validation split"
    )
    threshold.add_argument("--run", required=True, help="run folder written by osteo train")
    threshold.add_argument("--target", required=True, help="sensitivity=0.90, specificity=0.80 or youden")


def _add_export(commands: argparse._SubParsersAction) -> None:
    export = _command(
        commands, "export", cmd_export, "export a run as a SavedModel for TF Serving (raw PNG + covariates in)"
    )
    export.add_argument("--run", required=True, help="run folder written by osteo train")
    export.add_argument("--name", default=DEFAULT_MODEL_NAME, help=f"model name (default {DEFAULT_MODEL_NAME})")
    export.add_argument("--version", type=int, help="version number (default: one more than the highest existing)")
    export.add_argument("--root", default=DEFAULT_EXPORT_ROOT, help=f"export root (default {DEFAULT_EXPORT_ROOT}/)")
    export.add_argument("--force", action="store_true", help="replace an existing version")
    export.add_argument(
        "--roi-run",
        help="ROI detector run (osteo roi train): a two-stage model that takes the whole radiograph and the side, "
        "and returns the ROI box used",
    )


def _add_predict(commands: argparse._SubParsersAction) -> None:
    predict = _command(
        commands, "predict", cmd_predict, "predict a manifest with an exported model or a TF Serving server"
    )
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="SavedModel version folder, e.g. saved_models/osteo/1")
    source.add_argument("--server", help="TF Serving REST address, e.g. http://localhost:8501")
    predict.add_argument(
        "--model-name", default=DEFAULT_MODEL_NAME, help=f"model name on the server (default {DEFAULT_MODEL_NAME})"
    )
    predict.add_argument("--version", type=int, help="model version on the server (default: the latest)")
    predict.add_argument("--manifest", required=True, help="CSV with image paths and the covariates (no labels needed)")
    predict.add_argument("--out", required=True, help="CSV to write: image, patient_id, probability, label")
    predict.add_argument("--batch-size", type=int, default=32, help="instances per request (default 32)")
    predict.add_argument(
        "--manifest-config",
        help="YAML with column names / sex codes / ROI size (default with --model: the training "
        "run's, from the model card)",
    )


def _add_explain(commands: argparse._SubParsersAction) -> None:
    explain = _command(
        commands, "explain", cmd_explain, "Grad-CAM / Guided Grad-CAM figures for images scored by a finished run"
    )
    explain.add_argument("--run", required=True, help="run folder written by osteo train (image-only or ensemble)")
    explain.add_argument("--images", nargs="+", help="image files; label, ROI and covariates from their manifest row")
    explain.add_argument(
        "--manifest", help="cohort CSV: rows for --images, or examples to pick (default: the run's manifest)"
    )
    explain.add_argument(
        "--limit", type=int, default=8, help="with --manifest alone: at most N images, half per class (default 8)"
    )
    explain.add_argument(
        "--method", default="gradcam", choices=CAM_METHODS, help="class activation map (default gradcam)"
    )
    explain.add_argument(
        "--target",
        default="osteoporosis",
        choices=CAM_TARGETS,
        help="class whose score is explained (default osteoporosis)",
    )
    explain.add_argument("--layer", help="feature map to explain (default: the backbone's last, see osteo backbones)")
    explain.add_argument("--out", help="output folder (default RUN/explain)")
    explain.add_argument(
        "--mask-column",
        help="manifest column of region masks (the phantom's 'mask', or your own annotations, same "
        "pixel size as the image, nonzero inside): adds each map's mass inside its mask to "
        "explain.csv",
    )


def _add_data(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="cohort utilities").add_subparsers(dest="data_command", required=True)
    synth = _command(data, "synth", cmd_synth, "write a synthetic phantom cohort (PNG images, masks, manifest.csv)")
    synth.add_argument("--kind", default="hip", choices=PHANTOM_KINDS)
    synth.add_argument("--n", type=int, default=500)
    synth.add_argument("--out", required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--image-size", type=int, default=128, help="crop side, or with --whole the view's width")
    synth.add_argument(
        "--whole",
        action="store_true",
        help="the whole view (AP hip / panoramic) with landmark and ROI ground truth, for osteo roi",
    )
    synth.add_argument(
        "--informative-region",
        choices=INFORMATIVE_REGIONS["hip"],
        default="bone",
        help="where the T-score shows and what the masks mark: the whole bone, or (hip) only the "
        "femoral head and neck's trabecular pattern, for Grad-CAM localisation checks",
    )
    synth.add_argument(
        "--information",
        choices=PHANTOM_INFORMATION,
        default=DEFAULT_INFORMATION,
        help=f"the label's information split: {DEFAULT_INFORMATION} (default: the image is the stronger "
        "input) or balanced (image and covariates about equally informative); cohort.json records "
        "the split",
    )
    check = _command(
        data, "check", cmd_check, "validate a manifest and its images; list every row that would be excluded"
    )
    check.add_argument("manifest")
    check.add_argument("--manifest-config", help="YAML with column names / sex codes / ROI size")
    check.add_argument(
        "--exclusions",
        help="CSV to write the excluded rows to (line, image, patient_id, column, reason, detail; "
        "default: MANIFEST_exclusions.csv beside the manifest)",
    )
    check.add_argument("--allow-exclusions", action="store_true", help="exit 0 even when rows are invalid")
    check.add_argument(
        "--impute",
        choices=IMPUTE_METHODS,
        default=TrainConfig.impute,
        help="median: empty covariate cells are not errors (they will be imputed in training)",
    )


def _add_roi(commands: argparse._SubParsersAction) -> None:
    roi = commands.add_parser(
        "roi", help="automatic ROI: train a landmark detector, crop whole radiographs"
    ).add_subparsers(dest="roi_command", required=True)
    train = _command(roi, "train", cmd_roi_train, "train the ROI landmark detector on annotated whole radiographs")
    train.add_argument("--manifest", required=True, help="CSV of whole images with landmark (or ROI box) columns")
    train.add_argument("--kind", required=True, choices=PHANTOM_KINDS)
    train.add_argument("--out", required=True, help="ROI run folder")
    train.add_argument("--coco", help="COCO keypoint or bounding-box JSON (CVAT, Label Studio) with the annotations")
    train.add_argument("--target", choices=TARGETS, help="landmarks or box (default: what the annotations hold)")
    train.add_argument("--input-size", help="detector input WIDTHxHEIGHT (default hip 128x128, dental 256x128)")
    train.add_argument(
        "--epochs",
        type=int,
        help=f"passes over the images (default: about {DEFAULT_STEPS} steps, within {EPOCH_RANGE[0]} to "
        f"{EPOCH_RANGE[1]} epochs)",
    )
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--learning-rate", type=float, default=2e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--val-fraction", type=float, default=0.2, help="patients held out for validation")
    train.add_argument(
        "--confidence-threshold", type=float, default=DEFAULT_CONFIDENCE, help="detect flags rows below it"
    )
    train.add_argument("--force", action="store_true", help="replace a finished run")
    detect = _command(
        roi, "detect", cmd_roi_detect, "write a manifest's ROI columns from the detector, flag doubtful rows"
    )
    detect.add_argument("--run", required=True, help="ROI run folder (osteo roi train)")
    detect.add_argument("--manifest", required=True, help="CSV of whole images (image, side, anything else)")
    detect.add_argument("--out", required=True, help="CSV to write: the manifest with roi_* columns")
    detect.add_argument("--threshold", type=float, help="confidence below which a row is flagged (default: the run's)")
    detect.add_argument("--sheets", help="folder of the contact sheets (default OUT_sheets/ beside OUT)")
    compare = _command(roi, "compare", cmd_roi_compare, "an experiment on hand vs detected crops, fit by fit")
    compare.add_argument("config", help="experiment config YAML or packaged name (e.g. roi_hip)")
    compare.add_argument("--hand", required=True, help="manifest with the hand (reference) ROI columns")
    compare.add_argument("--detected", required=True, help="osteo roi detect's output for the same rows")
    compare.add_argument("--out", required=True, help="folder for both experiments and comparison.json")
    compare.add_argument("--verbose", type=int, default=0, choices=VERBOSITY, help=VERBOSE_HELP + ", per fit")
    evaluate = _command(roi, "evaluate", cmd_roi_evaluate, "landmark error and box IoU on annotated whole images")
    evaluate.add_argument("--run", required=True, help="ROI run folder")
    evaluate.add_argument("--manifest", help="annotated CSV not used in training (default: the run's validation split)")
    evaluate.add_argument("--out", help="folder for evaluation.json and evaluation_rows.csv (default: the run)")


def _add_backbones(commands: argparse._SubParsersAction) -> None:
    _command(commands, "backbones", cmd_backbones, "list the backbone registry (sizes, learning rates, weights)")


def _add_weights(commands: argparse._SubParsersAction) -> None:
    weights = commands.add_parser("weights", help="backbone weight files").add_subparsers(
        dest="weights_command", required=True
    )
    convert = _command(
        weights,
        "convert",
        cmd_weights_convert,
        "convert a torchvision state_dict (.pth) to a Keras .weights.h5 (needs torch)",
    )
    convert.add_argument("--arch", required=True, choices=CONVERTIBLE_BACKBONES)
    convert.add_argument("checkpoint", help="FILE.pth holding the state_dict")
    convert.add_argument("--out", required=True, help="FILE.weights.h5 to write")
    fetch = _command(
        weights,
        "fetch",
        cmd_weights_fetch,
        "download backbones' ImageNet weights into one folder (SHA-256 manifest) to train offline",
    )
    fetch.add_argument(
        "--backbone", nargs="+", required=True, metavar="NAME", help="registry names (osteo backbones), or all"
    )
    fetch.add_argument("--out", required=True, help="FOLDER to write; then --weights FOLDER")
    fetch.add_argument("--force", action="store_true", help="download again files that match their checksum")


def parser() -> argparse.ArgumentParser:
    """The ``osteo`` argument parser, one subcommand per ``_add_*`` function.

    Returns:
        The root parser; each command's parser sets ``handler`` and ``command_parser`` in the namespace.
    """
    root = argparse.ArgumentParser(
        prog="osteo", description="Osteoporosis screening CNNs from hip and dental radiographs."
    )
    commands = root.add_subparsers(dest="command", required=True)
    for add in (
        _add_demo,
        _add_train,
        _add_evaluate,
        _add_experiment,
        _add_cohort,
        _add_report,
        _add_calibrate,
        _add_compare,
        _add_plan,
        _add_threshold,
        _add_export,
        _add_predict,
        _add_explain,
        _add_data,
        _add_roi,
        _add_backbones,
        _add_weights,
    ):
        add(commands)
    return root


# ------------------------------------------------------------------------------ errors and exit codes


def _flagged(message: str, parameter: str | None, subparser: argparse.ArgumentParser) -> str:
    """A library message with the parameters it names written as ``subparser``'s flags.

    For each option of ``subparser`` (``dest`` → its ``--flag``): ``dest=True`` → ``--flag`` (a
    store_true flag); ``dest=VALUE`` → ``--flag VALUE``; ``dest=`` with no value (before a space,
    punctuation or the end) → ``--flag``; and when the error is about ``parameter == dest``, the
    first bare ``dest`` → ``--flag``: a whole word, not inside a path, a dotted key
    (``train.epochs``) or a longer name, and not the noun before a quoted value
    (``unknown backbone 'vgg16'`` stays as it is).

    Args:
        message: the library's message.
        parameter: the parameter the error is about (``OsteoInputError.parameter``), or None.
        subparser: the parser of the command whose flags replace the names.

    Returns:
        The message as this command line says it, e.g. ``cpus_per_fit must be a number > 0, got 0``
        → ``--cpus-per-fit must be a number > 0, got 0``.
    """
    for action in subparser._actions:
        flags = [option for option in action.option_strings if option.startswith("--")]
        if not flags or action.dest == "help":
            continue
        name, flag = rf"(?<![\w./\\-]){re.escape(action.dest)}", flags[0]
        if action.nargs == 0 and action.const is True:  # store_true
            message = re.sub(rf"{name}=True\b", lambda _: flag, message)
        message = re.sub(rf"{name}=(?=[\s,;:)]|\.(?:\s|$)|$)", lambda _: flag, message)
        message = re.sub(rf"{name}=", lambda _: f"{flag} ", message)
        if parameter == action.dest:
            message = re.sub(rf"{name}(?![\w/\\=-]|\.\w|\s*['\"])", lambda _: flag, message, count=1)
    return message


def _commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers of every command under ``parser`` that runs (the leaves of its subcommand tree)."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        return [parser]
    return [leaf for group in groups for sub in group.choices.values() for leaf in _commands(sub)]


def _error_message(error: OsteoInputError, command: argparse.ArgumentParser, root: argparse.ArgumentParser) -> str:
    """What ``osteo: error:`` says: the library's message with its parameter names as flags.

    The command that ran names them first (:func:`_flagged`); a hint that names another command's
    option (evaluate's "train with covariate_dropout=P") then gets that command's flag. A
    :class:`TrainOptionError` ("invalid training option epochs=0: …") is shown as it is: it names
    the TrainConfig option and the value given, spelled the same on the command line, in the
    Python API and under an experiment YAML's ``train:``.
    """
    if isinstance(error, TrainOptionError):
        return str(error)
    message = _flagged(str(error), error.parameter, command)
    for other in _commands(root):
        if other is not command:
            message = _flagged(message, None, other)
    return message


def main(argv: list[str] | None = None) -> int:
    """Runs ``osteo ARGV``.

    Args:
        argv: the arguments after ``osteo`` (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 done, 2 a user mistake (or a usage error, raised by argparse as
        SystemExit), 130 interrupted, 141 stdout closed.
    """
    root = parser()
    args = root.parse_args(argv)
    try:
        args.handler(args)
    except OsteoInputError as error:
        print(f"osteo: error: {_error_message(error, args.command_parser, root)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("osteo: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _closed_pipe()
    try:
        sys.stdout.flush()  # a reader that went away (`| head`) shows here at the latest
    except BrokenPipeError:
        return _closed_pipe()
    return 0


def _closed_pipe() -> int:
    """The reader of stdout went away (``osteo data check … | head -n 1``): stop quietly, as Unix
    tools do, with the status of a process ended by SIGPIPE. stdout is pointed at /dev/null so
    that Python's final flush does not report the closed pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + 13


if __name__ == "__main__":
    sys.exit(main())
