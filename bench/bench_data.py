"""Time the data pipeline on the real dataset and report tokens per review.

    NLTK_DATA=../shared/nltk_data python bench/bench_data.py [--data PATH]

(with numpy_lstm installed, or PYTHONPATH=. from the repository root).
PATH defaults to $NUMPY_LSTM_DATA. A fresh temporary cache is used, so the first load parses
the archive ("cold") and the next ones read the cached parse ("warm"). The subset is the
tutorial's: the first 500 positive and 500 negative training reviews.
"""
import argparse
import os
import tempfile
import time

import numpy as np

from numpy_lstm import Vocabulary, load_imdb, pad_sequences, preprocess_reviews


def timed(label, fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    print(f"{label:<52} {seconds:6.2f} s")
    return result, seconds


def token_stats(label, lengths):
    print(
        f"{label:<8} n={len(lengths):6d}  mean {lengths.mean():6.1f}  median {np.median(lengths):5.0f}  "
        f"p90 {np.percentile(lengths, 90):5.0f}  over 500: {np.mean(lengths > 500):.2%}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="archive or folder (default: $NUMPY_LSTM_DATA)")
    source = parser.parse_args().data
    with tempfile.TemporaryDirectory() as cache:
        os.environ["NUMPY_LSTM_CACHE"] = cache
        reviews, cold = timed("load all 50,000, cold (parse the archive)", load_imdb, source, split="all")
        timed("load all 50,000, warm (cached parse)", load_imdb, source, split="all")
        subset, _ = timed("load subset 500 + 500, warm", load_imdb, source, per_class=500)
    # The first call imports NLTK and reads its stopwords; later calls reuse them
    _, first = timed("preprocess subset 1,000 (reads the stopwords)", preprocess_reviews, subset.texts)
    cleaned, preprocess = timed("preprocess all 50,000", preprocess_reviews, reviews.texts)
    print(f"{'cold load + subset + preprocess all (budget 15 s)':<52} {cold + first + preprocess:6.2f} s")
    vocab, _ = timed("Vocabulary(500).fit, all", Vocabulary(500).fit, cleaned)
    encoded, _ = timed("encode, all", vocab.encode, cleaned)
    timed("pad_sequences(maxlen=500), all", pad_sequences, encoded, maxlen=500)

    print("tokens per review after preprocessing:")
    lengths = np.array([len(ids) for ids in encoded])
    half = len(lengths) // 2  # "all" is the train split, then the test split
    token_stats("all", lengths)
    token_stats("train", lengths[:half])
    token_stats("test", lengths[half:])


if __name__ == "__main__":
    main()
