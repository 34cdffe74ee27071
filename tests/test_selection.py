"""Choosing settings without the test set: the held-out split by film, runs that never read the
test set (--test-limit 0), and the unlabeled reviews' text (--unlabeled) whose labels are never used."""
import json
import shutil

import numpy as np
import pytest

from numpy_lstm.cli import main
from numpy_lstm.config import recipe_config
from numpy_lstm.data import train_test_split
from numpy_lstm.errors import NumpyLSTMError
from numpy_lstm.prepare import prepare_data
from tests.test_cli import TINY, weights_of, write_tree


def grouped_case(seed):
    """(labels, groups) of about 260 items in groups of 1-6 items of mixed labels, 100 of one item."""
    rng = np.random.default_rng(seed)
    sizes = rng.permutation(np.concatenate([rng.integers(2, 7, size=40), np.ones(100, int)]))
    groups = np.repeat(np.arange(len(sizes)), sizes)
    return rng.integers(0, 2, size=len(groups)), groups


@pytest.mark.parametrize("seed", range(5))
def test_split_by_group_puts_each_group_on_one_side_with_each_labels_share(seed):
    labels, groups = grouped_case(seed)
    train, test = train_test_split(np.arange(len(labels)), test_size=0.2, seed=seed, stratify=labels, groups=groups)
    assert not set(groups[train]) & set(groups[test])
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(labels)))
    # the same per-label counts as the ungrouped stratified split
    _, plain = train_test_split(labels, test_size=0.2, seed=seed, stratify=labels)
    assert np.bincount(labels[test], minlength=2).tolist() == np.bincount(plain, minlength=2).tolist()
    _, unstratified = train_test_split(np.arange(len(labels)), test_size=45, seed=seed, groups=groups)
    assert len(unstratified) == 45 and not set(groups[unstratified]) & set(np.delete(groups, unstratified))


def test_split_by_group_is_seeded_and_refuses_what_whole_groups_cannot_give():
    labels, groups = grouped_case(0)
    split = lambda seed: train_test_split(np.arange(len(labels)), seed=seed, stratify=labels, groups=groups)[1]  # noqa: E731
    np.testing.assert_array_equal(split(1), split(1))
    assert not np.array_equal(np.sort(split(1)), np.sort(split(2)))
    with pytest.raises(NumpyLSTMError, match="whole groups"):
        train_test_split(np.arange(10), test_size=0.5, groups=np.zeros(10))
    with pytest.raises(NumpyLSTMError, match="groups must have shape"):
        train_test_split(np.arange(10), groups=np.zeros(9))


def write_films(root, per_class, films_per_class):
    """urls_{pos,neg}.txt giving review id i of each class the film i % films_per_class."""
    for label in ("pos", "neg"):
        lines = [f"http://www.imdb.com/title/tt{i % films_per_class:07d}/usercomments" for i in range(per_class)]
        (root / "aclImdb" / "train" / f"urls_{label}.txt").write_text("\n".join(lines) + "\n")


def test_held_out_films_are_unseen_in_training_and_in_the_unlabeled_text(tmp_path):
    root = write_tree(tmp_path / "imdb", per_class=60)
    write_films(root, 60, films_per_class=15)
    settings = dict(data=str(root), per_class=20, vocab_size=60, maxlen=20, embed_dim=8, val_split=0.2)
    vocab, x_train, y_train, x_val, y_val, x_unlabeled = prepare_data(recipe_config("semi", **settings))
    labels = np.repeat([1, 0], 20)
    films = np.tile(np.arange(20) % 15, 2)              # of the labeled reviews, positives first
    train, val = train_test_split(np.arange(40), test_size=0.2, seed=0, stratify=labels, groups=films)
    assert not set(films[train]) & set(films[val])
    assert len(x_val) == 8 and np.bincount(y_val).tolist() == [4, 4] and len(x_train) == 32
    # the 80 unlabeled reviews are ids 20-59 of each class; those of a held-out film are left out
    unlabeled_films = np.tile(np.arange(20, 60) % 15, 2)
    assert len(x_unlabeled) == np.sum(~np.isin(unlabeled_films, films[val])) < 80
    without = prepare_data(recipe_config("semi", **settings, unlabeled=False, self_train=0, balance_votes=False,
                                           student=False, mix="fit"))
    assert len(without[5]) == 0 and len(without[1]) == 32


def test_test_limit_0_never_reads_the_test_set(tmp_path):
    root = write_tree(tmp_path / "imdb", per_class=30)
    for label in ("pos", "neg"):   # a test set that fails loudly if anything reads it
        shutil.rmtree(root / "aclImdb" / "test" / label)
        (root / "aclImdb" / "test" / label).mkdir()
        (root / "aclImdb" / "test" / label / "not-a-review.txt").write_text("x")
    args = ["train", "--data", str(root), "--epochs", "1", *TINY, "--per-class", "20"]
    assert main([*args, "--out", str(tmp_path / "read")]) == 2
    assert main([*args, "--out", str(tmp_path / "unread"), "--test-limit", "0"]) == 0
    metrics = json.loads((tmp_path / "unread" / "metrics.json").read_text())
    assert metrics["test_accuracy"] is None and metrics["test_n"] == 0 and metrics["val_n"] > 0


def shuffle_unlabeled_labels(root, per_class, labeled, seed):
    """Move a random half of the reviews outside the first `labeled` of each class to the other class."""
    rng = np.random.default_rng(seed)
    train = root / "aclImdb" / "train"
    for source, target in (("pos", "neg"), ("neg", "pos")):
        for path in sorted((train / source).iterdir()):
            review_id, rating = map(int, path.stem.split("_"))
            if review_id >= labeled and rng.random() < 0.5:
                path.rename(train / target / f"{1000 + review_id}_{rating}.txt")
    assert per_class > labeled


def test_the_unlabeled_reviews_labels_never_reach_the_model(tmp_path):
    roots = [write_tree(tmp_path / name, per_class=60) for name in ("imdb", "shuffled")]
    shuffle_unlabeled_labels(roots[1], 60, labeled=20, seed=0)
    semi = ["--epochs", "2", *TINY, "--per-class", "20", "--unlabeled", "--ppmi-init", "0.2", "--nb-init", "1",
            "--vocab-size", "40", "--test-limit", "0"]
    for root, name in zip(roots, ("a", "b")):
        assert main(["train", "--data", str(root), "--out", str(tmp_path / name), *semi]) == 0
    assert (tmp_path / "a" / "vocab.json").read_text() == (tmp_path / "b" / "vocab.json").read_text()
    a, b = weights_of(tmp_path / "a" / "model.npz"), weights_of(tmp_path / "b" / "model.npz")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # and the unlabeled text is used: without it the same run ends elsewhere
    assert main(["train", "--data", str(roots[0]), "--out", str(tmp_path / "c"), *semi, "--no-unlabeled"]) == 0
    c = weights_of(tmp_path / "c" / "model.npz")
    assert not all(np.array_equal(a[k], c[k]) for k in a)
