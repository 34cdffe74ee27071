"""Embedding starting values: the NB log-count ratio, and PPMI + SVD word vectors (counts, PMI, sparse
products, SVD) against plain re-derivations."""
import collections
import math

import numpy as np
import pytest

from numpy_lstm.config import recipe_config
from numpy_lstm.errors import NumpyLSTMError
from numpy_lstm.layers import Embedding, bigram_buckets
from numpy_lstm.wordvectors import (
    SparseMatrix,
    add_counts,
    bucket_log_count_ratio,
    cooccurrence,
    init_embedding,
    log_count_ratio,
    ppmi_matrix,
    ppmi_svd_vectors,
    scaled_word_vectors,
    truncated_svd,
)


def dense(matrix):
    """The ndarray of a (small) SparseMatrix."""
    out = np.zeros(matrix.shape, matrix.dtype)
    out[np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.row_start)), matrix.cols] = matrix.values
    return out


def random_sparse(rng, shape, density):
    """A SparseMatrix with about `density` of its entries non-zero, given in shuffled order, and its
    ndarray; its first and last rows are empty and row 1 is full."""
    table = np.where(rng.random(shape) < density, rng.normal(size=shape), 0.0)
    table[[0, -1]] = 0.0
    table[1] = rng.normal(size=shape[1])
    rows, cols = np.nonzero(table)
    order = rng.permutation(len(rows))
    return SparseMatrix(rows[order], cols[order], table[rows, cols][order], shape), table


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
    assert list(zip(words, contexts)) == sorted(expected)


def test_add_counts_merges_two_tallies():
    keys, counts = add_counts(np.array([3, 5, 9]), np.array([1.0, 2.0, 3.0]),
                              np.array([1, 5, 7, 9, 12]), np.array([0.5, 0.25, 4.0, 1.0, 8.0]))
    np.testing.assert_array_equal(keys, [1, 3, 5, 7, 9, 12])
    np.testing.assert_array_equal(counts, [0.5, 1.0, 2.25, 4.0, 4.0, 8.0])
    keys, counts = add_counts(np.zeros(0, np.int64), np.zeros(0), np.array([2, 4]), np.array([1.0, 2.0]))
    np.testing.assert_array_equal(keys, [2, 4])
    np.testing.assert_array_equal(counts, [1.0, 2.0])


def test_ppmi_by_hand():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, size=(5, 12))
    words, contexts, counts = cooccurrence(ids, vocab_size=7, window=3)
    matrix = dense(ppmi_matrix(words, contexts, counts, vocab_size=7, smoothing=0.75))
    assert matrix.shape == (7, 7) and matrix.dtype == np.float32
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


@pytest.mark.parametrize("entries_per_chunk", [1, 7, 1 << 16])
def test_sparse_products_equal_dense_ones(entries_per_chunk):
    rng = np.random.default_rng(5)
    matrix, table = random_sparse(rng, (23, 17), density=0.2)
    np.testing.assert_array_equal(dense(matrix), table)
    np.testing.assert_array_equal(dense(matrix.T), table.T)
    np.testing.assert_array_equal(matrix.nonzero_rows(), table.any(axis=1))
    block, block_t = rng.normal(size=(17, 4)), rng.normal(size=(23, 4))
    np.testing.assert_allclose(matrix.__matmul__(block, entries_per_chunk), table @ block, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(matrix.T.__matmul__(block_t, entries_per_chunk), table.T @ block_t,
                               rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="cannot multiply"):
        matrix @ block_t


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


def test_truncated_svd_of_a_sparse_matrix_equals_numpys_svd():
    """Rank 6 < k + oversample: the random block's span holds the whole range, so the result is exact."""
    rng = np.random.default_rng(6)
    table = np.zeros((40, 30))
    for _ in range(6):      # each a sparse outer product
        table += np.outer(np.where(rng.random(40) < 0.3, rng.normal(size=40), 0.0),
                          np.where(rng.random(30) < 0.3, rng.normal(size=30), 0.0))
    rows, cols = np.nonzero(table)
    matrix = SparseMatrix(rows, cols, table[rows, cols], table.shape)
    u, s, _ = np.linalg.svd(table)
    got_u, got_s = truncated_svd(matrix, 4, np.random.default_rng(7), oversample=10)
    np.testing.assert_allclose(got_s, s[:4], rtol=1e-10)
    np.testing.assert_allclose(np.abs(np.sum(got_u * u[:, :4], axis=0)), 1.0, rtol=1e-10)


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
    embedding = Embedding(30, 6, rng, np.float64)
    start = embedding.embeddings.copy()
    init_embedding(embedding, config, x, y, vectors)
    emb = embedding.embeddings
    np.testing.assert_array_equal(emb[:, 0], 2.0 * log_count_ratio(x, y, 30))
    np.testing.assert_array_equal(emb[known, 1:], vectors[known])
    np.testing.assert_array_equal(emb[~known, 1:], start[~known, 1:])   # padding, OOV, unseen ids


def test_bucket_log_count_ratio_by_hand():
    """Each review counts once per bucket of its pairs; a bucket no review reads gets 0."""
    x = np.array([[0, 2, 3, 2, 3], [0, 0, 0, 2, 3], [0, 0, 4, 2, 4]])
    y = np.array([1, 1, 0])
    K = 1 << 16
    b = bigram_buckets(x, K)
    pair_23, pair_32, start_2, start_4, pair_42, pair_24 = b[0, 2], b[0, 3], b[0, 1], b[2, 2], b[2, 3], b[2, 4]
    assert len({pair_23, pair_32, start_2, start_4, pair_42, pair_24}) == 6      # no collision at this K
    counts = {pair_23: (2, 0), pair_32: (1, 0), start_2: (2, 0), start_4: (0, 1), pair_42: (0, 1), pair_24: (0, 1)}
    p, q = np.ones(K), np.ones(K)                 # alpha = 1 for every bucket, read or not
    for bucket, (positive, negative) in counts.items():
        p[bucket] += positive
        q[bucket] += negative
    r = bucket_log_count_ratio(x, y, K)
    for bucket in counts:
        assert math.isclose(r[bucket], math.log((p[bucket] / p.sum()) / (q[bucket] / q.sum())), rel_tol=1e-12)
    assert r[pair_23] > r[pair_32] > 0 > r[pair_42] and math.isclose(r[pair_42], r[pair_24])
    unread = np.ones(K, bool)
    unread[list(counts)] = False
    assert not r[unread].any()
    # The chunks' hashing gives what hashing all the reviews at once gives
    np.testing.assert_array_equal(bucket_log_count_ratio(x, y, K, chunk=1), r)


def test_embedding_init_pair_table_column():
    """--bigram-nb-init starts column 0 of the pair table at SCALE times the buckets' ratio, the
    other columns at zero; without it the table is all zeros; it needs a pair table."""
    rng = np.random.default_rng(5)
    x = np.where(rng.random((40, 12)) < 0.2, 0, rng.integers(1, 30, (40, 12))).astype(np.int32)
    y = rng.integers(0, 2, 40)
    config = recipe_config("tutorial", vocab_size=30, embed_dim=6, bigram_buckets=97, bigram_nb_init=3.0)
    embedding = Embedding(30, 6, rng, np.float64, bigrams=97)
    init_embedding(embedding, config, x, y, None)
    ratio = bucket_log_count_ratio(x, y, 97)
    assert np.count_nonzero(ratio) > 40
    np.testing.assert_array_equal(embedding.bigram_table[:, 0], 3.0 * ratio)
    assert not embedding.bigram_table[:, 1:].any()
    off = Embedding(30, 6, rng, np.float64, bigrams=97)
    init_embedding(off, recipe_config("tutorial", vocab_size=30, embed_dim=6, bigram_buckets=97), x, y, None)
    assert not off.bigram_table.any()
    with pytest.raises(NumpyLSTMError, match="bigram_nb_init needs the pair table"):
        recipe_config("tutorial", bigram_nb_init=1.0).validate()


def test_memory_follows_the_pairs_not_the_vocabulary():
    """A vocabulary of 300,000 ids, 20 of them used (a dense V x V float32 matrix: 360 GB): the same
    entries as with 25 ids, and products with (V, k) blocks."""
    ids = np.random.default_rng(3).integers(2, 22, size=(20, 30))
    small = ppmi_matrix(*cooccurrence(ids, 25), 25)
    large = ppmi_matrix(*cooccurrence(ids, 300_000), 300_000)
    assert large.shape == (300_000, 300_000)
    np.testing.assert_array_equal(large.row_start[:26], small.row_start)
    np.testing.assert_array_equal(large.cols, small.cols)
    np.testing.assert_array_equal(large.values, small.values)
    block = np.random.default_rng(4).normal(size=(300_000, 3))
    product = large @ block
    np.testing.assert_allclose(product[:25], small @ block[:25], rtol=1e-12)
    assert not product[25:].any()
