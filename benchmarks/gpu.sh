#!/usr/bin/env bash
# The GPU checks of one lent machine, in one call (benchmarks/README.md, "GPU"):
#   bash benchmarks/gpu.sh OUT_DIR [SECONDS] [PARTS]    (PARTS: a regular expression of part names)
# in order of importance, each part under its own time limit and skipped when the budget
# (default 480 s) is nearly spent: the gpu-marked tests; PGD-10 AT throughput of preact-resnet18
# and wrn-34-10 (bf16 and fp32, batch 512 and 128, with and without channels-last + compile in
# reduce-overhead mode, the naive reference loop in the same run); one epoch of every method on
# synthetic CIFAR-shaped data; evaluation speed at large batches. Everything lands in OUT_DIR as
# it is produced. Needs python3 with torch (CUDA) and, for AutoAttack, pyautoattack (a wheel in
# .gpu/ is installed to /tmp/site when the package is missing).
set -u
OUT=${1:-gpu-out}
BUDGET=${2:-480}
ONLY=${3:-.}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PY:-python3}
if ! $PY -c "import pyautoattack" 2>/dev/null && ls .gpu/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/site .gpu/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

exec 3>&1  # the progress lines below go to the console even where a part's output is redirected
part() {  # part SECONDS NAME COMMAND...: run unless the budget is nearly spent
  local limit=$1 name=$2; shift 2
  local left=$((BUDGET - SECONDS))
  [[ "$name" =~ ^($ONLY)$ ]] || [ "$ONLY" = . ] || return 0
  if [ "$left" -lt 20 ]; then echo "== skip $name (budget spent)" >&3; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s, at ${SECONDS}s)" >&3
  timeout "$limit" "$@"
  echo "== $name: exit $? at ${SECONDS}s" >&3
}
TP=(benchmarks/throughput.py --device cuda --method at --json --repeats 2)
tp() {  # tp SECONDS NAME ARGS...: one throughput configuration, one JSON line
  local limit=$1 name=$2; shift 2
  part "$limit" "$name" $PY "${TP[@]}" "$@" >> "$OUT/throughput.jsonl" 2>> "$OUT/throughput.log"
}
PREACT=(--model preact-resnet18 --images 10240)
WRN=(--model wrn-34-10 --images 4096 --eval-images 512)
FAST=(--channels-last --compile --compile-mode reduce-overhead --no-naive)

part 150 tests $PY -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider -o addopts="" --tb=short -q \
  > "$OUT/tests.log" 2>&1
tail -25 "$OUT/tests.log"
tp 75 preact-bf16-512 "${PREACT[@]}" --batch-size 512 --bf16 --profile
tp 60 preact-bf16-512-cl "${PREACT[@]}" --batch-size 512 --bf16 --channels-last --no-naive
tp 150 preact-bf16-512-compiled "${PREACT[@]}" --batch-size 512 --bf16 "${FAST[@]}"
part 75 methods-epoch $PY benchmarks/methods_epoch.py --device cuda --model preact-resnet18 --images 5120 \
  --test-images 10000 --keep /tmp/gpu-runs > "$OUT/methods.jsonl" 2> "$OUT/methods.log"
tp 90 wrn-bf16-512 "${WRN[@]}" --batch-size 512 --bf16
tp 60 preact-fp32-512 "${PREACT[@]}" --batch-size 512
part 45 evaluation $PY benchmarks/evaluation.py --device cuda --run /tmp/gpu-runs/at --attacks pgd-20,apgd-ce \
  --batch-sizes 1000,5000,10000 --images 10000 --aa-images 1000 --repeats 2 --json > "$OUT/evaluation.jsonl" 2>&1
tp 45 preact-bf16-128 --model preact-resnet18 --images 5120 --batch-size 128 --bf16
tp 90 wrn-fp32-512 "${WRN[@]}" --batch-size 512
tp 150 wrn-bf16-512-compiled "${WRN[@]}" --batch-size 512 --bf16 "${FAST[@]}"
echo "== done at ${SECONDS}s"
cut -c1-400 "$OUT/throughput.jsonl" 2>/dev/null
tail -5 "$OUT/throughput.log" 2>/dev/null
