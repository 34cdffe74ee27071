"""From review text to integer arrays, as the tutorial does it: cleaning, a vocabulary, padding.

The tutorial's steps, its bugs fixed:

- `preprocess_reviews` cleans text exactly like its `preprocess_reviews` / `RemoveStopWords`.
- `Vocabulary` replaces its `Vocabulary` class. Its ids came from a `set`, so they changed from run
  to run (string hashing is salted per process); the most frequent word, unknown words and padding
  all got id 0; and `ReverseTransformSentencesToId` was a copy of the forward method.
- `pad_sequences` is Keras's, so the tutorial no longer needs Keras for it.
"""
import collections
import functools
import io
import itertools
import re
import sys

import numpy as np

from .errors import NumpyLSTMError
from .fileio import write_text
from .safe_files import read_json, to_json

# The tutorial's two regexes, rewritten for speed with the same result: its alternations of
# one-character groups took 18 s on the 50,000 reviews, these take 1 s. Replacing "<br /><br />"
# before "-" and "/" is what its single left-to-right pass did: a pair's slashes go with it.
_DELETE = re.compile(r"""[.;:!'?,"()\[\]]""")
# The same marks but the apostrophe, each made a word of its own when punctuation is kept.
_MARKS = re.compile(r"""([.;:!?,"()\[\]])""")
_BR_PAIR = re.compile(r"<br\s*/><br\s*/>")

# The tutorial also drops empty tokens (from runs of spaces) and a lone "&".
_ALWAYS_DROPPED = frozenset({"", "&"})

# The negations in NLTK's English stopword list, as they can reach the filter. Apostrophes are
# deleted before stopwords are removed, so "don't" becomes "dont", which is not in the list and
# is kept even by default; the list's "don't", "isn't", ... never match anything. What does
# reach it is "no", "nor", "not" and the stems "don", "isn", ... (from "don t", "isn-t"). In
# IMDB the stems are rare and mostly other words: "don" is usually the name Don, "won" the verb.
NEGATIONS = frozenset({
    "no", "nor", "not",
    "ain", "aren", "couldn", "didn", "doesn", "don", "hadn", "hasn", "haven", "isn", "mightn",
    "mustn", "needn", "shan", "shouldn", "wasn", "weren", "won", "wouldn",
})


def user_text(text):
    """A review as typed on the command line or read from standard input, with every byte that
    is not UTF-8 replaced by U+FFFD.

    Python hands such bytes over as lone surrogates (its "surrogateescape"), which no UTF-8
    file or terminal accepts: printing them, or writing them to a report, would fail.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def standard_input_text():
    """All of standard input, through `user_text` (bytes that are not UTF-8 do not stop it)."""
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="surrogateescape")
    return user_text(sys.stdin.read())


@functools.lru_cache(maxsize=None)
def english_stopwords():
    """NLTK's English stopwords (179 words) as a frozenset.

    Tries `nltk.download("stopwords")` once when the corpus is missing; NumpyLSTMError if that
    fails too.
    """
    import nltk  # imported here so that `import numpy_lstm` stays fast

    try:
        return frozenset(nltk.corpus.stopwords.words("english"))
    except LookupError:
        pass
    failure = io.StringIO()   # NLTK prints why it failed over several lines; the error says it in one
    try:
        nltk.download("stopwords", quiet=True, print_error_to=failure)
        return frozenset(nltk.corpus.stopwords.words("english"))
    except (LookupError, OSError, ValueError):
        why = " ".join(failure.getvalue().replace("[nltk_data]", " ").split())
        raise NumpyLSTMError(
            "NLTK's stopwords corpus is missing and could not be downloaded"
            + (f" ({why})" if why else "") + ": install it with "
            "`python -m nltk.downloader stopwords` or point NLTK_DATA at a folder that has it"
        ) from None


def preprocess_reviews(texts, keep_negations=False, keep_stopwords=False, punctuation=False):
    """Clean reviews the tutorial's way.

    In this order, as the tutorial does: lower-case; delete . ; : ! ' ? , " ( ) [ ]; replace
    "<br /><br />" (optional whitespace before each slash), "-" and "/" with a space; split on
    single spaces, strip each token, drop NLTK's English stopwords, empty tokens and "&"; join
    with single spaces. The order has consequences: "don't" -> "dont" (kept, not a stopword),
    "end.Next" -> "endnext", "well-known" -> "well known", and a single "<br />" leaves the
    tokens "<br" and ">".

    texts: iterable of str. keep_negations: keep the words in NEGATIONS (no, nor, not, ...),
    which the tutorial drops. keep_stopwords: drop no stopword at all (words like "but", "too",
    "very" carry sentiment in context). punctuation: the deleted marks but the apostrophe become
    words of their own ("great!" -> "great !"): an exclamation or a question says something of
    the tone. Returns a list of str, "" for a review with nothing left.
    """
    dropped = _ALWAYS_DROPPED if keep_stopwords else english_stopwords() | _ALWAYS_DROPPED
    if keep_negations:
        dropped -= NEGATIONS
    cleaned = []
    for text in texts:
        text = text.lower()
        text = _MARKS.sub(r" \1 ", text).replace("'", "") if punctuation else _DELETE.sub("", text)
        text = _BR_PAIR.sub(" ", text).replace("-", " ").replace("/", " ")
        cleaned.append(" ".join([w for w in map(str.strip, text.split(" ")) if w not in dropped]))
    return cleaned


def word_spans(text, punctuation=False):
    """Where the words of `preprocess_reviews([text], keep_stopwords=True, punctuation=...)` come
    from: a list of (word, start, end), text[start:end] the characters it was made of ("dont"
    from "don't", "<br" from "<br />").

    The cleaning's steps again, each character carrying its place in text. The words are
    preprocess_reviews' own unless lower-casing changes a character's length ("İ"), where
    lower-casing each character alone may differ from lower-casing the text: callers compare.
    """
    lower = text.lower()
    if len(lower) == len(text):
        places = range(len(text))
    else:
        lower = "".join(ch.lower() for ch in text)
        places = [k for k, ch in enumerate(text) for _ in ch.lower()]
    chars, where = [], []
    for ch, k in zip(lower, places):
        if ch == "'" or (not punctuation and _DELETE.match(ch)):
            continue
        spaced = (" ", ch, " ") if punctuation and _MARKS.match(ch) else (ch,)
        chars.extend(spaced)
        where.extend([k] * len(spaced))
    # A pair of breaks becomes as many spaces as it had characters: the places stay aligned, and
    # the extra empty tokens are dropped as the cleaning drops them.
    cleaned = _BR_PAIR.sub(lambda m: " " * len(m.group()), "".join(chars)).replace("-", " ").replace("/", " ")
    spans = []
    for token in re.finditer(r"[^ ]+", cleaned):
        word = token.group().strip()
        if word in _ALWAYS_DROPPED:
            continue
        first = token.start() + token.group().index(word)
        spans.append((word, where[first], where[first + len(word) - 1] + 1))
    return spans


def _tokens(text):
    """The words of a cleaned text; none for "" (where `split` would give one empty word)."""
    return text.split(" ") if text else []


class Vocabulary:
    """The `size` - 2 most frequent words, with two reserved ids: 0 = padding, 1 = unknown word.

    `size` counts the reserved ids, so `Vocabulary(500)` yields ids < 500 and the tutorial's
    `Embedding(500, 32)` stays a 500-row table. Words get ids 2, 3, ... by falling frequency,
    ties broken alphabetically (by code point), so the ids are the same on every run.

    With fewer distinct words than size - 2 the vocabulary is smaller: `len(vocab)` is the real
    number of ids. Size the embedding with `size`, not `len(vocab)`, so the table's shape does
    not depend on the data (the unused rows are never looked up).

    A new Vocabulary has no words (everything encodes to 1) until `fit` or `load`.

    Attributes: size (int), word_index (dict str -> int, the words only), index_word (list of
    str, id -> word, with "<pad>" and "<oov>" at 0 and 1). Texts are cleaned strings (see
    `preprocess_reviews`), words separated by single spaces.
    """

    PAD, OOV = 0, 1
    _RESERVED = ("<pad>", "<oov>")
    _FORMAT = "numpy_lstm.Vocabulary"
    MAX_SIZE = 10_000_000              # as the vocab_size setting's bound
    MAX_FILE_BYTES = 512 << 20         # 10 million words of 50 bytes

    def __init__(self, size):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
            raise NumpyLSTMError(f"vocabulary size must be an integer >= 2 (ids 0 and 1 are reserved), got {size!r}")
        self.size = int(size)
        self._set_words([])

    def _set_words(self, words):
        self.index_word = [*self._RESERVED, *words]
        self.word_index = {word: i for i, word in enumerate(words, start=2)}

    def __len__(self):
        return len(self.index_word)

    def fit(self, texts, groups=None, min_groups=1):
        """Keep the size - 2 most frequent words of `texts` (iterable of str). Returns self.

        groups: one label per text (e.g. its film); then only words found in texts of at least
        min_groups different groups are kept.
        """
        texts = list(texts)                  # read twice with groups
        counts = collections.Counter()
        for text in texts:
            counts.update(_tokens(text))
        if groups is not None and min_groups > 1:
            # One group's words at a time: a set of every (word, group) pair took 0.4 GB on the
            # 25,000 reviews with stopwords and punctuation kept.
            spread = collections.Counter()
            by_group = sorted(range(len(texts)), key=lambda k: groups[k])
            for _, members in itertools.groupby(by_group, key=lambda k: groups[k]):
                spread.update({word for k in members for word in _tokens(texts[k])})
            counts = {w: c for w, c in counts.items() if spread[w] >= min_groups}
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        self._set_words([word for word, _ in ranked[: self.size - 2]])
        return self

    def encode(self, texts):
        """Ids of each text: a list of int32 arrays of shape (number of words,); unknown -> 1."""
        index = self.word_index
        return [np.array([index.get(w, self.OOV) for w in _tokens(t)], dtype=np.int32) for t in texts]

    def decode(self, ids):
        """The words of one text's ids (1-D ints), joined by spaces; padding skipped, 1 -> "<oov>"."""
        words = []
        for i in ids:
            if not 0 <= i < len(self.index_word):
                raise NumpyLSTMError(f"id {i} is outside this vocabulary's {len(self.index_word)} ids")
            if i != self.PAD:
                words.append(self.index_word[i])
        return " ".join(words)

    def save(self, path):
        """Write the vocabulary as JSON (atomically)."""
        state = {"format": self._FORMAT, "size": self.size, "words": self.index_word[2:]}
        write_text(path, to_json(state, ensure_ascii=False))

    @classmethod
    def load(cls, path):
        """Read a vocabulary written by `save`; NumpyLSTMError if the file is missing or not one."""
        try:
            state = read_json(path, "vocabulary file", cls.MAX_FILE_BYTES)
        except FileNotFoundError:
            raise NumpyLSTMError(f"vocabulary file not found: {path}") from None
        valid = (
            isinstance(state, dict)
            and state.get("format") == cls._FORMAT
            and isinstance(state.get("size"), int) and 2 <= state["size"] <= cls.MAX_SIZE
            and isinstance(state.get("words"), list)
            and all(isinstance(w, str) for w in state["words"])
            and len(set(state["words"])) == len(state["words"]) <= state["size"] - 2
        )
        if not valid:
            raise NumpyLSTMError(f"{path} is not a vocabulary file of numpy-lstm's: it needs its format, a size "
                                 f"from 2 to {cls.MAX_SIZE:,} and at most size - 2 distinct words")
        vocab = cls(state["size"])
        vocab._set_words(state["words"])
        return vocab


def pad_sequences(sequences, maxlen=None, padding="pre", truncating="pre", value=0, dtype="int32"):
    """Keras's `pad_sequences`: stack 1-D sequences into an array of shape (len(sequences), maxlen).

    maxlen None means the longest sequence's length. Longer sequences lose their start
    (truncating="pre") or end ("post"); shorter ones are filled with `value` before ("pre") or
    after ("post"). An empty sequence gives a row of `value`; no sequences give shape
    (0, maxlen or 0).
    """
    for name, arg in (("padding", padding), ("truncating", truncating)):
        if arg not in ("pre", "post"):
            raise NumpyLSTMError(f"{name} must be 'pre' or 'post', got {arg!r}")
    if maxlen is not None and (isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 1):
        raise NumpyLSTMError(f"maxlen must be a positive integer or None, got {maxlen!r}")
    sequences = [np.asarray(s) for s in sequences]
    for i, s in enumerate(sequences):
        if s.ndim != 1:
            raise NumpyLSTMError(f"pad_sequences needs 1-D sequences, sequence {i} has shape {s.shape}")
    if maxlen is None:
        maxlen = max((len(s) for s in sequences), default=0)
    padded = np.full((len(sequences), maxlen), value, dtype=dtype)
    for row, s in zip(padded, sequences):
        s = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        if padding == "pre":
            row[maxlen - len(s):] = s
        else:
            row[: len(s)] = s
    return padded
