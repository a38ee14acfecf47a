#!/usr/bin/env bash
# Speed of the metadata stages (release build), measured in one run on this machine:
#  1. covidx2 metadata-only build vs the pandas re-implementation (scripts/bench/covidx2_pandas.py)
#  2. NIH ChestX-ray14 (112,120 rows, generic CSV source, seeded patient-level split)
#  3. NIH's table repeated to 100,000 / 300,000 / 1,000,000 rows (the growth with size)
# BEFORE=path/to/older/covidx runs an older binary on the same inputs in the same rounds.
# usage: scripts/bench/metadata.sh [ROUNDS]   (needs ../shared/data; installs pandas in .venv-bench)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-10}
work=${BENCH_DIR:-target/bench-metadata}
# The binary with the examples: one feature set (dev-dependencies included), so switching
# between these scripts never rebuilds polars.
cargo build --release --quiet --bin covidx --examples
bin=${CARGO_TARGET_DIR:-target}/release/covidx
layout=${CARGO_TARGET_DIR:-target}/release/examples/layout_shared
sizes="100000 300000 1000000"
[ -d "$work/covidx2" ] || "$layout" covidx2 "$work/covidx2" >/dev/null
[ -d "$work/nih" ] || "$layout" nih "$work/nih" >/dev/null
for rows in $sizes; do
  [ -d "$work/nih-$rows" ] || "$layout" "nih-$rows" "$work/nih-$rows" >/dev/null
done
if [ ! -x .venv-bench/bin/python ] || ! .venv-bench/bin/python -c "import pandas" 2>/dev/null; then
  python3 -m venv .venv-bench && .venv-bench/bin/pip install -q pandas numpy
fi
py=.venv-bench/bin/python

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
time_it() { # prints seconds of one run of "$@"
  local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
rss_of() { # prints the peak RSS (MB) of one run of "$@"
  /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1 | awk '{printf "%d", $1 / 1024}'; }

# bench NAME BINARY ARGS...: NAME's times are appended to the array of that name.
declare -A runs
cases=(covidx2 nih $(for r in $sizes; do echo "nih-$r"; done))
build_args() { # the build arguments of case $1 into output $2
  case $1 in
    covidx2) echo "pipelines/covidx2.toml --sources $work/covidx2 --out $2 --metadata-only" ;;
    nih) echo "pipelines/nih-pneumonia.toml --sources $work/nih --out $2 --metadata-only" ;;
    nih-*) echo "pipelines/nih-pneumonia.toml --sources $work/$1 --out $2 --metadata-only" ;;
  esac
}
for _ in $(seq "$rounds"); do
  for c in "${cases[@]}"; do
    # shellcheck disable=SC2046
    runs[ours-$c]+=" $(time_it "$bin" -q build $(build_args "$c" "$work/out-$c"))"
    if [ -n "${BEFORE:-}" ]; then
      # shellcheck disable=SC2046
      runs[before-$c]+=" $(time_it "$BEFORE" -q build $(build_args "$c" "$work/out-before-$c"))"
    fi
  done
  runs[peer]+=" $(time_it "$py" scripts/bench/covidx2_pandas.py "$work/covidx2" "$work/out-pandas")"
done
med() { printf '%s\n' ${runs[$1]} | median; }
p=$(med peer)
for c in "${cases[@]}"; do
  o=$(med "ours-$c")
  # shellcheck disable=SC2046
  line=$(printf '%-13s covidx %.3f s (peak RSS %s MB)' "$c" "$o" "$(rss_of "$bin" -q build $(build_args "$c" "$work/out-$c"))")
  [ "$c" = covidx2 ] && line+=$(printf ', pandas %.3f s: %.1fx' "$p" "$(echo "$p / $o" | bc -l)")
  if [ -n "${BEFORE:-}" ]; then
    b=$(med "before-$c")
    line+=$(printf '; before %.3f s' "$b")
    [ "$c" = covidx2 ] && line+=$(printf ' (%.1fx pandas)' "$(echo "$p / $b" | bc -l)")
  fi
  echo "$line"
done
echo "(median of $rounds rounds)"
cmp -s "$work/out-covidx2/splits/train.txt" "$work/out-pandas/train.txt" && echo "train.txt identical to the pandas peer's" || echo "train.txt DIFFERS from the pandas peer's"
if [ -n "${BEFORE:-}" ]; then
  for c in "${cases[@]}"; do
    cmp -s "$work/out-$c/manifest.parquet" "$work/out-before-$c/manifest.parquet" \
      && cmp -s "$work/out-$c/splits/train.txt" "$work/out-before-$c/splits/train.txt" \
      && echo "$c: manifest and splits identical to BEFORE's" || echo "$c: outputs DIFFER from BEFORE's"
  done
fi
