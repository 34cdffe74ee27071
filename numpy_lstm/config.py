"""The settings of a training run: TrainConfig, the named recipes, and their validation."""
import dataclasses
from typing import Optional

from .errors import NumpyLSTMError


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a run. Recipes (RECIPES) fill these in; flags override them."""

    recipe: str = "tutorial"
    data: Optional[str] = None          # dataset path; None: NUMPY_LSTM_DATA, then the cache
    per_class: Optional[int] = 500      # first N positive and N negative training reviews
    val_split: float = 0.2              # held-out fraction of those reviews
    keep_negations: bool = False        # keep not/no/nor and n't forms through stopword removal
    keep_stopwords: bool = False        # no stopword removal at all
    vocab_size: int = 500               # embedding rows, counting padding (0) and OOV (1)
    maxlen: int = 500                   # pad / truncate to this many tokens (Keras "pre")
    oov: str = "keep"                   # unknown words: "keep" as id 1, or "skip" them
    min_films: int = 1                  # vocabulary words must occur in reviews of this many films (a film
                                        # name or plot word is not sentiment on other films)
    embed_dim: int = 32
    nb_init: float = 0.0                # > 0: embedding column 0 starts as this times log_count_ratio
    ppmi_init: float = 0.0              # > 0: the other columns start as PPMI-SVD word vectors of this std
    units: int = 100
    mask: bool = False                  # mask padding (Keras mask_zero) and bucket batches by length
    dropout: float = 0.0                # LSTM input dropout, one mask per sequence
    recurrent_dropout: float = 0.0      # dropout on h_{t-1} in the recurrent matmul, one mask per sequence
    word_dropout: float = 0.0           # drop whole tokens' embeddings
    pooling: str = "last"               # Dense reads the last state, or the mean / max over time
    num_layers: int = 1                 # stacked LSTMs
    bidirectional: bool = False         # each LSTM reads forward and backward
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "constant"       # or "linear": warm up over epoch 1, decay to 0 at the end
    clipnorm: Optional[float] = None    # clip gradients by global norm
    patience: Optional[int] = None      # early stopping on held-out loss, restoring the best epoch
    seed: int = 0
    ensemble: int = 1                   # train this many models (seeds differ) and average their logits
    test_limit: Optional[int] = None    # evaluate on a seeded, balanced subset of the test set

    def validate(self):
        positive = {"vocab_size": self.vocab_size, "maxlen": self.maxlen, "embed_dim": self.embed_dim,
                    "units": self.units, "epochs": self.epochs, "batch_size": self.batch_size,
                    "num_layers": self.num_layers, "min_films": self.min_films,
                    "ensemble": self.ensemble}
        for name in ("per_class", "patience", "test_limit"):
            if getattr(self, name) is not None:
                positive[name] = getattr(self, name)
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise NumpyLSTMError(f"{name} must be a positive integer, got {value!r}")
        if self.vocab_size < 3:
            raise NumpyLSTMError(f"vocab_size must be at least 3 (ids 0 and 1 are reserved), got {self.vocab_size}")
        if not self.lr > 0:
            raise NumpyLSTMError(f"lr must be positive, got {self.lr!r}")
        if self.oov not in ("keep", "skip"):
            raise NumpyLSTMError(f"oov must be keep or skip, got {self.oov!r}")
        if self.lr_schedule not in ("constant", "linear"):
            raise NumpyLSTMError(f"lr_schedule must be constant or linear, got {self.lr_schedule!r}")
        if self.clipnorm is not None and not self.clipnorm > 0:
            raise NumpyLSTMError(f"clipnorm must be positive, got {self.clipnorm!r}")
        if not 0.0 < self.val_split < 1.0:
            raise NumpyLSTMError(f"val_split must be between 0 and 1, got {self.val_split!r}")
        if not self.ppmi_init >= 0:
            raise NumpyLSTMError(f"ppmi_init must be 0 (off) or positive, got {self.ppmi_init!r}")
        if self.ppmi_init and not 1 <= self.embed_dim - bool(self.nb_init) <= self.vocab_size:
            raise NumpyLSTMError("ppmi_init needs embedding columns besides the naive Bayes one, "
                                 "and no more of them than vocabulary ids")
        for name in ("dropout", "recurrent_dropout", "word_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise NumpyLSTMError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.pooling not in ("last", "mean", "max"):
            raise NumpyLSTMError(f"pooling must be last, mean or max, got {self.pooling!r}")
        return self


# The tutorial as written, our best recipe on the same 1,000 reviews, and the recipe for all 25,000
# training reviews (README: Results).
RECIPES = {
    "tutorial": {},
    "tuned": {"val_split": 0.1, "keep_negations": True, "vocab_size": 2000, "min_films": 5, "oov": "skip",
              "mask": True, "nb_init": 4.0, "embed_dim": 64, "units": 64, "dropout": 0.3, "epochs": 30, "lr": 1e-3,
              "patience": 4},
    "full": {"per_class": None, "val_split": 0.1, "keep_negations": True, "vocab_size": 20000, "min_films": 5,
             "oov": "skip", "mask": True, "nb_init": 4.0, "ppmi_init": 0.2, "embed_dim": 64, "units": 64,
             "bidirectional": True, "pooling": "max", "dropout": 0.5, "epochs": 3, "lr": 2e-3,
             "lr_schedule": "linear", "patience": 2},
}


def recipe_config(recipe, **overrides):
    """TrainConfig of a named recipe, with the non-None overrides applied."""
    if recipe not in RECIPES:
        raise NumpyLSTMError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    settings = {**RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(recipe=recipe, **settings).validate()
