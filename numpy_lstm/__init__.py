"""numpy-lstm: the Keras IMDB LSTM sentiment tutorial, reimplemented by hand on NumPy."""
from .errors import NumpyLSTMError
from .gradcheck import check_gradient, numerical_gradient, relative_error
from .layers import LSTM, Dense, Embedding, sigmoid
from .losses import binary_crossentropy
from .model import SentimentLSTM
from .optimizers import SGD, Adam, clip_by_global_norm

__version__ = "0.1.0"

__all__ = [
    "Adam", "Dense", "Embedding", "LSTM", "NumpyLSTMError", "SGD", "SentimentLSTM",
    "binary_crossentropy", "check_gradient", "clip_by_global_norm", "numerical_gradient",
    "relative_error", "sigmoid",
]
