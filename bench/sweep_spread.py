"""Several `bench_lstm.py --sweep` runs side by side: each shape's ours / PyTorch in every run.

    PYTHONPATH=. python bench/bench_lstm.py --sweep --json-file run1.json    # (then run2, run3...)
    python bench/sweep_spread.py run1.json run2.json run3.json

On a shared host one run's ratio can move by half from one minute to the next (bench/README.md,
"Across shapes"), so a single recorded run says little about a shape near its target. This prints,
per shape, the ratio of every run, their median, the floor's ratio (median), issue 15's target
and in how many runs it was met.
"""
import json
import statistics
import sys

TUTORIAL = (64, 500, 32, 100)


def target(shape):
    """Issue 15's ceiling on ours / PyTorch at (B, T, E, H)."""
    if shape == TUTORIAL:
        return 0.55
    return 1.5 if shape[0] == 1 else 1.0


def spread(runs):
    """[(shape, [ratio per run], median, median floor ratio or None, target, runs meeting it)] over
    the shapes that every run timed against PyTorch, in the first run's order."""
    rows = []
    for first in runs[0]["shapes"]:
        shape = tuple(first[k] for k in "BTEH")
        found = [next((r for r in run["shapes"] if tuple(r[k] for k in "BTEH") == shape), None)
                 for run in runs]
        if any(r is None or "ratio" not in r for r in found):
            continue
        ratios = [r["ratio"] for r in found]
        floors = [r["floor_ratio"] for r in found if "floor_ratio" in r]
        rows.append((shape, ratios, statistics.median(ratios),
                     statistics.median(floors) if len(floors) == len(found) else None,
                     target(shape), sum(q <= target(shape) for q in ratios)))
    return rows


def main(paths):
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    print(f"ours / PyTorch (bests) in {len(runs)} runs: " + ", ".join(paths))
    print(f"{'B':>4} {'T':>5} {'E':>4} {'H':>5} | {'each run':<{6 * len(runs)}} | median | floor | target | met")
    for (B, T, E, H), ratios, median, floor, limit, met in spread(runs):
        each = "".join(f"{q:>6.2f}" for q in ratios)
        floor_text = f"{floor:>5.2f}" if floor is not None else " " * 5
        print(f"{B:>4} {T:>5} {E:>4} {H:>5} | {each} | {median:>6.2f} | {floor_text} | {limit:>6.2f} | "
              f"{met}/{len(ratios)}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python bench/sweep_spread.py SWEEP.json [SWEEP.json ...]")
    main(sys.argv[1:])
