"""Starting values for the embedding: naive-Bayes log-count ratios, and word vectors learned
without labels from the training reviews (PPMI + truncated SVD).

Words that occur in similar contexts get similar vectors (Levy, Goldberg & Dagan, 2015): count
how often each word has each other word within a few tokens of it, turn the counts into positive
pointwise mutual information, and keep the top singular directions of that matrix. Used to start
the embedding (`--ppmi-init`): a rare word then starts near the words it is used like, instead of
at random, and the LSTM has less to learn from 25,000 labelled reviews.

Most word pairs never meet (11 million of the 400 million for 20,000 words in the IMDB training
reviews), so the matrix is kept as its non-zero entries (SparseMatrix): memory grows with the
pairs seen, not with the square of the vocabulary.
"""
import numpy as np

from .layers import bigram_buckets


def cooccurrence(ids, vocab_size, window=5):
    """Weighted co-occurrence counts of the word ids in `ids` (N, T), padding and OOV left out.

    Two words d <= window tokens apart count 1/d, in both directions. Returns (words, contexts,
    counts): the distinct pairs (int32), sorted by word then context, and their summed weights
    (float64). One distance at a time, so that only that distance's pairs are held besides the
    totals.
    """
    ids = np.asarray(ids)
    keys, counts = np.zeros(0, key_type(vocab_size)), np.zeros(0)      # pair (w, c) is key w * vocab_size + c
    for d in range(1, window + 1):
        new_keys, times = pairs_at_distance(ids, d, vocab_size)
        keys, counts = add_counts(keys, counts, new_keys, times / d)
    words, contexts = np.divmod(keys, vocab_size)
    return words.astype(np.int32), contexts.astype(np.int32), counts


def pairs_at_distance(ids, d, vocab_size):
    """The distinct keys w * vocab_size + c of the word pairs (w, c) d tokens apart in `ids` (N, T),
    either way round, sorted, and how many times each occurs: (keys (n,) int64, times (n,))."""
    w, c = ids[:, :-d], ids[:, d:]
    real = (w > 1) & (c > 1)                 # 0 is padding, 1 the unknown word
    w, c = w[real].astype(key_type(vocab_size)), c[real].astype(key_type(vocab_size))
    return np.unique(np.concatenate([w * vocab_size + c, c * vocab_size + w]), return_counts=True)


def key_type(vocab_size):
    """The integer type of pair keys w * vocab_size + c: int32 while they fit (half the memory of
    the pairs, the peak of a run with a large vocabulary), else int64."""
    return np.int32 if vocab_size ** 2 <= np.iinfo(np.int32).max else np.int64


def add_counts(keys, counts, new_keys, new_counts):
    """The sum of two tallies, each distinct sorted keys (n,) and their counts (n,): (keys, counts).

    The new keys are merged into their places (no sort of the union), with count 0, and then every
    new count is added at its key.
    """
    at = np.searchsorted(keys, new_keys)          # where each new key is, or would go
    fresh = at == len(keys)
    fresh[~fresh] = keys[at[~fresh]] != new_keys[~fresh]
    keys = np.insert(keys, at[fresh], new_keys[fresh])
    counts = np.insert(counts, at[fresh], 0.0)
    counts[np.searchsorted(keys, new_keys)] += new_counts
    return keys, counts


def ppmi_matrix(words, contexts, counts, vocab_size, smoothing=0.75):
    """(V, V) float32 positive PMI of the co-occurrence counts, a SparseMatrix of its positive entries.

    PMI(w, c) = log(P(w, c) / (P(w) P(c))), with the context distribution P(c) taken from the
    counts raised to `smoothing`, which keeps rare contexts from getting huge PMIs; negatives
    (and pairs never seen) are 0, and not stored.
    """
    total = counts.sum()
    p_word = np.bincount(words, weights=counts, minlength=vocab_size) / total
    context_mass = np.bincount(contexts, weights=counts, minlength=vocab_size) ** smoothing
    p_context = context_mass / context_mass.sum()
    pmi = np.log(counts / total)             # in place from here: (pairs,) float64 arrays are the peak
    pmi -= np.log(p_word[words])
    pmi -= np.log(p_context[contexts])
    positive = pmi > 0
    return SparseMatrix(words[positive], contexts[positive], pmi[positive].astype(np.float32),
                        (vocab_size, vocab_size))


class SparseMatrix:
    """An (m, n) matrix kept as its non-zero entries, row by row (compressed sparse rows).

    Row r's entries are [row_start[r], row_start[r + 1]) of cols (nnz,) int32 and values (nnz,).
    `matrix @ block` and `matrix.T` work as for an ndarray, in memory that grows with nnz.
    """

    def __init__(self, rows, cols, values, shape):
        """From the entries' rows, cols and values (nnz,), in any order."""
        order = np.argsort(rows, kind="stable")
        self.shape = tuple(shape)
        self.row_start = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=self.shape[0]))])
        self.cols = cols[order].astype(np.int32)
        self.values = values[order]
        self.dtype = self.values.dtype

    @property
    def T(self):
        """The (n, m) transpose, a SparseMatrix of its own (the entries sorted by column)."""
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.row_start))
        return SparseMatrix(self.cols, rows, self.values, self.shape[::-1])

    def __matmul__(self, block, entries_per_chunk=1 << 16):
        """(m, k) product with a dense block (n, k).

        Row r of the product is the sum of values[e] * block[cols[e]] over r's entries e. The terms
        of a chunk of whole rows, about entries_per_chunk entries, are made at once and summed row
        by row with np.add.reduceat. They are laid out (k, entries) so that each sum runs along
        memory: summing (entries, k) made the product twice as slow here.
        """
        if block.shape[0] != self.shape[1]:
            raise ValueError(f"cannot multiply a {self.shape} matrix by a {block.shape} block")
        block_t = np.ascontiguousarray(block.T)                                    # (k, n)
        out_t = np.zeros((block.shape[1], self.shape[0]), np.result_type(self.values, block))
        start, filled = self.row_start, self.nonzero_rows()
        # First rows of the chunks: the rows in which every entries_per_chunk-th entry falls.
        firsts = np.unique(np.searchsorted(start, np.arange(0, start[-1], entries_per_chunk), "right") - 1)
        for r0, r1 in zip(firsts, np.append(firsts[1:], self.shape[0])):
            entries = slice(start[r0], start[r1])
            # np.take: block_t[:, cols] took three times as long here.
            terms = np.take(block_t, self.cols[entries], axis=1)                     # (k, entries)
            terms *= self.values[entries]
            runs = start[r0:r1][filled[r0:r1]] - start[r0]          # where each row's entries begin
            out_t[:, r0:r1][:, filled[r0:r1]] = np.add.reduceat(terms, runs, axis=1)
        return out_t.T

    def nonzero_rows(self):
        """(m,) bool: which rows have an entry."""
        return np.diff(self.row_start) > 0


def truncated_svd(matrix, k, rng, oversample=20, power_iterations=2):
    """Top-k left singular vectors and values of `matrix` (M, N): (U (M, k), S (k,)).

    The randomised method (Halko, Martinsson & Tropp, 2011): Q spans matrix @ (random block), a
    few power iterations sharpen it towards the top singular directions, and the SVD of the small
    Q.T @ matrix gives the rest. A handful of products with a (N or M, k + oversample) block
    instead of a full SVD; `matrix` is an ndarray or a SparseMatrix.
    """
    transpose = matrix.T
    sketch = matrix @ rng.standard_normal((matrix.shape[1], k + oversample)).astype(matrix.dtype)
    q, _ = np.linalg.qr(sketch)
    for _ in range(power_iterations):
        z, _ = np.linalg.qr(transpose @ q)
        q, _ = np.linalg.qr(matrix @ z)
    u_small, s, _ = np.linalg.svd((transpose @ q).T, full_matrices=False)   # Q.T @ matrix
    return (q @ u_small)[:, :k], s[:k]


def ppmi_svd_vectors(ids, vocab_size, dim, rng, window=5):
    """(vocab_size, dim) float64 word vectors U sqrt(S) of the PPMI matrix of `ids` (N, T).

    Rows of ids that never co-occur with anything (0, 1, unused ids) are zero.
    """
    matrix = ppmi_matrix(*cooccurrence(ids, vocab_size, window), vocab_size)
    u, s = truncated_svd(matrix, dim, rng)
    vectors = u.astype(np.float64) * np.sqrt(s)
    vectors[~matrix.nonzero_rows()] = 0.0        # exactly: their U rows are rounding noise
    return vectors


def log_count_ratio(x, y, vocab_size, alpha=1.0):
    """Naive Bayes log-count ratio of every word id in reviews x (N, T) with labels y (N,): (V,).

    r_w = log((p_w / sum p) / (q_w / sum q)), where p_w (q_w) is alpha plus the number of
    positive (negative) reviews that contain w (Wang & Manning, 2012): > 0 for words of praise,
    < 0 for words of blame. Padding and OOV get 0.
    """
    review, t = np.nonzero(x > 1)          # words only: padding and OOV get no counts below anyway
    review, word = np.divmod(np.unique(review * vocab_size + x[review, t]), vocab_size)  # each pair once
    p, q = class_counts(review, word, y, vocab_size, alpha)
    p[:2] = q[:2] = 0  # padding and OOV are not words: no share of the counts, no polarity
    r = ratio(p, q)
    r[:2] = 0.0
    return r


def bucket_log_count_ratio(x, y, buckets, alpha=1.0, chunk=1024):
    """The same ratio as `log_count_ratio` for each bucket of the pair table (`layers.bigram_buckets`)
    that reviews x (N, T) with labels y (N,) read: (buckets,), 0 for a bucket no review reads.

    A review counts once for each bucket of its words' pairs (a padding step reads none). The
    reviews are hashed `chunk` at a time: the hashes of all of them at once would take several
    times the ids' memory.
    """
    reviews, keys = [], []
    for lo in range(0, len(x), chunk):
        part = np.asarray(x[lo:lo + chunk])
        review, t = np.nonzero(part != 0)
        key = np.unique(review * np.int64(buckets) + bigram_buckets(part, buckets)[review, t])   # each pair once
        review, bucket = np.divmod(key, buckets)
        reviews.append(review + lo)
        keys.append(bucket)
    review, bucket = np.concatenate(reviews), np.concatenate(keys)
    p, q = class_counts(review, bucket, y, buckets, alpha)
    r = ratio(p, q)
    r[p + q == 2 * alpha] = 0.0                # unread buckets: no evidence either way
    return r


def class_counts(review, key, y, size, alpha):
    """(p, q) (size,): alpha plus the number of positive (negative) reviews of each key, for
    (review, key) pairs that each occur once."""
    positive = y[review] == 1
    return (alpha + np.bincount(key[positive], minlength=size),
            alpha + np.bincount(key[~positive], minlength=size))


def ratio(p, q):
    """log((p / sum p) / (q / sum q)), element by element (float64)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log((p / p.sum()) / (q / q.sum()))


def scaled_word_vectors(config, x_train):
    """PPMI-SVD vectors (V, embed_dim minus the naive Bayes column) of the training ids x_train,
    scaled to standard deviation config.ppmi_init over the ids that have one."""
    vectors = ppmi_svd_vectors(x_train, config.vocab_size, config.embed_dim - bool(config.nb_init),
                               np.random.default_rng([config.seed, 2]))
    return vectors * (config.ppmi_init / vectors[vectors.any(axis=1)].std())


def init_embedding(embedding, config, x_train, y_train, word_vectors):
    """Informed starting values for the `layers.Embedding` `embedding`'s tables, in place.

    With nb_init, column 0 of the word table (V, E) is the naive Bayes log-count ratio times
    nb_init: one feature that already says how positive each word is, so the LSTM's first job is
    to add it up over the review rather than to discover it. With word_vectors, the other columns
    of the ids that have a vector take it (padding, OOV and unseen ids keep their random start).
    With bigram_nb_init, column 0 of the pair table (K, E) is each bucket's ratio times
    bigram_nb_init: x_t's column 0 then starts as the sum of its word's and its pair's evidence,
    NBSVM's features of uni- and bigrams (the other columns start at zero, as without it).
    """
    embeddings = embedding.embeddings
    if config.nb_init:
        embeddings[:, 0] = config.nb_init * log_count_ratio(x_train, y_train, config.vocab_size)
    if word_vectors is not None:
        known = word_vectors.any(axis=1)
        embeddings[known, int(bool(config.nb_init)):] = word_vectors[known]
    if config.bigram_nb_init:
        embedding.bigram_table[:, 0] = config.bigram_nb_init * bucket_log_count_ratio(
            x_train, y_train, embedding.bigrams)
