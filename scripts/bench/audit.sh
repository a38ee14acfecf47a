#!/usr/bin/env bash
# Speed of the audit's image level (release build), measured in one run on this machine:
#  1. perceptual hashing of the 400-image bench corpus: `covidx audit` of a metadata-only build
#     (every image decoded, dHash + pHash + pixel sha256 + thumbnail + histogram, the cache
#     removed before each round) against Python imagehash (PIL; dhash + phash per image, one
#     process per core)
#  2. the added cost of recording image facts in the image stage: a full bench build with
#     facts against the same build with COVIDX_NO_FACTS=1 (facts not computed)
# usage: scripts/bench/audit.sh [ROUNDS]   (needs ../shared; installs pillow+imagehash in .venv-bench)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
work=${BENCH_DIR:-/tmp/covidx-bench}; mkdir -p "$work"
cargo build --release --quiet --bin covidx
bin=${CARGO_TARGET_DIR:-target}/release/covidx
[ -f "$work/corpus-400/files.txt" ] || python3 ../shared/bench/make_corpus.py "$work/corpus-400" 400 >/dev/null
if ! .venv-bench/bin/python -c "import imagehash, PIL" 2>/dev/null; then
  python3 -m venv .venv-bench && .venv-bench/bin/pip install -q pillow imagehash
fi
py=$(pwd)/.venv-bench/bin/python
cat > "$work/imagehash_peer.py" <<'PY'
import sys, multiprocessing as mp
from PIL import Image
import imagehash
def one(p):
    im = Image.open(p).convert("L")
    return str(imagehash.dhash(im)), str(imagehash.phash(im))
if __name__ == "__main__":
    files = [l.split()[0] for l in open(sys.argv[1]) if l.strip()]
    files = [f for f in files if not f.endswith(".dcm")]
    with mp.Pool(mp.cpu_count()) as pool:
        out = pool.map(one, files, chunksize=8)
    print(len(out))
PY
"$bin" -q build pipelines/bench.toml --sources "$work/corpus-400" --out "$work/out-audit" --metadata-only
n=$(grep -vc '\.dcm$' "$work/corpus-400/files.txt" || true)
t() { local a b; a=$(date +%s.%N); "$@" >/dev/null; b=$(date +%s.%N); echo "$b - $a" | bc -l; }
for r in $(seq "$rounds"); do
  rm -f "$work/out-audit/audit/cache.parquet"
  ours=$(t "$bin" -q audit "$work/out-audit" --format json)
  (cd "$work/corpus-400" && peer=$(t "$py" "$work/imagehash_peer.py" files.txt) && echo "$peer" > "$work/peer.t")
  peer=$(cat "$work/peer.t")
  echo "round $r: covidx audit (400 images: decode + facts + duplicates + probe) ${ours}s; imagehash ($n PNG/JPEG: decode + dhash + phash) ${peer}s; ratio $(echo "$peer / $ours" | bc -l | cut -c1-5)"
done
for r in $(seq "$rounds"); do
  rm -rf "$work/out-f" "$work/out-nf"
  with=$(t "$bin" -q build pipelines/bench.toml --sources "$work/corpus-400" --out "$work/out-f")
  without=$(COVIDX_NO_FACTS=1 t "$bin" -q build pipelines/bench.toml --sources "$work/corpus-400" --out "$work/out-nf")
  echo "round $r: image stage with facts ${with}s, without ${without}s: +$(echo "($with / $without - 1) * 100" | bc -l | cut -c1-5)%"
done
