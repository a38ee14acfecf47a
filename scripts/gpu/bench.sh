#!/usr/bin/env bash
# GPU benchmark of the trainer, in one command on a GPU machine that has the release binary
# (built elsewhere with `bash scripts/setup-train.sh`), Python with torch and torchvision, and
# no Rust or network:
#
#   bash scripts/gpu/bench.sh [COVIDX_BINARY] [OUT_DIR]
#
# 1. `covidx train --bench` against PyTorch eager (scripts/gpu/peer.py: torchvision
#    DenseNet-121, same batch 32, size, precision bf16, channels-last, all layers trainable,
#    fused Adam) at 224 and 480 px, and the ratio;
# 2. ours in fp16 (loss scale) and without channels-last, to choose the defaults;
# 3. the loader alone (CPU, and into pinned memory + GPU copy) at 224 and 480 px;
# 4. one real short training run on CUDA: the demo build, 3 epochs, the full loop.
# Results: OUT_DIR/bench.jsonl, the logs beside it, a table on stdout. About 3-4 minutes.
# A smoke test of the script itself on a CPU: DEVICE=cpu SIZES=64 WARMUP=1 STEPS=2 bash ...
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-}
OUT=${2:-${OUT:-$(mktemp -d)}}
mkdir -p "$OUT"
PY=${TORCH_PYTHON:-}
if [ -z "$PY" ]; then
  for c in /opt/torch/.venv/bin/python .venv-torch/bin/python python3; do
    command -v "$c" >/dev/null 2>&1 && "$c" -c 'import torch, torchvision' 2>/dev/null && PY=$c && break
  done
fi
[ -n "$PY" ] || { echo "no Python with torch and torchvision"; exit 2; }
if [ -z "$BIN" ]; then
  for c in gpu-bin/covidx target/release/covidx; do [ -x "$c" ] && BIN=$c && break; done
fi
if [ -z "$BIN" ] && [ -f gpu-bin/covidx.xz ]; then
  # Packed by scripts/gpu/pack.sh: unpack with Python's lzma (no xz needed here).
  "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    gpu-bin/covidx.xz "$OUT/covidx" && chmod +x "$OUT/covidx" && BIN=$OUT/covidx
fi
[ -x "${BIN:-}" ] || { echo "no covidx binary (give its path, or run scripts/gpu/pack.sh)"; exit 2; }
TORCH_LIB=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB:${LD_LIBRARY_PATH:-}"
RES="$OUT/bench.jsonl"
: > "$RES"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt"
echo "binary $BIN, python $PY ($("$PY" -c 'import torch; print(torch.__version__)')), results in $OUT"
START=$SECONDS
DEVICE=${DEVICE:-cuda}
SIZES=${SIZES:-224 480}
WARMUP=${WARMUP:-15}
STEPS=${STEPS:-60}

run() { # name, timeout, command...
  local name=$1 limit=$2; shift 2
  echo "== $name ($(( SECONDS - START )) s)"
  if timeout "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"; then
    grep '^{' "$OUT/$name.out" | sed "s/^{/{\"run\": \"$name\", /" >> "$RES"
    tail -n 1 "$OUT/$name.out"
  else
    echo "FAILED ($?): $(tail -n 5 "$OUT/$name.err")"
  fi
}

OURS=(train --bench --synthetic --batch 32 --trainable all --device "$DEVICE" --warmup "$WARMUP"
      --bench-steps "$STEPS" --loader-threads 4 --json)
PEER=("$PY" scripts/gpu/peer.py --batch 32 --trainable all --warmup "$WARMUP" --steps "$STEPS"
      --device "$DEVICE")
FIRST=${SIZES%% *}
for size in $SIZES; do
  run "ours-bf16-cl-$size" 120 "$BIN" "${OURS[@]}" --size $size --precision bf16 --channels-last on
  run "peer-bf16-cl-$size" 120 "${PEER[@]}" --size $size --precision bf16 --channels-last
  run "ours-fp16-cl-$size" 120 "$BIN" "${OURS[@]}" --size $size --precision fp16 --channels-last on
  run "loader-cpu-$size" 60 "$BIN" train --bench --loader-only --synthetic --size $size \
    --batch 32 --device cpu --loader-threads 2 --warmup 20 --bench-steps 400 --json
  run "loader-$DEVICE-pinned-$size" 60 "$BIN" train --bench --loader-only --synthetic \
    --size $size --batch 32 --device "$DEVICE" --loader-threads 4 --warmup 20 --bench-steps 400 --json
done
run "ours-bf16-nchw-$FIRST" 120 "$BIN" "${OURS[@]}" --size "$FIRST" --precision bf16 --channels-last off
run "ours-fp32-nchw-$FIRST" 120 "$BIN" "${OURS[@]}" --size "$FIRST" --precision fp32 --channels-last off

echo "== real training run: demo build, 3 epochs on $DEVICE ($(( SECONDS - START )) s)"
if timeout 60 "$BIN" --quiet demo --dir "$OUT/demo" > "$OUT/demo.out" 2>&1 \
  && timeout 120 "$BIN" train "$OUT/demo/out" --epochs 3 --trainable all --batch 8 \
       --device "$DEVICE" --out "$OUT/demo-run" > "$OUT/demo-train.out" 2>&1; then
  tail -n 4 "$OUT/demo-train.out"
  cat "$OUT/demo-run/metrics.csv"
else
  echo "FAILED: $(tail -n 8 "$OUT/demo.out" "$OUT/demo-train.out" 2>/dev/null)"
fi

"$PY" - "$RES" $SIZES <<'PY'
import json, sys
rows = {r["run"]: r for r in map(json.loads, open(sys.argv[1]))}
sizes = [int(s) for s in sys.argv[2:]]
print(f"\n{'run':22} {'images/s':>10} {'ms/step':>8} {'wait ms':>8} {'MiB':>7}")
for name, r in rows.items():
    wait = r.get("data_wait_ms_per_step")
    mem = r.get("device_memory_used_mib")
    print(f"{name:22} {r['images_per_s']:10.1f} {r['step_ms']:8.2f} "
          f"{'' if wait is None else f'{wait:8.3f}':>8} {'' if mem is None else f'{mem:7.0f}':>7}")
for size in sizes:
    o, p = rows.get(f"ours-bf16-cl-{size}"), rows.get(f"peer-bf16-cl-{size}")
    if o and p:
        print(f"{size} px bf16 channels-last: ours / PyTorch eager = "
              f"{o['images_per_s'] / p['images_per_s']:.3f} (aim >= 0.95)")
    l = rows.get(f"loader-cpu-{size}")
    if l and p:
        print(f"{size} px loader alone (2 threads, CPU) / PyTorch's GPU consumption = "
              f"{l['images_per_s'] / p['images_per_s']:.1f}x (aim >= 10x)")
PY
echo "total $(( SECONDS - START )) s"
