"""`numpy-lstm bench`: the LSTM layer's forward + backward timed at given shapes, beside the NumPy
floor of the shape and torch.nn.LSTM.

At each shape (B batch rows, T steps, E inputs, H units), float32, one pass is the layer's forward
and its backward from a gradient on h_T. In one run, in rounds, each round in a new order:

- ours: `numpy_lstm.LSTM` on get_num_processes() cores (the engine chooses how to use them);
- the floor (`floor_cases`): the calls and the matmuls any loop of NumPy calls over the steps must
  make;
- torch.nn.LSTM on the same weights and batch, subnormals flushed and not (`bench_torch`), at 1 and
  2 intra-op threads, when torch is importable.

Interleaving them puts a busy spell of a shared machine on all alike; each figure is the median of
the rounds after a warm-up round, with the spread (least, most) beside ours. Before each pass the
machine is left `SETTLE_SECONDS`, untimed: PyTorch's OpenMP threads spin for a while after a
parallel region, and would otherwise take the core from whatever runs next.

Matmul FLOPs are counted as 2 M N K, element-wise work not counted: forward 2 B T (E + H) 4H (the
gates of every step), backward 2 B T 4H (E + H) (dx and dh_{t-1}) + 2 B T (E + H + 1) 4H (the
weight gradients). "% of peak" divides our FLOPs per second by the float32 matmul peak measured in
the same run (`matmul_peak`).
"""
import functools
import math
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from .engine import get_num_processes
from .errors import NumpyLSTMError
from .layers import LSTM
from .machine import available_memory, usable_cpus

# Issue 34's grid: B = 1 and 8, the tutorial's shape, B = 256, then more units
SWEEP = [(1, 500, 32, 100), (8, 500, 32, 100), (64, 500, 32, 100), (256, 500, 32, 100),
         (64, 100, 32, 256), (64, 100, 256, 512), (16, 100, 512, 1024)]
QUICK = [(2, 12, 4, 8), (20, 10, 6, 12)]         # one shape in one process, one split over processes
TUTORIAL = (64, 500, 32, 100)
SETTLE_SECONDS = 0.05
FLOOR_COLUMNS = 4096                  # the floor's block matmuls: steps x rows per block (`floor_blocks`)
MAX_REPEATS = 1000
MAX_STEPS = 100_000


def target(shape):
    """Issue 34's ceiling on ours / PyTorch's faster setting at a shape of its grid, else None."""
    if tuple(shape) not in SWEEP:
        return None
    B = shape[0]
    if tuple(shape) == TUTORIAL:
        return 0.55
    if B >= 64:
        return 1.0
    return 2.0 if B == 1 else 1.5


def parse_shapes(text):
    """"B,T,E,H;B,T,E,H" -> [(B, T, E, H), ...], each a positive integer; NumpyLSTMError otherwise."""
    shapes = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        fields = [f.strip() for f in part.split(",")]
        try:
            shape = tuple(int(f) for f in fields if f.isdigit() and f.isascii())
        except ValueError:            # more digits than int() takes
            shape = ()
        if len(fields) != 4 or len(shape) != 4 or min(shape) < 1:
            raise NumpyLSTMError(f"--shapes wants B,T,E,H (four positive integers) separated by ';', "
                                 f"got {part[:40]!r}")
        shapes.append(shape)
    if not shapes:
        raise NumpyLSTMError("--shapes wants at least one B,T,E,H")
    return shapes


def memory_needed(shape):
    """Bytes one shape may hold at once, an overestimate: our batch, cache and gradients (about
    B T (2E + 7H) floats), as much again in the PyTorch processes, and the weights with theirs."""
    B, T, E, H = shape
    return 4 * B * T * (4 * E + 16 * H) + 4 * 4 * H * (E + H) * 8


def check_fits(shapes):
    """NumpyLSTMError when a shape's arrays cannot fit in the memory available, or its steps are
    more than MAX_STEPS (memory does not bound a long loop of small steps)."""
    available = available_memory()
    for shape in shapes:
        need = memory_needed(shape)
        if available is not None and need > available:
            gib = -(-need // 2 ** 30)
            raise NumpyLSTMError(f"shape {','.join(map(str, shape))} needs about {gib} GiB of memory; "
                                 f"{available / 2 ** 30:.1f} GiB are available")
        if shape[1] > MAX_STEPS:
            raise NumpyLSTMError(f"shape {','.join(map(str, shape))} has {shape[1]:,} steps; the bench takes at most "
                                 f"{MAX_STEPS:,} (train's --maxlen)")


def time_interleaved(cases, repeats, settle=0.0):
    """{name: [seconds of each timed call]} of the zero-argument callables in `cases`.

    The calls run in rounds, one of each per round, round r starting at the (r mod n)-th case, so
    that neither a busy spell of the machine nor a place in the order favours one of them; round 0
    is a warm-up (page faults, thread start-up), not kept. Before each call the machine is left
    `settle` seconds. A callable that returns a float has timed itself (a call into another
    process): its number is kept instead of the time around the call.
    """
    names = list(cases)
    times = {name: [] for name in names}
    for round_ in range(repeats + 1):
        for k in range(len(names)):
            name = names[(round_ + k) % len(names)]
            if settle:
                time.sleep(settle)
            start = time.perf_counter()
            measured = cases[name]()
            elapsed = time.perf_counter() - start
            if round_:
                times[name].append(measured if isinstance(measured, float) else elapsed)
    return times


def core_counts():
    """The thread counts to try where "best of 1 and 2" is asked: [1, 2], or [1] on one CPU."""
    return [1, 2] if usable_cpus() > 1 else [1]


def blas_threads(k, fn):
    """Seconds that fn() takes with NumPy's BLAS held at k threads (setting the count takes
    longer than a tiny shape's whole loop, so it is not timed)."""
    with threadpool_limits(limits=k, user_api="blas"):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


def matmul_peak(repeats, n=2048):
    """{"threads": GFLOP/s} of an n x n by n x n float32 matmul at 1 and 2 BLAS threads, best run."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    out = np.empty((n, n), np.float32)
    cases = {k: functools.partial(blas_threads, k, functools.partial(np.matmul, a, b, out=out))
             for k in core_counts()}
    times = time_interleaved(cases, repeats)
    return {str(k): 2 * n ** 3 / min(t) / 1e9 for k, t in times.items()}


def lstm_flops(B, T, E, H):
    """Matmul FLOPs of one forward + backward, as the module docstring counts them."""
    return 2 * B * T * (E + H) * 4 * H + 2 * B * T * 4 * H * (E + H) + 2 * B * T * (E + H + 1) * 4 * H


def floor_cases(B, T, E, H, cores):
    """{description: callable}: the floor of a shape, each way it can be run; the fastest is it.

    Two parts. The calls a loop of NumPy calls must make at every step, because each needs the
    step before: forward, the recurrent matmul z = h_{t-1} U ((B, H) @ (H, 4H)), the gates'
    non-linearity (a tanh over (B, 4H), the sigmoids taken as tanh of half their input),
    c_t = f c_{t-1} + i g (at least one call over (B, 2H), timed as one multiply), tanh(c_t)
    ((B, H)) and h_t = o tanh(c_t) (a multiply over (B, H)); backward, dh_t = dz_{t+1} U^T
    ((B, 4H) @ (4H, H)), dc_t from dc_{t+1} and dh_t (one call over (B, 2H)) and dz_t from dc_t,
    dh_t and precomputed gate factors (one call over (B, 4H)). And the matmuls no step needs
    before the next, which a loop can run for a block of steps at once, but must run: the input
    part x W ((n B, E) @ (E, 4H)), dx = dz W^T ((n B, 4H) @ (4H, E)) and the weight gradients
    [x; h]^T dz ((E + H, n B) @ (n B, 4H)), over blocks of n steps, n B about `FLOOR_COLUMNS`
    (`floor_blocks`). Left out: the bias, the gate factors, the sum of the blocks' weight
    gradients and any further call, so no loop does less. Timed batch-first as written and
    batch-last (U^T @ h), in one process at BLAS 1 and 2 threads, and on ceil(B / cores) rows at
    one thread: what each of `cores` processes would run if the rows were split, timed alone, so
    without the cost of running side by side. The operands stay near 1 (no subnormals, no
    overflow).
    """
    rng = np.random.default_rng(0)
    u = rng.standard_normal((H, 4 * H), dtype=np.float32) / np.float32(math.sqrt(H))
    u_t = np.ascontiguousarray(u.T)
    w = rng.standard_normal((E, 4 * H), dtype=np.float32) / np.float32(math.sqrt(E))
    w_t = np.ascontiguousarray(w.T)

    def step_loop(rows, batch_first):
        def array(n, columns=rows):       # n H values per row, laid out as the layout's matmuls want
            shape = (columns, n * H) if batch_first else (n * H, columns)
            return rng.uniform(-1, 1, shape).astype(np.float32)
        h, z, gates, dz, factors, dh = array(1), array(4), array(4), array(4), array(4), array(1)
        pair_a, pair_b, pair_out, c, tanh_c, o = array(2), array(2), array(2), array(1), array(1), array(1)
        forward, backward = ((h, u), (dz, u_t)) if batch_first else ((u_t, h), (u, dz))
        blocks = floor_blocks(rows, T)
        columns = blocks[0] * rows
        x, xh = (rng.uniform(-1, 1, (columns, n) if batch_first else (n, columns)).astype(np.float32)
                 for n in (E, E + H))
        z_block, dz_block, dx = array(4, columns), array(4, columns), np.empty_like(x)
        dweights = np.empty((E + H, 4 * H) if batch_first else (4 * H, E + H), np.float32)

        def block_matmuls(n):
            cols = slice(0, n * rows)
            if batch_first:
                np.matmul(x[cols], w, out=z_block[cols])
                np.matmul(dz_block[cols], w_t, out=dx[cols])
                np.matmul(xh[cols].T, dz_block[cols], out=dweights)
            else:
                np.matmul(w_t, x[:, cols], out=z_block[:, cols])
                np.matmul(w, dz_block[:, cols], out=dx[:, cols])
                np.matmul(dz_block[:, cols], xh[:, cols].T, out=dweights)

        def steps():
            for _ in range(T):
                np.matmul(*forward, out=z)
                np.tanh(z, out=gates)
                np.multiply(pair_a, pair_b, out=pair_out)       # c_t from f, c_{t-1}, i, g
                np.tanh(c, out=tanh_c)
                np.multiply(o, tanh_c, out=h)
            for _ in range(T):
                np.matmul(*backward, out=dh)
                np.multiply(pair_a, pair_b, out=pair_out)       # dc_t from dc_{t+1}, dh_t
                np.multiply(gates, factors, out=dz)             # dz_t
            for n in blocks:
                block_matmuls(n)
        return steps

    cases = {}
    for layout in ("batch-first", "batch-last"):
        for k in core_counts():
            cases[f"{layout}, one process, BLAS {k} thread{'s' * (k > 1)}"] = functools.partial(
                blas_threads, k, step_loop(B, layout == "batch-first"))
        part = -(-B // cores)
        if cores > 1 and part < B:
            cases[f"{layout}, {part} rows of {cores} processes, each alone"] = functools.partial(
                blas_threads, 1, step_loop(part, layout == "batch-first"))
    return cases


def floor_blocks(rows, T, columns=None):
    """The floor's blocks of steps, [n, n, ..., rest] summing to T: n steps of `rows` rows make
    about `columns` (FLOOR_COLUMNS) columns, at least one step. Blocks bound the memory the floor
    holds; at the sweep's shapes this size runs the three matmuls within a few per cent of the
    fastest block size, one block of all T steps included (docs/performance.md, "The floor")."""
    n = max(1, min(T, (columns or FLOOR_COLUMNS) // max(rows, 1)))
    return [n] * (T // n) + ([T % n] if T % n else [])


def time_shape(shape, repeats, torches, settle=SETTLE_SECONDS):
    """One shape's row (a JSON-ready dict; times in ms): ours, the floor, and with `torches`
    ({"flushed": TorchProcess, "unflushed": TorchProcess}, or {}) torch.nn.LSTM's."""
    B, T, E, H = shape
    rng = np.random.default_rng(0)
    lstm = LSTM(E, H, rng)
    lstm.bias[:] = rng.uniform(-0.5, 0.5, lstm.bias.shape)     # not the init's zeros: a real check
    x = rng.standard_normal((B, T, E), dtype=np.float32)
    dout = rng.standard_normal((B, H), dtype=np.float32)

    def ours():
        _, cache = lstm.forward(x)
        lstm.backward(dout, cache)

    cores = get_num_processes()
    cases = {"ours": ours}
    floors = floor_cases(B, T, E, H, cores)
    cases.update(floors)
    row = {"shape": [B, T, E, H], "ours_cores": cores}
    for setting, process in torches.items():
        h_T = process.load(lstm.kernel, lstm.recurrent_kernel, lstm.bias, x, dout)
        row[f"torch_{setting}_max_abs_diff"] = float(np.abs(lstm.forward(x)[0] - h_T).max())
        for k in core_counts():
            cases[(setting, k)] = functools.partial(process.run, k)
    times = time_interleaved(cases, repeats, settle)
    ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
    row["ours_ms"] = ms["ours"]
    row["ours_min_ms"], row["ours_max_ms"] = 1000 * min(times["ours"]), 1000 * max(times["ours"])
    row["floor_ms"], row["floor_how"] = min((ms[name], name) for name in floors)
    row["gflops"] = lstm_flops(B, T, E, H) / row["ours_ms"] / 1e6
    row.update({key: None for key in ("torch_ms", "torch_how", "torch_flushed_ms", "torch_unflushed_ms",
                                      "ratio", "floor_ratio")})
    for setting in torches:
        best, k = min((ms[(setting, k)], k) for k in core_counts())
        row[f"torch_{setting}_ms"] = best
        row[f"torch_{setting}_threads"] = k
    if torches:
        setting = min(torches, key=lambda s: row[f"torch_{s}_ms"])
        row["torch_ms"] = row[f"torch_{setting}_ms"]
        k = row[f"torch_{setting}_threads"]
        row["torch_how"] = f"{setting}, {k} thread{'s' * (k > 1)}"
        row["ratio"] = row["ours_ms"] / row["torch_ms"]
        row["floor_ratio"] = row["floor_ms"] / row["torch_ms"]
    row["target"] = target(shape)
    return row


def run(shapes, repeats, torches, peak_gflops, on_row=None):
    """{"shapes": [one row per shape (`time_shape`)], "seconds": ...}, each row with its fraction
    of the matmul peak (peak_gflops: `matmul_peak`'s); on_row(row) is called as each is done."""
    peak = max(peak_gflops.values())
    started = time.perf_counter()
    rows = []
    for shape in shapes:
        row = time_shape(shape, repeats, torches)
        row["peak_fraction"] = row["gflops"] / peak
        rows.append(row)
        if on_row:
            on_row(row)
    return {"shapes": rows, "seconds": time.perf_counter() - started}
