#!/usr/bin/env bash
# The device check for a lent GPU machine, as one prepared script (about 8 minutes on an
# H200). First, here: bash benchmarks/prepare_gpu_check.sh. Then, with the device tool:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl", ".data"], timeout_s=600)
# Results land in $OUT (tests.log, throughput.md, decode.md, r50-*.jsonl, r18-fp16.log,
# summary.txt).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
summary="$OUT/summary.txt"
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'cuda', torch.version.cuda)"; nproc; } | tee "$summary"

echo "== 1. the CUDA tests (the rest runs in CI)" | tee -a "$summary"
timeout 100 python3 -m pytest -q -p no:cacheprovider -k cuda 2>&1 | tee "$OUT/tests.log" |
  tail -3 | tee -a "$summary"

echo "== 2. ResNet-50, 224 px views of Imagenette JPEGs, batch 512 (1,024 views/step)" |
  tee -a "$summary"
data=.data/imagenette/train
[ -d "$data" ] || data=$(python3 -c "import sys; sys.path.insert(0, 'benchmarks')
import decode; print(decode.synthetic_folder(3072, 500, 375))")
for decoder in device pil; do
  rm -rf "/tmp/r50-$decoder"  # a rerun on a machine still warm starts a new run
  timeout 80 python3 -m simclr pretrain --data "$data" --arch resnet50 --image-size 224 \
    --batch-size 512 --max-steps 40 --log-every 10 --checkpoint-every 0 --no-progress \
    --workers 14 --decoder "$decoder" --out "/tmp/r50-$decoder" > "$OUT/r50-$decoder.log" 2>&1
  cp "/tmp/r50-$decoder/metrics.jsonl" "$OUT/r50-$decoder.jsonl" 2>/dev/null
  python3 - "$decoder" "/tmp/r50-$decoder/metrics.jsonl" <<'PY' | tee -a "$summary"
import json, sys
try:
    rows = [json.loads(x) for x in open(sys.argv[2]) if '"views_per_s"' in x]
    print(f"decoder {sys.argv[1]}: views/s per 10 steps {[round(r['views_per_s']) for r in rows]}")
except OSError:
    print(f"decoder {sys.argv[1]}: no metrics (see r50-{sys.argv[1]}.log)")
PY
done

echo "== 2b. fp16 with GradScaler under LARS (the path of GPUs without bf16), 30 steps" |
  tee -a "$summary"
rm -rf /tmp/r18-fp16
timeout 40 python3 -m simclr pretrain --preset cifar10-cpu --data "$data" --precision fp16 \
  --batch-size 256 --max-steps 30 --log-every 10 --checkpoint-every 0 --no-progress \
  --workers 14 --out /tmp/r18-fp16 > "$OUT/r18-fp16.log" 2>&1
python3 - /tmp/r18-fp16/metrics.jsonl <<'PY' | tee -a "$summary"
import json, sys
try:
    rows = [json.loads(x) for x in open(sys.argv[1]) if '"loss"' in x]
    print("fp16: loss per 10 steps", [round(r["loss"], 3) for r in rows],
          "views/s", [round(r["views_per_s"]) for r in rows])
except OSError:
    print("fp16: no metrics (see r18-fp16.log)")
PY

echo "== 3. ResNet-18 CIFAR stem, simclr vs lightly (throughput.py)" | tee -a "$summary"
timeout 180 python3 benchmarks/throughput.py --device cuda --widths 1 --precisions bf16 \
  --batch 1024 --rounds 2 --warmup 3 --steps 15 --loss-sizes 2048,8192 \
  --out "$OUT/throughput.md" \
  > "$OUT/throughput.log" 2>&1; tail -30 "$OUT/throughput.md" 2>/dev/null | tee -a "$summary"

echo "== 4. input path for large JPEGs (decode.py)" | tee -a "$summary"
timeout 55 python3 benchmarks/decode.py --device cuda --data synthetic --size 224 \
  --batch 256 --batches 4 --rounds 2 --workers 14 2> "$OUT/decode.log" |
  tee "$OUT/decode.md" | tee -a "$summary"

echo "== 5. CPU processes on a GPU machine (gloo beside NCCL), the --processes launcher" |
  tee -a "$summary"
timeout 45 python3 -m pytest -q -p no:cacheprovider tests/test_launch.py \
  -k "global_batch or user_error" 2>&1 | tee "$OUT/processes.log" | tail -2 | tee -a "$summary"
