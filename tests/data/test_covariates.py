import numpy as np
import pandas as pd
import pytest

from osteo_tf.data.covariates import CovariateEncoder
from osteo_tf.errors import OsteoInputError


def cohort(ages, bmis, sexes, fractures):
    return pd.DataFrame({"age": ages, "bmi": bmis, "sex": sexes, "hip_fracture_history": fractures})


def test_hip_vector_is_six_long_with_mean_normalization():
    train = cohort([60.0, 80.0, 100.0], [15.0, 20.0, 25.0], ["F", "M", "F"], [0, 1, 0])
    encoder = CovariateEncoder.for_columns(("age", "bmi", "sex", "hip_fracture_history"), train).fit(train)
    encoded = encoder.transform(train)
    assert encoded.shape == (3, 6) and encoded.dtype == np.float32
    # (x − mean) / (max − min): age mean 80, range 40
    np.testing.assert_allclose(encoded[:, 0], [-0.5, 0.0, 0.5])
    np.testing.assert_allclose(encoded[:, 1], [-0.5, 0.0, 0.5])
    assert encoder.feature_names == ["age", "bmi", "sex=F", "sex=M", "hip_fracture_history=0", "hip_fracture_history=1"]
    np.testing.assert_array_equal(encoded[:, 2:], [[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]])


def test_dental_vector_is_four_long():
    train = cohort([50.0, 70.0], [20.0, 24.0], ["F", "M"], [0, 0])
    encoder = CovariateEncoder.for_columns(("age", "bmi", "sex")).fit(train)
    assert encoder.dim == 4


def test_statistics_come_from_training_rows_only():
    train = cohort([60.0, 70.0], [20.0, 22.0], ["F", "M"], [0, 1])
    test = cohort([100.0], [40.0], ["F"], [1])
    encoder = CovariateEncoder.for_columns(("age", "bmi", "sex")).fit(train)
    assert encoder.stats["age"] == {"mean": 65.0, "min": 60.0, "max": 70.0}
    # A test value outside the training range encodes beyond ±0.5, not re-fitted.
    assert encoder.transform(test)[0, 0] == pytest.approx((100 - 65) / 10)


def test_round_trips_through_json_state():
    train = cohort([60.0, 90.0, 75.0], [18.0, 30.0, 22.0], ["F", "M", "M"], [1, 0, 0])
    encoder = CovariateEncoder.for_columns(("age", "bmi", "sex", "hip_fracture_history")).fit(train)
    clone = CovariateEncoder.from_dict(encoder.to_dict())
    np.testing.assert_array_equal(clone.transform(train), encoder.transform(train))


def test_unseen_category_is_an_error_not_zeros():
    encoder = CovariateEncoder.for_columns(("sex",)).fit(cohort([1.0], [1.0], ["F"], [0]))
    with pytest.raises(OsteoInputError, match="sex.*never had"):
        encoder.transform(cohort([1.0], [1.0], ["M"], [0]))


def test_missing_column_names_it():
    encoder = CovariateEncoder.for_columns(("age", "smoker"))
    with pytest.raises(OsteoInputError, match="smoker"):
        encoder.fit(cohort([1.0], [1.0], ["F"], [0]))


def test_extra_columns_numeric_and_categorical():
    train = pd.DataFrame({"grip_kg": [20.0, 30.0], "site": ["A", "B"]})
    encoder = CovariateEncoder.for_columns(("grip_kg", "site"), train).fit(train)
    assert encoder.numeric == ("grip_kg",) and encoder.categorical == ("site",)
    assert encoder.dim == 3
