"""Starting values for the embedding: naive-Bayes log-count ratios, and word vectors learned
without labels from the training reviews (PPMI + truncated SVD).

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


def log_count_ratio(x, y, vocab_size, alpha=1.0):
    """Naive Bayes log-count ratio of every word id in reviews x (N, T) with labels y (N,): (V,).

    r_w = log((p_w / sum p) / (q_w / sum q)), where p_w (q_w) is alpha plus the number of
    positive (negative) reviews that contain w (Wang & Manning, 2012): > 0 for words of praise,
    < 0 for words of blame. Padding and OOV get 0.
    """
    rows = np.repeat(np.arange(len(x)), x.shape[1])
    review, word = np.divmod(np.unique(rows * vocab_size + x.ravel()), vocab_size)  # each pair once
    positive = y[review] == 1
    p = alpha + np.bincount(word[positive], minlength=vocab_size)
    q = alpha + np.bincount(word[~positive], minlength=vocab_size)
    p[:2] = q[:2] = 0  # padding and OOV are not words: no share of the counts, no polarity
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log((p / p.sum()) / (q / q.sum()))
    r[:2] = 0.0
    return r


def scaled_word_vectors(config, x_train):
    """PPMI-SVD vectors (V, embed_dim minus the naive Bayes column) of the training ids x_train,
    scaled to standard deviation config.ppmi_init over the ids that have one."""
    vectors = ppmi_svd_vectors(x_train, config.vocab_size, config.embed_dim - bool(config.nb_init),
                               np.random.default_rng([config.seed, 2]))
    return vectors * (config.ppmi_init / vectors[vectors.any(axis=1)].std())


def init_embedding(embeddings, config, x_train, y_train, word_vectors):
    """Informed starting values for the embedding (V, E), in place.

    With nb_init, column 0 is the naive Bayes log-count ratio times nb_init: one feature that
    already says how positive each word is, so the LSTM's first job is to add it up over the
    review rather than to discover it. With word_vectors, the other columns of the ids that have
    a vector take it (padding, OOV and unseen ids keep their random start).
    """
    if config.nb_init:
        embeddings[:, 0] = config.nb_init * log_count_ratio(x_train, y_train, config.vocab_size)
    if word_vectors is not None:
        known = word_vectors.any(axis=1)
        embeddings[known, int(bool(config.nb_init)):] = word_vectors[known]
