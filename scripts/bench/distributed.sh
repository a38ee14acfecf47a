#!/usr/bin/env bash
# Figures of the beyond-one-machine features (release build), in one run on this machine:
#  1. the image-stage bench corpus (../shared/bench/make_corpus.py: N real images cycled,
#     pipelines/bench.toml: 480 px, 2 augmented copies, 64 MiB shards) built on one machine,
#     then as PARTS parts (run one after another here; a cluster runs them at once) and
#     merged: whether the two builds are byte-identical, the time of each part and of the merge;
#  2. export rates of that build: --format webdataset and hf, clean samples and --all-copies;
#  3. object storage: the same build with --sources and --out on a loopback S3 server (s3s-fs,
#     COVIDX_S3S_FS or ~/.cache/covidx-tools/bin/s3s-fs): the mirror's and the publish's
#     MB/s against copying the same trees on the local disk (cp -r), and whether the published
#     build equals the local one.
# usage: scripts/bench/distributed.sh [N=1200] [PARTS=3]   (needs ../shared/bench and ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-1200}
parts=${2:-3}
work=${BENCH_DIR:-target/bench-distributed}
# The binary with the examples: one feature set (dev-dependencies included), so switching
# between these scripts never rebuilds polars.
cargo build --release --quiet --bin covidx --examples
bin=$(realpath "${CARGO_TARGET_DIR:-target}/release/covidx")
mkdir -p "$work"
[ -d "$work/sources-$n" ] || python3 ../shared/bench/make_corpus.py "$work/sources-$n" "$n" >/dev/null
sed 's/^copies = 2$/copies = 2\nshard_mib = 64/' pipelines/bench.toml > "$work/bench.toml"
rm -rf "$work/one" "$work/parts" "$work/merged" "$work/export-"*

secs() { # seconds of one run of "$@"
  local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }

one=$(secs "$bin" -q build "$work/bench.toml" --sources "$work/sources-$n" --out "$work/one")
samples=$(python3 -c "import json,sys; print(sum(s['samples'] for v in json.load(open(sys.argv[1]))['splits'].values() for s in v))" "$work/one/shards/index.json")
shards=$(python3 -c "import json,sys; print(sum(len(v) for v in json.load(open(sys.argv[1]))['splits'].values()))" "$work/one/shards/index.json")
printf 'one machine: %d images, %d samples in %d shards, %.1f s (%.0f samples/s)\n' "$n" "$samples" "$shards" "$one" "$(echo "$samples / $one" | bc -l)"
total=0
for k in $(seq "$parts"); do
  t=$(secs "$bin" -q build "$work/bench.toml" --sources "$work/sources-$n" --out "$work/parts/part-$k" --part "$k/$parts")
  total=$(echo "$total + $t" | bc -l)
  printf 'part %d/%d: %.1f s\n' "$k" "$parts" "$t"
done
m=$(secs "$bin" -q merge "$work/merged" "$work/parts"/part-*)
printf 'merge: %.2f s; parts in sequence %.1f s, parts at once (slowest part + merge) would be the wall time\n' "$m" "$total"
if diff -r "$work/one" "$work/merged" >/dev/null; then
  echo "merged build byte-identical to the one-machine build ($(du -sb "$work/one" | cut -f1) bytes)"
else
  echo "merged build DIFFERS from the one-machine build:"; diff -rq "$work/one" "$work/merged" | head
fi
for format in webdataset hf; do
  for copies in clean all; do
    flag=(); [ "$copies" = all ] && flag=(--all-copies)
    out="$work/export-$format-$copies"
    t=$(secs "$bin" -q export --format "$format" "${flag[@]}" "$work/one" "$out")
    got=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(sum(f['samples'] for v in r['splits'].values() for f in v))" "$out/export.json")
    printf 'export %-10s %-5s: %d samples, %s MB, %.2f s, %.0f samples/s\n' "$format" "$copies" "$got" "$(du -sm "$out" | cut -f1)" "$t" "$(echo "$got / $t" | bc -l)"
  done
done

s3s=${COVIDX_S3S_FS:-$HOME/.cache/covidx-tools/bin/s3s-fs}
if [ ! -x "$s3s" ]; then echo "no s3s-fs: object-storage figures skipped"; exit 0; fi
rm -rf "$work/s3" "$work/cache" "$work/copy-"*
mkdir -p "$work/s3/bench"
cp -r "$work/sources-$n" "$work/s3/bench/in"
port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$s3s" --host 127.0.0.1 --port "$port" --access-key bench --secret-key bench-secret "$work/s3" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
sleep 1
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 \
  AWS_ENDPOINT=http://127.0.0.1:$port AWS_ALLOW_HTTP=true COVIDX_CACHE=$(realpath "$work")/cache
log=$("$bin" build "$work/bench.toml" --sources s3://bench/in --out s3://bench/out)
echo "$log" | grep -E '^(sources|published) '
c1=$(secs cp -r "$work/sources-$n" "$work/copy-sources")
c2=$(secs cp -r "$work/one" "$work/copy-build")
printf 'local disk, cp -r: sources %s MB in %.2f s (%.0f MB/s), build %s MB in %.2f s (%.0f MB/s)\n' \
  "$(du -sm "$work/sources-$n" | cut -f1)" "$c1" "$(echo "$(du -sm "$work/sources-$n" | cut -f1) / $c1" | bc -l)" \
  "$(du -sm "$work/one" | cut -f1)" "$c2" "$(echo "$(du -sm "$work/one" | cut -f1) / $c2" | bc -l)"
if diff -r -x build.json "$work/one" "$work/s3/bench/out" >/dev/null; then
  echo "published build byte-identical to the local one (build.json aside)"
else
  echo "published build DIFFERS from the local one:"; diff -rq -x build.json "$work/one" "$work/s3/bench/out" | head
fi
