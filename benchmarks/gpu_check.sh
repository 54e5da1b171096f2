#!/usr/bin/env bash
# The GPU path, proven in one run: the script to start first on a machine with a CUDA card (the project's CI has
# none). Everything it prints also lands in $OUT/gpu_report.txt (OUT defaults to ./gpu_out), with the card named.
#
#   bash benchmarks/gpu_check.sh            # about 12 minutes on one H100 (estimated), most of it the paper cell
#   QUICK=1 bash benchmarks/gpu_check.sh    # skip the paper-preset cell
set -u
OUT=${OUT:-gpu_out}
PY=${PY:-python}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_report.txt") 2>&1
step() { echo; echo "== $* ($(date +%H:%M:%S))"; }

step "card"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

step "every CPU/GPU parity test (pytest --device cuda)"
$PY -m pytest -q -p no:cacheprovider --device cuda -x tests 2>&1 | tail -15

step "benchmarks on the GPU"
for b in bench_train_step bench_metrics bench_zoo bench_skeleton bench_synthetic bench_audit; do
  echo "-- $b"; timeout 600 $PY "benchmarks/$b.py" --device cuda 2>&1 | tail -6
done

step "iGTT on 8 images (built-in ER and EM, 256 x 256)"
timeout 900 $PY benchmarks/bench_unsupervised.py --device cuda --n 8 --size 256 --kinds er,em --methods otsu,igtt 2>&1 | tail -12

step "iGTT mixed precision (the default on CUDA) against float32 steps, 5 images of 128 x 128"
timeout 600 $PY benchmarks/bench_igtt.py --device cuda --kinds er,nuc,em --seeds 0,1 2>&1 | tail -16

step "lazy training and evaluation on the card (1,000 images of 512 x 512, read item by item)"
timeout 900 $PY benchmarks/bench_lazy.py --device cuda --sizes 1000 --side 512 --modes lazy,eager --evaluate 2>&1 | tail -5

step "one quick-preset cell, timed"
/usr/bin/time -f "%e s wall, %M kB peak RSS" mstool compare --data synth:er --preset quick --labels clean --seeds 0 \
  --device cuda -o "$OUT/quick" -q
grep -h '"seconds"\|"val/dice"\|"device"' "$OUT"/quick/cells/*/metrics.json

if [ -z "${QUICK:-}" ]; then
  step "one paper-preset cell (64 images of 256 x 256, U-Net base 64, 100 epochs), timed"
  /usr/bin/time -f "%e s wall, %M kB peak RSS" mstool compare --data synth:er --preset paper --labels clean \
    --seeds 0 --device cuda -o "$OUT/paper" -q
  grep -h '"seconds"\|"val/dice"\|"device"' "$OUT"/paper/cells/*/metrics.json
fi
step "done"
