"""Experiment configs: the shipped ones load, and every mistake is a clear error naming the key."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from osteo_tf.data.synthetic import make_cohort
from osteo_tf.errors import OsteoInputError
from osteo_tf.experiments.config import CONFIG_DIR, load_experiment, packaged_configs, parse_experiment
from osteo_tf.experiments.runner import plan

REPO_EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VALID = {
    "name": "t",
    "cohort": {"phantom": {"kind": "hip", "n": 40, "image_size": 32}},
    "backbones": ["resnet18"],
    "modes": ["image_only", "ensemble"],
    "covariates": ["age", "sex", "bmi"],
    "split": {"kind": "kfold", "folds": 5, "repeats": 2},
    "train": {"epochs": 1, "image_size": 32},
}


def config_with(**changes):
    return {**VALID, **changes}


def test_packaged_configs_have_no_repository_copies_and_plan_the_papers_grids():
    packaged = ["demo", "demo_missing", "dental_2022", "fusion_balanced", "hip_2020", "roi_dental", "roi_hip"]
    assert packaged_configs() == packaged
    assert sorted(REPO_EXAMPLES.glob("*.yaml")) == []  # one copy of each config: the packaged one
    hip, dental = load_experiment("hip_2020"), load_experiment("dental_2022")
    assert hip.split.kind == "random" and hip.split.ratios == (8, 1, 1)
    assert hip.covariates == ("age", "sex", "bmi", "hip_fracture_history")
    assert len(plan(hip)) == 5 * 2  # five CNNs × two modes, one split
    assert dental.split.folds == 5 and dental.split.repeats == 30 and dental.split.val_ratio == (8, 1)
    assert len(plan(dental)) == 6 * 2 * 30 * 5
    demo = load_experiment(CONFIG_DIR / "demo.yaml")
    assert demo.phantom is not None and demo.hash() == load_experiment("demo").hash()


def test_hash_ignores_the_description_and_survives_a_round_trip():
    config = parse_experiment(VALID)
    again = parse_experiment(yaml.safe_load(yaml.safe_dump(config.to_dict())))
    assert again.hash() == config.hash() and again == config
    assert parse_experiment(config_with(description="other words")).hash() == config.hash()
    assert parse_experiment(config_with(seed=1)).hash() != config.hash()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"backbones": ["resnet18", "vgg16"]}, "unknown backbone 'vgg16'"),
        ({"modes": ["image_only", "fusion"]}, "unknown mode 'fusion'"),
        ({"split": {"kind": "bootstrap"}}, "kind: random or kind: kfold"),
        ({"split": {"kind": "kfold", "folds": 1}}, "split.folds must be an integer >= 2"),
        ({"split": {"kind": "kfold", "folds": 5, "val_ratio": [8, 0]}}, "split.val_ratio must be a list of 2 positive"),
        ({"split": {"kind": "random", "ratios": [8, 1]}}, "split.ratios must be a list of 3 positive"),
        ({"split": {"kind": "kfold", "fold": 5}}, r"unknown key\(s\) \['fold'\] in 'split'"),
        ({"covariates": ["age", "smoking"]}, "unknown covariate column 'smoking'"),
        (
            {"cohort": {"phantom": {"kind": "dental", "n": 40}}, "covariates": "hip"},
            "unknown covariate column 'hip_fracture_history'.*dental phantom",
        ),
        ({"train": {"epochs": 0}}, r"x.yaml: train.epochs: 0 is not an integer in \[1, inf\)"),
        ({"train": {"optimizer": "adam"}}, r"unknown key\(s\) \['optimizer'\] in 'train'"),
        ({"repeats": 3}, r"unknown key\(s\) \['repeats'\]"),
        ({"name": "a b"}, "'name' must be a word"),
        ({"cohort": {"manifest": "nowhere.csv"}}, "nowhere.csv does not exist"),
    ],
)
def test_mistakes_are_clear_errors(changes, message):
    with pytest.raises(OsteoInputError, match=message):
        parse_experiment(config_with(**changes), source="x.yaml")


def test_manifest_paths_resolve_against_the_yaml_folder_and_columns_are_checked(tmp_path):
    manifest = make_cohort("dental", 12, tmp_path / "cohort", image_size=32)
    (tmp_path / "cohort" / "renamed.csv").write_text(manifest.read_text().replace("bmi", "BMI_kg_m2"))
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(config_with(cohort={"manifest": "cohort/manifest.csv"})))
    assert load_experiment(study).manifest == str(manifest.resolve())
    study.write_text(yaml.safe_dump(config_with(cohort={"manifest": "cohort/renamed.csv"})))
    with pytest.raises(OsteoInputError, match="unknown covariate column 'bmi'"):
        load_experiment(study)
    study.write_text(
        yaml.safe_dump(
            config_with(cohort={"manifest": "cohort/renamed.csv", "manifest_config": {"columns": {"bmi": "BMI_kg_m2"}}})
        )
    )
    assert load_experiment(study).covariates == ("age", "sex", "bmi")
    with pytest.raises(OsteoInputError, match="hip_fracture_history"):  # the dental cohort has no fracture history
        load_experiment("hip_2020", manifest=manifest)
    assert load_experiment("dental_2022", manifest=manifest).manifest == str(manifest.resolve())


def test_missing_file_bad_yaml_and_unknown_name(tmp_path):
    with pytest.raises(OsteoInputError, match="does not exist"):
        load_experiment(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(OsteoInputError, match="bad.yaml is not valid YAML"):
        load_experiment(tmp_path / "bad.yaml")
    with pytest.raises(
        OsteoInputError,
        match="packaged configs: demo, demo_missing, dental_2022, fusion_balanced, hip_2020, roi_dental, roi_hip",
    ):
        load_experiment("hip2020")


def test_train_cache_option_passes_through_and_is_not_hashed():
    config = parse_experiment(VALID)
    disk = parse_experiment(config_with(train={**VALID["train"], "cache": "disk"}))
    assert disk.train_config("resnet18", "image_only", 0).cache == "disk"
    assert config.train_config("resnet18", "image_only", 0).cache == "memory"
    assert disk.hash() == config.hash()  # where decoded images are kept does not change results
    with pytest.raises(OsteoInputError, match="train.cache: 'ram' is not a valid choice; choose one of: memory"):
        parse_experiment(config_with(train={"cache": "ram"}))


def test_fusions_are_a_grid_axis_of_the_ensemble_with_stable_names_and_hash():
    base = parse_experiment(VALID)
    grid = parse_experiment(
        config_with(modes=["image_only", "ensemble", "covariates_only"], fusions=["concat", "late", "film"])
    )
    models = [f.model for f in plan(grid) if f.repeat == 0 and f.fold == 0]
    assert models == ["image_only", "ensemble", "ensemble_late", "ensemble_film", "covariates_only"]
    assert [f.fit_id for f in plan(grid)][:4] == [
        "resnet18__image_only__r00__f00",
        "resnet18__ensemble__r00__f00",
        "resnet18__ensemble_late__r00__f00",
        "resnet18__ensemble_film__r00__f00",
    ]
    late = [f for f in plan(grid) if f.model == "ensemble_late"][0]
    assert grid.train_config("resnet18", late.mode, late.seed, fusion=late.fusion).fusion == "late"
    # the default axis is left out of the resolved config: an older experiment keeps its hash
    assert "fusions" not in base.to_dict() and parse_experiment(config_with(fusions=["concat"])).hash() == base.hash()
    assert grid.hash() != base.hash()
    again = parse_experiment(yaml.safe_load(yaml.safe_dump(grid.to_dict())))
    assert again.fusions == ("concat", "late", "film") and again.hash() == grid.hash()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"fusions": ["concat", "sum"]}, "unknown fusion 'sum' in 'fusions'; choose from: concat, late, film"),
        ({"modes": ["image_only"], "fusions": ["late"]}, "'modes' has no ensemble to fuse"),
        ({"train": {"covariate_dropout": 1.5}}, r"x.yaml: train.covariate_dropout: 1.5 is not a number in \[0, 1\)"),
        (
            {"cohort": {"phantom": {"kind": "hip", "n": 40, "information": "equal"}}},
            "cohort.phantom.information must be one of image_led, balanced",
        ),
    ],
)
def test_fusion_mistakes_are_clear_errors(changes, message):
    with pytest.raises(OsteoInputError, match=message):
        parse_experiment(config_with(**changes), source="x.yaml")


@pytest.mark.parametrize(
    "train, message",
    [
        ("{epochs: two}", r"/demo.yaml: train.epochs: 'two' is not an integer in \[1, inf\)$"),
        ("{epochs: 2.5}", r"/demo.yaml: train.epochs: 2.5 is not an integer in \[1, inf\)$"),
        ("{image_size: big}", r"/demo.yaml: train.image_size: 'big' is not an integer in \[32, inf\)$"),
        ("{learning_rate: fast}", r"/demo.yaml: train.learning_rate: 'fast' is not a number in \(0, inf\)$"),
        ("{patience: [5]}", r"/demo.yaml: train.patience: \[5\] is not an integer in \[1, inf\)$"),
        ("{momentum: 1}", r"/demo.yaml: train.momentum: 1 is not a number in \[0, 1\)$"),
        ("{deterministic: yes please}", r"/demo.yaml: train.deterministic: 'yes please' is not true or false$"),
        ("{weights: 5}", r"/demo.yaml: train.weights: 5 is not a weights name or path"),
        ("{precision: fp16}", r"/demo.yaml: train.precision: 'fp16' is not a valid choice; choose one of: auto"),
    ],
)
def test_train_options_of_the_wrong_type_name_the_file_and_key_path(tmp_path, train, message):
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in VALID.items() if k != "train"}) + f"train: {train}\n")
    with pytest.raises(OsteoInputError, match=message):
        load_experiment(path)


def test_train_deterministic_is_an_option_that_reaches_every_fit():
    config = parse_experiment(config_with(train={**VALID["train"], "deterministic": True}))
    assert config.train_config("resnet18", "ensemble", 7).deterministic is True
    assert config.hash() != parse_experiment(VALID).hash()  # it changes results: part of the hash
    assert parse_experiment(yaml.safe_load(yaml.safe_dump(config.to_dict()))).train["deterministic"] is True


PHANTOM = VALID["cohort"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"description": ["a"]}, r"^x.yaml: 'description' must be text, got \['a'\]$"),
        ({"cohort": {"manifest": 5}}, "^x.yaml: cohort.manifest must be the path of a CSV manifest, got 5$"),
        (
            {"cohort": {"phantom": {"kind": ["hip"]}}},
            r"^x.yaml: cohort.phantom.kind must be hip or dental, got \['hip'\]$",
        ),
        (
            {"split": {"kind": "random", "ratios": [8, 1, float("inf")]}},
            "^x.yaml: split.ratios must be a list of 3 positive",
        ),
        (
            {"cohort": {**PHANTOM, "manifest_config": {"columns": {"age": 5}}}},
            "^x.yaml: cohort.manifest_config.columns.age: must be a non-empty column name, got 5$",
        ),
        (
            {"cohort": {**PHANTOM, "manifest_config": {"min_image_size": 0}}},
            "^x.yaml: cohort.manifest_config.min_image_size: must be a whole number of pixels >= 1",
        ),
        (
            {"cohort": {**PHANTOM, "manifest_config": {"colums": {}}}},
            "^x.yaml: cohort.manifest_config: unknown option.s. 'colums'",
        ),
        (
            {"cohort": {**PHANTOM, "manifest_config": "cols.yaml"}},
            "^x.yaml: cohort.manifest_config: must be a mapping of options, got 'cols.yaml'$",
        ),
    ],
)
def test_other_sections_of_the_wrong_type_name_the_file_and_key(changes, message):
    with pytest.raises(OsteoInputError, match=message):
        parse_experiment(config_with(**changes), source="x.yaml")


def test_embedded_manifest_config_min_image_size_keeps_the_hash_at_its_default():
    plain = parse_experiment(config_with(cohort={**PHANTOM, "manifest_config": {}}))
    default = parse_experiment(config_with(cohort={**PHANTOM, "manifest_config": {"min_image_size": 32}}))
    smaller = parse_experiment(config_with(cohort={**PHANTOM, "manifest_config": {"min_image_size": 16}}))
    assert default.hash() == plain.hash() != smaller.hash()
    assert smaller.manifest_config["min_image_size"] == 16 and "min_image_size" not in plain.manifest_config


# --------------------------------------------------------------------------- leave one site out

SITES = {"Osaka": 12, "Kyoto": 16, "Nagoya": 10}  # patients per site, listed out of order


def site_manifest(folder, *, header="image,patient_id,age,sex,bmi,t_score,site", edit=None):
    """A raw manifest (its images need not exist: a config reads the header and the site cells only)."""
    lines, patient = [header], 0
    for site, patients in SITES.items():
        for p in range(patients):
            score = -3.0 if p % 2 else -1.0
            lines += [f"img/{patient}_{i}.png,P{patient},70,F,22,{score},{site}" for i in range(2)]
            patient += 1
    if edit:
        lines = edit(lines)
    path = folder / "cohort.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def site_config(folder, split=None, **changes):
    manifest = site_manifest(folder)
    return config_with(
        cohort={"manifest": str(manifest)},
        split=split or {"kind": "site", "val_ratio": 0.1},
        modes=["image_only", "ensemble", "covariates_only"],
        **changes,
    )


def test_a_site_split_plans_one_fit_per_site_backbone_and_mode(tmp_path):
    config = parse_experiment(site_config(tmp_path, backbones=["resnet18", "resnet50"]))
    assert config.split.sites == ("Kyoto", "Nagoya", "Osaka") and config.split.n_folds == 3
    assert config.split.val_ratio == (0.9, 0.1) and config.split.column == "site"
    fits = plan(config)
    assert len(fits) == 3 * (2 * 2 + 1)  # sites × (backbones × image modes + covariates_only)
    assert {(f.fold, f.site) for f in fits} == {(0, "Kyoto"), (1, "Nagoya"), (2, "Osaka")}
    assert [f.fit_id for f in fits if f.site == "Nagoya"] == [
        "resnet18__image_only__r00__f01",
        "resnet18__ensemble__r00__f01",
        "resnet50__image_only__r00__f01",
        "resnet50__ensemble__r00__f01",
        "none__covariates_only__r00__f01",
    ]
    assert len({f.seed for f in fits}) == 3  # one seed per site, shared by its fits
    repeated = parse_experiment(site_config(tmp_path, split={"kind": "site", "repeats": 2, "val_ratio": [8, 1]}))
    assert len(plan(repeated)) == 2 * 3 * 3 and repeated.split.val_ratio == (8, 1)


def test_site_folds_partition_the_cohort_without_a_patient_in_two_parts(tmp_path):
    from osteo_tf.experiments.fits import fit_splits

    config = parse_experiment(site_config(tmp_path))
    rows = [
        (f"/x/{patient}_{i}.png", f"P{patient}", p % 2, site)
        for patient, (site, p) in enumerate((s, p) for s, n in SITES.items() for p in range(n))
        for i in range(2)
    ]
    cohort = pd.DataFrame(rows, columns=["image", "patient_id", "label", "site"])
    tested = []
    for fit in [f for f in plan(config) if f.mode == "image_only"]:
        split = fit_splits(config, cohort, fit)
        assert set(cohort["site"].iloc[split["test"]]) == {fit.site}
        assert fit.site not in set(cohort["site"].iloc[np.concatenate([split["train"], split["val"]])])
        patients = {k: set(cohort["patient_id"].iloc[v]) for k, v in split.items()}
        assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"])
        assert not patients["val"] & patients["test"]
        again = fit_splits(config, cohort, fit)
        assert all(np.array_equal(split[k], again[k]) for k in split)  # seeded: the same split every time
        tested += split["test"].tolist()
    assert sorted(tested) == list(range(len(cohort)))  # every site is the test set exactly once


def test_the_sites_are_part_of_the_resolved_config_and_its_hash(tmp_path):
    config = parse_experiment(site_config(tmp_path))
    assert config.to_dict()["split"] == {
        "kind": "site",
        "column": "site",
        "val_ratio": [0.9, 0.1],
        "repeats": 1,
        "sites": ["Kyoto", "Nagoya", "Osaka"],
    }
    again = parse_experiment(yaml.safe_load(yaml.safe_dump(config.to_dict())))
    assert again == config and again.hash() == config.hash()
    # the manifest gains a site: the resolved config (experiment.yaml) keeps its sites as given, so
    # the runner sees another hash for the config that reads the sites again
    site_manifest(tmp_path, edit=lambda lines: lines + ["img/x.png,PX,70,F,22,-3.0,Sendai"])
    assert parse_experiment(yaml.safe_load(yaml.safe_dump(config.to_dict()))).hash() == config.hash()
    grown = parse_experiment(yaml.safe_load(yaml.safe_dump({**config.to_dict(), "split": {"kind": "site"}})))
    assert grown.split.sites == ("Kyoto", "Nagoya", "Osaka", "Sendai") and grown.hash() != config.hash()


def test_a_site_config_without_a_cohort_gets_its_sites_with_the_manifest(tmp_path):
    manifest = site_manifest(tmp_path)
    bare = parse_experiment(config_with(cohort=None, split={"kind": "site", "column": "site"}))
    assert bare.split.sites == () and "sites" not in bare.to_dict()["split"]
    with pytest.raises(OsteoInputError, match="its folds are the sites of the cohort's manifest.*--manifest"):
        plan(bare)
    given = bare.with_manifest(manifest)
    assert given.split.sites == ("Kyoto", "Nagoya", "Osaka") and len(plan(given)) == 3 * 2


def test_other_split_kinds_plan_and_resolve_as_before():
    kfold, random = parse_experiment(VALID), parse_experiment(config_with(split={"kind": "random", "repeats": 2}))
    assert kfold.split.to_dict() == {"kind": "kfold", "folds": 5, "repeats": 2, "val_ratio": [8.0, 1.0]}
    assert random.split.to_dict() == {"kind": "random", "ratios": [8.0, 1.0, 1.0], "repeats": 2}
    assert all(f.site is None for f in plan(kfold) + plan(random))
    assert len(plan(kfold)) == 2 * 5 * 2 and len(plan(random)) == 2 * 2


def test_only_a_site_fit_records_its_site(tmp_path):
    from osteo_tf.experiments.fits import make_record

    def record(config, fit):
        run = tmp_path / "runs" / fit.fit_id
        run.mkdir(parents=True, exist_ok=True)
        metrics = {"auc": 0.5}
        (run / "metrics.json").write_text(json.dumps({"val": metrics, "test": metrics}))
        (run / "COMPLETE").write_text(json.dumps({"seconds": 1.0}))
        pd.DataFrame({"epoch": [1], "val_loss": [0.7]}).to_csv(run / "history.csv", index=False)
        pd.DataFrame(
            {"image": ["a.png"], "patient_id": ["P1"], "label": [1], "probability": [0.6], "split": ["test"]}
        ).to_csv(run / "predictions.csv", index=False)
        return make_record(config, tmp_path, fit)

    kfold = parse_experiment(VALID)
    plain = record(kfold, plan(kfold)[0])
    assert "site" not in plain and list(plain)[list(plain).index("fold") + 1] == "seed"
    site = parse_experiment(site_config(tmp_path))
    fit = [f for f in plan(site) if f.fold == 2][0]
    recorded = record(site, fit)
    assert recorded["site"] == "Osaka" and recorded["fold"] == 2
    assert list(recorded)[list(recorded).index("fold") + 1] == "site"


@pytest.mark.parametrize(
    "split, changes, edit, message",
    [
        (
            {"kind": "site", "val_ratio": 1.5},
            {},
            None,
            r"split.val_ratio must be a fraction in \(0, 1\) or a list of 2",
        ),
        ({"kind": "site", "val_ratio": [8, 0]}, {}, None, r"split.val_ratio must be a fraction in \(0, 1\)"),
        ({"kind": "site", "column": ""}, {}, None, "split.column must be the name of the manifest's site column"),
        ({"kind": "site", "sites": ["Kyoto"]}, {}, None, "split.sites must list at least 2 distinct site names"),
        ({"kind": "site", "folds": 3}, {}, None, r"unknown key\(s\) \['folds'\] in 'split'"),
        ({"kind": "site", "column": "hospital"}, {}, None, r"x.yaml: manifest .*cohort.csv has no column 'hospital'"),
        (
            {"kind": "site"},
            {"covariates": ["age", "site"]},
            None,
            "the site column 'site' of split kind site is also in 'covariates'",
        ),
        (
            {"kind": "site"},
            {},
            lambda lines: lines[:5] + [lines[5].rsplit(",", 1)[0] + ","] + lines[6:],
            r"x.yaml: manifest .*cohort.csv, line 6, column 'site': the site is empty",
        ),
        (
            {"kind": "site"},
            {},
            lambda lines: lines[:2] + [lines[2].replace("Osaka", "Kyoto")] + lines[3:],
            r"patient 'P0' appears at sites 'Kyoto' \(line 3\) and 'Osaka' \(line 2\)",
        ),
        (
            {"kind": "site"},
            {},
            lambda lines: [line.replace("Kyoto", "Osaka").replace("Nagoya", "Osaka") for line in lines],
            r"column 'site': 1 site \('Osaka'\); a leave-one-site-out split needs at least 2 sites",
        ),
    ],
)
def test_site_split_mistakes_are_clear_errors(tmp_path, split, changes, edit, message):
    values = site_config(tmp_path, split=split, **changes)
    site_manifest(tmp_path, edit=edit)
    with pytest.raises(OsteoInputError, match=message):
        parse_experiment(values, source="x.yaml")


def test_a_phantom_has_no_sites():
    with pytest.raises(OsteoInputError, match="split kind site needs a manifest.*the hip phantom has no sites"):
        parse_experiment(config_with(split={"kind": "site"}), source="x.yaml")
