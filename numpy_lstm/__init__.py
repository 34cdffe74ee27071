"""numpy-lstm: the Keras IMDB LSTM sentiment tutorial, reimplemented by hand on NumPy."""
from .data import ImdbData, load_imdb, train_test_split
from .errors import NumpyLSTMError
from .gradcheck import check_gradient, numerical_gradient, relative_error
from .layers import LSTM, Dense, Dropout, Embedding, TimePooling, sigmoid
from .losses import binary_crossentropy
from .model import SentimentLSTM
from .optimizers import SGD, Adam, clip_by_global_norm
from .text import Vocabulary, pad_sequences, preprocess_reviews
from .train import RECIPES, TrainConfig, recipe_config

__version__ = "0.1.0"

__all__ = [
    "Adam", "Dense", "Dropout", "Embedding", "ImdbData", "LSTM", "NumpyLSTMError", "RECIPES", "SGD",
    "SentimentLSTM", "TimePooling", "TrainConfig", "Vocabulary", "binary_crossentropy", "check_gradient",
    "clip_by_global_norm", "load_imdb", "numerical_gradient", "pad_sequences", "preprocess_reviews",
    "recipe_config", "relative_error", "sigmoid", "train_test_split",
]
