"""Settings: recipes, and the ranges and choices every setting is checked against."""
import dataclasses

import pytest

from numpy_lstm import NumpyLSTMError, SentimentLSTM, TrainConfig
from numpy_lstm.cli import build_parser
from numpy_lstm.config import recipe_config


@pytest.mark.parametrize("setting", [{"oov": "drop"}, {"lr_schedule": "cosine"}, {"pooling": "sum"},
                                     {"val_split": 1.0}, {"num_layers": 0}, {"clipnorm": 0.0}])
def test_bad_settings_are_refused(setting):
    with pytest.raises(NumpyLSTMError):
        recipe_config("tutorial", **setting)


@pytest.mark.parametrize("setting", [{"seed": 2 ** 64}, {"seed": 10 ** 30}, {"lr": 1e300}])
def test_large_finite_values_are_accepted(setting):
    assert recipe_config("tutorial", **setting).validate()


@pytest.mark.parametrize("setting", [{"lr": float("inf")}, {"clipnorm": float("nan")}, {"nb_init": float("-inf")}])
def test_values_that_are_not_finite_are_refused(setting):
    with pytest.raises(NumpyLSTMError, match="must be a finite number"):
        recipe_config("tutorial", **setting).validate()


def test_unknown_recipe():
    with pytest.raises(NumpyLSTMError, match="unknown recipe"):
        recipe_config("magic")


def test_every_flag_is_a_field_name_and_sets_that_field():
    parser = build_parser()
    for field in dataclasses.fields(TrainConfig):
        if field.name == "recipe":
            continue
        assert field.metadata["help"], field.name
        flag = "--" + field.name.replace("_", "-")
        if field.type is bool:
            args = parser.parse_args(["train", flag])
            assert getattr(args, field.name) is True
            assert getattr(parser.parse_args(["train", "--no-" + flag[2:]]), field.name) is False
        else:
            value = field.metadata["choices"][-1] if field.metadata["choices"] else "7"
            parsed = getattr(parser.parse_args(["train", flag, value]), field.name)
            assert parsed == (7 if isinstance(parsed, (int, float)) else value), field.name
    assert parser.parse_args(["train", "--layers", "2"]).num_layers == 2


@pytest.mark.parametrize("name, bad", [("vocab_size", 2), ("embed_dim", 0), ("units", 1.5), ("num_layers", True),
                                       ("dropout", 1.0), ("recurrent_dropout", -0.1), ("word_dropout", float("nan")),
                                       ("pooling", "sum"), ("bigram_buckets", -1), ("bigram_buckets", 1 << 25)])
def test_the_model_refuses_what_the_config_refuses_with_the_same_words(name, bad):
    with pytest.raises(NumpyLSTMError) as from_config:
        recipe_config("tutorial", **{name: bad})
    with pytest.raises(NumpyLSTMError) as from_model:
        SentimentLSTM(**{name: bad})
    assert str(from_config.value) == str(from_model.value)
    assert str(from_config.value).startswith(f"{name} must be ")


def test_optional_settings_accept_none_and_check_values():
    assert recipe_config("full").per_class is None
    with pytest.raises(NumpyLSTMError, match="patience must be a positive integer"):
        recipe_config("tutorial", patience=0)
    with pytest.raises(NumpyLSTMError, match="implementation must be fast or reference"):
        recipe_config("tutorial", implementation="torch")
