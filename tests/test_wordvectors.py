"""PPMI + SVD word vectors: the counts, the PMI and the SVD against plain re-derivations."""
import collections
import math

import numpy as np

from numpy_lstm.wordvectors import cooccurrence, ppmi_matrix, ppmi_svd_vectors, truncated_svd


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
