"""Tests of osteo_tf.data.synthetic: determinism, manifest contract, masks, calibration."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.ndimage import distance_transform_edt
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from osteo_tf.data import synthetic
from osteo_tf.data.synthetic import COHORT_TABLES, draw_subjects, make_cohort, render_images
from osteo_tf.errors import OsteoInputError

HIP_COLUMNS = [
    "image", "mask", "patient_id", "age", "sex", "bmi",
    "hip_fracture_history", "t_score", "label",
]  # fmt: skip
DENTAL_COLUMNS = [c for c in HIP_COLUMNS if c != "hip_fracture_history"]
CALIBRATION_N = 2000
CALIBRATION_SIZE = 64


# --------------------------------------------------------------------------- helpers


def _cohort_bytes(manifest: Path) -> dict[str, bytes]:
    """Bytes of every file of a cohort, keyed by path relative to the cohort folder."""
    root = manifest.parent
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def _covariates(frame: pd.DataFrame, kind: str) -> np.ndarray:
    """Age, BMI, female, (fracture history): (n, 3|4) float."""
    cols = [frame["age"], frame["bmi"], (frame["sex"] == "F").astype(float)]
    if kind == "hip":
        cols.append((frame["hip_fracture_history"] == "yes").astype(float))
    return np.column_stack(cols).astype(float)


def _depth_profile_features(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Hand-crafted image features: (n, 6) mean intensity by depth from the mask edge.

    Intensity is normalised per image (0 = median outside the mask, 1 = 95th percentile
    inside) to cancel exposure and contrast; the profile over depth bins (in pixels at
    64 px) measures cortical thickness and trabecular density.
    """
    bins = [0.5, 2.5, 4.5, 6.5, 9.5, 14.5, np.inf]
    feats = []
    for img, mask in zip(images.astype(float), masks > 0):
        depth = distance_transform_edt(mask)
        background = np.median(img[~mask])
        z = (img - background) / max(np.percentile(img[mask], 95) - background, 1.0)
        row = []
        for lo, hi in zip(bins[:-1], bins[1:]):
            sel = (depth >= lo) & (depth < hi)
            row.append(z[sel].mean() if sel.any() else 0.0)
        feats.append(row)
    return np.asarray(feats)


def _cv_auc(features: np.ndarray, labels: np.ndarray) -> float:
    """5-fold cross-validated ROC AUC of a standardised logistic regression."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    proba = cross_val_predict(model, features, labels, cv=folds, method="predict_proba")
    return float(roc_auc_score(labels, proba[:, 1]))


@pytest.fixture(scope="module")
def calibration_cohorts(tmp_path_factory) -> dict[str, dict]:
    """2,000-subject cohorts at 64 px written to disk and read back."""
    out = {}
    for kind in synthetic.KINDS:
        root = tmp_path_factory.mktemp(kind)
        manifest = make_cohort(kind, CALIBRATION_N, root, seed=0, image_size=CALIBRATION_SIZE)
        frame = pd.read_csv(manifest)
        images = np.stack([np.asarray(Image.open(root / p)) for p in frame["image"]])
        masks = np.stack([np.asarray(Image.open(root / p)) for p in frame["mask"]])
        out[kind] = {"frame": frame, "images": images, "masks": masks}
    return out


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_same_seed_gives_byte_identical_files(tmp_path, kind):
    first = make_cohort(kind, 12, tmp_path / "a", seed=3, image_size=40)
    second = make_cohort(kind, 12, tmp_path / "b", seed=3, image_size=40)
    a, b = _cohort_bytes(first), _cohort_bytes(second)
    assert len(a) == 2 * 12 + 2  # images, masks, cohort.json, manifest.csv
    assert a == b


def test_different_seed_gives_different_files(tmp_path):
    a = _cohort_bytes(make_cohort("hip", 12, tmp_path / "a", seed=1, image_size=40))
    b = _cohort_bytes(make_cohort("hip", 12, tmp_path / "b", seed=2, image_size=40))
    assert a["manifest.csv"] != b["manifest.csv"]
    assert a["images/hip_00001.png"] != b["images/hip_00001.png"]


def test_no_temporary_files_left_behind(tmp_path):
    make_cohort("dental", 10, tmp_path, seed=0, image_size=32)
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


# --------------------------------------------------------------------------- manifest


@pytest.mark.parametrize(("kind", "columns"), [("hip", HIP_COLUMNS), ("dental", DENTAL_COLUMNS)])
def test_manifest_columns_and_formats(tmp_path, kind, columns):
    manifest = make_cohort(kind, 20, tmp_path, seed=0, image_size=32)
    assert manifest == tmp_path / "manifest.csv"
    frame = pd.read_csv(manifest, dtype=str)
    assert list(frame.columns) == columns
    assert frame["image"].str.fullmatch(rf"images/{kind}_\d{{5}}\.png").all()
    assert frame["mask"].str.fullmatch(rf"masks/{kind}_\d{{5}}\.png").all()
    assert frame["patient_id"].str.fullmatch(r"P\d{5}").all()
    assert frame["patient_id"].is_unique
    assert frame["age"].str.fullmatch(r"\d+\.\d").all()
    assert frame["bmi"].str.fullmatch(r"\d+\.\d").all()
    assert frame["t_score"].str.fullmatch(r"-?\d\.\d\d").all()
    assert set(frame["sex"]) <= {"F", "M"}
    assert set(frame["label"]) <= {"0", "1"}
    if kind == "hip":
        assert set(frame["hip_fracture_history"]) <= {"yes", "no"}


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_label_consistent_with_t_score(kind):
    frame = draw_subjects(kind, 5000, np.random.default_rng(0))
    assert ((frame["t_score"] <= -2.5) == (frame["label"] == 1)).all()
    # Values sitting on the threshold after rounding are the risky ones; there must be some
    # near it for the check above to mean anything.
    assert (frame["t_score"].between(-2.6, -2.4)).sum() > 20
    assert frame["t_score"].between(-5.0, 2.0).all()
    assert np.allclose(frame["t_score"], frame["t_score"].round(2))


def test_written_labels_match_written_t_scores(calibration_cohorts):
    for cohort in calibration_cohorts.values():
        frame = cohort["frame"]
        assert ((frame["t_score"] <= -2.5).astype(int) == frame["label"]).all()


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_class_counts_are_exact_paper_proportions(kind):
    counts = COHORT_TABLES[kind]["counts"]
    prevalence = counts["osteoporosis"] / sum(counts.values())
    for n in (10, 333, 1000):
        labels = draw_subjects(kind, n, np.random.default_rng(n))["label"]
        assert labels.sum() == round(n * prevalence)
        assert 0 < labels.sum() < n


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_covariates_follow_the_cohort_table(kind):
    frame = draw_subjects(kind, 20000, np.random.default_rng(1))
    for label, cls in ((1, "osteoporosis"), (0, "non_osteoporosis")):
        table, part = COHORT_TABLES[kind][cls], frame[frame["label"] == label]
        assert abs((part["sex"] == "F").mean() - table["female"]) < 0.03
        for col in ("age", "bmi"):
            mean, sd, lo, hi = table[col]
            assert part[col].between(lo, hi).all()
            # Truncation moves the mean a little off the parent normal's.
            assert abs(part[col].mean() - mean) < 0.6, col
            assert 0.75 * sd < part[col].std() < 1.05 * sd, col
        if kind == "hip":
            rate = (part["hip_fracture_history"] == "yes").mean()
            assert abs(rate - table["hip_fracture_history"]) < 0.03
    assert ("hip_fracture_history" in frame.columns) == (kind == "hip")


def test_cohort_json_records_parameters(tmp_path):
    make_cohort("hip", 11, tmp_path, seed=7, image_size=33)
    params = json.loads((tmp_path / "cohort.json").read_text())
    assert (params["kind"], params["n"], params["seed"], params["image_size"]) == ("hip", 11, 7, 33)
    assert params["n_osteoporosis"] + params["n_non_osteoporosis"] == 11
    age = params["distributions"]["osteoporosis"]["age"]
    assert (age["mean"], age["sd"], age["min"], age["max"]) == (82.7, 8.3, 60.0, 100.0)
    assert params["distributions"]["non_osteoporosis"]["bmi"]["sd"] == 3.5
    assert params["sigma_bio"] == synthetic.SIGMA_BIO
    assert (params["informative_region"], params["mask"]) == ("bone", synthetic.MASK_SEMANTICS["bone"])


def test_information_split_is_measured_and_balanced_moves_it_to_the_covariates(tmp_path):
    image_led = make_cohort("hip", 600, tmp_path / "a", seed=2, image_size=32)
    balanced = make_cohort("hip", 600, tmp_path / "b", seed=2, image_size=32, information="balanced")
    split = {
        name: json.loads((m.parent / "cohort.json").read_text())
        for name, m in (("image_led", image_led), ("balanced", balanced))
    }
    assert split["balanced"]["sigma_bio"] == synthetic.INFORMATION_SIGMA["balanced"] > synthetic.SIGMA_BIO
    a, b = split["image_led"]["information_split"], split["balanced"]["information_split"]
    # Same subjects and covariates; only the image's latent is noisier.
    assert a["covariates"] == b["covariates"]
    assert (
        pd.read_csv(image_led)
        .drop(columns=["image", "mask"])
        .equals(pd.read_csv(balanced).drop(columns=["image", "mask"]))
    )
    assert a["image_latent"] > a["covariates"] + 0.04  # image-led: the image is the stronger input
    assert abs(b["image_latent"] - b["covariates"]) < 0.05  # balanced: comparable
    for values in (a, b):  # independent given the class: together above either alone
        assert values["both"] > max(values["covariates"], values["image_latent"]) + 0.02
    with pytest.raises(OsteoInputError, match="information must be one of"):
        make_cohort("hip", 20, tmp_path / "c", information="equal")
    with pytest.raises(OsteoInputError, match="head_neck variant renders the T-score itself"):
        make_cohort("hip", 20, tmp_path / "d", informative_region="head_neck", information="balanced")


def test_head_neck_cohort_records_its_region(tmp_path):
    manifest = make_cohort("hip", 12, tmp_path, seed=1, image_size=48, informative_region="head_neck")
    params = json.loads((tmp_path / "cohort.json").read_text())
    assert params["informative_region"] == "head_neck" and "head and neck" in params["mask"]
    assert list(pd.read_csv(manifest).columns) == HIP_COLUMNS


# --------------------------------------------------------------------------- images, masks


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_images_and_masks_on_disk(tmp_path, kind):
    manifest = make_cohort(kind, 10, tmp_path, seed=0, image_size=48)
    for row in pd.read_csv(manifest).itertuples():
        image, mask = Image.open(tmp_path / row.image), Image.open(tmp_path / row.mask)
        assert (image.mode, image.size) == ("L", (48, 48))
        assert (mask.mode, mask.size) == ("L", (48, 48))
        pixels, region = np.asarray(image), np.asarray(mask)
        assert set(np.unique(region)) == {0, 255}
        assert 0.1 < (region > 0).mean() < 0.5  # non-empty, a minority of the image
        assert pixels.std() > 5


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_mask_follows_the_rendered_bone(kind):
    images, masks = render_images(kind, np.linspace(-5, 2, 40), 64, np.random.default_rng(5))
    for img, mask in zip(images.astype(float), masks > 0):
        # Rotation/shift/scale are applied to the mask too: bone is brighter than its surround,
        # right up to the mask edge.
        edge_in = mask & (distance_transform_edt(mask) <= 2)
        edge_out = ~mask & (distance_transform_edt(~mask) <= 2)
        assert img[edge_in].mean() - img[edge_out].mean() > 20
    # Masks move with the nuisance transform.
    assert len({m.tobytes() for m in masks}) == len(masks)


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_bone_gets_brighter_with_higher_quality(kind):
    # Thicker cortex and denser trabeculae both raise the bone's mean brightness above the
    # surrounding soft tissue (gray levels, averaged over 30 nuisance draws).
    rng = np.random.default_rng(11)
    contrasts = []
    for quality in (-4.5, -3.0, -1.5, 0.0, 1.5):
        images, masks = render_images(kind, np.full(30, quality), 64, rng)
        pairs = zip(images.astype(float), masks > 0)
        contrasts.append(np.mean([img[m].mean() - np.median(img[~m]) for img, m in pairs]))
    assert np.all(np.diff(contrasts) > 3), contrasts


def test_render_functions_return_uint8_pairs():
    image, mask = synthetic.render_hip(-2.0, 50, np.random.default_rng(0))
    assert image.shape == mask.shape == (50, 50)
    assert image.dtype == mask.dtype == np.uint8


# --------------------------------------------------------------------------- calibration


@pytest.mark.parametrize(("kind", "lo", "hi"), [("hip", 0.78, 0.84), ("dental", 0.77, 0.82)])
def test_covariate_only_auc_matches_the_papers_tables(calibration_cohorts, kind, lo, hi):
    frame = calibration_cohorts[kind]["frame"]
    auc = _cv_auc(_covariates(frame, kind), frame["label"].to_numpy())
    assert lo <= auc <= hi, auc


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_image_beats_covariates_and_combination_beats_image(calibration_cohorts, kind):
    cohort = calibration_cohorts[kind]
    labels = cohort["frame"]["label"].to_numpy()
    image = _depth_profile_features(cohort["images"], cohort["masks"])
    covariates = _covariates(cohort["frame"], kind)
    auc_cov = _cv_auc(covariates, labels)
    auc_img = _cv_auc(image, labels)
    auc_both = _cv_auc(np.column_stack([image, covariates]), labels)
    assert 0.84 <= auc_img <= 0.90, auc_img  # informative, but not a perfect classifier
    assert auc_img > auc_cov + 0.05, (auc_img, auc_cov)
    assert auc_both > auc_img + 0.02, (auc_both, auc_img)


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"kind": "knee"}, "kind"),
        ({"n": 9}, "n"),
        ({"n": 10.5}, "n"),
        ({"image_size": 31}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"informative_region": "neck"}, "informative_region"),
        ({"kind": "dental", "informative_region": "head_neck"}, "informative_region"),
    ],
)
def test_bad_arguments_raise_osteo_input_error(tmp_path, kwargs, name):
    args = {"kind": "hip", "n": 10, "out_dir": tmp_path, "seed": 0, "image_size": 32} | kwargs
    with pytest.raises(OsteoInputError, match=rf"^{re.escape(name)} "):
        make_cohort(**args)
    assert not (tmp_path / "manifest.csv").exists()


# --------------------------------------------------------------------------- head-and-neck variant


def _gradient_energy_across_neck(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image, the share of gradient energy inside the mask that points across the neck axis; (n,)."""
    (x0, y0), (x1, y1) = synthetic.NECK_AXIS
    axis = np.arctan2(y1 - y0, x1 - x0)
    shares = []
    for img, mask in zip(images.astype(float), masks > 0):
        gy, gx = np.gradient(img)
        along = gx * np.cos(axis) + gy * np.sin(axis)
        across = -gx * np.sin(axis) + gy * np.cos(axis)
        shares.append((across[mask] ** 2).sum() / ((across[mask] ** 2).sum() + (along[mask] ** 2).sum()))
    return np.array(shares)


def test_head_neck_variant_shows_quality_only_as_trabecular_orientation():
    rng = np.random.default_rng(3)
    low, low_masks = render_images("hip", np.full(30, -4.0), 64, rng, informative_region="head_neck")
    high, high_masks = render_images("hip", np.full(30, 1.0), 64, rng, informative_region="head_neck")
    # Low quality: strands along the neck, so the gradients point across it; high: the reverse.
    across_low = _gradient_energy_across_neck(low, low_masks)
    across_high = _gradient_energy_across_neck(high, high_masks)
    assert across_low.min() > across_high.max(), (across_low, across_high)
    # Neither the region nor the rest of the image gets brighter or more contrasted with quality.
    for region in (True, False):
        stats = [
            np.array([(img[(m > 0) == region].mean(), img[(m > 0) == region].std()) for img, m in zip(imgs, masks)])
            for imgs, masks in ((low, low_masks), (high, high_masks))
        ]
        mean_gap, sd_gap = np.abs(stats[0].mean(axis=0) - stats[1].mean(axis=0))
        assert mean_gap < 4 and sd_gap < 3, (region, stats[0].mean(axis=0), stats[1].mean(axis=0))


def test_head_neck_mask_is_the_upper_bone_only():
    images, masks = render_images(
        "hip", np.linspace(-4, 1, 20), 64, np.random.default_rng(4), informative_region="head_neck"
    )
    share = (masks > 0).mean(axis=(1, 2))
    assert np.all((share > 0.09) & (share < 0.2)), share  # a fraction of the femur's ~1/3
    rows, cols = np.nonzero(masks.max(axis=0))
    assert rows.max() < 40 and cols.max() < 48  # head and neck: the upper left, not the shaft
    for img, mask in zip(images.astype(float), masks > 0):
        outside = ~mask & (distance_transform_edt(~mask) <= 2) & (np.arange(64)[:, None] < 20)
        assert img[mask].mean() - np.median(img[outside]) > 20  # the head's edge is the bone's edge
