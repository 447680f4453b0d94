"""16-bit images keep full precision until the per-image intensity normalisation, which is
min–max or a percentile window (normalize_intensity, the one function training, evaluation
and serving share)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from osteo_tf.data.images import Intensity, parse_intensity
from osteo_tf.data.pipeline import load_image, normalize_intensity, preprocess_gray
from osteo_tf.errors import OsteoInputError
from osteo_tf.runs.config import TrainConfig


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_is_not_truncated_before_scaling(tmp_path, suffix):
    # Four levels 1000..1003: truncating to 8 bits first (>> 8) would make the image constant.
    pixels = (1000 + np.arange(64) % 4).reshape(8, 8).astype(np.uint16)
    path = tmp_path / f"a{suffix}"
    Image.fromarray(pixels).save(path)
    out = load_image(str(path), None, 8)[..., 0]
    np.testing.assert_allclose(out, (pixels - 1000.0) * 85.0, atol=1e-3)  # 0, 85, 170, 255


@pytest.mark.parametrize("low, high", [(1, 99), (0.5, 99.5), (5, 95)])
def test_percentile_window_matches_numpy(low, high):
    pixels = np.random.default_rng(3).gamma(2.0, 3000.0, (33, 21)).astype(np.float32)
    pixels[0, 0] = 65535.0  # one burnt-out pixel: min–max would squash the rest
    out = normalize_intensity(pixels, f"percentile:{low},{high}").numpy()
    p_low, p_high = np.percentile(pixels.astype(np.float64), [low, high])
    expected = np.clip((pixels - p_low) / (p_high - p_low), 0.0, 1.0) * 255.0
    np.testing.assert_allclose(out, expected, atol=2e-3)
    assert out.min() == 0.0 and out.max() == 255.0


def test_minmax_default_and_edge_cases():
    pixels = np.array([[1000.0, 1001.0], [1002.0, 3000.0]], np.float32)
    np.testing.assert_allclose(normalize_intensity(pixels).numpy(), (pixels - 1000.0) / 2000.0 * 255.0, rtol=1e-6)
    assert not normalize_intensity(np.full((3, 3), 7.0, np.float32), "percentile:1,99").numpy().any()
    mostly_black = np.zeros((10, 10), np.float32)
    mostly_black[0, 0] = 9.0  # window collapses (P1 == P99 == 0): falls back to min–max
    assert normalize_intensity(mostly_black, "percentile:1,99").numpy().max() == 255.0
    image = preprocess_gray(pixels, 4, "percentile:1,99").numpy()
    assert image.shape == (4, 4, 3) and 0.0 <= image.min() and image.max() <= 255.0


def test_parse_intensity():
    assert parse_intensity(None) == Intensity() and str(parse_intensity("MinMax")) == "minmax"
    assert parse_intensity("percentile") == Intensity("percentile", 1.0, 99.0)
    assert str(parse_intensity("percentile:0.5,99.5")) == "percentile:0.5,99.5"
    for bad in ("percentile:99,1", "percentile:1", "percentile:a,b", "zscore", "percentile:-1,50"):
        with pytest.raises(OsteoInputError, match="intensity normalisation"):
            parse_intensity(bad)


def test_train_config_records_the_normalisation():
    config = TrainConfig(backbone="resnet18", intensity="percentile:2,98")
    assert config.to_dict()["intensity"] == "percentile:2,98"
    assert TrainConfig.from_dict(config.to_dict()).intensity == "percentile:2,98"
    with pytest.raises(OsteoInputError):
        TrainConfig(backbone="resnet18", intensity="histogram")
