"""Time the LSTM layer and the whole tutorial model, and set them next to PyTorch's nn.LSTM.

    PYTHONPATH=. python bench/bench_lstm.py [--repeats N] [--threads 1,2] [--json] [--json-file F] [--quick]
    PYTHONPATH=. python bench/bench_lstm.py --shapes "B,T,E,H;B,T,E,H;..." [--repeats N] [--json-file F]
    PYTHONPATH=. python bench/bench_lstm.py --sweep [--repeats N] [--json-file F] [--plot F]

One process, one run, in this order:

1. this machine's float32 matmul peak: a 2048^3 sgemm at each thread count (OpenBLAS's own
   threads), the best run;
2. forward, and forward + backward, of our LSTM layer and of the whole tutorial model
   (Embedding -> LSTM -> Dense), at the tutorial's shapes (batch 64, 500 steps, 32 -> 100) and
   at a larger one (batch 128, 200 steps, 128 -> 256), float32, at each core count (ours: the
   calling process and worker processes, numpy_lstm/engine/cores.py); when torch
   is importable, torch.nn.LSTM on the same shapes and weights (checked equal to 1e-4) too, with
   subnormals flushed to zero as in our loops (see `import_torch`);
3. the padding tax: a tutorial-sized epoch (800 reviews, batch 64) with lengths drawn like the
   real ones, masked and bucketed by length vs unmasked at full length;
4. the peak memory (max RSS) of the tutorial's training, in a fresh subprocess, plus its workers'.

With --shapes or --sweep it times instead only the LSTM layer's forward + backward at the given
shapes (`shapes.py`: ours on 1 and 2 cores, torch.nn.LSTM at 1 and 2 threads), after the matmul
peak; --sweep runs the shapes of issue 15 (SWEEP_SHAPES) and draws them (`sweep_plot.py`).

Every time is the median of --repeats runs after one warm-up run; the repeats of our variants
are interleaved (A B C A B C ...) so that a busy spell of the machine hits them alike, and then
those of PyTorch's (see bench_shape for why not all together). Ratios between numbers of one
run mean more than the absolute numbers.

FLOPs are counted as 2*M*N*K per matmul, element-wise work not counted:
forward = 2*B*T*(E+H)*4H (the gate matmul of every step: input part E, recurrent part H);
backward = 2*B*T*4H*(E+H) (dx and dh_{t-1} from dz) + 2*B*T*(E+H+1)*4H (weight gradients),
about twice the forward. The model's Embedding and Dense add under 0.1% and are not counted.
"""
import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

from numpy_lstm import LSTM, Adam, SentimentLSTM
from numpy_lstm.engine import cores

SHAPES = {  # name: (batch B, steps T, input E, units H, vocabulary V)
    "tutorial": (64, 500, 32, 100, 500),
    "large": (128, 200, 128, 256, 5000),
}


def lstm_flops(B, T, E, H):
    """(forward, backward) matmul FLOPs of one batch, as counted in the module docstring."""
    forward = 2 * B * T * (E + H) * 4 * H
    backward = 2 * B * T * 4 * H * (E + H) + 2 * B * T * (E + H + 1) * 4 * H
    return forward, backward


def interleaved_medians(cases, repeats, statistic=statistics.median):
    """{name: median seconds} of the callables in `cases`, their repeats interleaved.

    `cases` maps a name to (setup, fn): setup() runs untimed before each timed fn() (thread
    settings, say). One untimed warm-up round first: page faults and thread start-up are not
    the steady state.
    """
    times = {name: [] for name in cases}
    for round_ in range(repeats + 1):
        for name, (setup, fn) in cases.items():
            setup()
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if round_:
                times[name].append(elapsed)
    return {name: statistic(t) for name, t in times.items()}


# ---------------------------------------------------------------------------------------------
# matmul peak

def peak_gflops(threads_list, repeats, n=2048):
    """{threads: GFLOP/s} of an n^3 float32 matmul on OpenBLAS's threads."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    cases = {}
    for k in threads_list:
        def blas(k=k):
            with cores.blas_threads(k):
                np.matmul(a, b, out=out)
        cases[f"openblas {k}"] = (lambda: None, blas)
    medians = interleaved_medians(cases, repeats, statistic=min)   # a peak: the best run
    flops = 2 * n ** 3
    return {k: flops / medians[f"openblas {k}"] / 1e9 for k in threads_list}


# ---------------------------------------------------------------------------------------------
# layer and model timings

def torch_lstm_like(lstm, torch):
    """torch.nn.LSTM with our layer's weights: weight_ih = kernel.T, weight_hh = recurrent.T,
    bias_ih = our bias, bias_hh = 0 (PyTorch adds its two biases). Gate order i, f, g, o is
    Keras's i, f, c, o."""
    E, H = lstm.kernel.shape[0], lstm.units
    module = torch.nn.LSTM(E, H, batch_first=True)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(lstm.kernel.T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(lstm.recurrent_kernel.T.copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(lstm.bias.copy()))
        module.bias_hh_l0.zero_()
    return module


def bench_shape(name, threads_list, repeats, torch):
    B, T, E, H, V = SHAPES[name]
    rng = np.random.default_rng(0)
    lstm = LSTM(E, H, rng)
    lstm.bias[:] = rng.uniform(-0.5, 0.5, lstm.bias.shape)  # non-trivial biases for the check
    x = rng.standard_normal((B, T, E), dtype=np.float32)
    dout = rng.standard_normal((B, H), dtype=np.float32)
    model = SentimentLSTM(vocab_size=V, embed_dim=E, units=H, seed=0)
    ids = rng.integers(1, V, size=(B, T))
    labels = rng.integers(0, 2, size=B)

    def lstm_train_step():
        _, cache = lstm.forward(x)
        lstm.backward(dout, cache)

    cases, torch_cases = {}, {}
    for k in threads_list:
        use = functools.partial(cores.set_num_processes, k)
        cases[("ours", "LSTM forward", k)] = (use, lambda: lstm.forward(x))
        cases[("ours", "LSTM forward+backward", k)] = (use, lstm_train_step)
        cases[("ours", "model forward", k)] = (use, lambda: model.forward(ids))
        cases[("ours", "model forward+backward", k)] = (use, lambda: model.gradients(ids, labels))

    check = None
    if torch is not None:
        module = torch_lstm_like(lstm, torch)
        tx = torch.from_numpy(x).requires_grad_(True)
        tdout = torch.from_numpy(dout)

        def torch_forward():
            return module(tx)

        def torch_train_step():
            module.zero_grad(set_to_none=True)
            tx.grad = None
            _, (h_n, _) = module(tx)
            h_n[0].backward(tdout)

        for k in threads_list:
            use = functools.partial(torch.set_num_threads, k)
            torch_cases[("torch", "LSTM forward", k)] = (use, torch_forward)
            torch_cases[("torch", "LSTM forward+backward", k)] = (use, torch_train_step)

        # Same thing computed? Outputs to 1e-4; gradients reported alongside.
        cores.set_num_processes(threads_list[-1])
        ours_out, cache = lstm.forward(x)
        dx, _, (dkernel, drec, dbias) = lstm.backward(dout, cache)
        torch_train_step()
        with torch.no_grad():
            _, (h_n, _) = module(tx)
        grad_diff = max(float(np.abs(dx - tx.grad.numpy()).max()),
                        float(np.abs(dkernel - module.weight_ih_l0.grad.numpy().T).max()),
                        float(np.abs(drec - module.weight_hh_l0.grad.numpy().T).max()),
                        float(np.abs(dbias - module.bias_ih_l0.grad.numpy()).max()))
        check = {"max_abs_output_diff": float(np.abs(ours_out - h_n[0].numpy()).max()),
                 "max_abs_gradient_diff": grad_diff}
        check["outputs_equal_to_1e-4"] = check["max_abs_output_diff"] <= 1e-4

    # Ours, then PyTorch's, each block interleaved. Not all in one: after a parallel region
    # PyTorch's OpenMP threads spin for a while, and interleaved with its 2-thread cases our
    # 1-core rows came out slower (the two vCPUs here slow each other when both are busy).
    # The check above ran PyTorch too: let its threads go to sleep first.
    time.sleep(0.5)
    medians = interleaved_medians(cases, repeats)
    medians.update(interleaved_medians(torch_cases, repeats))
    forward, backward = lstm_flops(B, T, E, H)
    rows = []
    for (who, what, k), seconds in medians.items():
        flops = forward if what.endswith("forward") else forward + backward
        rows.append({"shape": name, "impl": who, "what": what, "threads": k,
                     "ms": 1000 * seconds, "gflops": flops / seconds / 1e9})
    return rows, check


# ---------------------------------------------------------------------------------------------
# padding tax

def synthetic_lengths(n, rng, cap=500):
    """Review lengths in tokens like the tutorial's after preprocessing: lognormal with median
    91 and mean 122 (so sigma^2 = 2 ln(122 / 91)), which puts the 90th percentile near 240."""
    sigma = np.sqrt(2 * np.log(122 / 91))
    return np.clip(np.rint(rng.lognormal(np.log(91), sigma, n)), 1, cap).astype(int)


def bucketed_batches(lengths, batch_size, rng):
    """The training loop's bucketing when it is there (numpy_lstm.prepare.batch_order, before that
    numpy_lstm.train.batch_order), else a plain sort by length: either way each batch holds
    reviews of similar length."""
    try:
        try:
            from numpy_lstm.prepare import batch_order
        except ImportError:
            from numpy_lstm.train import batch_order
        return batch_order(lengths, batch_size, rng, bucket=True)
    except ImportError:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def padding_tax(threads, repeats, n_reviews=800, batch_size=64, maxlen=500, vocab=500):
    """Seconds per epoch (model.gradients + Adam on every batch), masked + bucketed vs unmasked."""
    rng = np.random.default_rng(0)
    lengths = synthetic_lengths(n_reviews, rng, maxlen)
    ids = np.zeros((n_reviews, maxlen), np.int32)            # pre-padded, as pad_sequences does
    for row, n in zip(ids, lengths):
        row[maxlen - n:] = rng.integers(2, vocab, n)
    labels = rng.integers(0, 2, n_reviews)
    plain = [np.arange(i, min(i + batch_size, n_reviews)) for i in range(0, n_reviews, batch_size)]
    bucketed = bucketed_batches(lengths, batch_size, np.random.default_rng(1))

    models = {mask: (SentimentLSTM(vocab_size=vocab, mask_zero=mask, seed=0), Adam())
              for mask in (False, True)}

    def epoch(mask, batches):
        model, opt = models[mask]
        for b in batches:
            _, grads = model.gradients(ids[b], labels[b])
            opt.step(model.weights, grads)

    cores.set_num_processes(threads)
    steps_run = sum(int(lengths[b].max()) for b in bucketed)
    cases = {"unmasked, full length": (lambda: None, lambda: epoch(False, plain)),
             "masked, bucketed by length": (lambda: None, lambda: epoch(True, bucketed))}
    medians = interleaved_medians(cases, repeats)
    return {"reviews": n_reviews, "batch_size": batch_size, "threads": threads,
            "mean_length": float(lengths.mean()), "median_length": float(np.median(lengths)),
            "p90_length": float(np.percentile(lengths, 90)),
            "lstm_steps_unmasked": len(plain) * maxlen, "lstm_steps_masked": steps_run,
            "seconds_unmasked": medians["unmasked, full length"],
            "seconds_masked": medians["masked, bucketed by length"],
            "speedup": medians["unmasked, full length"] / medians["masked, bucketed by length"]}


# ---------------------------------------------------------------------------------------------
# peak memory

MEMORY_SCRIPT = r"""
import sys
import numpy as np
from numpy_lstm import Adam, SentimentLSTM
from numpy_lstm.engine import workers

def peak_mb():
    # VmHWM: a process's own high-water mark (ru_maxrss would include the parent's), summed over
    # this process and its LSTM workers. Pages they share since the fork count twice: an upper bound.
    total = 0
    for pid in ["self"] + [w.process.pid for w in workers._workers]:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    return total

rng = np.random.default_rng(0)
# What the tutorial's run holds: 800 training and 200 held-out reviews and the 25,000 official
# test reviews, padded to 500 ids (int32), the model and Adam's state. It trains on batches of
# 64, then predicts the test set `batch` reviews at a time.
x_train = rng.integers(0, 500, (800, 500), dtype=np.int32)
x_val = rng.integers(0, 500, (200, 500), dtype=np.int32)
x_test = rng.integers(0, 500, (25000, 500), dtype=np.int32)
y = rng.integers(0, 2, 800)
model = SentimentLSTM(seed=0)
opt = Adam()
for i in range(0, 4 * 64, 64):
    _, grads = model.gradients(x_train[i:i + 64], y[i:i + 64])
    opt.step(model.weights, grads)
training = peak_mb()
model.predict(x_test[:512], batch_size=int(sys.argv[1]))
print(training, peak_mb())
"""


def peak_memory_mb(threads, predict_batches=(256, 64)):
    """{"training": MB, "with predict at batch N": MB, ...}: peak RSS of fresh subprocesses."""
    env = dict(os.environ, NUMPY_LSTM_PROCESSES=str(threads))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    result = {}
    for batch in predict_batches:
        out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(batch)], env=env,
                             check=True, capture_output=True, text=True)
        training, total = map(float, out.stdout.split())
        result["training steps"] = training
        result[f"then predict at batch {batch}"] = total
    return result


# ---------------------------------------------------------------------------------------------

def machine_info(torch):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "openblas_thread_control": cores.blas_thread_control(),
            "torch": None if torch is None else torch.__version__,
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}


def import_torch():
    """torch, set to flush subnormals to zero in all its threads; None when not installed.

    Our loops flush subnormals (numpy_lstm/engine/fpu.py); PyTorch's switch for that is
    set_flush_denormal, which sets the calling thread's FTZ/DAZ bits. Its intra-op threads take
    their floating-point settings from the thread that starts them, so the switch goes before
    PyTorch's first operation: set later, the second thread still computes on subnormals (on an
    Intel Xeon here, 2 threads then took 430-450 ms for what they do in ~140). As it comes, with
    no flush, PyTorch took 1.2-1.4 s for the tutorial-shaped forward + backward on that machine.
    """
    try:
        import torch
    except ImportError:
        return None
    torch.set_flush_denormal(True)
    return torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", help='time the LSTM layer at these shapes only: "B,T,E,H;B,T,E,H;..."')
    parser.add_argument("--sweep", action="store_true",
                        help="time the LSTM layer at issue 15's shapes and across T; writes JSON and a PNG")
    parser.add_argument("--plot", help="with --sweep or --shapes: draw the times and ratios to this PNG "
                                       "(--sweep: bench/sweep.png unless given)")
    parser.add_argument("--repeats", type=int, help="timed runs per variant (median); default 5, "
                                                      "3 with --shapes or --sweep")
    parser.add_argument("--threads", default="1,2", help="thread counts to compare, e.g. 1,2")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead")
    parser.add_argument("--json-file", help="also write the JSON document to this file")
    parser.add_argument("--quick", action="store_true", help="3 repeats, skip memory: a smoke run")
    parser.add_argument("--no-torch", action="store_true", help="do not time PyTorch")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick or args.shapes or args.sweep else 5)
    threads_list = [int(t) for t in args.threads.split(",")]
    torch = None if args.no_torch else import_torch()
    if args.shapes or args.sweep:
        import shapes
        return shapes.main(args, repeats, threads_list, torch)

    started = time.perf_counter()
    result = {"machine": machine_info(torch), "repeats": repeats}
    result["peak_gflops"] = peak_gflops(threads_list, repeats)
    result["rows"], result["torch_check"] = [], {}
    for name in SHAPES:
        rows, check = bench_shape(name, threads_list, repeats, torch)
        result["rows"] += rows
        result["torch_check"][name] = check
    for row in result["rows"]:
        row["fraction_of_peak"] = row["gflops"] / result["peak_gflops"][row["threads"]]
    result["padding_tax"] = padding_tax(max(threads_list), repeats)
    result["peak_rss_mb"] = None if args.quick else peak_memory_mb(max(threads_list))
    result["machine"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    result["seconds"] = time.perf_counter() - started
    cores.set_num_processes(None)
    if args.json_file:
        with open(args.json_file, "w") as f:
            json.dump(result, f, indent=1)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        report(result, threads_list)


def report(r, threads_list):
    m = r["machine"]
    print(f"{m['cpu']}, {m['cpus']} CPUs; Python {m['python']}, NumPy {m['numpy']}, "
          f"torch {m['torch'] or 'not installed'}; load average at start "
          f"{' '.join(f'{v:.1f}' for v in m['load_average'])}, at end "
          f"{' '.join(f'{v:.1f}' for v in m['load_average_end'])}")
    print(f"median of {r['repeats']} after a warm-up, repeats interleaved; float32")
    peak = r["peak_gflops"]
    print("float32 matmul peak (2048^3): " + ", ".join(
        f"{k} thread{'s' * (k > 1)} {v:.1f} GFLOP/s" for k, v in peak.items())
        + (f" ({peak[threads_list[-1]] / peak[threads_list[0]]:.2f}x from {threads_list[0]} "
           f"to {threads_list[-1]})" if len(threads_list) > 1 else ""))
    print("GFLOP/s count 2*M*N*K per matmul (forward 2BT(E+H)4H, backward about twice that);"
          " element-wise ops not counted")
    by = {(row["shape"], row["impl"], row["what"], row["threads"]): row for row in r["rows"]}
    for name, (B, T, E, H, V) in SHAPES.items():
        print(f"\n{name}: batch {B}, {T} steps, {E} -> {H}")
        print(f"  {'':<28}" + "".join(f"{f'{k} thr ms':>11}{'GF/s':>7}{'%pk':>5}"
                                        for k in threads_list) + f"{'2/1 speedup':>13}")
        for impl in ("ours", "torch"):
            for what in ("LSTM forward", "LSTM forward+backward", "model forward",
                         "model forward+backward"):
                cells = [by.get((name, impl, what, k)) for k in threads_list]
                if cells[0] is None:
                    continue
                line = f"  {impl + ' ' + what:<28}"
                for c in cells:
                    line += f"{c['ms']:>11.1f}{c['gflops']:>7.1f}{100 * c['fraction_of_peak']:>4.0f}%"
                if len(cells) > 1:
                    line += f"{cells[0]['ms'] / cells[-1]['ms']:>12.2f}x"
                print(line)
        check = r["torch_check"].get(name)
        if check:
            for what in ("LSTM forward", "LSTM forward+backward"):
                ours = min(by[(name, "ours", what, k)]["ms"] for k in threads_list)
                theirs = min(by[(name, "torch", what, k)]["ms"] for k in threads_list)
                print(f"  ratio ours / PyTorch's best, {what}: {ours / theirs:.2f}")
            print(f"  same computation: max |h_T ours - torch| {check['max_abs_output_diff']:.1e}"
                  f" ({'within' if check['outputs_equal_to_1e-4'] else 'NOT within'} 1e-4), "
                  f"max |gradient diff| {check['max_abs_gradient_diff']:.1e}")
    p = r["padding_tax"]
    print(f"\npadding tax: tutorial-sized epoch ({p['reviews']} reviews, batch {p['batch_size']}, "
          f"{p['threads']} threads, Adam), lengths mean {p['mean_length']:.0f} median "
          f"{p['median_length']:.0f} p90 {p['p90_length']:.0f}")
    print(f"  unmasked, padded to 500: {p['seconds_unmasked']:.2f} s ({p['lstm_steps_unmasked']} LSTM steps)")
    print(f"  masked, bucketed:        {p['seconds_masked']:.2f} s ({p['lstm_steps_masked']} LSTM steps)"
          f"  -> {p['speedup']:.2f}x faster")
    if r["peak_rss_mb"] is not None:
        print("\npeak RSS (VmHWM of a fresh subprocess) of the tutorial's run: " + ", ".join(
            f"{what} {mb:.0f} MB" for what, mb in r["peak_rss_mb"].items()))
    print(f"\n(bench took {r['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
