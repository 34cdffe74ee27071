"""The IMDB reviews (Maas et al., ACL 2011): find, download, read, and split them.

Where the data comes from, first match wins: the `source` argument (the CLI's --data), the
NUMPY_LSTM_DATA environment variable, `aclImdb_v1.tar.gz` in the cache directory
(NUMPY_LSTM_CACHE, default ~/.cache/numpy_lstm), and else a download of the official archive
into the cache. A source is a .tar.gz archive (read in one streaming pass, never extracted) or a
folder: `aclImdb/` itself or the folder that contains it.

Reviews are `{train,test}/{pos,neg}/ID_RATING.txt` (read, and an archive's parse cached, by
numpy_lstm/imdb_files.py). The order is fixed, unlike the tutorial's `os.listdir` order:
positives then negatives, each by numeric id.
"""
import dataclasses
import hashlib
import math
import os

import numpy as np

from .checks import POSITIVE_INTEGER, check
from .errors import MissingSplitError, NumpyLSTMError
from .fileio import atomic_path, refused_as_write_error
from .imdb_files import CLASSES, read_archive_cached, read_folder
from .progress import download_bar

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
ARCHIVE_NAME = "aclImdb_v1.tar.gz"
SPLITS = {"train": ("train",), "test": ("test",), "all": ("train", "test")}


@dataclasses.dataclass
class ImdbData:
    """Reviews of one split, n of them: positives then negatives, each by id.

    texts: list of n str (raw text). labels: (n,) int64, 1 = positive, 0 = negative.
    ids: (n,) int64, the ID of ID_RATING.txt (unique per split and class, not overall).
    ratings: (n,) int64, the RATING, 7..10 for positives and 1..4 for negatives.
    films: (n,) str, the IMDb title ("tt0453418") the review is about, from urls_{pos,neg}.txt
    (line i is review id i); "" where the data has no such file.
    """

    texts: list
    labels: np.ndarray
    ids: np.ndarray
    ratings: np.ndarray
    films: np.ndarray

    def __len__(self):
        return len(self.texts)


def load_imdb(source=None, split="train", per_class=None):
    """Load the labeled reviews of `split` ("train", "test", or "all": train then test).

    source: path of an archive or folder, None to look it up (see the module docstring).
    per_class: keep only the first N positives and the first N negatives (by id) of each split;
    None keeps all. Returns an ImdbData.
    """
    if split not in SPLITS:
        raise NumpyLSTMError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    check("per_class", per_class, POSITIVE_INTEGER, optional=True)
    path = find_data(source)
    try:
        if os.path.isfile(path):
            reviews = read_archive_cached(path, SPLITS[split], cache_dir())
        elif os.path.isdir(path):
            reviews = read_folder(path, SPLITS[split], MissingSplitError)
        else:
            raise NumpyLSTMError(f"{path} is neither a folder nor an archive file: the IMDB data is one of these")
    except NumpyLSTMError as e:
        if type(e) is NumpyLSTMError and not source and os.environ.get("NUMPY_LSTM_DATA"):
            raise NumpyLSTMError(f"{e} (the path is NUMPY_LSTM_DATA's)") from None
        raise
    return _select(reviews, SPLITS[split], per_class, path)


def cache_dir():
    """The cache directory: $NUMPY_LSTM_CACHE, else ~/.cache/numpy_lstm."""
    return os.environ.get("NUMPY_LSTM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "numpy_lstm")


def find_data(source=None):
    """Path of the dataset: `source`, $NUMPY_LSTM_DATA, the cached archive, or a fresh download."""
    for path, origin in ((source, "the given path"), (os.environ.get("NUMPY_LSTM_DATA"), "NUMPY_LSTM_DATA")):
        if path:
            path = os.path.expanduser(os.fspath(path))
            if not os.path.exists(path):
                raise NumpyLSTMError(f"IMDB data not found: {path} ({origin}) does not exist")
            return path
    cached = os.path.join(cache_dir(), ARCHIVE_NAME)
    if not os.path.exists(cached):
        download(cached)
    return cached


def download(dest, url=URL, md5=MD5):
    """Download `url` to `dest` with a progress bar, check its MD5, and only then move it in place.

    Any failure (no network, a cut-off transfer, a wrong checksum) leaves nothing at `dest` and
    raises NumpyLSTMError naming the other ways to provide the data; a full or read-only disk is
    a WriteError naming `dest`.
    """
    import http.client  # imported here: only a first run needs them
    import urllib.request

    def fail(problem):
        return NumpyLSTMError(
            f"could not download the IMDB dataset from {url} ({problem}); provide it with --data PATH, "
            f"NUMPY_LSTM_DATA=PATH, or by saving {ARCHIVE_NAME} in {os.path.dirname(os.path.abspath(dest))}"
        )

    digest = hashlib.md5()
    received = 0
    with atomic_path(dest) as tmp, open(tmp, "wb") as out:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                expected = int(response.headers.get("Content-Length") or 0) or None
                with download_bar(expected, ARCHIVE_NAME) as bar:
                    while chunk := response.read(1 << 20):
                        with refused_as_write_error(dest):   # a full disk is not a network failure
                            out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as e:
            raise fail(str(e) or type(e).__name__) from None
        if expected and received < expected:
            raise fail(f"the transfer stopped after {received} of {expected} bytes")
        if digest.hexdigest() != md5:
            raise fail(f"MD5 {digest.hexdigest()} of the download is not the expected {md5}")
    return dest


def _select(reviews, splits, per_class, where):
    """ImdbData of `reviews` in `splits`, each class by id and cut to `per_class`."""
    chosen = []
    for split in splits:
        for name, label in CLASSES:
            group = sorted((r for r in reviews if r.split == split and r.label == label), key=lambda r: r.id)
            if not group:
                raise MissingSplitError(f"no {split}/{name} reviews in {where}: "
                                        f"expected files {split}/{name}/ID_RATING.txt")
            chosen += group[:per_class]
    return ImdbData(
        texts=[r.text for r in chosen],
        labels=np.array([r.label for r in chosen], dtype=np.int64),
        ids=np.array([r.id for r in chosen], dtype=np.int64),
        ratings=np.array([r.rating for r in chosen], dtype=np.int64),
        films=np.array([r.film for r in chosen], dtype=str),
    )


def train_test_split(*arrays, test_size=0.2, seed=0, stratify=None, shuffle=True, groups=None):
    """Split arrays (numpy arrays, lists or tuples of one length n) into random train and test parts.

    Returns (a_train, a_test, b_train, b_test, ...), each part the type of its input, like
    scikit-learn's function of this name. test_size: a fraction in (0, 1) (the test part gets
    ceil(test_size * n) items) or a count. seed: for np.random.default_rng. stratify: labels of
    shape (n,); each label gets its share of the test part (rounded by largest remainder).
    shuffle=False takes the last items as the test part, in order. groups: shape (n,), e.g. each
    review's film; whole groups go to one part, so no group is on both sides (see _grouped: the
    test part then has at most the asked-for items of each label, as close to it as the groups allow).
    """
    if not arrays:
        raise NumpyLSTMError("train_test_split needs at least one array")
    n = len(arrays[0])
    for a in arrays:
        if not isinstance(a, (np.ndarray, list, tuple)):
            raise NumpyLSTMError(f"train_test_split takes numpy arrays, lists or tuples, got {type(a).__name__}")
        if len(a) != n:
            raise NumpyLSTMError(f"train_test_split needs arrays of one length, got {[len(a) for a in arrays]}")
    n_test = _test_count(test_size, n)
    rng = np.random.default_rng(seed)
    if groups is not None:
        if not shuffle:
            raise NumpyLSTMError("groups needs shuffle=True")
        train, test = _grouped(_labels_of(stratify, n, "stratify"), _labels_of(groups, n, "groups"), n_test, rng)
    elif stratify is None:
        order = rng.permutation(n) if shuffle else np.arange(n)
        train, test = order[: n - n_test], order[n - n_test:]
    elif not shuffle:
        raise NumpyLSTMError("stratify needs shuffle=True")
    else:
        train, test = _stratified(_labels_of(stratify, n, "stratify"), n_test, rng)
    return [part for a in arrays for part in (_take(a, train), _take(a, test))]


def _test_count(test_size, n):
    """Number of test items for test_size (a fraction or a count) of n, leaving both parts non-empty."""
    if isinstance(test_size, (float, np.floating)) and 0 < test_size < 1:
        n_test = math.ceil(test_size * n)
    elif isinstance(test_size, (int, np.integer)) and not isinstance(test_size, bool):
        n_test = int(test_size)
    else:
        raise NumpyLSTMError(f"test_size must be a fraction in (0, 1) or a count, got {test_size!r}")
    if not 0 < n_test < n:
        raise NumpyLSTMError(f"test_size={test_size!r} of {n} items leaves an empty train or test part")
    return n_test


def _labels_of(values, n, name):
    """`values` (None or shape (n,)) as an array; None stays None."""
    if values is None:
        return None
    values = np.asarray(values)
    if values.shape != (n,):
        raise NumpyLSTMError(f"{name} must have shape ({n},), got {values.shape}")
    return values


def _test_shares(y, n_test):
    """(C,) test items per label id in y (N,): each label's share of n_test, rounded by largest remainder."""
    share = np.bincount(y) * n_test / len(y)
    per_class = np.floor(share).astype(int)
    # the items left over by rounding down go to the largest remainders
    per_class[np.argsort(per_class - share, kind="stable")[: n_test - per_class.sum()]] += 1
    return per_class


def _stratified(labels, n_test, rng):
    """Shuffled (train, test) indices with each label's share of n_test test items."""
    _, y = np.unique(labels, return_inverse=True)
    test = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c, k in enumerate(_test_shares(y, n_test))])
    in_test = np.zeros(len(labels), dtype=bool)
    in_test[test] = True
    return rng.permutation(np.flatnonzero(~in_test)), rng.permutation(test)


def _grouped(labels, groups, n_test, rng):
    """Shuffled (train, test) indices where each group lies wholly in one part.

    Groups are visited in random order and one joins the test part when it fits: when no label
    (all items are one label without `labels`) would pass its share of n_test. So the test part
    never has more than each label's share, and is short of it only by what no remaining group
    fits into (with many small groups, nothing).
    """
    y = np.zeros(len(groups), int) if labels is None else np.unique(labels, return_inverse=True)[1]
    _, g = np.unique(groups, return_inverse=True)
    counts = np.zeros((g.max() + 1, y.max() + 1), int)      # (groups, labels) items
    np.add.at(counts, (g, y), 1)
    room = _test_shares(y, n_test)
    chosen = np.zeros(len(counts), dtype=bool)
    for group in rng.permutation(len(counts)):
        if np.all(counts[group] <= room):
            chosen[group] = True
            room -= counts[group]
    if not chosen.any() or chosen.all():
        raise NumpyLSTMError(f"test_size={n_test} cannot be met with whole groups: "
                             f"an empty train or test part")
    in_test = chosen[g]
    return rng.permutation(np.flatnonzero(~in_test)), rng.permutation(np.flatnonzero(in_test))


def _take(a, indices):
    """Items `indices` of a numpy array, list or tuple, as the same type."""
    return a[indices] if isinstance(a, np.ndarray) else type(a)(a[i] for i in indices)
