"""Reading the IMDB reviews from an aclImdb folder or .tar.gz archive, and the archive's parse cache.

Reviews are `{train,test}/{pos,neg}/ID_RATING.txt`, the films in `{train,test}/urls_{pos,neg}.txt`.
In an archive, a member counts only at its exact place, `aclImdb/train/pos/ID_RATING.txt` (with
an optional leading `./`): a member named `../../train/pos/9_10.txt` or `other/train/pos/9_10.txt`
is no review. Hidden files (macOS "._*") and files not ending in .txt are skipped; any other name
is an error, since the review's id and rating would be lost. Invalid UTF-8 is replaced, not fatal;
an empty file is the review "". A review file is at most REVIEW_BYTES (IMDB's longest is 14 kB)
and an archive holds at most MAX_REVIEWS of them, so a crafted archive cannot fill the memory.

Parsing the 50,000 reviews of an archive takes seconds, so the result is cached as JSON in the
cache directory, one file per split, keyed by the SHA-256 of the archive's bytes (hashed while it
is parsed, so the key is of the very bytes parsed): a different archive never reads another's
reviews, whatever its size and time. A cached copy that is damaged or not what we write is
parsed again and rewritten.
"""
import hashlib
import io
import os
import re
import tarfile
import zlib
from typing import NamedTuple

from .errors import NumpyLSTMError
from .fileio import WriteError, write_text
from .safe_files import MB, open_regular, parse_json, read_bytes, to_json

CLASSES = (("pos", 1), ("neg", 0))
REVIEW_BYTES = 1 * MB
URLS_BYTES = 64 * MB
MAX_REVIEWS = 1_000_000
CACHE_BYTES = 4096 * MB

_REVIEW_FILE = re.compile(r"([0-9]+)_([0-9]+)\.txt")
_ARCHIVE_MEMBER = re.compile(r"(?:\./)?aclImdb/(train|test)/(pos|neg)/([^/]+)")
_URLS_MEMBER = re.compile(r"(?:\./)?aclImdb/(train|test)/urls_(pos|neg)\.txt")
_FILM = re.compile(r"/title/(tt[0-9]+)")
_PARSED_VERSION = 4


class Review(NamedTuple):
    """One review file, as parsed and as cached (a JSON list of these rows)."""

    split: str
    label: int
    id: int
    rating: int
    text: str
    film: str = ""


def review_key(name, where):
    """(id, rating) from a file name ID_RATING.txt; None for files that are not reviews."""
    if name.startswith(".") or not name.endswith(".txt"):
        return None
    match = _REVIEW_FILE.fullmatch(name)
    if match is None:
        raise NumpyLSTMError(f"unexpected file {where}: review files are named ID_RATING.txt, e.g. 200_8.txt")
    return int(match[1]), int(match[2])


def review_text(raw):
    """A review's text from the file's bytes, lines stripped and joined by spaces like the tutorial."""
    # StringIO iterates lines the way a file opened in text mode does (\n, \r\n, \r)
    return " ".join(line.strip() for line in io.StringIO(raw.decode("utf-8", errors="replace"), newline=None))


def films_of(raw):
    """The film of each line of a urls_{pos,neg}.txt file (line i: review id i), "" if none."""
    return [m[1] if (m := _FILM.search(line)) else "" for line in raw.decode("utf-8", errors="replace").splitlines()]


def film_of(review_id, films):
    """Line review_id of a urls file's films, "" when the file is missing or too short."""
    return films[review_id] if review_id < len(films) else ""


def read_folder(path, splits, missing_split):
    """The reviews of `splits` under the folder `path` (aclImdb/ itself or its parent);
    missing_split(message) is the error for a split that has no folder."""
    nested = os.path.join(path, "aclImdb")
    root = nested if os.path.isdir(nested) else path
    reviews = []
    for split in splits:
        if not os.path.isdir(os.path.join(root, split)):
            raise missing_split(f"{root} has no {split}/ folder: expected the aclImdb layout {split}/pos, {split}/neg")
        for name, label in CLASSES:
            folder = os.path.join(root, split, name)
            urls = os.path.join(root, split, f"urls_{name}.txt")
            films = films_of(read_bytes(urls, "urls file", URLS_BYTES)) if os.path.isfile(urls) else []
            for file_name in os.listdir(folder) if os.path.isdir(folder) else []:
                file_path = os.path.join(folder, file_name)
                key = review_key(file_name, file_path)
                if key is not None:
                    text = review_text(read_bytes(file_path, "review file", REVIEW_BYTES))
                    reviews.append(Review(split, label, *key, text, film_of(key[0], films)))
    return reviews


class _Hashing(io.RawIOBase):
    """A readable file that hashes (SHA-256) every byte read through it."""

    def __init__(self, f):
        self.f, self.digest = f, hashlib.sha256()

    def readable(self):
        return True

    def readinto(self, buffer):
        n = self.f.readinto(buffer)
        self.digest.update(memoryview(buffer)[:n])
        return n

    def finish(self):
        """The hex digest of the whole file (what tarfile left unread is read now)."""
        while self.read(MB):
            pass
        return self.digest.hexdigest()


def read_archive(path):
    """(all labeled reviews in the .tar(.gz) archive `path`, the SHA-256 of its bytes), read in
    one streaming pass."""
    labels = dict(CLASSES)
    reviews, films = [], {}

    def member_bytes(member, limit, what):
        if member.size > limit:
            raise NumpyLSTMError(f"{member.name} in {path} is {member.size:,} bytes, more than a {what} can be")
        return archive.extractfile(member).read()

    try:
        with open_regular(path, "dataset archive") as f:
            hashing = _Hashing(f)
            with tarfile.open(fileobj=hashing, mode="r|*") as archive:
                for member in archive:
                    urls = _URLS_MEMBER.fullmatch(member.name)
                    if urls and member.isfile():
                        films[urls[1], labels[urls[2]]] = films_of(member_bytes(member, URLS_BYTES, "urls file"))
                        continue
                    match = _ARCHIVE_MEMBER.fullmatch(member.name)
                    key = review_key(match[3], member.name) if match and member.isfile() else None
                    if key is not None:
                        if len(reviews) == MAX_REVIEWS:
                            raise NumpyLSTMError(f"{path} holds more than {MAX_REVIEWS:,} reviews: not IMDB's")
                        raw = member_bytes(member, REVIEW_BYTES, "review file")
                        reviews.append(Review(match[1], labels[match[2]], *key, review_text(raw)))
            digest = hashing.finish()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise NumpyLSTMError(f"cannot read the archive {path}, it is truncated or corrupt ({e})") from None
    # The url files may come before or after the reviews in the archive: films are added at the end.
    return [r._replace(film=film_of(r.id, films.get((r.split, r.label), []))) for r in reviews], digest


def archive_digest(path):
    """The SHA-256 of the archive's bytes, read in 1 MB blocks."""
    digest = hashlib.sha256()
    try:
        with open_regular(path, "dataset archive") as f:
            while block := f.read(MB):
                digest.update(block)
    except OSError as e:
        raise NumpyLSTMError(f"cannot read the archive {path}: {e.strerror}") from None
    return digest.hexdigest()


def read_archive_cached(path, splits, cache):
    """The reviews of `splits` in the archive, through JSON copies in the folder `cache`, one per
    split (loading one split's copy takes half the memory of both), named by the archive's hash."""

    def cached(digest, split):
        return os.path.join(cache, f"reviews-v{_PARSED_VERSION}-{digest}-{split}.json")

    digest = archive_digest(path)
    try:
        return [review for split in splits for review in _read_cached(cached(digest, split), split)]
    except (OSError, ValueError, NumpyLSTMError):  # no copy yet, or one that is not ours: parse again
        pass
    reviews, digest = read_archive(path)
    try:
        for split in ("train", "test"):
            write_text(cached(digest, split), to_json([r for r in reviews if r.split == split], ensure_ascii=False))
    except WriteError:  # a read-only or full cache costs time on the next run, not correctness
        pass
    return [r for r in reviews if r.split in splits]


def _read_cached(path, split):
    """The reviews of one split's cached copy; NumpyLSTMError unless it is what we write."""
    rows = parse_json(read_bytes(path, "parse cache", CACHE_BYTES).decode("utf-8", errors="strict"), path)
    types = (str, int, int, int, str, str)
    if not isinstance(rows, list) or not all(
            isinstance(row, list) and len(row) == 6 and row[0] == split and row[1] in (0, 1)
            and all(type(value) is kind for value, kind in zip(row, types)) for row in rows):
        raise NumpyLSTMError(f"{path} is not a parse cache of ours")
    return [Review(*row) for row in rows]
