"""Settings: recipes, and the ranges and choices every setting is checked against."""
import pytest

from numpy_lstm import NumpyLSTMError
from numpy_lstm.config import recipe_config


@pytest.mark.parametrize("setting", [{"oov": "drop"}, {"lr_schedule": "cosine"}, {"pooling": "sum"},
                                     {"val_split": 1.0}, {"num_layers": 0}, {"clipnorm": 0.0}])
def test_bad_settings_are_refused(setting):
    with pytest.raises(NumpyLSTMError):
        recipe_config("tutorial", **setting)


def test_unknown_recipe():
    with pytest.raises(NumpyLSTMError, match="unknown recipe"):
        recipe_config("magic")
