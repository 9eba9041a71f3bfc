#!/usr/bin/env bash
# The device check for a lent GPU machine, as one prepared script. First, here:
# bash benchmarks/prepare_gpu_check.sh. Then, with the device tool:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl", ".data"], timeout_s=600)
# Results land in $OUT: summary.txt, tests.log, throughput.md/.log, decode.md and the
# rest in logs.tar.gz (the device tool returns at most 8 files), logs.tar.gz rewritten
# after every section, so a call cut short still brings back what finished.
# BUDGET_S (default 540, under the device tool's 600 s a call) bounds the whole script:
# each section's timeout is cut to what is left, and a section that no longer fits says
# so in summary.txt and is skipped (the sections' own limits add up to more than one
# call: rerun the skipped ones with SECTIONS="...", e.g. SECTIONS="4 5").
# SECTIONS="1 3 5" runs only those sections; section 6 (ResNet-50 under --compile) and
# COMPILE=1 (section 3 also times simclr under torch.compile) run only when asked:
# SECTIONS="1 3 6" COMPILE=1 THROUGHPUT_S=400.
# Exit status: 1 when torch sees no GPU (summary.txt says so, nothing runs) or when any
# section failed (its logs are still saved; summary.txt names the failed sections).
set -uo pipefail
deadline=$((SECONDS + ${BUDGET_S:-540}))
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
summary="$OUT/summary.txt"
# (without a GPU every section would fail or, worse, section 2 would pretrain a
# ResNet-50 on the CPU until its timeout: stop here, saying why)
if ! python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
  echo "NO GPU: torch.cuda.is_available() is False on $(hostname); nothing was run" |
    tee "$summary"
  exit 1
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
SECTIONS=${SECTIONS:-1 2 2b 3 4 5}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
LOGS=/tmp/gpu-check-logs; rm -rf "$LOGS"; mkdir -p "$LOGS"
save_logs() { tar -czf "$OUT/logs.tar.gz" -C "$LOGS" .; }
# limit SECONDS: the given timeout, cut to what is left of the budget.
limit() { local left=$((deadline - SECONDS)); echo $(($1 < left ? $1 : left)); }
# section ID NEED TITLE: true when the section is asked for and at least NEED seconds of
# the budget are left; else false, with a line in the summary when it was asked for.
section() {
  want "$1" || return 1
  local left=$((deadline - SECONDS))
  if ((left < $2)); then
    echo "== $1. SKIPPED: ${left} s of the budget left, it needs ${2} s (rerun: SECTIONS=\"$1\")" |
      tee -a "$summary"
    return 1
  fi
  echo "== $1. $3" | tee -a "$summary"
}
# failed ID STATUS: note a section's failure (non-zero STATUS) in the summary; the
# script's own status is then 1 (the failed sections are listed at the end).
failures=()
failed() {
  (($2 == 0)) && return 0
  failures+=("$1")
  echo "   section $1 FAILED (status $2$( (($2 == 124)) && echo ", timed out"))" | tee -a "$summary"
}
data=.data/imagenette/train  # (sections 2, 2b and 6; synthetic JPEGs if not carried)
if want 2 || want 2b || want 6; then [ -d "$data" ] || data=$(python3 -c "import sys; sys.path.insert(0, 'benchmarks')
import decode; print(decode.synthetic_folder(3072, 500, 375))"); fi
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'cuda', torch.version.cuda)"; nproc; } | tee "$summary"

if section 1 40 "the CUDA tests (the rest runs in CI)"; then
timeout "$(limit 100)" python3 -m pytest -q -p no:cacheprovider --tb=short -k cuda 2>&1 | tee "$OUT/tests.log" |
  tail -3 | tee -a "$summary"
failed 1 "${PIPESTATUS[0]}"
save_logs
fi

# ResNet-50 pretraining on the JPEG folder: r50 SECTION NAME STEPS FLAGS... prints
# views/s per 10 steps.
r50() {
  local id=$1 name=$2 steps=$3; shift 3
  rm -rf "/tmp/r50-$name"  # a rerun on a machine still warm starts a new run
  timeout "$(limit $((40 + 2 * steps)))" python3 -m simclr pretrain --data "$data" --arch resnet50 \
    --device cuda --image-size 224 --batch-size 512 --max-steps "$steps" --log-every 10 \
    --checkpoint-every 0 --no-progress --workers 14 --out "/tmp/r50-$name" "$@" \
    > "$LOGS/r50-$name.log" 2>&1
  failed "$id ($name)" $?
  cp "/tmp/r50-$name/metrics.jsonl" "$LOGS/r50-$name.jsonl" 2>/dev/null
  python3 - "$name" "/tmp/r50-$name/metrics.jsonl" <<'PY' | tee -a "$summary"
import json, sys
try:
    rows = [json.loads(x) for x in open(sys.argv[2]) if '"views_per_s"' in x]
    print(f"{sys.argv[1]}: views/s per 10 steps {[round(r['views_per_s']) for r in rows]}")
except OSError:
    print(f"{sys.argv[1]}: no metrics (see r50-{sys.argv[1]}.log)")
PY
}

if section 2 200 "ResNet-50, 224 px views of Imagenette JPEGs, batch 512 (1,024 views/step)"
then
r50 2 device 40 --decoder device
r50 2 pil 40 --decoder pil
save_logs
fi

if section 6 120 "section 2 under --compile (decoder device; the first window holds the compile)"
then
r50 6 device-compile 60 --decoder device --compile
save_logs
fi

if section 2b 40 "fp16 with GradScaler under LARS (the path of GPUs without bf16), 30 steps"
then
rm -rf /tmp/r18-fp16
timeout "$(limit 40)" python3 -m simclr pretrain --preset cifar10-cpu --data "$data" --precision fp16 \
  --device cuda --batch-size 256 --max-steps 30 --log-every 10 --checkpoint-every 0 \
  --no-progress --workers 14 --out /tmp/r18-fp16 > "$LOGS/r18-fp16.log" 2>&1
failed 2b $?
python3 - /tmp/r18-fp16/metrics.jsonl <<'PY' | tee -a "$summary"
import json, sys
try:
    rows = [json.loads(x) for x in open(sys.argv[1]) if '"loss"' in x]
    print("fp16: loss per 10 steps", [round(r["loss"], 3) for r in rows],
          "views/s", [round(r["views_per_s"]) for r in rows])
except OSError:
    print("fp16: no metrics (see r18-fp16.log)")
PY
save_logs
fi

if section 3 120 "ResNet-18 CIFAR stem, simclr vs lightly (throughput.py)"; then
compile_flags=(); case_timeout=60  # (a compiled case compiles first: a longer limit)
if [ -n "${COMPILE:-}" ]; then compile_flags=(--compile); case_timeout=240; fi
# (each case in a fresh process: about 10 s each on an H200, 2 rounds of about 11 cases,
# after generating 50,000 CIFAR-sized noise PNGs: no CIFAR-10 folder travels;
# the warm-up is raised to the 2 x 14 batches the DataLoader makes ahead, and 56 timed
# steps are 4 waves of the 14 workers)
# (on SIGTERM from timeout, throughput.py writes the table of the cases finished so far)
timeout "$(limit "${THROUGHPUT_S:-300}")" python3 benchmarks/throughput.py --device cuda --widths 1 --precisions bf16 \
  --batch 1024 --rounds 2 --warmup 3 --steps 56 --loss-sizes 2048,8192 \
  --lightly-workers 14 --timeout "$case_timeout" "${compile_flags[@]}" \
  --out "$OUT/throughput.md" \
  > "$OUT/throughput.log" 2>&1
failed 3 $?
tail -30 "$OUT/throughput.md" 2>/dev/null | tee -a "$summary"
save_logs
fi

if section 4 90 "input path for large JPEGs (decode.py)"; then
# (batch 64: each case discards the 1 + 4 x 14 batches the workers make ahead and times
# 3 waves of 14 batches; 6,336 generated 500 x 375 JPEGs)
timeout "$(limit 150)" python3 benchmarks/decode.py --device cuda --data synthetic --size 224 \
  --batch 64 --rounds 2 --workers 14 2> "$LOGS/decode.log" |
  tee "$OUT/decode.md" | tee -a "$summary"
failed 4 "${PIPESTATUS[0]}"
save_logs
fi

if section 5 60 "CPU processes on a GPU machine (gloo beside NCCL), the --processes launcher"
then
timeout "$(limit 100)" python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_launch.py ${LAUNCH_TESTS:+-k "$LAUNCH_TESTS"} 2>&1 | tee "$OUT/processes.log" | tail -2 | tee -a "$summary"
failed 5 "${PIPESTATUS[0]}"
fi
save_logs
if ((${#failures[@]})); then
  echo "FAILED: section ${failures[*]} (logs in logs.tar.gz)" | tee -a "$summary"
  exit 1
fi
