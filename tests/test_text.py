"""Cleaning, stopwords, the vocabulary and padding."""
import json
import os
import re
import subprocess
import sys

import nltk
import numpy as np
import pytest

from numpy_lstm import text
from numpy_lstm.errors import NumpyLSTMError
from numpy_lstm.text import NEGATIONS, Vocabulary, english_stopwords, pad_sequences, preprocess_reviews

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def clean(s, **kwargs):
    return preprocess_reviews([s], **kwargs)[0]


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("Great MOVIE", "great movie"),
        *((f"ab{c}cd", "abcd") for c in ".;:!'?,\"()[]"),
        ("one<br /><br />two", "one two"),
        ("one<br/><br/>two", "one two"),
        ("one<br  /><br\t/>two", "one two"),
        ("one<BR /><BR />two", "one two"),  # lower-cased before the match
        ("one<br />two", "one<br >two"),  # a single break is not matched: only its slash goes
        ("well-known cat/dog", "well known cat dog"),
        ("end.Next", "endnext"),  # deleted, not replaced by a space
        ("don't", "dont"),  # apostrophe gone before the stopword filter, so kept
        ("it's fine", "fine"),  # "it's" -> "its", which is a stopword
        ("(the) [best]", "best"),
        ("rock & roll &amp; more", "rock roll &amp"),
        ("  good  \tfilm\t ", "good film"),  # split on spaces, then each token stripped
        ("good\tfilm", "good\tfilm"),  # a tab inside a token stays
        ("this is the best of all", "best"),
        ("", ""),
        ("The. A, an!", ""),
    ],
)
def test_cleaning_rules(raw, cleaned):
    assert clean(raw) == cleaned


def test_negations():
    review = "this is not bad, no, nor good - don t"
    assert clean(review) == "bad good"
    assert clean(review, keep_negations=True) == "not bad no nor good don"
    assert clean("I didn't") == clean("I didn't", keep_negations=True) == "didnt"


def test_keep_stopwords_keeps_every_word_but_the_empty_and_ampersand():
    review = "this is not bad, but it was too long &  so  - don t"
    assert clean(review) == "bad long"
    assert clean(review, keep_stopwords=True) == "this is not bad but it was too long so don t"


def test_punctuation_makes_each_mark_a_word_and_still_deletes_the_apostrophe():
    review = "Don't miss it!! (Really.) 10/10, a \"must\"?<br /><br />Yes: [sic]; well-known"
    assert clean(review, keep_stopwords=True, punctuation=True) == (
        'dont miss it ! ! ( really . ) 10 10 , a " must " ? yes : [ sic ] ; well known')
    assert clean(review, keep_stopwords=True) == "dont miss it really 10 10 a must yes sic well known"
    # cleaning a cleaned word changes nothing (inspect's Reading relies on it)
    words = clean(review, keep_stopwords=True, punctuation=True).split(" ")
    assert preprocess_reviews(words, keep_stopwords=True, punctuation=True) == words


def test_negations_are_the_ones_nltk_drops():
    stop = english_stopwords()
    assert NEGATIONS <= stop
    assert {"no", "nor", "not"} <= NEGATIONS
    assert {w[: -len("'t")] for w in stop if w.endswith("n't")} <= NEGATIONS


def tutorial_preprocess(reviews, stopwords):
    """The tutorial's preprocess_reviews and RemoveStopWords, as the reference."""
    no_space = re.compile("(\\.)|(\\;)|(\\:)|(\\!)|(\\')|(\\?)|(\\,)|(\\\")|(\\()|(\\))|(\\[)|(\\])")
    with_space = re.compile("(<br\\s*/><br\\s*/>)|(\\-)|(\\/)")
    reviews = [no_space.sub("", line.lower()) for line in reviews]
    reviews = [with_space.sub(" ", line) for line in reviews]
    cleaned = []
    for line in reviews:
        words = []
        for word in line.split(" "):
            word = word.strip()
            if word not in stopwords and word != "" and word != "&":
                words.append(word)
        cleaned.append(" ".join(words))
    return cleaned


def test_same_as_the_tutorial_on_random_text():
    pieces = ["<br />", "<br/>", "<BR  />", "<br", "/>", "-", "/", ".", "'", "!", "&", " ", "  ", "\t",
              "Not", "the", "Film", "don", "t", "isn't", "x"]
    rng = np.random.default_rng(0)
    reviews = ["".join(rng.choice(pieces, size=rng.integers(0, 40))) for _ in range(2000)]
    assert preprocess_reviews(reviews) == tutorial_preprocess(reviews, set(english_stopwords()))


@pytest.fixture
def fresh_stopwords():
    text.english_stopwords.cache_clear()
    yield
    text.english_stopwords.cache_clear()


def test_missing_stopwords_corpus(tmp_path, monkeypatch, fresh_stopwords):
    attempts = []

    def failing_download(package, **kwargs):
        attempts.append(package)
        return False  # what nltk.download returns when it cannot fetch

    nltk.corpus.stopwords._unload()  # forget a corpus already read from the real NLTK_DATA
    monkeypatch.setenv("NLTK_DATA", str(tmp_path))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.setattr(nltk, "download", failing_download)
    with pytest.raises(NumpyLSTMError) as excinfo:
        english_stopwords()
    message = str(excinfo.value)
    assert "\n" not in message and "python -m nltk.downloader stopwords" in message and "NLTK_DATA" in message
    assert attempts == ["stopwords"]


def test_a_failed_download_is_one_line_of_ours(tmp_path, monkeypatch, capfd, fresh_stopwords):
    # A real download from a server that refuses the connection: NLTK reports the failure on
    # stderr over several lines unless told where else to print it
    nltk.corpus.stopwords._unload()
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    unreachable = nltk.downloader.Downloader(server_index_url="http://127.0.0.1:9/index.xml")
    monkeypatch.setattr(nltk, "download", unreachable.download)
    with pytest.raises(NumpyLSTMError) as excinfo:
        english_stopwords()
    message = str(excinfo.value)
    assert "\n" not in message and "Error loading stopwords" in message and "NLTK_DATA" in message
    assert capfd.readouterr().err == ""


def test_stopwords_downloaded_when_missing(tmp_path, monkeypatch, fresh_stopwords):
    real_path = list(nltk.data.path)
    english_stopwords()  # the real corpus must be reachable for this test
    nltk.corpus.stopwords._unload()
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])

    def working_download(package, **kwargs):
        nltk.data.path[:] = real_path  # as if it had been installed
        return True

    monkeypatch.setattr(nltk, "download", working_download)
    assert "the" in english_stopwords() and len(english_stopwords()) > 100


def test_vocabulary_ids_by_frequency_then_alphabet():
    vocab = Vocabulary(6).fit(["b a c", "a b", "d a", "e"])  # a:3, b:2, then c, d, e once each
    assert vocab.index_word == ["<pad>", "<oov>", "a", "b", "c", "d"]
    assert vocab.word_index == {"a": 2, "b": 3, "c": 4, "d": 5}
    assert len(vocab) == 6
    assert [ids.tolist() for ids in vocab.encode(["a e zzz", "", "d"])] == [[2, 1, 1], [], [5]]
    assert all(ids.dtype == np.int32 for ids in vocab.encode(["a", ""]))


def test_vocabulary_smaller_than_size():
    vocab = Vocabulary(500).fit(["x y", "y"])
    assert len(vocab) == 4 and vocab.size == 500
    assert len(Vocabulary(2).fit(["x"])) == 2
    assert Vocabulary(2).fit(["x"]).encode(["x"])[0].tolist() == [1]


def test_vocabulary_encode_decode_round_trip():
    texts = ["great film great cast", "dull film"]
    vocab = Vocabulary(10).fit(texts)
    assert [vocab.decode(ids) for ids in vocab.encode(texts)] == texts
    assert vocab.decode(np.array([0, 0, vocab.word_index["film"], 1], dtype=np.int32)) == "film <oov>"
    with pytest.raises(NumpyLSTMError) as excinfo:
        vocab.decode([len(vocab)])
    assert "\n" not in str(excinfo.value) and str(len(vocab)) in str(excinfo.value)


@pytest.mark.parametrize("size", [1, 0, 2.5, True, "500"])
def test_vocabulary_bad_size(size):
    with pytest.raises(NumpyLSTMError) as excinfo:
        Vocabulary(size)
    assert "size" in str(excinfo.value)


def test_vocabulary_save_load(tmp_path):
    vocab = Vocabulary(5).fit(["é b b", "c é é"])
    vocab.save(tmp_path / "vocab.json")
    loaded = Vocabulary.load(tmp_path / "vocab.json")
    assert (loaded.size, loaded.index_word, loaded.word_index) == (vocab.size, vocab.index_word, vocab.word_index)
    assert os.listdir(tmp_path) == ["vocab.json"]


@pytest.mark.parametrize(
    "content, words",
    [
        (None, ["not found"]),
        ("{not json", ["not valid JSON"]),
        ("[1, 2]", ["not a vocabulary"]),
        (json.dumps({"format": "numpy_lstm.Vocabulary", "size": 3, "words": ["a", "b"]}), ["not a vocabulary"]),
        (json.dumps({"format": "numpy_lstm.Vocabulary", "size": 9, "words": ["a", "a"]}), ["not a vocabulary"]),
        (json.dumps({"format": "numpy_lstm.Vocabulary", "size": 9, "words": [1]}), ["not a vocabulary"]),
        (json.dumps({"size": 9, "words": ["a"]}), ["not a vocabulary"]),
    ],
)
def test_vocabulary_load_bad_file(tmp_path, content, words):
    path = tmp_path / "vocab.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(NumpyLSTMError) as excinfo:
        Vocabulary.load(path)
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message and all(w in message for w in words)


def test_vocabulary_same_ids_in_every_process(tmp_path):
    # Many ties: a vocabulary built from a set, like the tutorial's, would order them by hash.
    script = (
        "import sys\n"
        "from numpy_lstm.text import Vocabulary\n"
        "words = [f'w{i}' for i in range(200)]\n"
        "Vocabulary(60).fit([' '.join(words), ' '.join(words[::3])]).save(sys.argv[1])\n"
    )
    saved = []
    for seed in ("1", "2"):
        path = tmp_path / f"vocab{seed}.json"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=env, cwd=REPO)
        saved.append(path.read_text())
    assert saved[0] == saved[1]
    words = json.loads(saved[0])["words"]
    assert len(words) == 58 and words[:3] == ["w0", "w102", "w105"]


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, [[0, 0, 1, 2, 3], [0, 0, 0, 0, 0], [1, 2, 3, 4, 5], [0, 0, 0, 0, 9]]),
        ({"maxlen": 3}, [[1, 2, 3], [0, 0, 0], [3, 4, 5], [0, 0, 9]]),
        ({"maxlen": 3, "truncating": "post"}, [[1, 2, 3], [0, 0, 0], [1, 2, 3], [0, 0, 9]]),
        ({"maxlen": 4, "padding": "post"}, [[1, 2, 3, 0], [0, 0, 0, 0], [2, 3, 4, 5], [9, 0, 0, 0]]),
        ({"maxlen": 4, "padding": "post", "truncating": "post", "value": -1},
         [[1, 2, 3, -1], [-1, -1, -1, -1], [1, 2, 3, 4], [9, -1, -1, -1]]),
        ({"maxlen": 7}, [[0, 0, 0, 0, 1, 2, 3], [0] * 7, [0, 0, 1, 2, 3, 4, 5], [0] * 6 + [9]]),
    ],
)
def test_pad_sequences(kwargs, expected):
    sequences = [[1, 2, 3], [], np.array([1, 2, 3, 4, 5], dtype=np.int32), [9]]
    padded = pad_sequences(sequences, **kwargs)
    assert padded.dtype == np.int32
    assert padded.tolist() == expected


def test_pad_sequences_exact_length_and_dtype():
    assert pad_sequences([[1, 2], [3, 4]], maxlen=2).tolist() == [[1, 2], [3, 4]]
    padded = pad_sequences([[0.5, 1.5]], maxlen=3, dtype="float32", value=-1.0)
    assert padded.dtype == np.float32 and padded.tolist() == [[-1.0, 0.5, 1.5]]


def test_pad_sequences_nothing_to_pad():
    assert pad_sequences([]).shape == (0, 0)
    assert pad_sequences([], maxlen=5).shape == (0, 5)
    assert pad_sequences([[], []]).shape == (2, 0)


@pytest.mark.parametrize(
    "kwargs, word",
    [({"maxlen": 0}, "maxlen"), ({"maxlen": -2}, "maxlen"), ({"maxlen": 2.0}, "maxlen"),
     ({"padding": "left"}, "padding"), ({"truncating": "middle"}, "truncating")],
)
def test_pad_sequences_bad_arguments(kwargs, word):
    with pytest.raises(NumpyLSTMError) as excinfo:
        pad_sequences([[1, 2]], **kwargs)
    assert "\n" not in str(excinfo.value) and word in str(excinfo.value)


def test_pad_sequences_needs_flat_sequences():
    with pytest.raises(NumpyLSTMError) as excinfo:
        pad_sequences([[1], [[1, 2]]])
    assert "sequence 1" in str(excinfo.value)


def test_vocabulary_words_of_enough_groups():
    texts = ["alpha beta", "alpha beta", "alpha gamma", "gamma"]
    vocab = Vocabulary(10).fit(texts, groups=["f1", "f1", "f2", "f3"], min_groups=2)
    assert vocab.index_word[2:] == ["alpha", "gamma"]  # beta is in one film only
    assert Vocabulary(10).fit(texts, groups=["f1"] * 4, min_groups=1).index_word[2:] == ["alpha", "beta", "gamma"]
