#!/usr/bin/env bash
# GPU check for issue 14 (001 paper Tab. 2), sized for ~10 min on one H100/H200: the paper's network
# (88,842,371 parameters, 128x128, batch 64), conditional (one guided pass of 128 rows per step) and
# unconditional, every speed-up variant, 100 timed steps scaled to 1000 (recorded as extrapolated),
# then the sampler-overhead benchmark at paper width. Masks from the embedded scenes (time does not
# depend on them), seeded random weights (nor on those). Results under $OUT (or ./gpu_check).
set -euo pipefail
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
export REPRO_RESULTS="$OUT/results" REPRO_ARTIFACTS="$OUT/artifacts" REPRO_REPORTS="$OUT/reports"
export MLFLOW_TRACKING_URI="sqlite:///$OUT/mlflow.db"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
repro run bdd_table2 --profile paper --device cuda --no-progress --yes \
  --set dataset.name=bdd_scenes --set 'grid.batch_size=[64]' \
  --set fixed.steps_timed=100 --set fixed.repeats=2 --set fixed.warmup=1 2>&1 | tee "$OUT/table2.log"
repro report bdd_table2 | tee -a "$OUT/table2.log"
python benchmarks/bench_ddpm_sampler.py --device cuda --base 128 --size 128 --emb 256 --batch 64 \
  --steps 50 --repeats 3 | tee "$OUT/bench_ddpm_sampler.json"
