"""Pretraining the LSTM as a language model on the training reviews' text (`--pretrain-epochs N`).

Before it learns the labels, the model learns to predict words (Dai & Le 2015; Miyato et al.
2017): the state of the forward LSTM after word t scores word t + 1; in a bidirectional model the
backward LSTM's state after reading back to word t scores word t - 1. The embedding and the LSTM
keep what they learn; the output weights that scored the words are dropped, and training on the
labels starts from there (numpy_lstm/train.py).

A softmax over the whole vocabulary at every position of every review would cost many times the
LSTM itself, so each batch scores the true word against K words drawn for the whole batch from the
unigram distribution raised to 0.75 (`negative_sampler`), and each word's logit is lowered by the
log of the number of times the draw is expected to hold it: the sampled softmax (Jean et al.
2015). Its loss is not the full softmax's, but trained to its minimum it gives about the same
scores, up to a constant: the correction undoes the draw's preference for frequent words. Its
gradient is checked by central differences in float64 (tests/test_language_model.py), through the
LSTM in both implementations.

Shapes: B reviews, T steps, H units per direction, N scored positions, K sampled words, V ids.
"""
import contextlib
import time

import numpy as np

from .optimizers import Adam, clip_by_global_norm
from .prepare import batch_order
from .stopping import Stopped, redo_if_workers_die

# Gradients clipped at this global norm, as language models are commonly trained: a batch of rare
# words or very long reviews cannot throw the weights far in one step.
CLIPNORM = 5.0
# The unigram distribution raised to this power samples the scored words (Mikolov et al. 2013):
# frequent words less often than they occur, rare ones more.
SAMPLING_POWER = 0.75


def sampled_softmax(h, targets, negatives, W, b, log_expected):
    """Mean cross-entropy of each position's true word against the sampled words: (loss, cache).

    h (N, H): the states that score; targets (N,) the true words' ids; negatives (K,) the
    sampled ids, shared by every position; W (V, H), b (V,) the output weights; log_expected (V,)
    the log of each id's expected count in a draw of K. The logit of word w at position n is
    h[n] . W[w] + b[w] - log_expected[w]; a sampled word equal to the position's true word is
    left out of its softmax (it would score the truth as a wrong answer).
    """
    true_logit = np.einsum("nh,nh->n", h, W[targets]) + b[targets] - log_expected[targets]
    sampled = h @ W[negatives].T + (b[negatives] - log_expected[negatives])
    sampled[negatives[None, :] == targets[:, None]] = -np.inf
    logits = np.concatenate([true_logit[:, None], sampled], axis=1)          # (N, 1 + K)
    top = logits.max(axis=1, keepdims=True)
    exp = np.exp(logits - top)
    total = exp.sum(axis=1, keepdims=True)
    # A batch of one-word reviews scores nothing: its loss is 0, not the mean of no positions
    loss = float(np.sum(np.log(total[:, 0]) + top[:, 0] - true_logit) / max(len(targets), 1))
    return loss, (h, targets, negatives, W, exp / total)


def sampled_softmax_backward(cache):
    """The gradients of `sampled_softmax`'s loss: (dh (N, H), dW (V, H), db (V,))."""
    h, targets, negatives, W, probabilities = cache
    n, V = max(len(targets), 1), W.shape[0]            # as the loss divides
    dlogits = probabilities / n
    dlogits[:, 0] -= 1.0 / n
    d_true, d_sampled = dlogits[:, 0], dlogits[:, 1:]
    dh = d_true[:, None] * W[targets] + d_sampled @ W[negatives]
    # The true words' rows: sums over positions that share a word, one np.bincount a column
    # (np.add.at is several times slower for tens of thousands of positions).
    rows = d_true[:, None] * h
    dW = np.stack([np.bincount(targets, weights=rows[:, j], minlength=V) for j in range(W.shape[1])], axis=1)
    db = np.bincount(targets, weights=d_true, minlength=V)
    np.add.at(dW, negatives, d_sampled.T @ h)         # K rows: add.at is cheap here
    np.add.at(db, negatives, d_sampled.sum(axis=0))
    return dh, dW.astype(W.dtype), db.astype(W.dtype)


def negative_sampler(ids, vocab_size, samples):
    """(probabilities (V,), log_expected (V,)) of the sampled words, from the ids (M, T) of the text:
    each id's count raised to SAMPLING_POWER, padding (0) never drawn."""
    counts = np.bincount(np.asarray(ids).ravel(), minlength=vocab_size)[:vocab_size].astype(np.float64)
    counts[0] = 0.0
    weights = counts ** SAMPLING_POWER
    probabilities = weights / weights.sum()
    with np.errstate(divide="ignore"):
        log_expected = np.log(samples * probabilities)
    return probabilities, log_expected


class WordPredictor:
    """The output weights that score words, one (W (V, H), b (V,)) pair per LSTM direction.

    W starts at zeros and b at the log of each id's smoothed unigram frequency in the text: Adam
    moves a weight by about its learning rate a step, far too slowly to learn log-frequencies that
    span 15 nats from zero, and with them the first steps already score as a unigram model does.
    """

    def __init__(self, ids, vocab_size, units, directions, dtype):
        counts = np.bincount(np.asarray(ids).ravel(), minlength=vocab_size)[:vocab_size] + 1.0
        counts[0] = 0.0
        with np.errstate(divide="ignore"):
            unigram = np.log(counts / counts.sum()).astype(dtype)
        self.weights = []
        for _ in range(directions):
            self.weights += [np.zeros((vocab_size, units), dtype), unigram.copy()]


@contextlib.contextmanager
def every_state(rnn):
    """The layer `rnn` (LSTM or Bidirectional) returns its state at every step while in the block."""
    layers = [rnn] + [getattr(rnn, name) for name in ("forward_layer", "backward_layer") if hasattr(rnn, name)]
    saved = [layer.return_sequences for layer in layers]
    for layer in layers:
        layer.return_sequences = True
    try:
        yield
    finally:
        for layer, value in zip(layers, saved):
            layer.return_sequences = value


def language_model_pass(model, predictor, ids, negatives, log_expected, rng=None):
    """The language models' mean loss on a batch and its gradients: (loss, grads).

    model: a SentimentLSTM (its embedding, dropouts and LSTMs are read, not its readout); ids
    (B, T), 0 for padding; predictor: a WordPredictor. loss is the sum over directions of
    `sampled_softmax`'s mean; grads are in the order model.weights without the readout's two,
    then predictor.weights. Only positions where both the reading word and the scored word are
    words (not padding) count.
    """
    ids = model._check_ids(ids)
    with every_state(model.rnns[-1]):      # forward and backward: the reference reads it in both
        h, cache = states_of(model, ids, rng)
        dh, loss, head_grads = score_words(h, ids, predictor, negatives, log_expected)
        dx, rnn_grads = states_backward(model, dh, cache)
    return loss, model.embedding.backward(dx, ids) + rnn_grads + head_grads


def states_of(model, ids, rng):
    """The last LSTM's state at every step, (B, T, H) or (B, T, 2H), and the cache of the way there."""
    h, word_cache = model.word_dropout.forward(model.embedding.forward(ids)[0], rng)
    mask = ids != 0 if model.config["mask_zero"] else None     # as the model reads reviews
    caches = []
    for dropout, rnn in zip(model.dropouts, model.rnns):
        h, drop_cache = dropout.forward(h, rng)
        h, rnn_cache = rnn.forward(h, mask=mask, rng=rng)
        caches.append((drop_cache, rnn_cache))
    return h, (word_cache, caches)


def states_backward(model, dh, cache):
    """dh like `states_of`'s states -> (dx (B, T, E), the LSTMs' gradients)."""
    word_cache, caches = cache
    rnn_grads = []
    for dropout, rnn, (drop_cache, rnn_cache) in reversed(list(zip(model.dropouts, model.rnns, caches))):
        dh, _, grads = rnn.backward(dh, rnn_cache)
        dh = dropout.backward(dh, drop_cache)
        rnn_grads = grads + rnn_grads
    return model.word_dropout.backward(dh, word_cache), rnn_grads


def score_words(h, ids, predictor, negatives, log_expected):
    """Each direction's states score its words: (dh like h, loss, the predictor's gradients).

    Direction 0 reads forward: its state at step t scores word t + 1. Direction 1 reads backward:
    its state at step t + 1 (having read from the end back to word t + 1) scores word t.
    """
    H = predictor.weights[0].shape[1]
    mask = ids != 0
    both = mask[:, :-1] & mask[:, 1:]                  # (B, T - 1): word t and word t + 1
    reading = [(np.s_[:, :-1], np.s_[:, 1:]), (np.s_[:, 1:], np.s_[:, :-1])]
    dh = np.zeros_like(h)
    loss, grads = 0.0, []
    for d in range(h.shape[-1] // H):
        state_at, word_at = reading[d]
        W, b = predictor.weights[2 * d:2 * d + 2]
        part, cache = sampled_softmax(h[..., d * H:(d + 1) * H][state_at][both], ids[word_at][both],
                                      negatives, W, b, log_expected)
        dstates, dW, db = sampled_softmax_backward(cache)
        dh[..., d * H:(d + 1) * H][state_at][both] = dstates
        loss += part
        grads += [dW, db]
    return dh, loss, grads


def pretrain(model, ids, config, rng, log, progress=None, stop=None):
    """config.pretrain_epochs epochs of `language_model_pass` over the reviews ids (M, T); returns
    (seconds, [mean loss of each epoch]).

    Adam at config.lr, decayed linearly to 0 over all the steps, gradients clipped at CLIPNORM;
    batches of config.batch_size reviews of similar length. rng draws the batch order, the
    dropout masks and the sampled words. progress(steps) makes a progress bar, or None. With
    stop.requested, Stopped is raised: pretraining starts again on resume (it is short beside
    the run, and has no checkpoint of its own).
    """
    start = time.perf_counter()
    directions = 2 if model.config["bidirectional"] else 1
    predictor = WordPredictor(ids, config.vocab_size, config.units, directions, model.weights[0].dtype)
    probabilities, log_expected = negative_sampler(ids, config.vocab_size, config.pretrain_samples)
    log_expected = log_expected.astype(model.weights[0].dtype)
    weights = model.weights[:-2] + predictor.weights
    optimizer = Adam(learning_rate=config.lr)
    lengths = (ids != 0).sum(axis=1)
    epochs = [batch_order(lengths, config.batch_size, rng, bucket=True) for _ in range(config.pretrain_epochs)]
    steps, step, losses = sum(len(batches) for batches in epochs), 0, []
    for epoch, batches in enumerate(epochs, 1):
        log(f"Pretraining epoch {epoch}/{config.pretrain_epochs} (language model)")
        bar = progress(len(batches)) if progress else None
        total = 0.0
        for b, idx in enumerate(batches, 1):
            negatives = rng.choice(config.vocab_size, size=config.pretrain_samples, p=probabilities)
            # Overflow shows up as a non-finite loss, reported in one line instead of warnings
            with np.errstate(over="ignore", invalid="ignore"):
                loss, grads = redo_if_workers_die(
                    lambda: language_model_pass(model, predictor, ids[idx], negatives, log_expected, rng),
                    f"pretraining epoch {epoch}, batch {b}", rng)
            if not np.isfinite(loss):
                raise FloatingPointError(f"the language model's loss became {loss} at pretraining epoch {epoch}")
            grads, _ = clip_by_global_norm(grads, CLIPNORM)
            optimizer.learning_rate = config.lr * (1.0 - step / steps)
            optimizer.step(weights, grads)
            step += 1
            total += loss
            if bar:
                bar.update(b, {"lm_loss": total / b})
            if stop is not None and stop.requested:
                raise Stopped(stop.requested, "during pretraining, which starts again on resume")
        losses.append(total / len(batches))
        if bar:
            bar.close({"lm_loss": losses[-1]})
    return time.perf_counter() - start, losses
