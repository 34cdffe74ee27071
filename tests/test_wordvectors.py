"""Embedding starting values: the NB log-count ratio, and PPMI + SVD word vectors (counts, PMI, SVD) against
plain re-derivations."""
import collections
import math

import numpy as np

from numpy_lstm.config import recipe_config
from numpy_lstm.wordvectors import (
    cooccurrence,
    init_embedding,
    log_count_ratio,
    ppmi_matrix,
    ppmi_svd_vectors,
    scaled_word_vectors,
    truncated_svd,
)


def test_cooccurrence_counts_by_hand():
    ids = np.array([[0, 0, 2, 3, 4, 2],
                    [0, 5, 1, 3, 2, 2]])
    expected = collections.Counter()
    for row in ids:
        for i in range(len(row)):
            for j in range(len(row)):
                d = abs(i - j)
                if 1 <= d <= 2 and row[i] > 1 and row[j] > 1:
                    expected[row[i], row[j]] += 1.0 / d
    words, contexts, counts = cooccurrence(ids, vocab_size=6, window=2)
    got = {(w, c): n for w, c, n in zip(words, contexts, counts)}
    assert got.keys() == expected.keys()
    for pair, n in expected.items():
        assert math.isclose(got[pair], n)


def test_ppmi_by_hand():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, size=(5, 12))
    words, contexts, counts = cooccurrence(ids, vocab_size=7, window=3)
    matrix = ppmi_matrix(words, contexts, counts, vocab_size=7, smoothing=0.75)
    table = np.zeros((7, 7))
    table[words, contexts] = counts
    total = table.sum()
    context_mass = table.sum(axis=0) ** 0.75
    for w in range(7):
        for c in range(7):
            if table[w, c] == 0:
                assert matrix[w, c] == 0
                continue
            pmi = math.log((table[w, c] / total) / (table[w].sum() / total * context_mass[c] / context_mass.sum()))
            assert math.isclose(matrix[w, c], max(pmi, 0.0), rel_tol=1e-5, abs_tol=1e-6)


def test_truncated_svd_finds_the_top_singular_values():
    rng = np.random.default_rng(1)
    # Decaying spectrum plus noise, as a PPMI matrix has.
    u, _ = np.linalg.qr(rng.normal(size=(300, 300)))
    v, _ = np.linalg.qr(rng.normal(size=(200, 200)))
    s = 100.0 * 0.8 ** np.arange(200)
    matrix = (u[:, :200] * s) @ v.T
    got_u, got_s = truncated_svd(matrix, 10, np.random.default_rng(2))
    np.testing.assert_allclose(got_s, s[:10], rtol=1e-6)
    # The same directions, up to sign.
    np.testing.assert_allclose(np.abs(np.sum(got_u * u[:, :10], axis=0)), 1.0, rtol=1e-6)


def test_words_used_alike_get_vectors_alike():
    """Two groups of words that only ever appear among their own group."""
    rng = np.random.default_rng(3)
    groups = [np.arange(2, 12), np.arange(12, 22)]
    rows = [rng.choice(groups[k % 2], size=30) for k in range(200)]
    vectors = ppmi_svd_vectors(np.array(rows), vocab_size=25, dim=4, rng=np.random.default_rng(4))
    assert vectors.shape == (25, 4)
    assert not vectors[:2].any() and not vectors[22:].any()   # padding, OOV and unused ids
    unit = vectors[2:22] / np.linalg.norm(vectors[2:22], axis=1, keepdims=True)
    cosine = unit @ unit.T
    same = np.kron(np.eye(2), np.ones((10, 10))).astype(bool)
    assert cosine[same].mean() > 0.8 and cosine[~same].mean() < 0.2


def test_log_count_ratio_by_hand():
    x = np.array([[0, 2, 2, 3], [0, 0, 2, 4], [0, 0, 3, 4]])
    y = np.array([1, 1, 0])
    r = log_count_ratio(x, y, vocab_size=5)
    # positive reviews contain: 2 twice (once each), 3 once, 4 once; negative: 3 once, 4 once.
    p, q = np.array([3, 2, 2]), np.array([1, 2, 2])  # alpha = 1 added; ids 0 and 1 left out
    expected = np.log((p / p.sum()) / (q / q.sum()))
    np.testing.assert_allclose(r[2:], expected)
    assert r[0] == 0 and r[1] == 0 and r[2] > 0 and math.isclose(r[3], r[4])


def test_embedding_init_nb_column_then_word_vectors():
    rng = np.random.default_rng(0)
    x = np.where(rng.random((40, 12)) < 0.2, 0, rng.integers(1, 30, (40, 12))).astype(np.int32)
    y = rng.integers(0, 2, 40)
    config = recipe_config("tutorial", vocab_size=30, embed_dim=6, nb_init=2.0, ppmi_init=0.3)
    vectors = scaled_word_vectors(config, x)
    known = vectors.any(axis=1)
    assert vectors.shape == (30, 5) and known[2:].any() and not known[:2].any()
    assert math.isclose(vectors[known].std(), 0.3, rel_tol=1e-9)
    start = rng.uniform(-0.05, 0.05, (30, 6))
    emb = start.copy()
    init_embedding(emb, config, x, y, vectors)
    np.testing.assert_array_equal(emb[:, 0], 2.0 * log_count_ratio(x, y, 30))
    np.testing.assert_array_equal(emb[known, 1:], vectors[known])
    np.testing.assert_array_equal(emb[~known, 1:], start[~known, 1:])   # padding, OOV, unseen ids
