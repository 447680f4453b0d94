"""Branch balance at the fusion layer: the project's head against the papers' literal head.

What it measures (TensorFlow backend, random initialisation, no training)
------------------------------------------------------------------------
For each BACKBONE:SIZE (default the papers' sizes of one backbone per family), two
ensemble models on the same backbone weights and the same batch of phantom images and
encoded covariates (``--n`` hip phantom subjects, labels from the phantom):

- ``project``: ``osteo_tf.models.build_model(backbone, "ensemble", size)`` — each branch
  batch-normalised before the ``Concatenate``, dropout on the image features.
- ``literal``: the papers' head as first written here — pooled image features and the
  two-layer ReLU perceptron concatenated as they are, then Dense(64) + ReLU and the output.

Reported per model, in training mode (as the first SGD step sees it): mean |x| of the image
and of the covariate features at the fusion input, their shares of the fusion layer's
pre-activation (‖W_img·x_img‖ / ‖W_cov·x_cov‖), and the gradient norm of the binary
cross-entropy with respect to each branch's own weights (image: the backbone's; covariates:
the perceptron's) with their ratio, and each relative to the norm of the branch's weights
(‖∇w‖ / ‖w‖: how fast SGD moves the branch for its size) with that ratio. A large ratio
means the covariate branch barely learns while the image branch moves.

Prints one JSON line. ~1 min on 2 CPU cores for the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

DEFAULT = "resnet18:224,resnet50:224,googlenet:224,efficientnet_b3:300"


def literal_head(project, feature_layer: str, covariate_dim: int):
    """The papers' head without the project's balancing, on the project model's own backbone
    layers (shared, so the same weights): GAP ‖ perceptron → Dense → sigmoid."""
    import keras
    from keras import layers

    from osteo_tf.models.heads import COVARIATE_UNITS, FUSION_UNITS

    covariates = keras.Input((covariate_dim,), name="covariates")
    image_input = project.input["image"]
    x = covariates
    for index, width in enumerate(COVARIATE_UNITS, start=1):
        x = layers.Dense(width, activation="relu", name=f"covariate_dense{index}")(x)
    image = layers.GlobalAveragePooling2D(name="image_features")(project.get_layer(feature_layer).output)
    fused = layers.Concatenate(name="fusion")([image, x])
    hidden = layers.Dense(FUSION_UNITS, activation="relu", name="fusion_dense")(fused)
    output = layers.Dense(1, activation="sigmoid", name="probability")(hidden)
    return keras.Model({"image": image_input, "covariates": covariates}, output)


def measure(model, inputs: dict, labels, image_dim: int) -> dict:
    import numpy as np
    import tensorflow as tf

    fusion = model.get_layer("fusion")
    import keras

    probe = keras.Model(model.input, [fusion.input[0], fusion.input[1], model.output])
    dense = model.get_layer("fusion_dense")
    covariate_names = {
        w.path for layer in model.layers if layer.name.startswith("covariate_") for w in layer.trainable_weights
    }
    head_names = {w.path for name in ("fusion_dense", "probability") for w in model.get_layer(name).trainable_weights}
    with tf.GradientTape() as tape:
        image, covariates, probability = probe(inputs, training=True)
        loss = keras.losses.binary_crossentropy(labels, probability)
        loss = tf.reduce_mean(loss)
    weights = model.trainable_weights
    grads = tape.gradient(loss, weights)
    norm, size = {"image": 0.0, "covariates": 0.0}, {"image": 0.0, "covariates": 0.0}
    for weight, grad in zip(weights, grads):
        if grad is None or weight.path in head_names:
            continue
        branch = "covariates" if weight.path in covariate_names else "image"
        norm[branch] += float(tf.reduce_sum(grad * grad))
        size[branch] += float(tf.reduce_sum(weight * weight))
    kernel = dense.kernel.numpy()
    image_part = np.linalg.norm(np.asarray(image) @ kernel[:image_dim], axis=1).mean()
    covariate_part = np.linalg.norm(np.asarray(covariates) @ kernel[image_dim:], axis=1).mean()
    g_image, g_cov = norm["image"] ** 0.5, norm["covariates"] ** 0.5
    r_image, r_cov = g_image / size["image"] ** 0.5, g_cov / size["covariates"] ** 0.5
    return {
        "image_abs_mean": round(float(np.abs(image).mean()), 4),
        "covariate_abs_mean": round(float(np.abs(covariates).mean()), 4),
        "preactivation_image_to_covariate": round(float(image_part / max(covariate_part, 1e-12)), 2),
        "grad_norm_image": round(g_image, 5),
        "grad_norm_covariates": round(g_cov, 6),
        "grad_ratio_image_to_covariate": round(g_image / max(g_cov, 1e-12), 1),
        "relative_grad_image": round(r_image, 5),
        "relative_grad_covariates": round(r_cov, 6),
        "relative_grad_ratio": round(r_image / max(r_cov, 1e-12), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=DEFAULT, help=f"BACKBONE:SIZE,... (default {DEFAULT})")
    parser.add_argument("--n", type=int, default=16, help="phantom subjects in the batch (default 16, at least 10)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        configs = [(name, int(size)) for name, size in (item.split(":") for item in args.configs.split(","))]
    except ValueError:
        parser.error(f"--configs must be BACKBONE:SIZE,..., got {args.configs!r}")
    if args.n < 10:
        parser.error(f"--n must be at least 10 (the phantom's minimum), got {args.n}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    from osteo_tf.data.covariates import CovariateEncoder
    from osteo_tf.data.manifest import read_manifest
    from osteo_tf.data.pipeline import load_image
    from osteo_tf.data.synthetic import make_cohort
    from osteo_tf.models import build_model, get_backbone_spec, normalize_images

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, size in configs:
            keras.utils.set_random_seed(args.seed)
            manifest = make_cohort("hip", args.n, Path(folder) / f"{name}_{size}", seed=args.seed, image_size=size)
            cohort = read_manifest(manifest)
            covariates = (
                CovariateEncoder.for_columns(("age", "bmi", "sex", "hip_fracture_history"))
                .fit(cohort)
                .transform(cohort)
            )
            images = normalize_images(
                np.stack([load_image(p, None, size) for p in cohort["image"]]), get_backbone_spec(name)
            )
            inputs = {"image": images, "covariates": covariates}
            labels = cohort["label"].to_numpy(dtype="float32")[:, None]
            project = build_model(name, "ensemble", size, covariate_dim=covariates.shape[1])
            literal = literal_head(project, get_backbone_spec(name).feature_layer, covariates.shape[1])
            channels = get_backbone_spec(name).feature_channels
            results[f"{name}:{size}"] = {
                "project": measure(project, inputs, labels, channels),
                "literal": measure(literal, inputs, labels, channels),
            }
            keras.utils.clear_session(free_memory=True)
    print(json.dumps({"bench": "fusion_balance", "n": args.n, "seed": args.seed, "configs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
