"""The settings of a training run: TrainConfig, the named recipes, and the checks on them.

Each TrainConfig field carries its own help text, group, choices or range (`setting`), and
everything else reads them from there: `numpy-lstm train` makes one flag per field
(`--num-layers` for num_layers) and `TrainConfig.validate` checks every field. The rules
themselves are numpy_lstm/checks.py's, which the model and the data use too.

A setting added to TrainConfig defaults to what runs did before it existed, so that an older
run's config.json, which lacks it, still describes that run (RunDir.load_config fills it in).
"""
import dataclasses
import typing
from typing import Optional

from .checks import (
    BIGRAM_BUCKETS,
    COUNT,
    FRACTION,
    GRAM_LENGTH,
    IMPLEMENTATIONS,
    LAYERS,
    OFF_OR_POSITIVE,
    POOLINGS,
    POSITIVE,
    POSITIVE_INTEGER,
    RATE,
    VOCAB_SIZE,
    WIDTH,
    at_most,
    check,
)
from .errors import NumpyLSTMError


def setting(default, help, group, rule=None, choices=None, metavar=None, aliases=(), recipe_values=True):
    """A TrainConfig field and what the CLI and the checks need to know about it.

    group: the `train --help` section ("data", "model", "optimisation"). rule or choices: the
    allowed values (None, for an optional setting, is always allowed). aliases: further flag
    names. recipe_values: whether the help lists each recipe's value (not for settings such as
    the data path, which no recipe sets).
    """
    metadata = {"help": help, "group": group, "rule": rule, "choices": choices, "metavar": metavar,
                "aliases": aliases, "recipe_values": recipe_values}
    return dataclasses.field(default=default, metadata=metadata)


# The most test reviews --test-limit (and evaluate's --limit) asks for
MAX_TEST_LIMIT = 10_000_000


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a run. Recipes (RECIPES) fill these in; flags override them."""

    recipe: str = "tutorial"
    data: Optional[str] = setting(
        None, "aclImdb folder or .tar.gz (default: $NUMPY_LSTM_DATA, then the download cache)", "data",
        metavar="PATH", recipe_values=False)
    per_class: Optional[int] = setting(
        500, "first N positive and N negative training reviews", "data", at_most(10_000_000), metavar="N")
    val_split: float = setting(0.2, "held-out fraction", "data", FRACTION, metavar="F")
    # Reviews of one film share its name, cast and plot words: a held-out part that shares films with
    # the training part is easier than the official test set, whose films are all unseen.
    val_groups: str = setting(
        "random", "draw the held-out reviews at random, or whole films at a time so that no film has reviews on "
                  "both sides (a review of unknown film is a film of its own)", "data", choices=("random", "film"))
    unlabeled: bool = setting(
        False, "also read the text, never the label, of the other training reviews (those outside --per-class, "
               "less any of a held-out film): the vocabulary's word counts and --ppmi-init's word vectors "
               "come from them too", "data")
    keep_negations: bool = setting(
        False, "keep not/no/nor and the n't stems, which the stopword list removes", "data")
    keep_stopwords: bool = setting(
        False, "keep every stopword (the tutorial removes NLTK's English stopwords)", "data")
    punctuation: bool = setting(
        False, "keep . , ; : ! ? \" ( ) [ ] as words of their own (the tutorial deletes them)", "data")
    vocab_size: int = setting(
        500, "vocabulary size, counting the padding and out-of-vocabulary ids", "data", VOCAB_SIZE, metavar="N")
    maxlen: int = setting(
        500, "pad or truncate reviews to N tokens (Keras's pre-padding)", "data", at_most(100_000), metavar="N")
    oov: str = setting(
        "keep", "words outside the vocabulary: keep them as one unknown-word id, or skip them", "data",
        choices=("keep", "skip"))
    # A film's name or plot words say nothing of sentiment on other films.
    min_films: int = setting(
        1, "keep only vocabulary words found in reviews of at least N films", "data", POSITIVE_INTEGER, metavar="N")
    embed_dim: int = setting(32, "embedding width", "model", WIDTH, metavar="N")
    nb_init: float = setting(
        0.0, "start embedding column 0 at SCALE times each word's naive Bayes log-count ratio in the training "
             "reviews (0: off)", "model", OFF_OR_POSITIVE, metavar="SCALE")
    ppmi_init: float = setting(
        0.0, "start the embedding columns (all but --nb-init's) at word vectors learned without labels from the "
             "training reviews (PPMI + SVD of word co-occurrences), scaled to this standard deviation (0: off)",
        "model", OFF_OR_POSITIVE, metavar="STD")
    units: int = setting(100, "LSTM units", "model", WIDTH, metavar="N")
    mask: bool = setting(False, "mask padding (Keras's mask_zero) and bucket batches by length", "model")
    dropout: float = setting(0.0, "LSTM input dropout, one mask per sequence", "model", RATE, metavar="RATE")
    recurrent_dropout: float = setting(
        0.0, "dropout on the previous state where the LSTM's recurrent matmul reads it, one mask per sequence",
        "model", RATE, metavar="RATE")
    word_dropout: float = setting(
        0.0, "drop whole tokens (their embedding vectors) during training", "model", RATE, metavar="RATE")
    pooling: str = setting(
        "last", "what the output layer reads: the last LSTM state, or the mean / max over time", "model",
        choices=POOLINGS)
    num_layers: int = setting(1, "stacked LSTMs", "model", LAYERS, metavar="N", aliases=("--layers",))
    bidirectional: bool = setting(False, "read each review forward and backward", "model")
    # Word pairs as fastText's hashed bigrams give them (issue 35): a local order the LSTM need not learn.
    bigram_buckets: int = setting(
        0, "add to each word's vector a trainable vector of its (previous word, word) pair, hashed into N "
           "buckets: x_t = E[w_t] + G[bucket(w_{t-1}, w_t)], G a second table of N x embed_dim, zeros at the "
           "start; 0: off", "model", BIGRAM_BUCKETS, metavar="N")
    # The pairs' counterpart of --nb-init: what the n-gram view reads in word pairs such as
    # "not good", placed in the LSTM's input before training (issue 35).
    bigram_nb_init: float = setting(
        0.0, "start column 0 of the pair table (--bigram-buckets) at SCALE times each bucket's naive Bayes "
             "log-count ratio in the training reviews, as --nb-init does for words (0: off)", "model",
        OFF_OR_POSITIVE, metavar="SCALE")
    # Triples as well as pairs, in the same table (issue 35): NBSVM gained from trigrams over bigrams.
    hashed_trigrams: bool = setting(
        False, "also add the vector of each word's (word two back, previous word, word) triple, hashed into "
               "the pair table's buckets (needs --bigram-buckets)", "model")
    implementation: str = setting(
        "fast", "fast: the vectorised engine; reference: the plain LSTM of numpy_lstm/reference.py, slower, "
                "the same maths", "model", choices=IMPLEMENTATIONS, recipe_values=False)
    epochs: int = setting(10, "epochs", "optimisation", at_most(100_000), metavar="N")
    batch_size: int = setting(64, "batch size", "optimisation", at_most(1_000_000), metavar="N")
    lr: float = setting(1e-3, "Adam learning rate", "optimisation", POSITIVE, metavar="LR")
    lr_schedule: str = setting(
        "constant", "constant, or linear warm-up over the first epoch and decay to 0 at the last", "optimisation",
        choices=("constant", "linear"))
    clipnorm: Optional[float] = setting(
        None, "clip gradients to this global norm", "optimisation", POSITIVE, metavar="NORM")
    patience: Optional[int] = setting(
        None, "stop after N epochs without a better held-out loss and keep the best epoch", "optimisation",
        POSITIVE_INTEGER, metavar="N")
    seed: int = setting(0, "seed of the split, the initialisation and the shuffling", "optimisation", COUNT,
                        metavar="N")
    # Goodfellow et al. (2015), on word embeddings as Miyato et al. (2017): the loss at each review's
    # vectors moved a fixed distance the way that raises the loss most, added to the loss at them.
    adversarial: float = setting(
        0.0, "adversarial training: also fit each review's embedded words moved by this L2 distance (over all its "
             "words) along the loss's gradient; 0: off. One more forward and backward a batch", "optimisation",
        OFF_OR_POSITIVE, metavar="EPS")
    # Dai & Le (2015), Miyato et al. (2017): the LSTM first learns to predict the reviews' words
    # (numpy_lstm/language_model.py), then the labels.
    pretrain_epochs: int = setting(
        0, "epochs of language-model pretraining before training: each LSTM direction learns to predict the "
           "next (backward: the previous) word of the training reviews, scored by a sampled softmax; 0: off",
        "optimisation", at_most(100, 0, "0 or a positive integer"), metavar="N")
    pretrain_samples: int = setting(
        256, "words sampled per batch to score each true word against in pretraining (the sampled softmax's K)",
        "optimisation", at_most(100_000), metavar="K")
    ensemble: int = setting(
        1, "train N models, each from its own initialisation and batch order, and average their logits "
           "(N times the training time)", "optimisation", at_most(100), metavar="N")
    ngrams: int = setting(
        0, "add a second view of each review beside the LSTM: naive-Bayes-weighted logistic regression on its "
           "n-grams of ids up to this length (numpy_lstm/ngrams.py), mixed with the LSTM's logit by a "
           "logistic regression fitted on the held-out reviews (see --mix; 0: off)", "model", GRAM_LENGTH, metavar="N")
    ngram_l2: float = setting(
        1e-3, "L2 penalty of the n-gram view's weights", "model", OFF_OR_POSITIVE, metavar="L2")
    self_train: int = setting(
        0, "rounds of co-training of the n-gram view: label the unlabeled reviews (--unlabeled) by the LSTM and "
           "the view voting with equal weight, then fit the view again on them and the labeled ones", "model",
        at_most(100, 0, "0 or a positive integer"), metavar="N")
    balance_votes: bool = setting(
        False, "co-training's vote labels positive the same share of the unlabeled reviews as of the labeled ones "
               "(those it scores highest), not those it scores above 0: a lean of the voters toward one class is "
               "not taught to the view and the student (the unlabeled reviews are assumed to share the labeled "
               "ones' balance)", "model")
    student: bool = setting(
        False, "after co-training (--self-train), train a second LSTM with STUDENT's settings (bidirectional, max "
               "pooling) on the labeled reviews and the unlabeled ones labeled by the first LSTM and the view "
               "voting; it takes the first LSTM's place beside the view, which is co-trained again with it as "
               "the other voter", "model")
    mix: str = setting(
        "fit", "how the LSTM's and the n-gram view's logits are mixed: fit (a logistic regression on the two logits "
               "and an intercept, fitted on the held-out reviews) or vote (co-training's vote: each logit divided by "
               "its standard deviation on the unlabeled reviews, added with equal weight, one common scale fitted on "
               "the held-out reviews, no intercept)", "model", choices=("fit", "vote"))
    test_limit: Optional[int] = setting(
        None, "evaluate on a seeded, balanced subset of N official test reviews (default: all; 0: do not read "
              "the test set at all, as runs that choose settings must not)", "data",
        at_most(MAX_TEST_LIMIT, 0, "0 or a positive integer"), metavar="N", recipe_values=False)

    def validate(self):
        """Check every setting against its rule or choices, then the ones that depend on each other."""
        for field in dataclasses.fields(self):
            check_setting(field.name, getattr(self, field.name))
        if self.ppmi_init and not 1 <= self.embed_dim - bool(self.nb_init) <= self.vocab_size:
            raise NumpyLSTMError("ppmi_init needs embedding columns besides the naive Bayes one, "
                                 "and no more of them than vocabulary ids")
        if self.bigram_nb_init and not self.bigram_buckets:
            raise NumpyLSTMError("bigram_nb_init needs the pair table (--bigram-buckets N)")
        if self.hashed_trigrams and not self.bigram_buckets:
            raise NumpyLSTMError("hashed_trigrams needs the pair table (--bigram-buckets N)")
        if self.self_train and not (self.ngrams and self.unlabeled):
            raise NumpyLSTMError("self_train needs the n-gram view (--ngrams N) and unlabeled reviews (--unlabeled)")
        if self.balance_votes and not self.self_train:
            raise NumpyLSTMError("balance_votes needs co-training (--self-train N), whose vote it balances")
        if self.mix == "vote" and not self.self_train:
            raise NumpyLSTMError("mix 'vote' needs co-training (--self-train N), whose vote it is")
        if self.student and not self.self_train:
            raise NumpyLSTMError("student needs co-training (--self-train N), whose vote labels its reviews")
        return self


SETTINGS = {field.name: field for field in dataclasses.fields(TrainConfig)}

# The settings in the config.json of the first version: every run directory has them.
FIRST_SETTINGS = ("recipe", "data", "per_class", "val_split", "keep_negations", "vocab_size", "maxlen", "embed_dim",
                  "units", "mask", "dropout", "pooling", "epochs", "batch_size", "lr", "clipnorm", "patience", "seed",
                  "test_limit")


def check_setting(name, value):
    """Raise a one-line NumpyLSTMError unless `value` is allowed for the TrainConfig field `name`."""
    field = SETTINGS[name]
    meta = field.metadata
    kind = (typing.get_args(field.type) or (field.type,))[0]        # Optional[str] -> str
    check(name, value, meta.get("rule"), meta.get("choices"), optional=type(None) in typing.get_args(field.type),
          kind=kind if kind in (bool, str) else None)


# The tutorial as written, our best recipe on the same 1,000 reviews, that recipe with the text of the
# other 24,000 training reviews (no labels), and the recipe for all 25,000 training reviews (README: Results).
RECIPES = {
    "tutorial": {},
    "tuned": {"val_split": 0.1, "val_groups": "film", "keep_negations": True, "vocab_size": 1000, "min_films": 5,
              "oov": "skip", "mask": True, "nb_init": 4.0, "embed_dim": 64, "units": 64, "dropout": 0.3, "epochs": 30,
              "lr": 1e-3, "patience": 4},
    "semi": {"val_split": 0.1, "val_groups": "film", "unlabeled": True, "keep_negations": True, "keep_stopwords": True,
             "punctuation": True, "maxlen": 1000, "vocab_size": 25000,
             "min_films": 5, "oov": "skip", "mask": True, "nb_init": 4.0, "ppmi_init": 0.2, "embed_dim": 64,
             "units": 64, "dropout": 0.3, "epochs": 30, "lr": 1e-3, "patience": 4, "ngrams": 2, "ngram_l2": 1e-4,
             "self_train": 1, "balance_votes": True, "student": True, "mix": "vote"},
    "full": {"per_class": None, "val_split": 0.1, "val_groups": "film", "keep_negations": True, "keep_stopwords": True,
             "punctuation": True, "maxlen": 1000, "vocab_size": 25000,
             "min_films": 5, "oov": "skip", "mask": True, "nb_init": 4.0, "ppmi_init": 0.2, "embed_dim": 64,
             "units": 64, "bidirectional": True, "pooling": "max", "bigram_buckets": 262144, "dropout": 0.5,
             "epochs": 3, "lr": 2e-3, "lr_schedule": "linear", "patience": 2, "adversarial": 1.0, "ngrams": 2,
             "ngram_l2": 1e-4},
}


# What a student LSTM (--student) changes from its run's settings: those of `full`'s LSTM, a model
# with room for the 25,000 reviews it reads.
STUDENT = {"bidirectional": True, "pooling": "max", "dropout": 0.5, "epochs": 3, "lr": 2e-3, "lr_schedule": "linear",
           "patience": 2}


def recipe_config(recipe, **overrides):
    """TrainConfig of a named recipe, with the non-None overrides applied."""
    if recipe not in RECIPES:
        raise NumpyLSTMError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    settings = {**RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(recipe=recipe, **settings).validate()
