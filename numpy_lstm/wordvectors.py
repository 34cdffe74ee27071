"""Word vectors learned without labels from the training reviews: PPMI + truncated SVD.

Words that occur in similar contexts get similar vectors (Levy, Goldberg & Dagan, 2015): count
how often each word has each other word within a few tokens of it, turn the counts into positive
pointwise mutual information, and keep the top singular directions of that matrix. Used to start
the embedding (`--ppmi-init`): a rare word then starts near the words it is used like, instead of
at random, and the LSTM has less to learn from 25,000 labelled reviews.
"""
import numpy as np


def cooccurrence(ids, vocab_size, window=5):
    """Weighted co-occurrence counts of the word ids in `ids` (N, T), padding and OOV left out.

    Two words d <= window tokens apart count 1/d, in both directions. Returns (words, contexts,
    counts): the distinct pairs and their summed weights, float64.
    """
    ids = np.asarray(ids, dtype=np.int64)
    keys, weights = [], []
    for d in range(1, window + 1):
        w, c = ids[:, :-d].ravel(), ids[:, d:].ravel()
        real = (w > 1) & (c > 1)                 # 0 is padding, 1 the unknown word
        w, c = w[real], c[real]
        keys += [w * vocab_size + c, c * vocab_size + w]
        weights.append(np.full(2 * len(w), 1.0 / d))
    pairs, where = np.unique(np.concatenate(keys), return_inverse=True)
    counts = np.bincount(where.ravel(), weights=np.concatenate(weights))
    words, contexts = np.divmod(pairs, vocab_size)
    return words, contexts, counts


def ppmi_matrix(words, contexts, counts, vocab_size, smoothing=0.75):
    """Dense (V, V) float32 positive PMI of the co-occurrence counts.

    PMI(w, c) = log(P(w, c) / (P(w) P(c))), with the context distribution P(c) taken from the
    counts raised to `smoothing`, which keeps rare contexts from getting huge PMIs; negatives
    (and pairs never seen) are 0.
    """
    total = counts.sum()
    p_word = np.bincount(words, weights=counts, minlength=vocab_size) / total
    context_mass = np.bincount(contexts, weights=counts, minlength=vocab_size) ** smoothing
    p_context = context_mass / context_mass.sum()
    pmi = np.log(counts / total) - np.log(p_word[words]) - np.log(p_context[contexts])
    matrix = np.zeros((vocab_size, vocab_size), np.float32)
    positive = pmi > 0
    matrix[words[positive], contexts[positive]] = pmi[positive]
    return matrix


def truncated_svd(matrix, k, rng, oversample=20, power_iterations=2):
    """Top-k left singular vectors and values of `matrix`: (U (M, k), S (k,)).

    The randomised method (Halko, Martinsson & Tropp, 2011): Q spans matrix @ (random block), a
    few power iterations sharpen it towards the top singular directions, and the SVD of the small
    Q.T @ matrix gives the rest. A handful of large matmuls instead of a full SVD.
    """
    sketch = matrix @ rng.standard_normal((matrix.shape[1], k + oversample)).astype(matrix.dtype)
    q, _ = np.linalg.qr(sketch)
    for _ in range(power_iterations):
        z, _ = np.linalg.qr(matrix.T @ q)
        q, _ = np.linalg.qr(matrix @ z)
    u_small, s, _ = np.linalg.svd(q.T @ matrix, full_matrices=False)
    return (q @ u_small)[:, :k], s[:k]


def ppmi_svd_vectors(ids, vocab_size, dim, rng, window=5):
    """(vocab_size, dim) float64 word vectors U sqrt(S) of the PPMI matrix of `ids` (N, T).

    Rows of ids that never co-occur with anything (0, 1, unused ids) are zero. The matrix is
    V x V float32: 1.6 GB for 20,000 words.
    """
    matrix = ppmi_matrix(*cooccurrence(ids, vocab_size, window), vocab_size)
    u, s = truncated_svd(matrix, dim, rng)
    vectors = u.astype(np.float64) * np.sqrt(s)
    vectors[~matrix.any(axis=1)] = 0.0        # exactly: their U rows are rounding noise
    return vectors
