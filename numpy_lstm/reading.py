"""A review as a run reads it: every word after the run's cleaning, and what became of it.

A word is read, read as the unknown-word id, dropped as a stopword or as unknown, or cut by
maxlen (pad_sequences keeps the last maxlen words). Each word also knows where it stands in the
review as written, so that pages can show the text as its author wrote it.
"""
import dataclasses
from typing import Optional

import numpy as np

from .prepare import clean
from .text import Vocabulary, preprocess_reviews, word_spans

READ, UNKNOWN, STOPWORD, SKIPPED, CUT = "read", "unknown", "stopword", "skipped", "cut"


@dataclasses.dataclass
class Reading:
    """A review as the run's preprocessing reads it.

    words: every word of the cleaned review, stopwords included (list of str).
    status: one per word: READ; UNKNOWN (read as the unknown-word id 1); STOPWORD; SKIPPED (not
    in the vocabulary, and the run skips such words); CUT (before the last maxlen words read).
    word_ids: int (len(words),): the id each read word gets, 0 for the others.
    spans: (start, end) per word, its characters in the text as written, or None when they
    cannot be traced (see `text.word_spans`).
    """

    words: list
    status: list
    word_ids: np.ndarray
    spans: Optional[list] = None

    @property
    def positions(self):
        """Indices into `words` of the n words the model reads, in order."""
        return np.array([k for k, s in enumerate(self.status) if s in (READ, UNKNOWN)], dtype=int)

    @property
    def tokens(self):
        return [self.words[k] for k in self.positions]

    @property
    def ids(self):
        return self.word_ids[self.positions]


def read_review(text, vocab, config):
    """The Reading of `text` under a run's config (a TrainConfig) and vocabulary.

    Its ids are those `prepare.encode` gives the review, without the padding.
    """
    cleaned = preprocess_reviews([text], keep_stopwords=True, punctuation=config.punctuation)[0]
    words = cleaned.split(" ") if cleaned else []      # as Vocabulary.encode splits
    # Cleaning a cleaned word changes nothing, so each word alone is kept or dropped as it is
    # inside the review: "" marks a stopword.
    kept = clean(words, config)
    status, word_ids = [], np.zeros(len(words), np.int32)
    for k, (word, ids) in enumerate(zip(kept, vocab.encode(kept))):
        if not word:
            status.append(STOPWORD)
        elif ids[0] == Vocabulary.OOV and config.oov == "skip":
            status.append(SKIPPED)
        else:
            status.append(UNKNOWN if ids[0] == Vocabulary.OOV else READ)
            word_ids[k] = ids[0]
    spans = word_spans(text, config.punctuation)
    traced = [word for word, _, _ in spans] == words
    reading = Reading(words, status, word_ids, [(a, b) for _, a, b in spans] if traced else None)
    for k in reading.positions[:-config.maxlen]:     # pad_sequences truncates at the front
        status[k], word_ids[k] = CUT, 0
    return reading
