"""The tutorial's model, Embedding(V, E) -> LSTM(H) -> Dense(1, sigmoid), with a Keras-like API."""
import numpy as np

from .checks import BIGRAM_BUCKETS, IMPLEMENTATIONS, LAYERS, POOLINGS, RATE, VOCAB_SIZE, WIDTH, check
from .errors import NumpyLSTMError
from .fileio import atomic_path
from .layers import LSTM, Bidirectional, Dense, Dropout, Embedding, TimePooling
from .losses import binary_crossentropy
from .memory import file_limit
from .reference import sigmoid
from .safe_files import KB, NpzFile, parse_json, to_json

# The settings a model file's config holds, and those every version wrote (the others have defaults).
CONFIG_KEYS = ("vocab_size", "embed_dim", "units", "mask_zero", "dropout", "pooling", "num_layers", "bidirectional",
               "dtype", "recurrent_dropout", "word_dropout", "implementation", "bigram_buckets", "trigrams")
FIRST_CONFIG_KEYS = ("vocab_size", "embed_dim", "units")


def weight_shapes(vocab_size, embed_dim, units, num_layers=1, bidirectional=False, bigram_buckets=0):
    """{name: shape} of a SentimentLSTM's weights, in `get_weights()` order (Keras's names; the
    bigram table, with bigram_buckets, is ours)."""
    width = 2 * units if bidirectional else units
    shapes = {"embedding/embeddings": (vocab_size, embed_dim)}
    if bigram_buckets:
        shapes["embedding/bigrams"] = (bigram_buckets, embed_dim)
    for k in range(num_layers):
        prefix = "lstm" if k == 0 else f"lstm_{k}"
        for d in ("forward/", "backward/") if bidirectional else ("",):
            shapes[f"{prefix}/{d}kernel"] = (embed_dim if k == 0 else width, 4 * units)
            shapes[f"{prefix}/{d}recurrent_kernel"] = (units, 4 * units)
            shapes[f"{prefix}/{d}bias"] = (4 * units,)
    shapes.update({"dense/kernel": (width, 1), "dense/bias": (1,)})
    return shapes


def check_model_config(config, where):
    """Refuse, in one line, a model config (a dict from a model file) this version cannot build,
    before anything is allocated: unknown or missing keys, values out of range or of a wrong type."""
    if not isinstance(config, dict):
        raise NumpyLSTMError(f"{where} holds no model config (not a JSON object)")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    missing = [key for key in FIRST_CONFIG_KEYS if key not in config]
    if unknown or missing:
        raise NumpyLSTMError(f"{where} holds an unknown model config: "
                             + (f"no {missing[0]}" if missing else f"unknown setting {unknown[0]}"))
    for key in ("mask_zero", "bidirectional", "trigrams"):
        if not isinstance(config.get(key, False), bool):
            raise NumpyLSTMError(f"{where}: model setting {key} must be true or false, got {config[key]!r}")
    if config.get("dtype", "float32") not in ("float32", "float64"):
        raise NumpyLSTMError(f"{where}: model dtype must be float32 or float64, got {config['dtype']!r}")
    try:
        check_model_settings(**{key: value for key, value in config.items()
                                if key not in ("mask_zero", "bidirectional", "dtype")})
    except NumpyLSTMError as e:
        raise NumpyLSTMError(f"{where}: {e}") from None


def check_model_settings(vocab_size=500, embed_dim=32, units=100, num_layers=1, dropout=0.0, recurrent_dropout=0.0,
                         word_dropout=0.0, pooling="last", implementation="fast", bigram_buckets=0, trigrams=False):
    """Refuse, in one line, sizes, rates or choices a SentimentLSTM does not take (sizes bounded)."""
    check("vocab_size", vocab_size, VOCAB_SIZE)
    check("bigram_buckets", bigram_buckets, BIGRAM_BUCKETS)
    if trigrams and not bigram_buckets:
        raise NumpyLSTMError("trigrams are hashed into the pair table: they need bigram_buckets")
    for name, value in (("embed_dim", embed_dim), ("units", units)):
        check(name, value, WIDTH)
    check("num_layers", num_layers, LAYERS)
    for name, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout), ("word_dropout", word_dropout)):
        check(name, value, RATE)
    check("pooling", pooling, choices=POOLINGS)
    check("implementation", implementation, choices=IMPLEMENTATIONS)


class SentimentLSTM:
    """Binary classifier of id sequences: ids (B, T) -> P(positive) (B,).

    The tutorial's model is the default: Embedding(vocab_size, embed_dim) -> LSTM(units) ->
    Dense(1, sigmoid). Its weights, in Keras Sequential order (`get_weights()`): embeddings
    (V, E), kernel (E, 4H), recurrent_kernel (H, 4H), bias (4H,), dense_kernel (H, 1),
    dense_bias (1,). A Keras model of the same architecture loads unchanged with
    `set_weights(keras_model.get_weights())`.

    num_layers: stacked LSTMs (each but the last returns its whole sequence to the next).
    bidirectional: each LSTM is a Bidirectional pair (forward and backward, 2H outputs).
    pooling: what the Dense layer sees: "last" (the tutorial: the final state h_T), or the
    "mean" or "max" of the last LSTM's states over the unmasked steps.
    mask_zero: treat id 0 as padding (Keras `Embedding(mask_zero=True)`): padded steps leave the
    LSTM state unchanged. The tutorial runs without it, as Keras's default does.
    dropout: rate of Keras's LSTM(dropout=...): each LSTM's input features are dropped with one
    mask per sequence, shared by all its time steps; active only in training (`rng` given).
    recurrent_dropout: rate of Keras's LSTM(recurrent_dropout=...), on h_{t-1} where the
    recurrent matmul reads it, one mask per sequence (see `LSTM`); in training only.
    word_dropout: rate at which whole tokens are dropped (their embedding vectors zeroed, as
    Keras's Dropout(noise_shape=(B, T, 1)) after the Embedding); in training only.
    bigram_buckets: rows of a second table of hashed (previous word, word) pairs, each step's row
    added to its word's vector (`Embedding`'s bigrams; 0, the default: none). trigrams: each
    step also adds the row of its hashed word triple, in the same table.
    dtype: float32 (default, as Keras's floatx) or float64 (for gradient checks).
    implementation: the LSTMs' "fast" engine (default) or the plain "reference" equations
    (`numpy_lstm.reference`): the same numbers, the reference several times slower.
    seed: an int or an np.random.Generator; all randomness comes from it.
    """

    def __init__(self, vocab_size=500, embed_dim=32, units=100, mask_zero=False, dropout=0.0,
                 pooling="last", num_layers=1, bidirectional=False, dtype="float32", seed=None,
                 recurrent_dropout=0.0, word_dropout=0.0, implementation="fast", bigram_buckets=0,
                 trigrams=False):
        check_model_settings(vocab_size=vocab_size, embed_dim=embed_dim, units=units, num_layers=num_layers,
                             dropout=dropout, recurrent_dropout=recurrent_dropout, word_dropout=word_dropout,
                             pooling=pooling, implementation=implementation, bigram_buckets=bigram_buckets,
                             trigrams=trigrams)
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise NumpyLSTMError(f"dtype must be float32 or float64, got {dtype}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.config = {
            "vocab_size": int(vocab_size), "embed_dim": int(embed_dim), "units": int(units),
            "mask_zero": bool(mask_zero), "dropout": float(dropout), "pooling": pooling,
            "num_layers": int(num_layers), "bidirectional": bool(bidirectional), "dtype": dtype.name,
            "recurrent_dropout": float(recurrent_dropout), "word_dropout": float(word_dropout),
            "implementation": implementation,
        }
        if bigram_buckets:      # only then, so that a model without them writes the config it always did
            self.config["bigram_buckets"] = int(bigram_buckets)
        if trigrams:
            self.config["trigrams"] = True
        self.embedding = Embedding(vocab_size, embed_dim, rng, dtype, bigrams=bigram_buckets, trigrams=trigrams)
        recurrent = Bidirectional if bidirectional else LSTM
        width = 2 * units if bidirectional else units
        self.rnns = [recurrent(embed_dim if k == 0 else width, units, rng,
                               return_sequences=k < num_layers - 1 or pooling != "last", dtype=dtype,
                               recurrent_dropout=recurrent_dropout, implementation=implementation)
                     for k in range(num_layers)]
        self.word_dropout = Dropout(word_dropout, shared_axis=2)
        self.dropouts = [Dropout(dropout, shared_axis=1) for _ in range(num_layers)]
        self.pooling = None if pooling == "last" else TimePooling(pooling)
        self.dense = Dense(width, 1, rng, dtype)
        self.weight_names = list(weight_shapes(vocab_size, embed_dim, units, num_layers, bidirectional,
                                               bigram_buckets))

    @property
    def weights(self):
        """The live weight arrays, in `get_weights()` order (optimizers update them in place)."""
        return self.embedding.weights + [w for rnn in self.rnns for w in rnn.weights] + self.dense.weights

    def get_weights(self):
        """Copies of the weights, in Keras order (names in `weight_names`)."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        """Load weights given in `get_weights()` order (for example a Keras model's)."""
        weights = list(weights)
        if len(weights) != len(self.weight_names):
            raise NumpyLSTMError(f"expected {len(self.weight_names)} weight arrays, got {len(weights)}")
        for name, target, value in zip(self.weight_names, self.weights, weights):
            value = np.asarray(value)
            if value.shape != target.shape:
                raise NumpyLSTMError(f"weight {name} has shape {value.shape}, the model expects {target.shape}")
            target[...] = value

    def _check_ids(self, ids):
        ids = np.asarray(ids)
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise NumpyLSTMError(f"ids must be a 2-D integer array (batch, time), got {ids.dtype} {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.config["vocab_size"]):
            raise NumpyLSTMError(f"ids must lie in [0, {self.config['vocab_size']}), "
                                 f"got values in [{ids.min()}, {ids.max()}]")
        if self.config["mask_zero"] and ids.shape[1] > 1:
            # Leading columns that are padding in every row leave the masked state at zero, so
            # dropping them changes nothing but the time spent (the "padding tax").
            nonpad = np.flatnonzero((ids != 0).any(axis=0))
            start = nonpad[0] if nonpad.size else ids.shape[1] - 1
            ids = ids[:, start:]
        return ids

    def forward(self, ids, rng=None):
        """ids (B, T) -> (logits (B,), cache). With an rng (training), dropout is active."""
        ids = self._check_ids(ids)
        x, emb_cache = self.embedding.forward(ids)
        logits, cache = self.forward_vectors(x, ids != 0 if self.config["mask_zero"] else None, rng)
        return logits, (emb_cache, cache)

    def forward_vectors(self, x, mask=None, rng=None):
        """The model after its embedding: vectors x (B, T, E), mask bool (B, T) or None ->
        (logits (B,), cache). What attributions differentiate (`numpy_lstm.inspection`)."""
        h, word_cache = self.word_dropout.forward(x, rng)
        rnn_caches = []
        for dropout, rnn in zip(self.dropouts, self.rnns):
            h, drop_cache = dropout.forward(h, rng)
            h, rnn_cache = rnn.forward(h, mask=mask, rng=rng)
            rnn_caches.append((drop_cache, rnn_cache))
        pool_cache = None
        if self.pooling is not None:
            h, pool_cache = self.pooling.forward(h, mask)
        logits, dense_cache = self.dense.forward(h)
        return logits[:, 0], (word_cache, rnn_caches, pool_cache, dense_cache)

    def backward(self, dlogits, cache):
        """dlogits (B,) -> gradients in `get_weights()` order."""
        emb_cache, cache = cache
        dx, grads = self.backward_vectors(dlogits, cache)
        return self.embedding.backward(dx, emb_cache) + grads

    def backward_vectors(self, dlogits, cache):
        """dlogits (B,), a `forward_vectors` cache -> (dx (B, T, E), the gradients of every weight
        but the embeddings, in `get_weights()` order)."""
        word_cache, rnn_caches, pool_cache, dense_cache = cache
        dh, dense_grads = self.dense.backward(dlogits[:, None], dense_cache)
        if self.pooling is not None:
            dh = self.pooling.backward(dh, pool_cache)
        rnn_grads = []
        for dropout, rnn, (drop_cache, rnn_cache) in reversed(list(zip(self.dropouts, self.rnns, rnn_caches))):
            dh, _, grads = rnn.backward(dh, rnn_cache)
            dh = dropout.backward(dh, drop_cache)
            rnn_grads = grads + rnn_grads
        return self.word_dropout.backward(dh, word_cache), rnn_grads + dense_grads

    def gradients(self, ids, labels, rng=None, adversarial=0.0):
        """Mean binary cross-entropy on a batch and its gradients: (loss, grads).

        Pass the training rng to apply dropout; without it the pass is deterministic. adversarial:
        see `training_pass`.
        """
        _, loss, grads = self.training_pass(ids, labels, rng, adversarial)
        return loss, grads

    def training_pass(self, ids, labels, rng=None, adversarial=0.0, move=None):
        """One training step's forward and backward: ids (B, T), labels (B,) -> (logits (B,), loss,
        grads in `get_weights()` order).

        adversarial = epsilon > 0 trains on the embedded reviews x and on x + r as well: the loss
        is BCE(x) + BCE(x + r), r (B, T, E) = epsilon * g / ||g|| with g the gradient of BCE(x)
        with respect to x, each review's norm taken over all its words (`adversarial_move`). r is a
        constant of the loss, not differentiated (Miyato et al. 2017). move: a given r instead
        (what a gradient check holds fixed). The logits are those at x.
        """
        ids = self._check_ids(ids)
        x, emb_cache = self.embedding.forward(ids)
        mask = ids != 0 if self.config["mask_zero"] else None
        logits, cache = self.forward_vectors(x, mask, rng)
        loss, dlogits = binary_crossentropy(logits, labels)
        dx, grads = self.backward_vectors(dlogits, cache)
        del cache
        if adversarial > 0 or move is not None:
            # x is not needed again: its buffer takes x + r (one array fewer at the pass's peak)
            x += adversarial_move(dx, adversarial) if move is None else move
            moved_logits, moved_cache = self.forward_vectors(x, mask, rng)
            moved_loss, dmoved = binary_crossentropy(moved_logits, labels)
            dx_moved, moved_grads = self.backward_vectors(dmoved, moved_cache)
            loss, dx = loss + moved_loss, dx + dx_moved
            grads = [g + m for g, m in zip(grads, moved_grads)]
        return logits, loss, self.embedding.backward(dx, emb_cache) + grads

    def predict(self, ids, batch_size=64):
        """Probabilities of the positive class (B,), computed batch_size rows at a time."""
        ids = np.asarray(ids)
        if len(ids) == 0:
            return np.zeros(0, self.weights[0].dtype)
        return np.concatenate([sigmoid(self.forward(ids[i:i + batch_size])[0])
                               for i in range(0, len(ids), batch_size)])

    def save(self, path):
        """Write config and weights to an .npz file atomically (no pickle inside)."""
        arrays = dict(zip(self.weight_names, self.weights))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, config=np.array(to_json(self.config)), **arrays)

    @classmethod
    def load(cls, path):
        """Read a model written by `save`; a missing, damaged or mismatched file is a NumpyLSTMError.

        Nothing is allocated by what the file says before it is checked: its config is bounded
        (`check_model_config`), and each array's header must give the shape that config implies
        before the array is read. Weights must be finite.
        """
        try:
            with NpzFile(path, "numpy-lstm model file", file_limit()) as npz:
                config = parse_json(npz.text("config", 64 * KB), f"the config in {path}")
                check_model_config(config, path)
                shapes = weight_shapes(config["vocab_size"], config["embed_dim"], config["units"],
                                       config.get("num_layers", 1), config.get("bidirectional", False),
                                       config.get("bigram_buckets", 0))
                for name, shape in shapes.items():
                    npz.expect(name, shape, (config.get("dtype", "float32"),))
                weights = [npz.array(name) for name in shapes]
        except FileNotFoundError:
            raise NumpyLSTMError(f"no model file at {path}") from None
        model = cls(**config)
        model.set_weights(weights)
        return model


def adversarial_move(dx, epsilon):
    """The move r (B, T, E) of each review's vectors that raises the loss most, to first order,
    among moves of L2 norm epsilon: epsilon * dx / ||dx||, the norm of each row b over all of
    dx[b]'s T x E entries. A row whose gradient is zero is not moved."""
    norms = np.sqrt(np.sum(np.square(dx, dtype=np.float64), axis=(1, 2), keepdims=True))
    return (epsilon * dx / np.where(norms > 0, norms, 1.0)).astype(dx.dtype)


def build_model(config, seed):
    """The SentimentLSTM of a run's settings (a TrainConfig); seed as SentimentLSTM's."""
    return SentimentLSTM(vocab_size=config.vocab_size, embed_dim=config.embed_dim, units=config.units,
                         mask_zero=config.mask, dropout=config.dropout, pooling=config.pooling,
                         num_layers=config.num_layers, bidirectional=config.bidirectional, seed=seed,
                         recurrent_dropout=config.recurrent_dropout, word_dropout=config.word_dropout,
                         implementation=config.implementation, bigram_buckets=config.bigram_buckets,
                         trigrams=config.hashed_trigrams)


class Ensemble:
    """Several trained SentimentLSTMs read as one (what `numpy-lstm train --ensemble N` makes).

    The ensemble's logit is the mean of the members' logits: the geometric mean of their odds.
    Members that err in different places (different initialisations and batch orders) outvote
    each other's mistakes. Inference only; each member trains on its own.
    """

    def __init__(self, members):
        self.members = list(members)
        if not self.members:
            raise NumpyLSTMError("an ensemble needs at least one model")

    @property
    def weights(self):
        """Every member's weights, member after member."""
        return [w for m in self.members for w in m.weights]

    def forward(self, ids, rng=None):
        """ids (B, T) -> (mean logits (B,), None): no cache, there is no backward."""
        return np.mean([m.forward(ids)[0] for m in self.members], axis=0), None

    predict = SentimentLSTM.predict
