#!/usr/bin/env bash
# Rerun every recipe and seed that docs/results.md reports, then rebuild its tables.
#
# Expected duration on 2 cores, the machine otherwise quiet: about 2 hours in all
# (tutorial 3 x 1.5 min, tuned 3 x 0.5 min, full 3 x 8 min, semi 6 x 10-17 min).
# Finished runs (their metrics.json exists) are skipped, so an interrupted rerun continues
# where it stopped; an unfinished one is resumed from its checkpoint.
#
#     bash tools/rerun_results.sh [RUNS_DIR]      # default: runs/results
#
# Then `python tools/results.py --record RUNS_DIR` copies each run's small files
# (config.json, metrics.json, history.csv) into results/runs/ and rewrites the tables.
set -euo pipefail
runs="${1:-runs/results}"
mkdir -p "$runs"

run() {  # run RECIPE SEED
    local dir="$runs/$1-$2"
    if [ -f "$dir/metrics.json" ]; then
        echo "$dir: done"
    elif [ -f "$dir/checkpoint.npz" ]; then
        echo "$dir: resuming" && numpy-lstm train --resume "$dir" --quiet
    else
        echo "$dir: training" && numpy-lstm train --recipe "$1" --seed "$2" --out "$dir" --quiet
    fi
}

for seed in 0 1 2; do run tutorial "$seed"; done
for seed in 0 1 2; do run tuned "$seed"; done
for seed in 0 1 2; do run full "$seed"; done
for seed in 0 1 2 3 4 5; do run semi "$seed"; done
python "$(dirname "$0")/results.py" --record "$runs"
