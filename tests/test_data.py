"""Loading, downloading and splitting: a small aclImdb tree built in tmp_path, and the real archive."""
import hashlib
import http.server
import os
import shutil
import tarfile
import threading

import numpy as np
import pytest

from numpy_lstm import data, imdb_files
from numpy_lstm.data import download, find_data, load_imdb, train_test_split
from numpy_lstm.errors import NumpyLSTMError
from numpy_lstm.text import preprocess_reviews

# File contents by split/class/name. Ids 1, 2, 10 sort differently as text and as numbers.
TREE = {
    "train/pos/2_8.txt": b"Second positive.",
    "train/pos/10_9.txt": b"Tenth positive.",
    "train/pos/1_7.txt": b"  First positive.  ",
    "train/neg/5_1.txt": b"Line one.\r\nLine two.\n",
    "train/neg/0_3.txt": b"caf\xc3\xa9 \xff\xfe broken",
    "test/pos/3_10.txt": b"A test positive.",
    "test/neg/4_2.txt": b"",
    "train/pos/.DS_Store": b"\x00\x01",
    "train/pos/._1_7.txt": b"\x00\x05\x16\x07",
    "train/urls_pos.txt": b"http://example.com",
}


def make_tree(parent, files=TREE):
    """Write `files` under parent/aclImdb; return parent."""
    for name, content in files.items():
        path = parent / "aclImdb" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return parent


def make_archive(tmp_path, files=TREE, name="small.tar.gz"):
    """A .tar.gz of `files` laid out as aclImdb/..., built from a tree beside it."""
    tree = make_tree(tmp_path / ("tree-" + name), files)
    archive = tmp_path / name
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "aclImdb", arcname="aclImdb")
    return archive


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Each test gets an empty cache and no NUMPY_LSTM_DATA, so nothing outside tmp_path is read."""
    monkeypatch.setenv("NUMPY_LSTM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NUMPY_LSTM_DATA", raising=False)


@pytest.fixture(params=["parent", "aclImdb", "archive"])
def source(request, tmp_path):
    """The small dataset as the folder holding aclImdb/, as aclImdb/ itself, and as a .tar.gz."""
    if request.param == "archive":
        return make_archive(tmp_path)
    parent = make_tree(tmp_path)
    return parent / "aclImdb" if request.param == "aclImdb" else parent


def assert_one_line_error(excinfo, *words):
    message = str(excinfo.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_train_split_order_labels_ids_ratings(source):
    d = load_imdb(source, split="train")
    assert d.ids.tolist() == [1, 2, 10, 0, 5]
    assert d.labels.tolist() == [1, 1, 1, 0, 0]
    assert d.ratings.tolist() == [7, 8, 9, 3, 1]
    assert d.texts[:3] == ["First positive.", "Second positive.", "Tenth positive."]
    assert len(d) == 5
    assert d.labels.dtype.kind == d.ids.dtype.kind == d.ratings.dtype.kind == "i"


def test_lines_are_stripped_and_joined_with_a_space(source):
    d = load_imdb(source)
    assert d.texts[d.ids.tolist().index(5)] == "Line one. Line two."


def test_invalid_utf8_is_replaced_not_fatal(source):
    d = load_imdb(source)
    assert d.texts[d.ids.tolist().index(0)] == "café \ufffd\ufffd broken"


def test_empty_review_is_kept_as_empty_text(source):
    d = load_imdb(source, split="test")
    assert d.ids.tolist() == [3, 4] and d.texts == ["A test positive.", ""]
    assert preprocess_reviews(d.texts) == ["test positive", ""]


def test_all_is_train_then_test(source):
    d = load_imdb(source, split="all")
    assert d.ids.tolist() == [1, 2, 10, 0, 5, 3, 4]
    assert d.labels.tolist() == [1, 1, 1, 0, 0, 1, 0]


def test_per_class_takes_the_first_by_id(source):
    d = load_imdb(source, per_class=2)
    assert d.ids.tolist() == [1, 2, 0, 5]
    assert load_imdb(source, per_class=100).ids.tolist() == [1, 2, 10, 0, 5]


@pytest.mark.parametrize("kwargs", [{"split": "dev"}, {"per_class": 0}, {"per_class": 1.5}])
def test_bad_arguments(source, kwargs):
    with pytest.raises(NumpyLSTMError) as excinfo:
        load_imdb(source, **kwargs)
    assert_one_line_error(excinfo, next(iter(kwargs)))


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_badly_named_review_file_is_an_error(tmp_path, kind):
    files = {**TREE, "train/neg/review.txt": b"no id"}
    src = make_tree(tmp_path, files) if kind == "folder" else make_archive(tmp_path, files)
    with pytest.raises(NumpyLSTMError) as excinfo:
        load_imdb(src)
    assert_one_line_error(excinfo, "review.txt", "ID_RATING.txt")


def test_missing_path(tmp_path):
    with pytest.raises(NumpyLSTMError) as excinfo:
        load_imdb(tmp_path / "nowhere")
    assert_one_line_error(excinfo, "nowhere", "does not exist")


def test_missing_path_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMPY_LSTM_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(NumpyLSTMError) as excinfo:
        load_imdb()
    assert_one_line_error(excinfo, "nowhere", "NUMPY_LSTM_DATA")


def test_folder_without_train(tmp_path):
    (tmp_path / "aclImdb" / "test").mkdir(parents=True)
    with pytest.raises(NumpyLSTMError) as excinfo:
        load_imdb(tmp_path)
    assert_one_line_error(excinfo, "train/")


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_class_without_reviews(tmp_path, kind):
    files = {name: text for name, text in TREE.items() if not name.startswith("test/neg/")}
    src = make_tree(tmp_path, files) if kind == "folder" else make_archive(tmp_path, files)
    assert len(load_imdb(src, split="train")) == 5
    with pytest.raises(NumpyLSTMError) as excinfo:
        load_imdb(src, split="test")
    assert_one_line_error(excinfo, "no test/neg reviews")


def test_archive_without_reviews(tmp_path):
    archive = tmp_path / "empty.tar.gz"
    with tarfile.open(archive, "w:gz"):
        pass
    with pytest.raises(NumpyLSTMError) as excinfo:
        load_imdb(archive)
    assert_one_line_error(excinfo, "no train/pos reviews")


def bytes_of_small_archive(tmp_path):
    # Distinct random-looking texts, so the compressed archive is long enough to cut.
    rng = np.random.default_rng(0)
    files = {f"train/{c}/{i}_{r}.txt": rng.bytes(600).hex().encode()
             for c, r in (("pos", 8), ("neg", 2)) for i in range(20)}
    return make_archive(tmp_path, files).read_bytes()


@pytest.mark.parametrize("content", ["empty", "random", "truncated"])
def test_unreadable_archive(tmp_path, content):
    raw = {
        "empty": lambda: b"",
        "random": lambda: np.random.default_rng(0).bytes(4096),
        "truncated": lambda: (b := bytes_of_small_archive(tmp_path))[: len(b) // 2],
    }[content]()
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(raw)
    with pytest.raises(NumpyLSTMError) as excinfo:
        load_imdb(archive)
    assert_one_line_error(excinfo, "broken.tar.gz", "truncated or corrupt")


def test_parsed_archive_is_cached(tmp_path, monkeypatch):
    archive = make_archive(tmp_path)
    first = load_imdb(archive, split="all")
    assert len(os.listdir(tmp_path / "cache")) == 2      # one copy per split

    def no_parsing(path):
        raise AssertionError("the archive was parsed again")

    with monkeypatch.context() as patch:
        patch.setattr(imdb_files, "read_archive", no_parsing)
        again = load_imdb(archive, split="all")
    assert again.texts == first.texts and again.ids.tolist() == first.ids.tolist()
    assert again.ratings.tolist() == first.ratings.tolist()

    make_archive(tmp_path, {**TREE, "train/pos/11_10.txt": b"New."})  # same path, other content
    assert load_imdb(archive).ids.tolist() == [1, 2, 10, 11, 0, 5]


def test_unreadable_cache_is_parsed_again(tmp_path):
    archive = make_archive(tmp_path)
    load_imdb(archive)
    for cached in (tmp_path / "cache").iterdir():
        cached.write_text("{not json")
    assert load_imdb(archive).ids.tolist() == [1, 2, 10, 0, 5]
    assert load_imdb(archive, split="test").ids.tolist() == [3, 4]


def test_source_beats_environment_beats_cache(tmp_path, monkeypatch):
    given, from_env = make_archive(tmp_path, name="given.tar.gz"), make_archive(tmp_path, name="env.tar.gz")
    monkeypatch.setenv("NUMPY_LSTM_DATA", str(from_env))
    assert find_data(given) == str(given)
    assert find_data() == str(from_env)
    monkeypatch.delenv("NUMPY_LSTM_DATA")
    cached = tmp_path / "cache" / data.ARCHIVE_NAME
    cached.parent.mkdir()
    cached.write_bytes(given.read_bytes())
    assert find_data() == str(cached)
    assert load_imdb().ids.tolist() == [1, 2, 10, 0, 5]


def test_download_when_no_source_has_the_data(tmp_path, monkeypatch):
    archive = make_archive(tmp_path)
    calls = []

    def fake_download(dest):
        calls.append(dest)
        os.makedirs(os.path.dirname(dest))
        shutil.copyfile(archive, dest)

    monkeypatch.setattr(data, "download", fake_download)
    assert load_imdb().ids.tolist() == [1, 2, 10, 0, 5]
    assert calls == [str(tmp_path / "cache" / data.ARCHIVE_NAME)]
    load_imdb()
    assert len(calls) == 1


def test_download_file_url(tmp_path):
    archive = make_archive(tmp_path)
    dest = tmp_path / "downloads" / data.ARCHIVE_NAME
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    assert download(str(dest), url=archive.as_uri(), md5=md5) == str(dest)
    assert dest.read_bytes() == archive.read_bytes()
    assert os.listdir(dest.parent) == [data.ARCHIVE_NAME]


def assert_failed_download(excinfo, dest, *words):
    assert_one_line_error(excinfo, "--data", "NUMPY_LSTM_DATA", str(dest.parent), *words)
    assert not dest.parent.exists() or os.listdir(dest.parent) == []


def test_download_md5_mismatch(tmp_path):
    archive = make_archive(tmp_path)
    dest = tmp_path / "downloads" / data.ARCHIVE_NAME
    with pytest.raises(NumpyLSTMError) as excinfo:
        download(str(dest), url=archive.as_uri(), md5="0" * 32)
    assert_failed_download(excinfo, dest, "MD5")


def test_download_without_network(tmp_path):
    dest = tmp_path / "downloads" / data.ARCHIVE_NAME
    with pytest.raises(NumpyLSTMError) as excinfo:
        download(str(dest), url="http://127.0.0.1:9/aclImdb_v1.tar.gz")  # the discard port: refused
    assert_failed_download(excinfo, dest, "127.0.0.1")


@pytest.fixture
def truncating_server(tmp_path):
    """An HTTP server on loopback that announces a whole archive but sends only its first half."""
    payload = make_archive(tmp_path).read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/aclImdb_v1.tar.gz", hashlib.md5(payload).hexdigest()
    server.shutdown()
    server.server_close()


def test_truncated_download(tmp_path, truncating_server):
    url, md5 = truncating_server
    dest = tmp_path / "downloads" / data.ARCHIVE_NAME
    with pytest.raises(NumpyLSTMError) as excinfo:
        download(str(dest), url=url, md5=md5)
    assert_failed_download(excinfo, dest, "stopped after")


def test_split_sizes_and_types():
    x, y = np.arange(10) * 10, list(range(10))
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25)
    assert isinstance(x_train, np.ndarray) and isinstance(y_test, list)
    assert (len(x_train), len(x_test)) == (7, 3)  # ceil(2.5) test items
    assert sorted(x_train.tolist() + x_test.tolist()) == x.tolist()
    assert x_train.tolist() == [10 * v for v in y_train] and x_test.tolist() == [10 * v for v in y_test]
    assert [len(p) for p in train_test_split(x, test_size=4)] == [6, 4]
    assert isinstance(train_test_split(tuple(y), test_size=2)[1], tuple)
    assert [len(p) for p in train_test_split(x, test_size=0.001)] == [9, 1]  # ceil: never 0 test items


def test_split_without_shuffle_takes_the_last_items():
    assert train_test_split(list(range(5)), test_size=2, shuffle=False) == [[0, 1, 2], [3, 4]]


def test_split_seeding():
    x = np.arange(100)
    same = train_test_split(x, seed=3), train_test_split(x, seed=3)
    np.testing.assert_array_equal(same[0][1], same[1][1])
    assert not np.array_equal(train_test_split(x, seed=4)[1], same[0][1])


def test_split_stratified_keeps_class_shares():
    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)
    for seed in range(5):
        _, test_labels = train_test_split(labels, test_size=0.3, stratify=labels, seed=seed)
        assert np.bincount(test_labels).tolist() == [21, 6, 3]
    # shares 2.25 and 2.75 of 5 test items: the larger remainder gets the extra item
    uneven = np.array([0] * 9 + [1] * 11)
    assert np.bincount(train_test_split(uneven, test_size=5, stratify=uneven)[1]).tolist() == [2, 3]
    train, test = train_test_split(np.arange(100), test_size=0.25, stratify=labels)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))


@pytest.mark.parametrize(
    "arrays, kwargs, words",
    [
        ((), {}, ["at least one"]),
        ((np.arange(3), np.arange(4)), {}, ["one length"]),
        ((np.arange(10),), {"test_size": 1.5}, ["test_size"]),
        ((np.arange(10),), {"test_size": 10}, ["empty"]),
        ((np.arange(10),), {"stratify": np.zeros(9)}, ["stratify"]),
        ((np.arange(10),), {"stratify": np.zeros(10), "shuffle": False}, ["shuffle"]),
        (("abcdef",), {}, ["str"]),
    ],
)
def test_split_bad_arguments(arrays, kwargs, words):
    with pytest.raises(NumpyLSTMError) as excinfo:
        train_test_split(*arrays, **kwargs)
    assert_one_line_error(excinfo, *words)


@pytest.mark.data
def test_real_dataset(imdb_path):
    d = load_imdb(imdb_path, split="all")
    assert len(d) == 50_000
    for half, split in ((slice(0, 25_000), "train"), (slice(25_000, None), "test")):
        labels, ids, ratings = d.labels[half], d.ids[half], d.ratings[half]
        assert labels.sum() == 12_500, split
        for label, allowed in ((1, [7, 8, 9, 10]), (0, [1, 2, 3, 4])):
            np.testing.assert_array_equal(ids[labels == label], np.arange(12_500))
            assert set(np.unique(ratings[labels == label]).tolist()) == set(allowed)
    seed = load_imdb(imdb_path, split="train", per_class=500)
    assert seed.ids.tolist() == list(range(500)) * 2
    assert seed.texts == d.texts[:500] + d.texts[12_500:13_000]
    cleaned = preprocess_reviews(seed.texts)
    assert len(cleaned) == 1000 and all(cleaned)


def test_films_from_the_url_files(source, tmp_path):
    # line i of urls_{pos,neg}.txt is review id i; reviews without a line get ""
    files = {**TREE, "train/urls_pos.txt": b"http://www.imdb.com/title/tt01/usercomments\n" * 2
             + b"http://www.imdb.com/title/tt02/usercomments\n",
             "train/urls_neg.txt": b"http://www.imdb.com/title/tt03/usercomments\n"}
    d = load_imdb(make_archive(tmp_path, files, "films.tar.gz"), split="train")
    assert d.films.tolist() == ["tt01", "tt02", "", "tt03", ""]  # ids 1, 2, 10 (pos), 0, 5 (neg)
    assert load_imdb(make_tree(tmp_path / "films", files), split="train").films.tolist() == d.films.tolist()
    assert load_imdb(source, split="test").films.tolist() == ["", ""]
