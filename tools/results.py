"""Summarise finished runs as the README's results table: mean and spread over seeds per recipe.

    python bench/results_table.py runs/tutorial-* runs/tuned-*

Reads each run's metrics.json; prints one Markdown row per recipe with the mean, the standard
deviation and the range of held-out and official-test accuracy, and the mean training time; for
runs with the n-gram view (--ngrams), a row for each view alone.
"""
import collections
import json
import os
import sys

import numpy as np


def main(run_dirs):
    by_recipe = collections.defaultdict(list)
    for run in run_dirs:
        with open(os.path.join(run, "metrics.json"), encoding="utf-8") as f:
            m = json.load(f)
        by_recipe[m["recipe"]].append(m)
    print("| recipe | seeds | held-out accuracy | official test accuracy (n) | training time |")
    print("|---|---|---|---|---|")
    for recipe, runs in by_recipe.items():
        val = np.array([m["val_accuracy"] for m in runs])
        test = np.array([m["test_accuracy"] for m in runs])
        seeds = ", ".join(str(m["seed"]) for m in runs)
        minutes = np.mean([m["train_seconds"] for m in runs]) / 60
        print(f"| {recipe} | {seeds} | {val.mean():.3f} ± {val.std():.3f} ({val.min():.3f}-{val.max():.3f}) "
              f"| {test.mean():.4f} ± {test.std():.4f} ({test.min():.4f}-{test.max():.4f}; n={runs[0]['test_n']}) "
              f"| {minutes:.1f} min |")
        for view in ("lstm", "ngrams"):   # two-view runs: each view alone
            if all(f"test_accuracy_{view}" in m for m in runs):
                val = np.array([m[f"val_accuracy_{view}"] for m in runs])
                test = np.array([m[f"test_accuracy_{view}"] for m in runs])
                print(f"| {recipe}, its {view} view alone | | {val.mean():.3f} ± {val.std():.3f} "
                      f"| {test.mean():.4f} ± {test.std():.4f} ({test.min():.4f}-{test.max():.4f}) | |")


if __name__ == "__main__":
    main(sys.argv[1:])
