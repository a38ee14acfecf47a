#!/usr/bin/env bash
# Image stage vs the Python/OpenCV peer (../shared/bench/peer_pipeline.py), in one run on this
# machine, on two corpora and two sizes, with the decode-only floor of each:
#   png-jpeg  400 real chest X-rays cycled from ../shared/data/samples (make_corpus.py)
#   dicom     the same 400 as RSNA-shaped DICOMs (1024x1024, 8-bit MONOCHROME2, JPEG baseline),
#             with the same metadata and labels (examples/rsna_dicom_corpus.rs)
# Each round runs covidx (and BEFORE, an older covidx binary, when given) and the peer back to
# back on the same corpus; the ratios are medians over the rounds. pipelines/bench.toml: every
# record to train, the clean image plus 2 augmented copies (3 samples per image), crop_top 0.08.
# usage: scripts/bench/images.sh [ROUNDS=3] [N=400]     (BEFORE=path/to/covidx to compare)
# Needs ../shared; installs numpy, opencv-python-headless, safetensors, pydicom, pillow into
# .venv-bench.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}; n=${2:-400}
work=${BENCH_DIR:-target/bench-images}; mkdir -p "$work"
# The binary with the examples: one feature set (dev-dependencies included), so switching
# between these scripts never rebuilds polars.
cargo build --release --quiet --bin covidx --examples
rel=${CARGO_TARGET_DIR:-target}/release
bin=$rel/covidx
if [ ! -x .venv-bench/bin/python ] || ! .venv-bench/bin/python -c "import cv2, pydicom, PIL, safetensors" 2>/dev/null; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q numpy opencv-python-headless safetensors pydicom pillow
fi
py=$(pwd)/.venv-bench/bin/python
[ -f "$work/png-jpeg/files.txt" ] || "$py" ../shared/bench/make_corpus.py "$work/png-jpeg" "$n" >/dev/null
[ -f "$work/dicom/files.txt" ] || "$rel/examples/rsna_dicom_corpus" "$work/png-jpeg" "$work/dicom"

# Seconds and peak RSS (MB) of one run of "$@", as "SECONDS RSS".
run() {
  local t0 t1 rss
  t0=$(date +%s.%N)
  rss=$(/usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1)
  t1=$(date +%s.%N)
  echo "$(echo "$t1 - $t0" | bc -l) $((rss / 1024))"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

samples=$((n * 3))
for corpus in png-jpeg dicom; do
  for size in 480 224; do
    sed "s/^size = 480/size = $size/" pipelines/bench.toml > "$work/bench-$size.toml"
    declare -a ours=() before=() peer=()
    rss_ours=0; rss_peer=0; rss_before=0
    for _ in $(seq "$rounds"); do
      rm -rf "$work/out-rs" "$work/out-before" "$work/out-py"
      read -r t m < <(run "$bin" build "$work/bench-$size.toml" --sources "$work/$corpus" --out "$work/out-rs" --quiet)
      ours+=("$t"); rss_ours=$(( m > rss_ours ? m : rss_ours ))
      if [ -n "${BEFORE:-}" ]; then
        read -r t m < <(run "$BEFORE" build "$work/bench-$size.toml" --sources "$work/$corpus" --out "$work/out-before" --quiet)
        before+=("$t"); rss_before=$(( m > rss_before ? m : rss_before ))
      fi
      # The peer's RSS is its parent's; its worker processes add their own.
      read -r t m < <(run "$py" ../shared/bench/peer_pipeline.py --list "$work/$corpus/files.txt" \
        --out "$work/out-py" --size "$size" --aug-copies 2)
      peer+=("$t"); rss_peer=$(( m > rss_peer ? m : rss_peer ))
    done
    o=$(printf '%s\n' "${ours[@]}" | median); p=$(printf '%s\n' "${peer[@]}" | median)
    line=$(printf '%-8s %3d px: covidx %6.1f samples/s (peak RSS %d MB), peer %6.1f samples/s: %.2fx' \
      "$corpus" "$size" "$(echo "$samples / $o" | bc -l)" "$rss_ours" "$(echo "$samples / $p" | bc -l)" \
      "$(echo "$p / $o" | bc -l)")
    if [ -n "${BEFORE:-}" ]; then
      b=$(printf '%s\n' "${before[@]}" | median)
      line+=$(printf '; before %6.1f samples/s (%.2fx the peer, peak RSS %d MB)' \
        "$(echo "$samples / $b" | bc -l)" "$(echo "$p / $b" | bc -l)" "$rss_before")
    fi
    echo "$line"
    printf '%-8s %3d px: ' "$corpus" "$size"
    "$rel/examples/decode_floor" "$work/$corpus/files.txt" "$size" 2 "$rounds"
  done
done
echo "(median of $rounds rounds, $n images, 3 samples per image, $(nproc) cores)"
