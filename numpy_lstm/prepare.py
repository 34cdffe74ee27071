"""The experiment's data: reviews -> cleaned words -> held-out split -> vocabulary -> padded ids.

`prepare_data` gives a run its training and held-out ids (`prepare_run_data` adds the word
vectors), `load_test_set` the official test
reviews' (read only to report), `encode` turns raw reviews into ids the way the run was trained,
and `batch_order` deals one epoch's batches.
"""
import time

import numpy as np

from .data import load_imdb, train_test_split
from .errors import MissingSplitError
from .text import Vocabulary, pad_sequences, preprocess_reviews
from .wordvectors import scaled_word_vectors


def encode(texts, vocab, config):
    """Raw reviews -> padded ids (N, maxlen) int32, with the run's preprocessing."""
    return encode_cleaned(clean(texts, config), vocab, config)


def clean(texts, config):
    """Raw reviews -> cleaned texts (list of str), with the run's preprocessing."""
    return preprocess_reviews(texts, config.keep_negations, config.keep_stopwords, config.punctuation)


def encode_cleaned(cleaned, vocab, config):
    """Cleaned reviews -> padded ids (N, maxlen) int32; with oov="skip" unknown words are dropped."""
    ids = vocab.encode(cleaned)
    if config.oov == "skip":
        ids = [s[s != vocab.OOV] for s in ids]
    return pad_sequences(ids, maxlen=config.maxlen)


def prepare_data(config):
    """Load, clean, split (seeded, stratified, by film with val_groups="film") and encode the training reviews.

    The vocabulary is fitted on the training part only (the tutorial fitted it before the split,
    so its held-out reviews leaked into the word counts), and with config.unlabeled on the text of
    the other training reviews as well (unlabeled_reviews). Returns (vocab, x_train, y_train, x_val,
    y_val, x_unlabeled), x_unlabeled (M, maxlen) with M = 0 without config.unlabeled.
    """
    data = load_imdb(config.data, split="train", per_class=config.per_class)
    cleaned = clean(data.texts, config)
    train, val, films = held_out_split(config, data)
    train_texts, val_texts = [cleaned[i] for i in train], [cleaned[i] for i in val]
    y_train, y_val = data.labels[train], data.labels[val]
    unlabeled, unlabeled_films = unlabeled_reviews(config, data, set(films[val]))
    vocab = Vocabulary(config.vocab_size).fit(train_texts + unlabeled, groups=[*films[train], *unlabeled_films],
                                              min_groups=config.min_films)
    x_train = encode_cleaned(train_texts, vocab, config)
    x_val = encode_cleaned(val_texts, vocab, config)
    x_unlabeled = encode_cleaned(unlabeled, vocab, config)
    return vocab, x_train, np.asarray(y_train), x_val, np.asarray(y_val), x_unlabeled


def prepare_run_data(config, log):
    """A run's data, what `prepare_data` gives and the starting word vectors of config.ppmi_init,
    each step logged: (vocab, (x_train, y_train, x_val, y_val), x_unlabeled, word_vectors or None)."""
    t0 = time.perf_counter()
    vocab, x_train, y_train, x_val, y_val, x_unlabeled = prepare_data(config)
    log(f"{len(x_train)} training and {len(x_val)} held-out reviews"
        + (f" and {len(x_unlabeled)} unlabeled ones" if config.unlabeled else "")
        + f", {len(vocab)} ids in the vocabulary, padded to {config.maxlen} ({time.perf_counter() - t0:.1f}s)")
    word_vectors = None
    if config.ppmi_init:
        t0 = time.perf_counter()
        word_vectors = scaled_word_vectors(config, np.concatenate([x_train, x_unlabeled]))
        log(f"word vectors from the training reviews' co-occurrences ({time.perf_counter() - t0:.1f}s)")
    return vocab, (x_train, y_train, x_val, y_val), x_unlabeled, word_vectors


def held_out_split(config, data):
    """(train (N,), val (M,), films (N + M,)): the indices of the training and the held-out part of
    the labeled reviews `data` (ImdbData), seeded and stratified, by film with val_groups="film",
    and each review's film (`known_films`)."""
    films = known_films(data.films, "review")
    train, val = train_test_split(np.arange(len(films)), test_size=config.val_split, seed=config.seed,
                                  stratify=data.labels, groups=films if config.val_groups == "film" else None)
    return train, val, films


def known_films(films, prefix):
    """films (N,) str with each "" (a review of unknown film: data without urls_pos.txt /
    urls_neg.txt) replaced by a film of its own, "<prefix>-<index>"."""
    return np.where(films == "", np.char.add(f"{prefix}-", np.arange(len(films)).astype(str)), films)


def unlabeled_reviews(config, labeled, held_out_films):
    """(cleaned texts, films) of the training reviews that are not in `labeled` (ImdbData), none of
    a film in held_out_films (so held-out films stay unseen, as the test set's are); ([], []) unless
    config.unlabeled.

    A review is told from the labeled ones by its file (class folder and id) only; its label goes
    no further: the reviews are sorted by text, so neither their labels nor their order on disk
    can reach the model.
    """
    if not config.unlabeled:
        return [], []
    every = load_imdb(config.data, split="train")
    taken = set(zip(labeled.labels.tolist(), labeled.ids.tolist()))
    films = known_films(every.films, "unlabeled")
    rows = sorted((every.texts[i], films[i]) for i, key in enumerate(zip(every.labels.tolist(), every.ids.tolist()))
                  if key not in taken and films[i] not in held_out_films)
    texts = [text for text, _ in rows]
    return clean(texts, config), [film for _, film in rows]


def batch_order(lengths, batch_size, rng, bucket):
    """Index arrays of one epoch's batches, shuffled by rng.

    With bucket, each batch holds reviews of similar length (sorted within windows of 32
    batches, then the batches shuffled), so under masking a batch runs only as many steps as
    its longest review instead of maxlen.
    """
    order = rng.permutation(len(lengths))
    if bucket:
        window = 32 * batch_size
        for start in range(0, len(order), window):
            chunk = order[start:start + window]
            order[start:start + window] = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if bucket:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def load_test_set(config, vocab):
    """Official test reviews as (x, y), the seeded balanced subset with test_limit; None if absent
    or with test_limit 0 (then nothing of the test set is read)."""
    if config.test_limit == 0:
        return None
    try:
        data = load_imdb(config.data, split="test")
    except MissingSplitError:
        return None
    texts, labels = data.texts, np.asarray(data.labels)
    if config.test_limit is not None and config.test_limit < len(texts):
        _, texts, _, labels = train_test_split(texts, labels, test_size=config.test_limit,
                                               seed=config.seed, stratify=labels)
    return encode(texts, vocab, config), np.asarray(labels)
