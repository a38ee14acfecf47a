#!/usr/bin/env bash
# Speed of the metadata stages (release build), measured in one run on this machine:
#  1. covidx2 metadata-only build vs the pandas re-implementation (scripts/bench/covidx2_pandas.py)
#  2. NIH ChestX-ray14 (112,120 rows, generic CSV source, seeded patient-level split)
# usage: scripts/bench/metadata.sh [ROUNDS]   (needs ../shared/data; installs pandas in .venv-bench)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-10}
work=${BENCH_DIR:-target/bench-metadata}
cargo build --release --quiet --bin covidx --example layout_shared
bin=${CARGO_TARGET_DIR:-target}/release/covidx
layout=${CARGO_TARGET_DIR:-target}/release/examples/layout_shared
[ -d "$work/covidx2" ] || "$layout" covidx2 "$work/covidx2" >/dev/null
[ -d "$work/nih" ] || "$layout" nih "$work/nih" >/dev/null
if [ ! -x .venv-bench/bin/python ]; then
  python3 -m venv .venv-bench && .venv-bench/bin/pip install -q pandas numpy
fi
py=.venv-bench/bin/python

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
time_it() { # prints seconds of one run of "$@"
  local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }

declare -a ours peer nih
for _ in $(seq "$rounds"); do
  ours+=("$(time_it "$bin" -q build pipelines/covidx2.toml --sources "$work/covidx2" --out "$work/out-covidx2" --metadata-only)")
  peer+=("$(time_it "$py" scripts/bench/covidx2_pandas.py "$work/covidx2" "$work/out-pandas")")
  nih+=("$(time_it "$bin" -q build pipelines/nih-pneumonia.toml --sources "$work/nih" --out "$work/out-nih" --metadata-only)")
done
o=$(printf '%s\n' "${ours[@]}" | median); p=$(printf '%s\n' "${peer[@]}" | median); n=$(printf '%s\n' "${nih[@]}" | median)
printf 'covidx2 metadata-only build: covidx %.3f s, pandas %.3f s (median of %d): %.1fx\n' "$o" "$p" "$rounds" "$(echo "$p / $o" | bc -l)"
printf 'NIH 112,120 rows, seeded split: covidx %.3f s (median of %d)\n' "$n" "$rounds"
cmp -s "$work/out-covidx2/splits/train.txt" "$work/out-pandas/train.txt" && echo "train.txt identical to the pandas peer's" || echo "train.txt DIFFERS from the pandas peer's"
