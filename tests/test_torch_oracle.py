"""PyTorch as a test oracle: outputs and every gradient against torch autograd, in float64.

Covered: the reference functions (numpy_lstm/reference.py), the LSTM layer, Bidirectional,
stacked layers and the whole SentimentLSTM (embedding -> LSTMs -> pooling -> dense -> BCE).
The weights move over in torch.nn.LSTM's layout: weight_ih = kernel.T, weight_hh =
recurrent_kernel.T, bias_ih + bias_hh = bias (split at random here, so that the sum is what
counts), gate order i, f, g, o = Keras's i, f, c, o. Torch has no Keras-style mask, so masked
sequences (and recurrent dropout) run torch.nn.LSTMCell step by step, carrying (h, c) through a
masked step with torch.where; unmasked ones run torch.nn.LSTM itself.

Torch is only a test dependency: these tests skip without it, and fail instead under
NUMPY_LSTM_REQUIRE_TORCH=1, as CI runs them (tests/conftest.py).
"""
import numpy as np
import pytest

from numpy_lstm import LSTM, Bidirectional, SentimentLSTM, relative_error
from numpy_lstm.reference import lstm_backward, lstm_forward, lstm_step_backward, lstm_step_forward

TOL = 1e-10       # two float64 computations of the same maths, summed in different orders
B, T, E, H = 4, 6, 3, 5
LAYER_ROWS = 16   # enough rows for the LSTM layer to split its batch over two processes


class Oracle:
    """Torch LSTMs loaded with our weights, and their gradients read back in Keras's layout."""

    def __init__(self, torch):
        self.torch = torch
        self.rng = np.random.default_rng(1234)   # the random split of each bias in two

    def leaf(self, a):
        """A float64 tensor that collects its gradient."""
        return self.torch.tensor(np.asarray(a, np.float64), requires_grad=True)

    def load(self, module, suffix, kernel, recurrent_kernel, bias):
        """Copy one direction's Keras weights into a torch module's parameters named *suffix."""
        part = self.rng.normal(size=bias.shape)
        values = {"weight_ih": kernel.T, "weight_hh": recurrent_kernel.T,
                  "bias_ih": part, "bias_hh": bias - part}
        with self.torch.no_grad():
            for name, value in values.items():
                getattr(module, name + suffix).copy_(self.torch.from_numpy(np.ascontiguousarray(value)))
        return module

    def keras_grads(self, module, suffix):
        """[dkernel, drecurrent_kernel, dbias] (tensors) from the parameters' .grad; both torch
        biases must have the gradient of their sum (to rounding: torch sums them apart)."""
        g = {name: getattr(module, name + suffix).grad
             for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        assert relative_error(g["bias_ih"].numpy(), g["bias_hh"].numpy()) < TOL
        return [g["weight_ih"].T, g["weight_hh"].T, g["bias_ih"]]

    def lstm(self, weights, layers=1, bidirectional=False):
        """torch.nn.LSTM (batch_first, float64) holding `weights`: per layer, per direction,
        kernel, recurrent_kernel, bias, in our get_weights() order."""
        E = weights[0].shape[0]
        H = weights[1].shape[0]
        module = self.torch.nn.LSTM(E, H, num_layers=layers, bidirectional=bidirectional,
                                    batch_first=True, dtype=self.torch.float64)
        for k, suffix in enumerate(self.suffixes(layers, bidirectional)):
            self.load(module, suffix, *weights[3 * k:3 * k + 3])
        return module

    @staticmethod
    def suffixes(layers, bidirectional):
        """torch.nn.LSTM's parameter suffixes in our weight order: _l0, _l0_reverse, _l1, ..."""
        directions = ("", "_reverse") if bidirectional else ("",)
        return [f"_l{k}{d}" for k in range(layers) for d in directions]

    def cell(self, kernel, recurrent_kernel, bias):
        """torch.nn.LSTMCell (float64) holding one direction's weights."""
        module = self.torch.nn.LSTMCell(kernel.shape[0], recurrent_kernel.shape[0], dtype=self.torch.float64)
        return self.load(module, "", kernel, recurrent_kernel, bias)

    def steps(self, cell, x, h, c, mask=None, keep=None):
        """Every state (B, T, H) of `cell` stepped over x (B, T, E) from (h, c), as Keras steps
        an LSTM: where mask (B, T) is False the step keeps (h, c); keep (B, H) multiplies
        h_{t-1} where the cell reads it (recurrent dropout)."""
        torch = self.torch
        hs = []
        for t in range(x.shape[1]):
            h_new, c_new = cell(x[:, t], (h if keep is None else h * keep, c))
            if mask is not None:
                m = torch.from_numpy(np.asarray(mask[:, t, None]))
                h_new, c_new = torch.where(m, h_new, h), torch.where(m, c_new, c)
            h, c = h_new, c_new
            hs.append(h)
        return torch.stack(hs, dim=1)

    def run(self, weights, x, h0, c0, mask=None, keep=None):
        """One direction from (h0, c0): every state (B, T, H), and a function that reads its
        weights' gradients after backward. torch.nn.LSTM itself where it can (no mask, no
        dropout), else LSTMCell steps."""
        if mask is None and keep is None:
            module = self.lstm(weights)
            return module(x, (h0[None], c0[None]))[0], lambda: self.keras_grads(module, "_l0")
        cell = self.cell(*weights)
        return self.steps(cell, x, h0, c0, mask, keep), lambda: self.keras_grads(cell, "")

    def layer_states(self, weights, x, mask, bidirectional):
        """Every state of one layer from zeros, (B, T, H), or (B, T, 2H) in time order when
        bidirectional, and a function that reads its weights' gradients after backward."""
        if bidirectional and mask is None:
            module = self.lstm(weights, 1, bidirectional=True)
            return module(x)[0], lambda: self.keras_grads(module, "_l0") + self.keras_grads(module, "_l0_reverse")
        zeros = self.torch.zeros(x.shape[0], weights[1].shape[0], dtype=self.torch.float64)
        states, grads = self.run(weights[:3], x, zeros, zeros, mask)
        if not bidirectional:
            return states, grads
        # Keras's backward layer reads the reversed sequence (and mask); its states are put
        # back in time order.
        reverse, reverse_grads = self.run(weights[3:], x.flip(1), zeros, zeros, mask[:, ::-1].copy())
        return self.torch.cat([states, reverse.flip(1)], dim=2), lambda: grads() + reverse_grads()


@pytest.fixture
def oracle(torch):
    return Oracle(torch)


def random_weights(rng, E=E, H=H):
    """kernel (E, 4H), recurrent_kernel (H, 4H), bias (4H,), random and non-zero."""
    return [rng.normal(size=(E, 4 * H)) * 0.5, rng.normal(size=(H, 4 * H)) * 0.5, rng.normal(size=4 * H)]


def make_mask(kind, B=B, T=T):
    """None, pre-padding (row lengths spread over 0..T), or holes at random."""
    if kind is None:
        return None
    if kind == "prepadded":
        lengths = np.arange(B) * T // max(B - 1, 1)
        mask = np.arange(T)[None, :] >= T - lengths[:, None]
    else:
        mask = np.random.default_rng(7).random((B, T)) > 0.35
        mask[0] = False           # one row with nothing: its state passes straight through
    return mask


def assert_match(ours, theirs):
    """ours {name: array}, theirs {name: tensor}: each pair agrees elementwise to TOL in
    relative error (numpy_lstm.gradcheck's measure)."""
    errors = {name: relative_error(a, theirs[name].detach().numpy()) for name, a in ours.items()}
    assert max(errors.values()) < TOL, errors


# The reference functions

def test_reference_step_against_lstm_cell(oracle):
    rng = np.random.default_rng(0)
    weights = random_weights(rng)
    x, h_prev, c_prev = rng.normal(size=(B, E)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    dh, dc = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    h, c, cache = lstm_step_forward(x, h_prev, c_prev, *weights)
    dx, dh_prev, dc_prev, *dweights = lstm_step_backward(dh, dc, cache)

    cell = oracle.cell(*weights)
    tx, th, tc = oracle.leaf(x), oracle.leaf(h_prev), oracle.leaf(c_prev)
    h_t, c_t = cell(tx, (th, tc))
    ((h_t * oracle.leaf(dh)).sum() + (c_t * oracle.leaf(dc)).sum()).backward()
    names = ["kernel", "recurrent_kernel", "bias"]
    ours = {"h": h, "c": c, "dx": dx, "dh_prev": dh_prev, "dc_prev": dc_prev, **dict(zip(names, dweights))}
    theirs = {"h": h_t, "c": c_t, "dx": tx.grad, "dh_prev": th.grad, "dc_prev": tc.grad,
              **dict(zip(names, oracle.keras_grads(cell, "")))}
    assert_match(ours, theirs)


@pytest.mark.parametrize("mask_kind", [None, "prepadded", "holes"])
@pytest.mark.parametrize("initial_state", [False, True])
@pytest.mark.parametrize("dropout", [False, True])
def test_reference_sequence_against_torch(oracle, mask_kind, initial_state, dropout):
    rng = np.random.default_rng(1)
    weights = random_weights(rng)
    x = rng.normal(size=(B, T, E))
    h0, c0 = (rng.normal(size=(B, H)), rng.normal(size=(B, H))) if initial_state else (np.zeros((B, H)),) * 2
    mask = make_mask(mask_kind)
    keep = (rng.random((B, H)) >= 0.4) / 0.6 if dropout else None
    dhs = rng.normal(size=(B, T, H))
    hs, cache = lstm_forward(x, *weights, *((h0, c0) if initial_state else (None, None)), mask, keep)
    dx, dh0, dc0, *dweights = lstm_backward(dhs, cache)

    tx, th0, tc0 = oracle.leaf(x), oracle.leaf(h0), oracle.leaf(c0)
    states, torch_grads = oracle.run(weights, tx, th0, tc0, mask, None if keep is None else oracle.leaf(keep))
    (states * oracle.leaf(dhs)).sum().backward()
    names = ["kernel", "recurrent_kernel", "bias"]
    assert_match({"hs": hs, "dx": dx, "dh0": dh0, "dc0": dc0, **dict(zip(names, dweights))},
                 {"hs": states, "dx": tx.grad, "dh0": th0.grad, "dc0": tc0.grad, **dict(zip(names, torch_grads()))})


# The layers

def random_lstm(rng, E=E, H=H, return_sequences=False, recurrent_dropout=0.0):
    layer = LSTM(E, H, rng, return_sequences=return_sequences, dtype=np.float64,
                 recurrent_dropout=recurrent_dropout)
    for w, value in zip(layer.weights, random_weights(rng, E, H)):
        w[...] = value
    return layer


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("mask_kind", [None, "prepadded", "holes"])
@pytest.mark.parametrize("initial_state", [False, True])
@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.4])
def test_lstm_layer_against_torch(oracle, return_sequences, mask_kind, initial_state, recurrent_dropout):
    rng = np.random.default_rng(3)
    rows = LAYER_ROWS
    layer = random_lstm(rng, return_sequences=return_sequences, recurrent_dropout=recurrent_dropout)
    x = rng.normal(size=(rows, T, E))
    h0, c0 = (rng.normal(size=(rows, H)), rng.normal(size=(rows, H))) if initial_state else (np.zeros((rows, H)),) * 2
    mask = make_mask(mask_kind, rows)
    # The layer draws its keep mask first from the rng it gets; the oracle draws the same one.
    dropout_rng = (lambda: np.random.default_rng(11)) if recurrent_dropout else (lambda: None)
    keep = layer.recurrent_dropout.mask((rows, H), np.float64, dropout_rng())
    out, cache = layer.forward(x, mask, (h0, c0) if initial_state else None, dropout_rng())
    dout = rng.normal(size=out.shape)
    dx, (dh0, dc0), grads = layer.backward(dout, cache)

    tx, th0, tc0 = oracle.leaf(x), oracle.leaf(h0), oracle.leaf(c0)
    states, torch_grads = oracle.run(layer.weights, tx, th0, tc0, mask, None if keep is None else oracle.leaf(keep))
    theirs = states if return_sequences else states[:, -1]
    (theirs * oracle.leaf(dout)).sum().backward()
    names = ["kernel", "recurrent_kernel", "bias"]
    assert_match({"out": out, "dx": dx, "dh0": dh0, "dc0": dc0, **dict(zip(names, grads))},
                 {"out": theirs, "dx": tx.grad, "dh0": th0.grad, "dc0": tc0.grad, **dict(zip(names, torch_grads()))})


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("mask_kind", [None, "prepadded"])
def test_bidirectional_against_torch(oracle, return_sequences, mask_kind):
    rng = np.random.default_rng(4)
    rows = LAYER_ROWS
    layer = Bidirectional(E, H, rng, return_sequences=return_sequences, dtype=np.float64)
    for w, value in zip(layer.weights, random_weights(rng) + random_weights(rng)):
        w[...] = value
    x = rng.normal(size=(rows, T, E))
    mask = make_mask(mask_kind, rows)
    out, cache = layer.forward(x, mask)
    dout = rng.normal(size=out.shape)
    dx, _, grads = layer.backward(dout, cache)

    tx = oracle.leaf(x)
    states, torch_grads = oracle.layer_states(layer.weights, tx, mask, bidirectional=True)
    # Without return_sequences: the forward pass's last state and the backward pass's state
    # after reading x_1, which sits at step 0 once its states are put back in time order.
    theirs = states if return_sequences else oracle.torch.cat([states[:, -1, :H], states[:, 0, H:]], dim=1)
    (theirs * oracle.leaf(dout)).sum().backward()
    names = [f"{d}/{n}" for d in ("forward", "backward") for n in ("kernel", "recurrent_kernel", "bias")]
    assert_match({"out": out, "dx": dx, **dict(zip(names, grads))},
                 {"out": theirs, "dx": tx.grad, **dict(zip(names, torch_grads()))})


@pytest.mark.parametrize("bidirectional", [False, True])
def test_stacked_layers_against_torch(oracle, bidirectional):
    # Two layers, the first returning its sequence to the second, as torch.nn.LSTM(num_layers=2).
    rng = np.random.default_rng(5)
    rows = LAYER_ROWS
    kind, width = (Bidirectional, 2 * H) if bidirectional else (LSTM, H)
    layers = [kind(E, H, rng, return_sequences=True, dtype=np.float64),
              kind(width, H, rng, return_sequences=True, dtype=np.float64)]
    for layer in layers:
        for w in layer.weights:
            w[...] = rng.normal(size=w.shape) * 0.5
    x = rng.normal(size=(rows, T, E))
    h, caches = x, []
    for layer in layers:
        h, cache = layer.forward(h)
        caches.append(cache)
    dout = rng.normal(size=h.shape)
    dh, grads = dout, []
    for layer, cache in reversed(list(zip(layers, caches))):
        dh, _, layer_grads = layer.backward(dh, cache)
        grads = layer_grads + grads

    weights = [w for layer in layers for w in layer.weights]
    module = oracle.lstm(weights, layers=2, bidirectional=bidirectional)
    tx = oracle.leaf(x)
    states = module(tx)[0]
    (states * oracle.leaf(dout)).sum().backward()
    torch_grads = [g for s in oracle.suffixes(2, bidirectional) for g in oracle.keras_grads(module, s)]
    names = [f"weight {k}" for k in range(len(grads))]
    assert_match({"out": h, "dx": dh, **dict(zip(names, grads))},
                 {"out": states, "dx": tx.grad, **dict(zip(names, torch_grads))})


# The whole model

MODELS = {
    "tutorial": {},
    "masked": {"mask_zero": True},
    "masked, mean pooling": {"mask_zero": True, "pooling": "mean"},
    "masked, max pooling": {"mask_zero": True, "pooling": "max"},
    "bidirectional": {"bidirectional": True},
    "stacked": {"num_layers": 2},
    "bidirectional, mean pooling": {"bidirectional": True, "pooling": "mean"},
    "bidirectional, stacked, max pooling, masked (the full recipe's shape)":
        {"bidirectional": True, "num_layers": 2, "pooling": "max", "mask_zero": True},
}


def torch_model_loss(oracle, model, ids, labels):
    """Mean BCE of the model's architecture rebuilt in torch from its weights, and a function
    that reads every weight's gradient after backward, in get_weights() order."""
    torch = oracle.torch
    config = model.config
    bidirectional, H = config["bidirectional"], config["units"]
    mask = ids != 0 if config["mask_zero"] else None
    table = oracle.leaf(model.embedding.embeddings)
    h = table[torch.from_numpy(ids)]
    readers = []
    per_layer = 6 if bidirectional else 3
    rnn_weights = [w for rnn in model.rnns for w in rnn.weights]
    for k in range(config["num_layers"]):
        h, read = oracle.layer_states(rnn_weights[k * per_layer:(k + 1) * per_layer], h, mask, bidirectional)
        readers.append(read)
    if config["pooling"] == "last":
        h = torch.cat([h[:, -1, :H], h[:, 0, H:]], dim=1) if bidirectional else h[:, -1]
    else:
        m = torch.ones(ids.shape + (1,), dtype=torch.bool) if mask is None else torch.from_numpy(mask[:, :, None])
        if config["pooling"] == "mean":
            h = torch.where(m, h, 0.0).sum(dim=1) / m.sum(dim=1).clamp(min=1)
        else:
            pooled = torch.where(m, h, -torch.inf).max(dim=1).values
            h = torch.where(m.any(dim=1), pooled, 0.0)     # a row with no word pools to zeros
    dense_kernel, dense_bias = oracle.leaf(model.dense.kernel), oracle.leaf(model.dense.bias)
    logits = (h @ dense_kernel + dense_bias)[:, 0]
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(labels.astype(np.float64)))

    def grads():
        return [table.grad] + [g for read in readers for g in read()] + [dense_kernel.grad, dense_bias.grad]
    return loss, grads


@pytest.mark.parametrize("config", MODELS.values(), ids=MODELS.keys())
def test_whole_model_against_torch(oracle, config):
    model = SentimentLSTM(vocab_size=9, embed_dim=E, units=H, dtype="float64", seed=6, **config)
    rng = np.random.default_rng(6)
    model.set_weights([rng.normal(size=w.shape) * 0.5 for w in model.weights])
    ids = np.array([[0, 0, 0, 3, 1, 8, 2],       # pre-padded; the first column is padding in every row
                    [0, 2, 5, 5, 1, 4, 7],
                    [0, 0, 0, 0, 0, 0, 6],
                    [0, 7, 7, 7, 3, 2, 1],
                    [0, 0, 0, 0, 0, 0, 0]])      # no word at all
    labels = np.array([1, 0, 1, 1, 0])
    loss, grads = model.gradients(ids, labels)

    torch_loss, torch_grads = torch_model_loss(oracle, model, ids, labels)
    torch_loss.backward()
    assert_match({"loss": np.array(loss), **dict(zip(model.weight_names, grads))},
                 {"loss": torch_loss, **dict(zip(model.weight_names, torch_grads()))})
