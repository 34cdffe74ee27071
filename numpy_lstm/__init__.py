"""numpy-lstm: the Keras IMDB LSTM sentiment tutorial, reimplemented by hand on NumPy."""
__version__ = "0.1.0"     # first: the modules below read it (the run marker, `numpy-lstm --version`)

from .attribution import integrated_gradients, occlusion
from .benchmark import time_interleaved
from .config import RECIPES, TrainConfig, recipe_config
from .data import ImdbData, load_imdb, train_test_split
from .engine import get_num_processes, get_num_threads, set_num_processes, set_num_threads
from .errors import NumpyLSTMError
from .gradcheck import check_gradient, numerical_gradient, relative_error
from .inspection import inspect_review, lstm_internals
from .layers import LSTM, Bidirectional, Dense, Dropout, Embedding, TimePooling
from .losses import binary_crossentropy
from .model import Ensemble, SentimentLSTM
from .ngrams import NgramView, TwoViews, fit_mix, fit_vote_mix, ngram_keys, self_train
from .optimizers import SGD, Adam, clip_by_global_norm
from .reading import read_review
from .reference import sigmoid
from .text import Vocabulary, pad_sequences, preprocess_reviews

__all__ = [
    "Adam", "Bidirectional", "Dense", "Dropout", "Embedding", "Ensemble", "ImdbData", "LSTM", "NgramView",
    "NumpyLSTMError", "RECIPES", "SGD", "SentimentLSTM", "TimePooling", "TrainConfig", "TwoViews", "Vocabulary",
    "binary_crossentropy", "check_gradient", "clip_by_global_norm", "fit_mix", "fit_vote_mix", "get_num_processes",
    "get_num_threads", "inspect_review", "integrated_gradients", "load_imdb", "lstm_internals", "ngram_keys",
    "numerical_gradient", "occlusion", "pad_sequences", "preprocess_reviews", "read_review", "recipe_config",
    "relative_error", "self_train", "set_num_processes", "set_num_threads", "sigmoid", "time_interleaved",
    "train_test_split",
]
