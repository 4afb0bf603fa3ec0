#!/usr/bin/env bash
# End-to-end check of the `paper` code path of fig12_3 where the real inputs are not available:
# a synthetic CIFAR-10 in the official pickle layout (2,500 images), a randomly initialised ADM
# 32x32 classifier and randomly initialised Inception weights in pytorch-fid's layout. Real-size
# networks (EDM's DDPM++, Kim et al.'s discriminator, FID Inception), shortened training and a
# 2x2 grid on 2,049 samples (the fewest a 2048-dim FID takes). The numbers mean nothing; the
# run shows every paper-profile step works on the device and what it costs.
# Usage: OUT=dir bash benchmarks/paper_path_check.sh [cuda|cpu]
set -eu
DEV=${1:-cuda}
OUT=${OUT:-/tmp/paper_path}
W=/tmp/paper_path_work
rm -rf "$W" && mkdir -p "$W" "$OUT"
export PYTHONUNBUFFERED=1 REPRO_DATA=$W/data REPRO_FID_WEIGHTS=$W/fake_inception.pth \
  MLFLOW_TRACKING_URI=sqlite:///$W/mlflow.db REPRO_RESULTS=$W/results REPRO_ARTIFACTS=$W/artifacts REPRO_REPORTS=$OUT
python3 - <<'PY'
import os, torch
from pathlib import Path
from tests.test_data import _write_cifar
from repro.metrics.inception import fid_inception_network
from repro.nets.adm import adm_classifier
W = Path("/tmp/paper_path_work")
_write_cifar(W / "data" / "cifar10" / "cifar-10-batches-py", per_batch=500)
torch.manual_seed(0)
torch.save(adm_classifier(32).state_dict(), W / "32x32_classifier.pt")
torch.save(fid_inception_network().state_dict(), W / "fake_inception.pth")
PY
t0=$SECONDS
python3 -m repro.cli run fig12_3 --profile paper --device "$DEV" --no-progress \
  --set fixed.n_samples=2049 --set "grid.w_dg=[0.0, 1.67]" --set "grid.eps_scale=[1.0, 1.0004]" \
  --set models.edm.train.epochs=2 --set models.edm.train.batch_size=256 --set models.edm.train.warmup_steps=2 \
  --set models.discriminator.net.adm_classifier=$W/32x32_classifier.pt \
  --set models.discriminator.train.n_samples=1000 --set models.discriminator.train.epochs=2 2>&1 | tail -5
echo "fig12_3 paper path: $((SECONDS - t0)) s"
python3 -m repro.cli report fig12_3 > /dev/null
for m in edm_digits discriminator_digits; do
  python3 -c "import json,glob,sys; p=glob.glob('$W/artifacts/$m/paper-*/meta.json')[0]; m=json.load(open(p)); print('$m', {k: m.get(k) for k in ('parameters','trainable_parameters','train_seconds','gen_seconds','epoch','augment_p','steps','probes')})"
done
