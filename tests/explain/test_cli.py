"""``osteo explain``: figures written as valid PNGs, covariates from the manifest, clear errors."""

import shutil

import pandas as pd
import pytest
from PIL import Image

from osteo_tf.cli import main
from osteo_tf.training.train import train

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory, phantom_cohort):
    """A tiny ensemble run (32 px, 1 epoch): the figures need a run, not a good model."""
    root = tmp_path_factory.mktemp("explain_cli")
    manifest = phantom_cohort("dental", 40, seed=4, image_size=32)
    train(
        manifest, root / "run", backbone="resnet18", mode="ensemble", image_size=32, epochs=1, batch_size=16, verbose=0
    )
    return root / "run", manifest


def assert_png(path):
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100


def test_explain_manifest_writes_figures_grid_and_table(ensemble_run, tmp_path, capsys):
    run, manifest = ensemble_run
    assert (
        main(["explain", "--run", str(run), "--manifest", str(manifest), "--limit", "4", "--out", str(tmp_path / "x")])
        == 0
    )
    table = pd.read_csv(tmp_path / "x" / "explain.csv")
    assert len(table) == 4 and sorted(table["label"]) == [0, 0, 1, 1]  # half per class
    assert table["probability"].between(0, 1).all()
    for name in table["figure"]:
        assert_png(tmp_path / "x" / name)
    assert_png(tmp_path / "x" / "grid.png")
    assert "p(osteoporosis)" in capsys.readouterr().out
    assert not list((tmp_path / "x").glob(".*tmp*"))  # written atomically


def test_explain_images_take_covariates_from_the_run_manifest(ensemble_run):
    run, manifest = ensemble_run
    image = manifest.parent / "images" / "dental_00003.png"
    assert main(["explain", "--run", str(run), "--images", str(image)]) == 0
    table = pd.read_csv(run / "explain" / "explain.csv")
    assert table["label"].notna().all()
    assert_png(run / "explain" / "dental_00003.png")


def test_explain_errors_exit_2_naming_the_problem(ensemble_run, tmp_path, capsys):
    run, manifest = ensemble_run
    assert main(["explain", "--run", str(run), "--images", str(tmp_path / "nope.png")]) == 2
    assert "nope.png" in capsys.readouterr().err
    stray = tmp_path / "stray.png"
    shutil.copy(manifest.parent / "images" / "dental_00001.png", stray)
    assert main(["explain", "--run", str(run), "--images", str(stray)]) == 2
    assert "no covariates for" in capsys.readouterr().err
    assert main(["explain", "--run", str(run)]) == 2
    assert "--images" in capsys.readouterr().err


def test_explain_scores_maps_against_the_manifests_masks(ensemble_run, tmp_path, capsys):
    run, manifest = ensemble_run
    assert (
        main(
            [
                "explain",
                "--run",
                str(run),
                "--manifest",
                str(manifest),
                "--limit",
                "4",
                "--out",
                str(tmp_path / "x"),
                "--mask-column",
                "mask",
            ]
        )
        == 0
    )
    table = pd.read_csv(tmp_path / "x" / "explain.csv")
    assert table["mask_share"].between(0.1, 0.6).all()  # the mandible band
    assert table["mass_inside_mask"].between(0.0, 1.0).all()
    assert "mean map mass inside the mask" in capsys.readouterr().out


def _manifest_with_mask(manifest, tmp_path, mask):
    """A copy of the phantom manifest whose first row's mask cell is ``mask``."""
    frame = pd.read_csv(manifest)
    frame["image"] = [str(manifest.parent / p) for p in frame["image"]]
    frame["mask"] = [str(manifest.parent / p) for p in frame["mask"]]
    frame.loc[0, "mask"] = mask
    path = tmp_path / "m.csv"
    frame.to_csv(path, index=False)
    return path, frame.loc[0, "image"]


@pytest.mark.parametrize("case", ["missing_file", "other_size", "empty_region", "empty_cell"])
def test_explain_mask_errors_name_the_line_and_column(ensemble_run, tmp_path, capsys, case):
    run, manifest = ensemble_run
    mask = {"missing_file": str(tmp_path / "nope.png"), "empty_cell": ""}.get(case, str(tmp_path / "bad.png"))
    if case == "other_size":
        Image.new("L", (20, 20), 255).save(tmp_path / "bad.png")
    if case == "empty_region":
        Image.new("L", (32, 32), 0).save(tmp_path / "bad.png")
    path, image = _manifest_with_mask(manifest, tmp_path, mask)
    assert (
        main(["explain", "--run", str(run), "--manifest", str(path), "--images", image, "--mask-column", "mask"]) == 2
    )
    err = capsys.readouterr().err
    assert "line 2" in err and "'mask'" in err, err
    assert {"missing_file": "nope.png", "other_size": "20×20", "empty_region": "no region", "empty_cell": "is empty"}[
        case
    ] in err


def test_explain_mask_column_must_exist(ensemble_run, tmp_path, capsys):
    run, manifest = ensemble_run
    assert main(["explain", "--run", str(run), "--manifest", str(manifest), "--mask-column", "roi_mask"]) == 2
    assert "no column 'roi_mask'" in capsys.readouterr().err
