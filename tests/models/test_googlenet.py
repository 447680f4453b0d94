"""The GoogLeNet port: torchvision's shapes, counts and pooling rules, checked without torch.

The numerical comparison against torchvision itself is in test_convert.py (needs torch).
"""

import math

import keras
import numpy as np
import pytest

from osteo_tf.models.googlenet import INCEPTION_BLOCKS, AdaptiveAveragePooling2D, GoogLeNet, max_pool_ceil


def trainable(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_parameter_counts_equal_torchvision():
    # torchvision googlenet(aux_logits=False): 6,624,904; with the aux classifiers: 13,004,888.
    assert trainable(GoogLeNet(input_shape=(32, 32, 3))) == 6_624_904
    assert trainable(GoogLeNet(input_shape=(32, 32, 3), aux_logits=True)) == 13_004_888
    assert trainable(GoogLeNet(include_top=False, input_shape=(32, 32, 3))) == 6_624_904 - 1024 * 1000 - 1000


def torch_pool_side(n: int, k: int, s: int = 2) -> int:
    """torch MaxPool2d(k, s, ceil_mode=True, padding=0) output side (the docs' formula)."""
    return math.ceil((n - k) / s) + 1


def torch_conv_side(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


@pytest.mark.parametrize("size", [224, 57, 33])
def test_feature_map_sides_follow_torchvision(size):
    # Even sizes need ceil_mode for the 3×3 pools; odd ones also for the 2×2 pool (maxpool4).
    model = GoogLeNet(include_top=False, input_shape=(size, size, 3))
    side = torch_conv_side(size, 7, 2, 3)
    expected = {"conv1_relu": (side, 64)}
    side = torch_pool_side(side, 3)
    expected.update({"maxpool1": (side, 64), "conv3_relu": (side, 192)})
    side = torch_pool_side(side, 3)
    expected.update({"maxpool2": (side, 192), "inception3b": (side, 480)})
    side = torch_pool_side(side, 3)
    expected.update({"maxpool3": (side, 480), "inception4e": (side, 832)})
    side = torch_pool_side(side, 2)
    expected.update({"maxpool4": (side, 832), "inception5b": (side, 1024)})
    for name, (side, channels) in expected.items():
        assert model.get_layer(name).output.shape[1:] == (side, side, channels), name
    assert model.output.shape[1:] == (side, side, 1024)  # the last feature map is the output


def test_layers_are_torchvision_basic_convs():
    model = GoogLeNet(include_top=False, input_shape=(64, 64, 3))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(convs) == len(norms) == 3 + 6 * len(INCEPTION_BLOCKS)
    assert not any(layer.use_bias for layer in convs)
    assert {layer.epsilon for layer in norms} == {1e-3}
    # torchvision's quirk: the "5×5" branch is 3×3 (inception3a: 16 → 32 channels).
    assert model.get_layer("inception3a_branch3_1_conv").kernel.shape == (3, 3, 16, 32)
    assert model.get_layer("conv1_conv").kernel.shape == (7, 7, 3, 64)


def reference_ceil_max_pool(x: np.ndarray, k: int) -> np.ndarray:
    """Max pool, stride 2, torch ceil_mode=True: windows clipped at the border (NHWC)."""
    n = x.shape[1]
    out = torch_pool_side(n, k)
    result = np.empty((x.shape[0], out, out, x.shape[3]), x.dtype)
    for i in range(out):
        for j in range(out):
            result[:, i, j] = x[:, 2 * i : 2 * i + k, 2 * j : 2 * j + k].max(axis=(1, 2))
    return result


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("n", [4, 5, 6, 7, 14, 15])
def test_ceil_mode_max_pool_is_exact_on_relu_outputs(n, k):
    x = np.maximum(np.random.default_rng(n).normal(size=(2, n, n, 3)), 0).astype("float32")
    inputs = keras.Input((n, n, 3))
    pooled = keras.Model(inputs, max_pool_ceil(inputs, k, name="pool"))(x)
    np.testing.assert_array_equal(np.asarray(pooled), reference_ceil_max_pool(x, k))


def test_transform_input_is_torchvisions_affine_map():
    model = GoogLeNet(include_top=False, input_shape=(32, 32, 3), transform_input=True)
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype("float32")
    mapped = np.asarray(model.get_layer("transform_input")(x))
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(mapped, x * (std / 0.5) + (mean - 0.5) / 0.5, rtol=1e-6, atol=1e-6)
    assert "transform_input" not in [
        layer.name for layer in GoogLeNet(include_top=False, input_shape=(32, 32, 3)).layers
    ]


def test_adaptive_average_pooling_matches_torch_bins():
    # torch adaptive_avg_pool2d 14 → 4 uses overlapping bins [0,4) [3,7) [7,11) [10,14).
    x = np.random.default_rng(1).normal(size=(2, 14, 9, 5)).astype("float32")
    pooled = np.asarray(AdaptiveAveragePooling2D((4, 3))(x))
    bins_14 = [(0, 4), (3, 7), (7, 11), (10, 14)]
    bins_9 = [(0, 3), (3, 6), (6, 9)]
    for i, (r0, r1) in enumerate(bins_14):
        for j, (c0, c1) in enumerate(bins_9):
            np.testing.assert_allclose(pooled[:, i, j], x[:, r0:r1, c0:c1].mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    again = AdaptiveAveragePooling2D.from_config(AdaptiveAveragePooling2D((4, 3)).get_config())
    assert again.output_size == (4, 3)


def test_aux_classifiers_are_optional_and_need_the_top():
    model = GoogLeNet(input_shape=(96, 96, 3), aux_logits=True, classes=7, classifier_activation=None)
    outputs = model(np.zeros((2, 96, 96, 3), "float32"))
    assert [tuple(o.shape) for o in outputs] == [(2, 7)] * 3
    assert model.get_layer("aux1_fc1").kernel.shape == (2048, 1024)
    assert not any("aux" in layer.name for layer in GoogLeNet(input_shape=(96, 96, 3)).layers)
    with pytest.raises(ValueError, match="include_top"):
        GoogLeNet(include_top=False, aux_logits=True)


def test_feature_extractor_forward_pass():
    model = GoogLeNet(include_top=False, input_shape=(64, 64, 3), pooling="avg")
    features = np.asarray(model(np.random.default_rng(2).normal(size=(2, 64, 64, 3)).astype("float32")))
    assert features.shape == (2, 1024) and np.all(np.isfinite(features)) and np.all(features >= 0)
    assert features.std() > 0
