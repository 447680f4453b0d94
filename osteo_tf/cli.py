"""``osteo`` command line: parses arguments and calls the library; nothing else lives here.

TensorFlow is imported only inside the commands that need it, so ``osteo --help`` and the
data commands answer at once. A user mistake (:class:`OsteoInputError`) prints its message
and exits 2 without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from osteo_tf.errors import OsteoInputError


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def cmd_demo(args: argparse.Namespace) -> None:
    _quiet_tensorflow()
    from osteo_tf.demo import DemoSettings, run_demo

    settings = DemoSettings(**{k: v for k, v in vars(args).items() if k in DemoSettings.__dataclass_fields__ and v is not None})
    run_demo(args.out, settings, verbose=args.verbose)


def cmd_train(args: argparse.Namespace) -> None:
    _quiet_tensorflow()
    from osteo_tf.data.manifest import ManifestConfig
    from osteo_tf.training.config import TrainConfig
    from osteo_tf.training.train import train

    options = {k: getattr(args, k) for k in (
        "backbone", "mode", "image_size", "weights", "covariates", "epochs", "patience", "batch_size",
        "learning_rate", "seed", "threshold") if getattr(args, k) is not None}
    manifest_config = _manifest_config(args)
    train(args.manifest, args.out, TrainConfig(**options), manifest_config=manifest_config, force=args.force, verbose=args.verbose)


def cmd_evaluate(args: argparse.Namespace) -> None:
    _quiet_tensorflow()
    from osteo_tf.evaluation.evaluate import evaluate
    from osteo_tf.evaluation.metrics import METRIC_NAMES

    metrics = evaluate(args.run, manifest=args.manifest, split=args.split)
    where = f"external cohort {args.manifest}" if args.manifest else f"{args.split} split"
    print(f"{args.run} on the {where} (n={metrics['n']}, threshold {metrics['threshold']}):")
    for name in METRIC_NAMES:
        print(f"  {name:12} {metrics[name]:.4f}")
    print(f"  confusion    tp={metrics['tp']} fp={metrics['fp']} tn={metrics['tn']} fn={metrics['fn']}")


def cmd_synth(args: argparse.Namespace) -> None:
    from osteo_tf.data.synthetic import make_cohort

    manifest = make_cohort(args.kind, args.n, args.out, seed=args.seed, image_size=args.image_size)
    print(f"wrote a synthetic {args.kind} cohort of {args.n} subjects: {manifest}")


def cmd_check(args: argparse.Namespace) -> None:
    from osteo_tf.data.manifest import read_manifest

    cohort = read_manifest(args.manifest, _manifest_config(args))
    positives = int(cohort["label"].sum())
    print(f"{args.manifest}: {len(cohort)} valid rows, {cohort['patient_id'].nunique()} patients, "
          f"{positives} osteoporosis / {len(cohort) - positives} non-osteoporosis")


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


def _manifest_config(args: argparse.Namespace):
    from osteo_tf.data.manifest import ManifestConfig

    if not getattr(args, "manifest_config", None):
        return None
    import yaml

    path = Path(args.manifest_config)
    if not path.is_file():
        raise OsteoInputError(f"--manifest-config {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise OsteoInputError(f"--manifest-config {path} is not valid YAML: {error}") from None
    return ManifestConfig.from_dict(values)


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
    demo.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras progress: 1 bars, 2 a line per epoch")
    demo.set_defaults(handler=cmd_demo)

    train = commands.add_parser("train", help="train one model on a manifest")
    train.add_argument("--manifest", required=True, help="cohort CSV (see README: data contract)")
    train.add_argument("--out", required=True, help="run folder to create (or resume)")
    train.add_argument("--backbone", default="efficientnet_b0", help="backbone name (see README)")
    train.add_argument("--mode", default="ensemble", choices=("image_only", "ensemble", "covariates_only"))
    train.add_argument("--image-size", type=int, help="pixels; default: the backbone's paper size")
    train.add_argument("--weights", help="none (default), imagenet, or a .weights.h5 path")
    train.add_argument("--covariates", help="auto (default), hip, dental, or comma-separated columns")
    train.add_argument("--epochs", type=int, help="max epochs (default 100)")
    train.add_argument("--patience", type=int, help="early-stopping patience in epochs (default 20)")
    train.add_argument("--batch-size", type=int, help="batch size (default 16)")
    train.add_argument("--learning-rate", type=float, help="SGD rate; default by backbone family")
    train.add_argument("--seed", type=int, help="seed for split, initialisation and augmentation (default 0)")
    train.add_argument("--threshold", type=float, help="decision threshold on the probability (default 0.5)")
    train.add_argument("--manifest-config", help="YAML with column names / sex codes (see README)")
    train.add_argument("--force", action="store_true", help="discard an existing run folder")
    train.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="score a finished run on its test split or an external cohort")
    evaluate.add_argument("--run", required=True, help="run folder written by osteo train")
    evaluate.add_argument("--manifest", help="external cohort CSV to score instead of the run's test split")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.set_defaults(handler=cmd_evaluate)

    data = commands.add_parser("data", help="cohort utilities").add_subparsers(dest="data_command", required=True)
    synth = data.add_parser("synth", help="write a synthetic phantom cohort (PNG images, masks, manifest.csv)")
    synth.add_argument("--kind", default="hip", choices=("hip", "dental"))
    synth.add_argument("--n", type=int, default=500)
    synth.add_argument("--out", required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--image-size", type=int, default=128)
    synth.set_defaults(handler=cmd_synth)
    check = data.add_parser("check", help="validate a manifest and its images")
    check.add_argument("manifest")
    check.add_argument("--manifest-config", help="YAML with column names / sex codes")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
