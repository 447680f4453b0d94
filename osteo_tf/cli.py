"""``osteo`` command line: parses arguments and calls the library; nothing else lives here.

TensorFlow is imported only inside the commands that need it, so ``osteo --help`` and the
data commands answer at once; TensorFlow's start-up lines are filtered out (:mod:`osteo_tf.console`).
A user mistake (:class:`OsteoInputError`) prints its message and exits 2 without a traceback; a
closed stdout pipe (``| head``) ends the command quietly (status 141, as after SIGPIPE).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from osteo_tf.console import quiet_libraries
from osteo_tf.errors import OsteoInputError
from osteo_tf.vocabulary import DEFAULT_INFORMATION, FUSIONS, MODES, PHANTOM_INFORMATION


def _quiet_tensorflow(verbose: int = 0) -> None:
    """TensorFlow imported without its start-up lines; ``--verbose 2`` keeps the libraries' logging."""
    quiet_libraries(show=verbose >= 2)


def cmd_demo(args: argparse.Namespace) -> None:
    _quiet_tensorflow(args.verbose)
    from osteo_tf.demo import DemoSettings, run_demo

    settings = DemoSettings(**{k: v for k, v in vars(args).items() if k in DemoSettings.__dataclass_fields__ and v is not None})
    run_demo(args.out, settings, verbose=args.verbose)


def cmd_train(args: argparse.Namespace) -> None:
    _quiet_tensorflow(args.verbose)
    from osteo_tf.training.config import TrainConfig
    from osteo_tf.training.train import train

    options = {k: getattr(args, k) for k in (
        "backbone", "mode", "image_size", "weights", "covariates", "epochs", "patience", "batch_size",
        "learning_rate", "seed", "threshold", "intensity", "impute", "fusion", "aux_loss_weight", "covariate_dropout",
        "cache", "precision", "jit") if getattr(args, k) is not None}
    options.update(allow_exclusions=args.allow_exclusions, deterministic=args.deterministic)
    manifest_config = _manifest_config(args)
    train(args.manifest, args.out, TrainConfig(**options), manifest_config=manifest_config, force=args.force, verbose=args.verbose)


def cmd_evaluate(args: argparse.Namespace) -> None:
    _quiet_tensorflow()
    from osteo_tf.evaluation.evaluate import evaluate
    from osteo_tf.evaluation.metrics import METRIC_NAMES

    without = tuple(c.strip() for c in (args.without or "").split(",") if c.strip())
    metrics = evaluate(args.run, manifest=args.manifest, split=args.split, without=without)
    where = f"external cohort {args.manifest}" if args.manifest else f"{args.split} split"
    where += f", without {', '.join(without)}" if without else ""
    print(f"{args.run} on the {where} (n={metrics['n']}, threshold {metrics['threshold']}):")
    for name in METRIC_NAMES:
        print(f"  {name:12} {metrics[name]:.4f}")
    print(f"  confusion    tp={metrics['tp']} fp={metrics['fp']} tn={metrics['tn']} fn={metrics['fn']}")


def cmd_experiment(args: argparse.Namespace) -> None:
    _quiet_tensorflow(args.verbose)
    from osteo_tf.experiments.config import load_experiment
    from osteo_tf.experiments.runner import parse_shard, run_experiment

    shard = parse_shard(args.shard)
    executor = _executor(args)
    config = load_experiment(args.config, manifest=args.manifest)
    if args.estimate and not args.dry_run:
        raise OsteoInputError("--estimate goes with --dry-run (it estimates, it runs nothing)")
    records = run_experiment(config, args.out, shard=shard, dry_run=args.dry_run, force=args.force, verbose=args.verbose,
                             executor=executor)
    if args.estimate:
        from osteo_tf.experiments.estimate import estimate_experiment

        estimate_experiment(config, args.out, shard, devices=args.devices, subjects=args.subjects)
    if not args.dry_run:
        print(f"{len(records)} fit(s) of this shard recorded in {Path(args.out) / 'results'}")


def _executor(args: argparse.Namespace):
    """The executor run_experiment takes: "local", or a RayExecutor built from the --executor ray options."""
    ray_options = {"address": args.address, "gpus_per_fit": args.gpus_per_fit, "cpus_per_fit": args.cpus_per_fit,
                   "max_retries": args.max_retries}
    given = {k: v for k, v in ray_options.items() if v is not None}
    if args.executor == "local":
        if given:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in given)
            raise OsteoInputError(f"{flags} only apply with --executor ray")
        return "local"
    from osteo_tf.experiments.ray_executor import RayExecutor

    return RayExecutor(**given)


def cmd_cohort(args: argparse.Namespace) -> None:
    from osteo_tf.evaluation.cohort import write_cohort_table

    text, paths = write_cohort_table(args.manifest, args.out, _manifest_config(args))
    print(text, end="")
    print(f"wrote {paths['markdown']} and {paths['csv']}")


def cmd_report(args: argparse.Namespace) -> None:
    if args.external:
        _quiet_tensorflow()
    from osteo_tf.evaluation.report import make_report

    path = make_report(args.dir, external=args.external, paired=args.paired)
    print(path.read_text().split("## Mean, SD")[0].rstrip())
    print(f"\nwrote {path.parent}/ (report.md, tables as .md and .csv, figures/)")


def cmd_explain(args: argparse.Namespace) -> None:
    _quiet_tensorflow()
    from osteo_tf.explain.run import explain_run

    table = explain_run(args.run, images=args.images, manifest=args.manifest, limit=args.limit, out=args.out,
                        method=args.method, target=args.target, layer=args.layer, mask_column=args.mask_column)
    out = Path(args.out) if args.out else Path(args.run) / "explain"
    for row in table.itertuples():
        label = "" if row.label != row.label else f" (true label {int(row.label)})"
        inside = f"; map mass inside the mask {row.mass_inside_mask:.2f} (mask share {row.mask_share:.2f})" \
            if args.mask_column else ""
        print(f"{row.image}: p(osteoporosis) = {row.probability:.3f}{label}{inside} → {out / row.figure}")
    if args.mask_column:
        print(f"mean map mass inside the mask: {table['mass_inside_mask'].mean():.3f} "
              f"(mean mask share {table['mask_share'].mean():.3f})")
    print(f"grid: {out / 'grid.png'}; table: {out / 'explain.csv'}")


def cmd_synth(args: argparse.Namespace) -> None:
    from osteo_tf.data.synthetic import make_cohort

    manifest = make_cohort(args.kind, args.n, args.out, seed=args.seed, image_size=args.image_size,
                           informative_region=args.informative_region, information=args.information)
    print(f"wrote a synthetic {args.kind} cohort of {args.n} subjects: {manifest}")


def cmd_check(args: argparse.Namespace) -> None:
    import dataclasses

    from osteo_tf.data.manifest import ManifestConfig, check_manifest

    config = _manifest_config(args) or ManifestConfig()
    check = check_manifest(args.manifest, dataclasses.replace(config, allow_missing=args.impute != "none"))
    for row in check.exclusions.itertuples(index=False):
        where = f"line {row.line}" + (f" ({row.image})" if row.image else "")
        print(f"excluded {where}: {row.reason} — {row.detail}")
    target = Path(args.exclusions) if args.exclusions else check.path.with_name(f"{check.path.stem}_exclusions.csv")
    try:
        written = check.write(target)
    except OSError as error:
        raise OsteoInputError(f"cannot write the exclusion list to {target} ({error}); choose a file with --exclusions") from None
    print(check.summary())
    cohort = check.cohort
    positives = int(cohort["label"].sum())
    print(f"{args.manifest}: {len(cohort)} valid rows, {cohort['patient_id'].nunique()} patients, "
          f"{positives} osteoporosis / {len(cohort) - positives} non-osteoporosis")
    print(f"exclusions written to {written} ({check.n_excluded} rows)")
    if check.n_excluded and not args.allow_exclusions:
        raise OsteoInputError(
            f"{check.n_excluded} of the {check.n_rows} rows of {args.manifest} are invalid (listed above and in "
            f"{written}):\n{check.message}"
            + ("" if "--allow-exclusions" in check.message else "\nOr pass --allow-exclusions to leave those rows out.")
        )
    check.require_rows()


def cmd_backbones(args: argparse.Namespace) -> None:
    _quiet_tensorflow()
    from osteo_tf.models.backbones import registry_table

    rows = registry_table()
    header = ("name", "params", "backbone", "size", "LR", "feature layer", "ImageNet weights (first = default)")
    table = [header] + [(r["name"], f"{r['params']:,}", f"{r['backbone_params']:,}", str(r["size"]), f"{r['lr']:g}",
                         r["feature_layer"], r["weights"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    print("params: trainable, with torchvision's 1000-class head; backbone: without it. "
          "--weights imagenet:SOURCE picks another source.")


def cmd_weights_convert(args: argparse.Namespace) -> None:
    _quiet_tensorflow()
    from osteo_tf.models.convert import convert_torchvision

    report = convert_torchvision(args.arch, args.checkpoint, args.out)
    print(report.summary())
    print(f"use it with: --backbone {args.arch} --weights {args.out}")


def cmd_threshold(args: argparse.Namespace) -> None:
    from osteo_tf.evaluation.metrics import METRIC_NAMES
    from osteo_tf.evaluation.threshold import select_threshold

    record = select_threshold(args.run, args.target)
    print(f"{args.run}: threshold {record['threshold']:.6g} ({record['target']}, chosen on the validation split; "
          f"recorded in threshold.json)")
    for split in ("val", "test"):
        metrics = record[split]
        if metrics:
            print(f"  {split:5} " + "  ".join(f"{name} {metrics[name]:.4f}" for name in METRIC_NAMES)
                  + f"  (n={metrics['n']}, tp={metrics['tp']} fp={metrics['fp']} tn={metrics['tn']} fn={metrics['fn']})")


def cmd_export(args: argparse.Namespace) -> None:
    _quiet_tensorflow()
    from osteo_tf.serving.archive import docker_command, export_run

    export = export_run(args.run, root=args.root, name=args.name, version=args.version, force=args.force)
    card = export.card
    print(f"exported {args.run} → {export.path} (signatures serving_default, serving_tensors; "
          f"threshold {card['threshold']['value']:.6g}; model card {export.path / 'assets' / 'model_card.json'})")
    print(f"inputs: {', '.join(card['signatures']['serving_default']['inputs'])}")
    print(f"serve it with TF Serving:\n  {docker_command(export)}")


def cmd_predict(args: argparse.Namespace) -> None:
    if args.model:
        _quiet_tensorflow()
    from osteo_tf.serving.predict import predict_manifest

    # Default: a local model's card holds the training run's manifest config (column names, sex codes, ROI size).
    result = predict_manifest(args.manifest, args.out, model=args.model, server=args.server, model_name=args.model_name,
                              version=args.version, batch_size=args.batch_size, manifest_config=_manifest_config(args))
    print(f"wrote {len(result)} predictions ({int(result['label'].sum())} positive) to {args.out}")


def _manifest_config(args: argparse.Namespace):
    """The ManifestConfig of ``--manifest-config FILE`` (None without one); errors name the file and key."""
    from osteo_tf.data.manifest import ManifestConfig

    if not getattr(args, "manifest_config", None):
        return None
    return ManifestConfig.from_yaml(args.manifest_config)


VERBOSE_HELP = "Keras progress: 0 none, 1 bars, 2 a line per epoch and TensorFlow's own log lines (hidden otherwise)"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="osteo", description="Osteoporosis screening CNNs from hip and dental radiographs.")
    commands = root.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train image-only, ensemble and covariate-only models on a phantom cohort")
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--n", type=int, help="phantom subjects (default 1200)")
    demo.add_argument("--image-size", type=int, help="pixels (default 48)")
    demo.add_argument("--backbone", help="backbone (default resnet18)")
    demo.add_argument("--epochs", type=int, help="max epochs (default 40)")
    demo.add_argument("--seed", type=int, help="seed (default 0)")
    demo.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help=VERBOSE_HELP)
    demo.set_defaults(handler=cmd_demo)

    train = commands.add_parser("train", help="train one model on a manifest")
    train.add_argument("--manifest", required=True, help="cohort CSV (see README: data contract)")
    train.add_argument("--out", required=True, help="run folder to create (or resume)")
    train.add_argument("--backbone", default="efficientnet_b0", help="backbone name (see README)")
    train.add_argument("--mode", default="ensemble", choices=MODES)
    train.add_argument("--fusion", choices=FUSIONS,
                       help="how the ensemble joins image and covariates: concat (default, the papers'), late (a logit "
                            "per branch, learned weighting) or film (covariates scale and shift the image features)")
    train.add_argument("--aux-loss-weight", type=float,
                       help="ensemble: weight of each branch's own auxiliary loss (default 0: none)")
    train.add_argument("--covariate-dropout", type=float,
                       help="probability of withholding each covariate of a training subject (default 0); > 0 lets "
                            "the model predict with any covariate missing")
    train.add_argument("--image-size", type=int, help="pixels; default: the backbone's paper size")
    train.add_argument("--weights", help="none (default), imagenet, or a .weights.h5 path")
    train.add_argument("--covariates", help="auto (default), hip, dental, or comma-separated columns")
    train.add_argument("--epochs", type=int, help="max epochs (default 100)")
    train.add_argument("--patience", type=int, help="early-stopping patience in epochs (default 20)")
    train.add_argument("--batch-size", type=int, help="batch size per device (default 16); with several GPUs the global batch is this x GPUs")
    train.add_argument("--learning-rate", type=float, help="SGD rate; default by backbone family")
    train.add_argument("--seed", type=int, help="seed for split, initialisation and augmentation (default 0)")
    train.add_argument("--threshold", type=float, help="decision threshold on the probability (default 0.5)")
    train.add_argument("--manifest-config", help="YAML with column names / sex codes (see README)")
    train.add_argument("--intensity", help="per-image normalisation: minmax (default) or percentile:LOW,HIGH, e.g. percentile:1,99")
    train.add_argument("--impute", choices=("none", "median"),
                       help="missing covariates: none (default: an error) or median (training rows, plus a missing indicator)")
    train.add_argument("--allow-exclusions", action="store_true",
                       help="leave invalid manifest rows out (listed in the run's exclusions.csv) instead of stopping")
    train.add_argument("--deterministic", action="store_true", help="seeded TensorFlow op determinism: identical reruns")
    train.add_argument("--cache", choices=("memory", "disk", "none"),
                       help="decoded images between epochs: memory (default, RAM), disk (a cache file under OUT/cache/, "
                            "for cohorts larger than RAM), none (decode every epoch)")
    train.add_argument("--precision", choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"),
                       help="numerics: auto (default: mixed precision on a GPU — bfloat16 on Ampere or later — float32 on "
                            "CPU); the output layer stays float32")
    train.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                       help="XLA-compile the training step (default: on with a GPU, off on CPU)")
    train.add_argument("--force", action="store_true", help="discard an existing run folder")
    train.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help=VERBOSE_HELP)
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="score a finished run on its test split or an external cohort")
    evaluate.add_argument("--run", required=True, help="run folder written by osteo train")
    evaluate.add_argument("--manifest", help="external cohort CSV to score instead of the run's test split")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--without", help="comma-separated covariates to treat as missing in every row (a model "
                                            "trained with --covariate-dropout predicts without them)")
    evaluate.set_defaults(handler=cmd_evaluate)

    experiment = commands.add_parser("experiment", help="run a study grid (backbone x mode x repeat x fold) from a YAML config")
    experiment.add_argument("config", help="a config YAML path, or a packaged config: demo, hip_2020, dental_2022")
    experiment.add_argument("--out", required=True, help="experiment folder to create (or resume)")
    experiment.add_argument("--manifest", help="cohort CSV; replaces the config's cohort")
    experiment.add_argument("--dry-run", action="store_true", help="print the plan and the number of fits, run nothing")
    experiment.add_argument("--estimate", action="store_true",
                            help="with --dry-run: time a few training steps per backbone here and estimate the grid's "
                                 "wall time on 1 and on --devices devices")
    experiment.add_argument("--devices", type=int, default=4, help="devices (GPUs) for --estimate's second figure (default 4)")
    experiment.add_argument("--subjects", type=int, help="cohort size for --estimate when the config names no cohort")
    experiment.add_argument("--shard", default="1/1", help="i/n: run every n-th fit starting at the i-th (1 <= i <= n)")
    experiment.add_argument("--force", action="store_true", help="discard the results of a different config in --out")
    experiment.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2), help=VERBOSE_HELP + ", per fit")
    experiment.add_argument("--executor", default="local", choices=("local", "ray"),
                            help="local: fits one after another here (default); ray: each fit a Ray task (pip install "
                                 "'osteo_tf[ray]'; --out on a file system all nodes share)")
    experiment.add_argument("--address", help="with --executor ray: an existing cluster (auto, HOST:6379); "
                                              "default: start Ray on this machine")
    experiment.add_argument("--gpus-per-fit", help="with --executor ray: 0, 1, 2, … or 1/k to share a GPU (0.5, 0.25); "
                                                   "default 1 if the cluster has GPUs, else 0")
    experiment.add_argument("--cpus-per-fit", type=float, help="with --executor ray: CPUs (TensorFlow threads) per fit (default 1)")
    experiment.add_argument("--max-retries", type=int, help="with --executor ray: reruns of a fit whose worker died (default 3)")
    experiment.set_defaults(handler=cmd_experiment)

    cohort = commands.add_parser("cohort", help="cohort characteristics by class with p-values (hip Table 1 / dental Table 3)")
    cohort.add_argument("manifest", help="cohort CSV")
    cohort.add_argument("--manifest-config", help="YAML with column names / sex codes")
    cohort.add_argument("--out", default=".", help="folder for cohort_table.md and cohort_table.csv (default: .)")
    cohort.set_defaults(handler=cmd_cohort)

    report = commands.add_parser("report", help="statistics, tables and figures of an experiment folder")
    report.add_argument("dir", help="experiment folder written by osteo experiment")
    report.add_argument("--external", help="manifest CSV of an external cohort: score every trained model on it")
    report.add_argument("--paired", action="store_true",
                        help="pair runs by repeat/fold (same splits): paired t-test or Wilcoxon instead of unpaired tests")
    report.set_defaults(handler=cmd_report)

    threshold = commands.add_parser("threshold", help="choose a run's decision threshold on its validation split")
    threshold.add_argument("--run", required=True, help="run folder written by osteo train")
    threshold.add_argument("--target", required=True, help="sensitivity=0.90, specificity=0.80 or youden")
    threshold.set_defaults(handler=cmd_threshold)

    export = commands.add_parser("export", help="export a run as a SavedModel for TF Serving (raw PNG + covariates in)")
    export.add_argument("--run", required=True, help="run folder written by osteo train")
    export.add_argument("--name", default="osteo", help="model name (default osteo)")
    export.add_argument("--version", type=int, help="version number (default: one more than the highest existing)")
    export.add_argument("--root", default="saved_models", help="export root (default saved_models/)")
    export.add_argument("--force", action="store_true", help="replace an existing version")
    export.set_defaults(handler=cmd_export)

    predict = commands.add_parser("predict", help="predict a manifest with an exported model or a TF Serving server")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="SavedModel version folder, e.g. saved_models/osteo/1")
    source.add_argument("--server", help="TF Serving REST address, e.g. http://localhost:8501")
    predict.add_argument("--model-name", default="osteo", help="model name on the server (default osteo)")
    predict.add_argument("--version", type=int, help="model version on the server (default: the latest)")
    predict.add_argument("--manifest", required=True, help="CSV with image paths and the covariates (no labels needed)")
    predict.add_argument("--out", required=True, help="CSV to write: image, patient_id, probability, label")
    predict.add_argument("--batch-size", type=int, default=32, help="instances per request (default 32)")
    predict.add_argument("--manifest-config",
                         help="YAML with column names / sex codes / ROI size (default with --model: the training "
                              "run's, from the model card)")
    predict.set_defaults(handler=cmd_predict)

    explain = commands.add_parser("explain", help="Grad-CAM / Guided Grad-CAM figures for images scored by a finished run")
    explain.add_argument("--run", required=True, help="run folder written by osteo train (image-only or ensemble)")
    explain.add_argument("--images", nargs="+", help="image files; label, ROI and covariates from their manifest row")
    explain.add_argument("--manifest", help="cohort CSV: rows for --images, or examples to pick (default: the run's manifest)")
    explain.add_argument("--limit", type=int, default=8, help="with --manifest alone: at most N images, half per class (default 8)")
    explain.add_argument("--method", default="gradcam", choices=("gradcam", "gradcam++"), help="class activation map (default gradcam)")
    explain.add_argument("--target", default="osteoporosis", choices=("osteoporosis", "non_osteoporosis", "predicted"),
                         help="class whose score is explained (default osteoporosis)")
    explain.add_argument("--layer", help="feature map to explain (default: the backbone's last, see osteo backbones)")
    explain.add_argument("--out", help="output folder (default RUN/explain)")
    explain.add_argument("--mask-column",
                         help="manifest column of region masks (the phantom's 'mask', or your own annotations, same "
                              "pixel size as the image, nonzero inside): adds each map's mass inside its mask to explain.csv")
    explain.set_defaults(handler=cmd_explain)

    data = commands.add_parser("data", help="cohort utilities").add_subparsers(dest="data_command", required=True)
    synth = data.add_parser("synth", help="write a synthetic phantom cohort (PNG images, masks, manifest.csv)")
    synth.add_argument("--kind", default="hip", choices=("hip", "dental"))
    synth.add_argument("--n", type=int, default=500)
    synth.add_argument("--out", required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--image-size", type=int, default=128)
    synth.add_argument("--informative-region", choices=("bone", "head_neck"), default="bone",
                       help="where the T-score shows and what the masks mark: the whole bone, or (hip) only the "
                            "femoral head and neck's trabecular pattern, for Grad-CAM localisation checks")
    synth.add_argument("--information", choices=PHANTOM_INFORMATION, default=DEFAULT_INFORMATION,
                       help="the label's information split: image_led (default: the image is the stronger input) or "
                            "balanced (image and covariates about equally informative); cohort.json records the split")
    synth.set_defaults(handler=cmd_synth)
    check = data.add_parser("check", help="validate a manifest and its images; list every row that would be excluded")
    check.add_argument("manifest")
    check.add_argument("--manifest-config", help="YAML with column names / sex codes / ROI size")
    check.add_argument("--exclusions",
                       help="CSV to write the excluded rows to (line, image, patient_id, column, reason, detail; "
                            "default: MANIFEST_exclusions.csv beside the manifest)")
    check.add_argument("--allow-exclusions", action="store_true", help="exit 0 even when rows are invalid")
    check.add_argument("--impute", choices=("none", "median"), default="none",
                       help="median: empty covariate cells are not errors (they will be imputed in training)")
    check.set_defaults(handler=cmd_check)

    backbones = commands.add_parser("backbones", help="list the backbone registry (sizes, learning rates, weights)")
    backbones.set_defaults(handler=cmd_backbones)
    weights = commands.add_parser("weights", help="backbone weight files").add_subparsers(dest="weights_command", required=True)
    convert = weights.add_parser("convert", help="convert a torchvision state_dict (.pth) to a Keras .weights.h5 (needs torch)")
    convert.add_argument("--arch", required=True, choices=("googlenet", "resnet18", "resnet34", "resnet50", "resnet152"))
    convert.add_argument("--from", dest="source_format", default="torchvision", choices=("torchvision",),
                         help="checkpoint format (default torchvision)")
    convert.add_argument("checkpoint", help="FILE.pth holding the state_dict")
    convert.add_argument("--out", required=True, help="FILE.weights.h5 to write")
    convert.set_defaults(handler=cmd_weights_convert)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.handler(args)
    except OsteoInputError as error:
        print(f"osteo: error: {error}", file=sys.stderr)
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
