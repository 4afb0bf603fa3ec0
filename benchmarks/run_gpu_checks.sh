#!/usr/bin/env bash
# The GPU checks of this suite, for a machine with CUDA (e.g. a lent H100): CUDA tests, the EDM/DG
# and sampler overhead benchmarks at the paper's network sizes, AMP vs fp32 training steps, and
# one smoke spec end to end on the GPU. Outputs go to $OUT (default /tmp/gpu_checks).
# Python packages missing there can travel as wheels in .whl/ (see the device notes); they are
# installed into /tmp/site first when present. BENCH=0 skips the benchmarks, SPEC=none the spec run.
set -u
OUT=${OUT:-/tmp/gpu_checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PWD:/tmp/site"
fi
nvidia-smi -L | tee "$OUT/device.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/device.txt"
step() { echo "== $1"; shift; local t0=$SECONDS; "$@"; echo "== rc $? in $((SECONDS - t0)) s"; }
{
  step "CUDA tests" python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_adm.py
  [ "${BENCH:-1}" = 0 ] && exit 0   # BENCH=0: the tests alone
  step "EDM Heun + DG overhead, paper nets" python3 benchmarks/bench_edm_overhead.py --device cuda --net paper --disc adm --batch 64 --repeats 3
  step "EDM Heun + DG overhead, small nets" python3 benchmarks/bench_edm_overhead.py --device cuda --repeats 3
  step "AMP vs fp32 training, paper DDPM++" python3 benchmarks/bench_train_amp.py --device cuda --net paper --batch 128 --steps 20
  step "Score-SDE sampler overhead" python3 benchmarks/bench_sampler_overhead.py --device cuda
} 2>&1 | tee "$OUT/checks.txt"
if [ "${SPEC:-fig12_3}" != none ]; then
  export MLFLOW_TRACKING_URI="sqlite:////tmp/gpu_mlflow.db" REPRO_RESULTS=/tmp/gpu_results REPRO_ARTIFACTS=/tmp/gpu_artifacts REPRO_REPORTS=/tmp/gpu_reports
  { step "repro run ${SPEC:-fig12_3} --profile smoke --device cuda" python3 -m repro.cli run "${SPEC:-fig12_3}" --profile smoke --device cuda
    step "repro report" python3 -m repro.cli report "${SPEC:-fig12_3}"; } 2>&1 | tee "$OUT/spec.txt"
  cp /tmp/gpu_reports/"${SPEC:-fig12_3}".md "$OUT/" 2>/dev/null || true
fi
