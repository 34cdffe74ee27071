"""torch.nn.LSTM for `numpy-lstm bench`, each setting of subnormals in a process of its own.

Backprop through hundreds of steps takes the early gradients down through float32's subnormal
range, and many CPUs compute on subnormals on a slow path. Our loops flush them to zero
(numpy_lstm/engine/fpu.py); PyTorch does when told, `torch.set_flush_denormal(True)`. That switch
sets the calling thread's flush bits, and PyTorch's intra-op threads copy them from the thread
that starts them: it holds only if set before PyTorch's first operation, and cannot be undone for
those threads afterwards. So the flushed and the unflushed PyTorch each run in a process of their
own (`TorchProcess`), started before any timing and asked for one pass at a time, so that their
passes interleave with ours. The package itself never imports torch.

Weights are ours, mapped to torch's layout: weight_ih = kernel.T, weight_hh = recurrent_kernel.T,
bias_ih = bias, bias_hh = 0 (PyTorch adds its two biases); gate order i, f, g, o is Keras's
i, f, c, o.
"""
import os
import pickle
import subprocess
import sys
import tempfile
import time

from .errors import NumpyLSTMError

SERVE = "from numpy_lstm.bench_torch import serve; serve()"


class TorchMissing(Exception):
    """torch cannot be imported here; the message says why."""


class TorchProcess:
    """A process running torch.nn.LSTM, subnormals flushed (flush=True) or as they come.

    load(kernel, recurrent_kernel, bias, x, dout) sets the layer and its batch (x (B, T, E),
    dout (B, H) on h_T) and returns torch's h_T (B, H); run(threads) times one forward + backward
    there at that many intra-op threads and returns its seconds. Raises TorchMissing when torch
    cannot be imported in the process.
    """

    def __init__(self, flush):
        self.flush = flush
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.environ.get("PYTHONPATH")
        env = dict(os.environ, PYTHONPATH=root + (os.pathsep + path if path else ""))
        self.errors = tempfile.TemporaryFile()     # its standard error, for the message if it dies
        self.process = subprocess.Popen([sys.executable, "-c", SERVE, "flush" if flush else "as-is"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors,
                                        env=env)
        hello = self._ask(None)
        if hello["torch"] is None:
            self.close()
            raise TorchMissing(hello["reason"])
        self.version, self.flushing = hello["torch"], hello["flushing"]

    def load(self, kernel, recurrent_kernel, bias, x, dout):
        return self._ask(("load", kernel, recurrent_kernel, bias, x, dout))

    def run(self, threads):
        return self._ask(("run", threads))

    def _ask(self, message):
        try:
            if message is not None:
                pickle.dump(message, self.process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                self.process.stdin.flush()
            reply = pickle.load(self.process.stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            reply = {"error": f"it ended ({self._last_error_line()})"}
        if isinstance(reply, dict) and "error" in reply:
            self.close()
            raise NumpyLSTMError(f"the PyTorch process of the bench failed: {reply['error']}")
        return reply

    def _last_error_line(self):
        self.process.poll()
        self.errors.seek(0)
        lines = self.errors.read()[-2000:].decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self.process.returncode}"

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.errors.close()


def serve():
    """The other end of a TorchProcess: answer pickled messages on standard input, one at a time."""
    out = sys.stdout.buffer
    sys.stdout = sys.stderr           # anything torch prints must not corrupt the replies

    def reply(value):
        pickle.dump(value, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    try:
        import torch
    except Exception as e:            # ImportError, or a broken install's OSError
        return reply({"torch": None, "reason": f"{type(e).__name__}: {e}"})
    # Before any operation starts PyTorch's threads: see the module docstring
    flushing = bool(torch.set_flush_denormal(True)) if sys.argv[1] == "flush" else False
    reply({"torch": torch.__version__, "flushing": flushing})
    step = None
    while True:
        try:
            message = pickle.load(sys.stdin.buffer)
        except EOFError:
            return None
        try:
            if message[0] == "load":
                step, h_T = _load(torch, *message[1:])
                reply(h_T)
            else:
                torch.set_num_threads(message[1])
                start = time.perf_counter()
                step()
                reply(time.perf_counter() - start)
        except Exception as e:
            reply({"error": f"{type(e).__name__}: {e}"})


def _load(torch, kernel, recurrent_kernel, bias, x, dout):
    """(a forward + backward pass of torch.nn.LSTM with these weights on x, its h_T (B, H))."""
    E, H = kernel.shape[0], recurrent_kernel.shape[0]
    module = torch.nn.LSTM(E, H, batch_first=True)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(kernel.T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(recurrent_kernel.T.copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(bias))
        module.bias_hh_l0.zero_()
        h_T = module(torch.from_numpy(x))[1][0][0].numpy().copy()
    tx, tdout = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(dout)

    def step():
        module.zero_grad(set_to_none=True)
        tx.grad = None
        _, (h_n, _) = module(tx)
        h_n[0].backward(tdout)

    return step, h_T
