import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from osteo_tf.data.pipeline import (
    CACHE_CHOICES,
    augment,
    cache_key,
    cached_elements,
    load_image,
    make_dataset,
    prepare_disk_cache,
    rotate,
)
from osteo_tf.models import get_backbone_spec

SIZE = 32


@pytest.fixture
def cohort(tmp_path):
    rows = []
    for i in range(6):
        pixels = np.zeros((40, 50), np.uint16)
        pixels[:, : 10 + i] = 1000 + 100 * i  # 16-bit values above 255
        pixels[0, 0] = 1001
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        rows.append({"image": str(tmp_path / f"{i}.png"), "label": i % 2})
    return pd.DataFrame(rows)


def test_load_image_scales_16_bit_to_0_255_three_channels(cohort):
    image = load_image(cohort["image"][0], None, SIZE)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.float32
    assert image.min() == 0.0 and image.max() == pytest.approx(255.0, abs=1)
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_roi_crop_changes_the_content(cohort):
    whole = load_image(cohort["image"][3], None, SIZE)
    left_strip = load_image(cohort["image"][3], (0, 0, 8, 40), SIZE)
    assert whole.std() > 0 and left_strip.std() < whole.std()


def test_dataset_yields_dict_inputs_and_labels(cohort):
    covariates = np.arange(12, dtype=np.float32).reshape(6, 2)
    spec = get_backbone_spec("efficientnet_b0")
    dataset = make_dataset(
        cohort, covariates, image_size=SIZE, normalization=spec.normalization, batch_size=4, training=False
    )
    ((inputs, labels),) = dataset.take(1).as_numpy_iterator()
    assert inputs["image"].shape == (4, SIZE, SIZE, 3)
    np.testing.assert_array_equal(inputs["covariates"], covariates[:4])
    np.testing.assert_array_equal(labels[:, 0], [0, 1, 0, 1])


def test_resnet_images_are_imagenet_normalised(cohort):
    dataset = make_dataset(
        cohort,
        None,
        image_size=SIZE,
        normalization=get_backbone_spec("resnet18").normalization,
        batch_size=6,
        training=False,
    )
    ((inputs, _),) = dataset.as_numpy_iterator()
    assert set(inputs) == {"image"}
    assert inputs["image"].min() < -1.5 and inputs["image"].max() > 2.0  # (x − mean)/std, not [0, 255]


def test_covariates_only_reads_no_images(tmp_path):
    cohort = pd.DataFrame({"image": [str(tmp_path / "missing.png")] * 4, "label": [0, 1, 0, 1]})
    dataset = make_dataset(cohort, np.ones((4, 3), np.float32), image_size=None, batch_size=2, training=True)
    batches = list(dataset.as_numpy_iterator())
    assert len(batches) == 2 and set(batches[0][0]) == {"covariates"}


def test_training_augmentation_is_seeded_and_only_for_training(cohort):
    spec = get_backbone_spec("efficientnet_b0")

    def first_epoch(training, seed):
        ds = make_dataset(
            cohort, None, image_size=SIZE, normalization=spec.normalization, batch_size=6, training=training, seed=seed
        )
        return next(ds.as_numpy_iterator())[0]["image"]

    np.testing.assert_array_equal(first_epoch(True, 1), first_epoch(True, 1))
    assert not np.array_equal(first_epoch(True, 1), first_epoch(True, 2))
    np.testing.assert_array_equal(first_epoch(False, 1), first_epoch(False, 2))


def test_an_epochs_batches_depend_on_seed_and_epoch_only(cohort):
    """A resumed fit builds a new dataset in a new process: its epoch 2 must be epoch 2's
    batches, not a replay of epoch 0's (what reshuffle_each_iteration gives)."""
    spec = get_backbone_spec("resnet18")
    covariates = np.arange(12, dtype=np.float32).reshape(6, 2)

    def epochs(numbers):
        epoch = tf.Variable(0, dtype=tf.int64)
        dataset = make_dataset(
            cohort,
            covariates,
            image_size=SIZE,
            normalization=spec.normalization,
            batch_size=4,
            training=True,
            seed=3,
            epoch=epoch,
        )
        out = {}
        for number in numbers:
            epoch.assign(number)
            out[number] = list(dataset.as_numpy_iterator())
        return out

    straight, resumed = epochs([0, 1, 2]), epochs([2])
    _assert_same_epochs([straight[2]], [resumed[2]])
    order = {n: np.concatenate([x["covariates"][:, 0] for x, _ in batches]) for n, batches in straight.items()}
    assert sorted(order[0]) == sorted(order[2]) == list(range(0, 12, 2))  # every item once per epoch
    assert not np.array_equal(order[0], order[1]) or not np.array_equal(order[1], order[2])  # reshuffled
    by_item = {
        n: {int(c): x["image"][i] for x, _ in batches for i, c in enumerate(x["covariates"][:, 0])}
        for n, batches in straight.items()
    }
    assert any(not np.array_equal(by_item[0][c], by_item[2][c]) for c in by_item[0])  # augmentation varies by epoch
    assert (
        tf.data.experimental.cardinality(
            make_dataset(
                cohort, covariates, image_size=SIZE, normalization=spec.normalization, batch_size=4, training=True
            )
        )
        == 2
    )


def test_augment_applies_to_about_half_and_keeps_range():
    image = tf.constant(np.random.default_rng(0).random((SIZE, SIZE, 3)) * 255, tf.float32)
    changed = 0
    for i in range(200):
        out = augment(image, tf.constant([i, 7], tf.int64)).numpy()
        assert out.min() >= 0.0 and out.max() <= 255.0
        changed += not np.array_equal(out, image.numpy())
    assert 70 < changed < 130  # p = 0.5


def test_rotate_by_180_degrees_matches_a_double_flip():
    image = tf.constant(np.arange(16, dtype=np.float32).reshape(4, 4, 1))
    rotated = rotate(image, tf.constant(180.0)).numpy()
    np.testing.assert_allclose(rotated, image.numpy()[::-1, ::-1], atol=1e-3)


# --- cache choices (memory / disk / none) ---------------------------------------------------


def _epochs(dataset, n=2):
    return [list(dataset.as_numpy_iterator()) for _ in range(n)]


def _assert_same_epochs(a, b):
    assert len(a) == len(b)
    for epoch_a, epoch_b in zip(a, b):
        assert len(epoch_a) == len(epoch_b)
        for (x_a, y_a), (x_b, y_b) in zip(epoch_a, epoch_b):
            assert set(x_a) == set(x_b)
            for key in x_a:
                np.testing.assert_array_equal(x_a[key], x_b[key])
            np.testing.assert_array_equal(y_a, y_b)


@pytest.fixture
def decodes(monkeypatch):
    """Counts image decodes (the pipeline calls pipeline.read_image once per decoded image)."""
    import osteo_tf.data.pipeline as pipeline

    calls = []
    original = pipeline.read_image
    monkeypatch.setattr(pipeline, "read_image", lambda path, roi=None: calls.append(path) or original(path, roi))
    return calls


@pytest.mark.parametrize("training", [True, False])
def test_disk_memory_and_no_cache_give_identical_batches(cohort, tmp_path, decodes, training):
    covariates = np.arange(12, dtype=np.float32).reshape(6, 2)
    spec = get_backbone_spec("resnet18")
    runs = {}
    for cache in ("memory", "disk", "none"):
        decodes.clear()
        dataset = make_dataset(
            cohort,
            covariates,
            image_size=SIZE,
            normalization=spec.normalization,
            batch_size=4,
            training=training,
            seed=3,
            cache=cache,
            cache_file=tmp_path / "cache" / "train",
        )
        runs[cache] = _epochs(dataset)
        assert len(decodes) == (12 if cache == "none" else 6), cache  # cached: decoded in the first epoch only
    _assert_same_epochs(runs["memory"], runs["disk"])
    _assert_same_epochs(runs["memory"], runs["none"])
    if training:
        assert not np.array_equal(runs["memory"][0][0][0]["image"], runs["memory"][1][0][0]["image"])  # reshuffled
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    key = cache_key(cohort, SIZE)
    assert files == [f"train-{key}.data-00000-of-00001", f"train-{key}.index"]

    decodes.clear()  # a new dataset (e.g. a resumed run) reads the complete disk cache back
    again = make_dataset(
        cohort,
        covariates,
        image_size=SIZE,
        normalization=spec.normalization,
        batch_size=4,
        training=training,
        seed=3,
        cache="disk",
        cache_file=tmp_path / "cache" / "train",
    )
    _assert_same_epochs(runs["memory"], _epochs(again))
    assert decodes == []


def _assert_disk_cache_gives_uncached_epochs(cohort, cache_file):
    """A new dataset over ``cache_file`` yields what the same rows give without a cache."""
    spec = get_backbone_spec("resnet18")
    expected = _epochs(
        make_dataset(cohort, None, image_size=SIZE, normalization=spec.normalization, batch_size=2, training=False)
    )
    dataset = make_dataset(
        cohort,
        None,
        image_size=SIZE,
        normalization=spec.normalization,
        batch_size=2,
        training=False,
        cache="disk",
        cache_file=cache_file,
    )
    _assert_same_epochs(expected, _epochs(dataset))


KILLED_WRITER = """
import glob, os, sys, time
import pandas as pd
import osteo_tf.data.pipeline as pipeline
from osteo_tf.models import get_backbone_spec
read_image = pipeline.read_image
def killed(path, roi):  # the process is killed while the third image is read
    if not path.endswith(("0.png", "1.png")):
        deadline = time.time() + 120  # the cache writer (its own thread) creates its lockfile first
        while not glob.glob(sys.argv[2] + "*.lockfile") and time.time() < deadline:
            time.sleep(0.05)
        os._exit(0)  # no destructor cleans up
    return read_image(path, roi)
pipeline.read_image = killed
cohort = pd.read_csv(sys.argv[1])
dataset = pipeline.make_dataset(cohort, None, image_size={size},
                                normalization=get_backbone_spec("resnet18").normalization, batch_size=2, training=False,
                                cache="disk", cache_file=sys.argv[2])
list(dataset)
sys.exit(1)  # not reached
"""


def test_partial_cache_of_a_killed_run_does_not_break_the_next_one(cohort, tmp_path):
    import subprocess
    import sys

    cohort.to_csv(tmp_path / "cohort.csv", index=False)
    cache_file = tmp_path / "run" / "cache" / "train"
    subprocess.run(
        [sys.executable, "-c", KILLED_WRITER.format(size=SIZE), str(tmp_path / "cohort.csv"), str(cache_file)],
        check=True,
        capture_output=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    key = cache_key(cohort, SIZE)
    assert (cache_file.parent / f"train-{key}_0.lockfile").is_file()  # what tf.data leaves behind
    with pytest.raises(tf.errors.AlreadyExistsError):  # tf.data alone refuses to start a new cache
        list(tf.data.Dataset.range(3).cache(str(cache_file.parent / f"train-{key}")))

    _assert_disk_cache_gives_uncached_epochs(cohort, cache_file)
    assert sorted(p.name for p in cache_file.parent.iterdir()) == [
        f"train-{key}.data-00000-of-00001",
        f"train-{key}.index",
    ]


FAILED_WRITER = """
import os, sys
import pandas as pd
import osteo_tf.data.pipeline as pipeline
from osteo_tf.models import get_backbone_spec
read_image = pipeline.read_image
pipeline.read_image = lambda path, roi: read_image(path if path.endswith(("0.png", "1.png")) else "unreadable", roi)
cohort = pd.read_csv(sys.argv[1])
dataset = pipeline.make_dataset(cohort, None, image_size={size},
                                normalization=get_backbone_spec("resnet18").normalization, batch_size=2, training=False,
                                cache="disk", cache_file=sys.argv[2])
try:
    list(dataset)
except Exception as error:
    print(type(error).__name__)
"""


def test_cache_cut_short_by_a_read_error_is_written_again_not_read_back(cohort, tmp_path):
    import subprocess
    import sys

    cohort.to_csv(tmp_path / "cohort.csv", index=False)
    cache_file = tmp_path / "run" / "cache" / "train"
    failed = subprocess.run(
        [sys.executable, "-c", FAILED_WRITER.format(size=SIZE), str(tmp_path / "cohort.csv"), str(cache_file)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert "Error" in failed.stdout  # the third image failed the first epoch
    key = cache_key(cohort, SIZE)
    short = cached_elements(cache_file.parent / f"train-{key}")
    assert short is None or short < len(cohort)  # what tf.data left: partial files, or a "complete" short cache

    _assert_disk_cache_gives_uncached_epochs(cohort, cache_file)
    assert cached_elements(cache_file.parent / f"train-{key}") == len(cohort)


def test_stale_caches_are_removed_and_others_kept(cohort, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    key = cache_key(cohort, SIZE)
    stale = [
        f"train-{cache_key(cohort, 48)}.index",
        f"train-{cache_key(cohort, 48)}.data-00000-of-00001",  # other size
        f"train-{key}.index",
        f"train-{key}_0.lockfile",
    ]  # killed while merging: index without its lockfile gone
    for name in stale + ["val-0123456789abcdef.index", "notes.txt"]:
        (folder / name).write_bytes(b"junk")
    filename = prepare_disk_cache(folder / "train", key)
    assert filename == str(folder / f"train-{key}")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "val-0123456789abcdef.index"]
    assert cache_key(cohort, SIZE) != cache_key(cohort, SIZE, "percentile:1,99") != cache_key(cohort.iloc[:5], SIZE)


def test_cache_option_is_checked(cohort):
    from osteo_tf.errors import OsteoInputError
    from osteo_tf.runs import config as training_config
    from osteo_tf.runs.config import TrainConfig

    spec = get_backbone_spec("resnet18")
    with pytest.raises(OsteoInputError, match="choose one of: memory"):
        make_dataset(
            cohort, None, image_size=SIZE, normalization=spec.normalization, batch_size=2, training=False, cache="ram"
        )
    with pytest.raises(OsteoInputError, match="needs cache_file"):
        make_dataset(
            cohort, None, image_size=SIZE, normalization=spec.normalization, batch_size=2, training=False, cache="disk"
        )
    with pytest.raises(OsteoInputError, match="invalid training option cache='ram'; choose one of: memory"):
        TrainConfig(cache="ram")
    assert TrainConfig().cache == "memory" and training_config.CACHE_CHOICES == CACHE_CHOICES


def test_train_with_disk_cache_decodes_once_and_cleans_up(tmp_path, decodes):
    from osteo_tf.data.synthetic import make_cohort
    from osteo_tf.training.train import prepare_run, train

    manifest = make_cohort("hip", 24, tmp_path / "phantom", seed=1, image_size=SIZE)
    run = train(
        manifest,
        tmp_path / "run",
        backbone="resnet18",
        mode="image_only",
        image_size=SIZE,
        epochs=2,
        batch_size=8,
        cache="disk",
        verbose=0,
    )
    splits = pd.read_csv(run.splits)["split"].value_counts()
    # train and val decoded once for 2 epochs (the cache), then val and test once more for the predictions
    assert len(decodes) == splits["train"] + 2 * splits["val"] + splits["test"]
    assert not run.cache.exists()  # removed once the run is complete
    settings = json.loads(run.config.read_text())
    assert settings["train"]["cache"] == "disk"

    # The cache option does not change results: an unfinished run resumes under another one.
    run.complete_marker.unlink()
    settings["train"]["cache"] = "none"
    prepare_run(run, settings, force=False)
