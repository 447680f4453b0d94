import numpy as np
import pytest
from PIL import Image

from osteo_tf.errors import OsteoInputError
from osteo_tf.evaluation.metrics import METRIC_NAMES, binary_metrics, plot_roc, roc_curve_data


def test_known_confusion_matrix():
    y_true = [1, 1, 1, 0, 0, 0, 0, 1]
    y_score = [0.9, 0.8, 0.3, 0.2, 0.6, 0.1, 0.4, 0.7]
    m = binary_metrics(y_true, y_score)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (3, 1, 3, 1)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["npv"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    assert m["auc"] == pytest.approx(14 / 16)
    assert set(METRIC_NAMES) <= set(m)


def test_threshold_moves_the_calls():
    m = binary_metrics([0, 1], [0.3, 0.6], threshold=0.7)
    assert m["tp"] == 0 and m["tn"] == 1 and m["recall"] == 0.0


def test_no_predicted_positives_gives_defined_zero_not_nan():
    m = binary_metrics([0, 1, 0], [0.1, 0.2, 0.3])
    assert m["precision"] == 0.0 and m["f1"] == 0.0
    assert all(np.isfinite(m[k]) for k in METRIC_NAMES)


def test_one_class_only_is_a_clear_error():
    with pytest.raises(OsteoInputError, match="AUC is undefined.*label 1"):
        binary_metrics([1, 1], [0.2, 0.9])


def test_bad_inputs():
    with pytest.raises(OsteoInputError, match="non-finite"):
        binary_metrics([0, 1], [0.1, float("nan")])
    with pytest.raises(OsteoInputError, match="0/1"):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(OsteoInputError, match="2 values"):
        binary_metrics([0, 1], [0.1])


def test_roc_curve_and_figure(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    roc = roc_curve_data(y, rng.random(50))
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0
    path = plot_roc(
        {"image_only": (y, rng.random(50)), "ensemble": (y, y * 0.5 + rng.random(50) * 0.5)}, tmp_path / "roc.png"
    )
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100
    assert [p.name for p in tmp_path.iterdir()] == ["roc.png"]
