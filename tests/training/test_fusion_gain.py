"""Known truth: on a phantom where image and covariates carry independent information, the
default ensemble beats both single-input models trained the same way.

A balanced-information hip phantom (``information="balanced"``: the image's latent and the
covariates about equally informative; together clearly more, see cohort.json's
``information_split``), 32 px, ResNet-18 from random initialisation through ``train()``; the
three models are scored on a separate 600-subject phantom of another seed (``evaluate`` with
an external manifest), so that the comparison is not at the mercy of a 30-subject test split.
"""

import json

import pytest

from osteo_tf.data.synthetic import make_cohort
from osteo_tf.evaluation.evaluate import evaluate
from osteo_tf.training.train import train

SETTINGS = dict(
    backbone="resnet18", image_size=32, epochs=15, patience=5, batch_size=32, learning_rate=0.01, seed=0, verbose=0
)
MARGIN = 0.02  # AUC the ensemble must gain over the better single-input model


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    root = tmp_path_factory.mktemp("known_truth")
    manifest = make_cohort("hip", 360, root / "train", seed=4, image_size=32, information="balanced")
    external = make_cohort("hip", 600, root / "external", seed=5, image_size=32, information="balanced")
    truth = json.loads((root / "external" / "cohort.json").read_text())["information_split"]
    aucs = {}
    for mode in ("image_only", "covariates_only", "ensemble"):
        run = train(manifest, root / mode, mode=mode, **SETTINGS)
        aucs[mode] = evaluate(run.path, manifest=external)["auc"]
    print("known-truth AUCs", aucs, truth)  # shown with pytest -s
    return aucs, truth


def test_default_ensemble_beats_both_single_input_models(scores):
    aucs, truth = scores
    assert aucs["ensemble"] > max(aucs["image_only"], aucs["covariates_only"]) + MARGIN, aucs
    # and stays below what the latent and the covariates together allow (the phantom's bound)
    assert aucs["ensemble"] < truth["both"] + 0.02, (aucs, truth)
