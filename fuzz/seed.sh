#!/usr/bin/env bash
# Seeds the fuzz corpora from the demo's files: its metadata CSVs, .npy pools and images (PNG
# 8/16-bit, JPEG, DICOM in three encodings), the shards of a demo build, and the shipped
# pipelines. Usage: fuzz/seed.sh [COVIDX_BINARY]  (default: a release build of this repo).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-${CARGO_TARGET_DIR:-target}/release/covidx}
[ -x "$bin" ] || cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" -q demo --dir "$work/demo" >/dev/null
c=fuzz/corpus
mkdir -p "$c"/{csv_table,npy,decode_image,shard,pipeline}
# csv_table and decode_image take a mode byte first (see their targets).
i=0
while IFS= read -r -d '' f; do
  i=$((i + 1))
  { printf '\x00'; cat "$f"; } > "$c/csv_table/demo-$i"
  { printf '\x01'; cat "$f"; } > "$c/csv_table/demo-$i-latin1"
done < <(find "$work/demo/sources" -name '*.csv' -print0)
find "$work/demo/sources" -name '*.npy' -exec cp {} "$c/npy/" \;
i=0
while IFS= read -r -d '' f; do
  i=$((i + 1))
  case "$f" in
    *.png) m='\x00' ;; *.jpg|*.jpeg) m='\x01' ;; *.dcm) m='\x06' ;; *) m='\x03' ;;
  esac
  { printf "$m"; cat "$f"; } > "$c/decode_image/demo-$i"
done < <(find "$work/demo/sources" \( -name '*.png' -o -name '*.jpg' -o -name '*.jpeg' -o -name '*.dcm' \) -size -200k -print0)
find "$work/demo/out/shards" -name '*.safetensors' -exec sh -c 'cp "$1" "fuzz/corpus/shard/$(basename "$(dirname "$1")")-$(basename "$1")"' _ {} \;
cp pipelines/*.toml "$c/pipeline/"
for t in csv_table npy decode_image shard pipeline; do
  echo "$t: $(ls "$c/$t" | wc -l) seeds"
done
