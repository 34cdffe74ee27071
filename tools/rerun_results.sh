#!/usr/bin/env bash
# Rerun every recipe and seed that docs/results.md reports, then record them and rebuild its tables.
#
# Expected duration on 2 cores: about 1 hour (56 minutes on a 2-core machine shared with other
# work). Whole runs took there: tutorial 3 x 0.5-0.7 min, tuned 3 x 0.5 min, full 3 x 5-9 min,
# semi 6 x 4-9 min.
#
#     bash tools/rerun_results.sh [RUNS_DIR]      # default: runs/results
#
# Finished runs (their metrics.json exists) are skipped, so an interrupted rerun continues where
# it stopped; an unfinished one is resumed from its checkpoint. After a change to a recipe or to
# the engine's rounding, start from an empty RUNS_DIR: a finished run of the old code would be
# skipped, and then refused by the recording step if its settings are no longer its recipe's.
#
# The last step, `python tools/results.py --record RUNS_DIR`, copies each run's small files
# (config.json, metrics.json, history.csv) into results/runs/ and rewrites the tables; commit them.
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
