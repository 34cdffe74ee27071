"""The tutorial's model, Embedding(V, E) -> LSTM(H) -> Dense(1, sigmoid), with a Keras-like API."""
import json
import zipfile

import numpy as np

from .checks import IMPLEMENTATIONS, POOLINGS, POSITIVE_INTEGER, RATE, VOCAB_SIZE, check
from .errors import NumpyLSTMError
from .fileio import atomic_path
from .layers import LSTM, Bidirectional, Dense, Dropout, Embedding, TimePooling
from .losses import binary_crossentropy
from .reference import sigmoid


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
    dtype: float32 (default, as Keras's floatx) or float64 (for gradient checks).
    implementation: the LSTMs' "fast" engine (default) or the plain "reference" equations
    (`numpy_lstm.reference`): the same numbers, the reference several times slower.
    seed: an int or an np.random.Generator; all randomness comes from it.
    """

    def __init__(self, vocab_size=500, embed_dim=32, units=100, mask_zero=False, dropout=0.0,
                 pooling="last", num_layers=1, bidirectional=False, dtype="float32", seed=None,
                 recurrent_dropout=0.0, word_dropout=0.0, implementation="fast"):
        check("vocab_size", vocab_size, VOCAB_SIZE)
        for name, value in (("embed_dim", embed_dim), ("units", units), ("num_layers", num_layers)):
            check(name, value, POSITIVE_INTEGER)
        for name, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout),
                            ("word_dropout", word_dropout)):
            check(name, value, RATE)
        check("pooling", pooling, choices=POOLINGS)
        check("implementation", implementation, choices=IMPLEMENTATIONS)
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
        self.embedding = Embedding(vocab_size, embed_dim, rng, dtype)
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
        self.weight_names = ["embedding/embeddings"]
        for k in range(num_layers):
            prefix = "lstm" if k == 0 else f"lstm_{k}"
            directions = ("forward/", "backward/") if bidirectional else ("",)
            self.weight_names += [f"{prefix}/{d}{name}" for d in directions
                                  for name in ("kernel", "recurrent_kernel", "bias")]
        self.weight_names += ["dense/kernel", "dense/bias"]

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

    def gradients(self, ids, labels, rng=None):
        """Mean binary cross-entropy on a batch and its gradients: (loss, grads).

        Pass the training rng to apply dropout; without it the pass is deterministic.
        """
        logits, cache = self.forward(ids, rng)
        loss, dlogits = binary_crossentropy(logits, labels)
        return loss, self.backward(dlogits, cache)

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
                np.savez(f, config=np.array(json.dumps(self.config)), **arrays)

    @classmethod
    def load(cls, path):
        """Read a model written by `save`; a missing, truncated or mismatched file is a NumpyLSTMError."""
        try:
            with np.load(path, allow_pickle=False) as data:
                config = json.loads(str(data["config"]))
                arrays = {name: data[name] for name in data.files if name != "config"}
        except FileNotFoundError:
            raise NumpyLSTMError(f"no model file at {path}") from None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise NumpyLSTMError(f"{path} is not a readable numpy-lstm model file "
                                 f"(truncated or corrupt?): {type(e).__name__}") from None
        if not isinstance(config, dict):
            raise NumpyLSTMError(f"{path} holds no model config (not a JSON object)")
        try:
            model = cls(**config)
        except TypeError as e:
            raise NumpyLSTMError(f"{path} holds an unknown model config: {e}") from None
        missing = [name for name in model.weight_names if name not in arrays]
        if missing:
            raise NumpyLSTMError(f"{path} lacks the weight {missing[0]} that its config calls for")
        model.set_weights([arrays[name] for name in model.weight_names])
        if not all(np.isfinite(w).all() for w in model.weights):
            raise NumpyLSTMError(f"{path} has weights that are not finite numbers (NaN or inf)")
        return model


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
