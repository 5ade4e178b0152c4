#!/bin/bash
# On the device machine: install the carried wheels, unpack MNIST, measure 1 vs 2 sweep
# workers on one GPU (issue 18's fallback), then run config.toml's [sweep] exploration
# with 4 workers on CUDA:0 until the deadline, export the record, send it all back.
set -u
cd "$(dirname "$0")"
T0=$(date +%s)
DEADLINE=${DEADLINE:-430}   # seconds after start when the exploration is stopped
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/proj/src PYTHONUNBUFFERED=1
NVRTC=$(find / -name 'libnvrtc.so*' 2>/dev/null | grep -v stub | head -1)
[ -n "$NVRTC" ] && export LD_LIBRARY_PATH="$(dirname "$NVRTC"):${LD_LIBRARY_PATH:-}"
echo "nvrtc: $NVRTC"
export MNIST_WEBGPU_CACHE=/tmp/mnist
mkdir -p $MNIST_WEBGPU_CACHE
for f in mnist/*.gz; do gunzip -c "$f" > "$MNIST_WEBGPU_CACHE/$(basename "$f" .gz)"; done
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 1 > $OUT/util.csv &
SMI=$!
echo "setup done at $(( $(date +%s) - T0 )) s"

sweep() {  # dir config args...
  local dir=$1 conf=$2; shift 2
  mkdir -p "$dir" && cp "$conf" "$dir/config.toml"
  (cd "$dir" && MNIST_WEBGPU_CONFIG=$PWD/config.toml python3 -m mnist_webgpu sweep "$@")
}
{
  s=$(date +%s); sweep w warm.toml --devices CUDA:0; echo "WARM $(( $(date +%s) - s )) s"
  s=$(date +%s); sweep s1 scale.toml --devices CUDA:0; echo "ONE_WORKER $(( $(date +%s) - s )) s"
  s=$(date +%s); sweep s2 scale.toml --devices CUDA:0,CUDA:0; echo "TWO_WORKERS $(( $(date +%s) - s )) s"
} > $OUT/scale.log 2>&1
grep -E "WARM|WORKER|workers finished|error" $OUT/scale.log
echo "scaling done at $(( $(date +%s) - T0 )) s"

cd proj
MNIST_WEBGPU_CONFIG=$PWD/config.toml setsid python3 -m mnist_webgpu sweep --devices CUDA:0,CUDA:0,CUDA:0,CUDA:0 > $OUT/explore.log 2>&1 &
EXP=$!
while kill -0 $EXP 2>/dev/null && [ $(( $(date +%s) - T0 )) -lt $DEADLINE ]; do sleep 2; done
if kill -0 $EXP 2>/dev/null; then echo "deadline: stopping the exploration"; kill -KILL -- -$EXP; fi
wait $EXP 2>/dev/null
echo "exploration stopped at $(( $(date +%s) - T0 )) s"
MNIST_WEBGPU_CONFIG=$PWD/config.toml python3 -m mnist_webgpu sweep --workers 0 > $OUT/export.log 2>&1
tail -5 $OUT/export.log
cp sweeps/results.json HYPERPARAMETERS.md build/sweep/optuna.db $OUT/
kill $SMI
grep -cE "validation accuracy|pruned at" $OUT/explore.log
echo "all done at $(( $(date +%s) - T0 )) s"
