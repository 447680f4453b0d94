import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from osteo_tf.data.pipeline import augment, load_image, make_dataset, rotate
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
    dataset = make_dataset(cohort, covariates, spec, SIZE, batch_size=4, training=False)
    (inputs, labels), = dataset.take(1).as_numpy_iterator()
    assert inputs["image"].shape == (4, SIZE, SIZE, 3)
    np.testing.assert_array_equal(inputs["covariates"], covariates[:4])
    np.testing.assert_array_equal(labels[:, 0], [0, 1, 0, 1])


def test_resnet_images_are_imagenet_normalised(cohort):
    dataset = make_dataset(cohort, None, get_backbone_spec("resnet18"), SIZE, batch_size=6, training=False)
    (inputs, _), = dataset.as_numpy_iterator()
    assert set(inputs) == {"image"}
    assert inputs["image"].min() < -1.5 and inputs["image"].max() > 2.0  # (x − mean)/std, not [0, 255]


def test_covariates_only_reads_no_images(tmp_path):
    cohort = pd.DataFrame({"image": [str(tmp_path / "missing.png")] * 4, "label": [0, 1, 0, 1]})
    dataset = make_dataset(cohort, np.ones((4, 3), np.float32), None, SIZE, batch_size=2, training=True)
    batches = list(dataset.as_numpy_iterator())
    assert len(batches) == 2 and set(batches[0][0]) == {"covariates"}


def test_training_augmentation_is_seeded_and_only_for_training(cohort):
    spec = get_backbone_spec("efficientnet_b0")

    def first_epoch(training, seed):
        ds = make_dataset(cohort, None, spec, SIZE, batch_size=6, training=training, seed=seed)
        return next(ds.as_numpy_iterator())[0]["image"]

    np.testing.assert_array_equal(first_epoch(True, 1), first_epoch(True, 1))
    assert not np.array_equal(first_epoch(True, 1), first_epoch(True, 2))
    np.testing.assert_array_equal(first_epoch(False, 1), first_epoch(False, 2))


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
