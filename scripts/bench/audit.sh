#!/usr/bin/env bash
# Speed of the audit's image level (release build), measured in one run on this machine:
#  1. perceptual hashing of the 400-image bench corpus against Python imagehash (PIL; decode +
#     dhash + phash per image, one process per core): (a) like for like, the example
#     hash_corpus (covidx's decoder + dHash + pHash, rayon); (b) the whole image-level
#     `covidx audit` of a metadata-only build (every image decoded, both file and pixel sha256,
#     hashes, thumbnail, histogram, duplicates, the shortcut probe; cache removed each round)
#  2. the added cost of recording image facts in the image stage: a full bench build with
#     facts against the same build with COVIDX_NO_FACTS=1 (facts not computed)
#  3. the metadata-level audit of a 30,000-record synthetic build (generic CSV source, 12,000
#     patients, four findings and two views, seeded patient-level split)
# usage: scripts/bench/audit.sh [ROUNDS]   (needs ../shared; installs pillow+imagehash in .venv-bench)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
work=${BENCH_DIR:-/tmp/covidx-bench}; mkdir -p "$work"
# The binary with the examples: one feature set (dev-dependencies included), so switching
# between these scripts never rebuilds polars.
cargo build --release --quiet --bin covidx --examples
bin=${CARGO_TARGET_DIR:-target}/release/covidx
hasher=${CARGO_TARGET_DIR:-target}/release/examples/hash_corpus
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
  hashing=$(t "$hasher" "$work/corpus-400/files.txt")
  ours=$(t "$bin" -q audit "$work/out-audit" --format json)
  (cd "$work/corpus-400" && peer=$(t "$py" "$work/imagehash_peer.py" files.txt) && echo "$peer" > "$work/peer.t")
  peer=$(cat "$work/peer.t")
  echo "round $r: imagehash ($n PNG/JPEG: decode + dhash + phash) ${peer}s; covidx decode + dHash + pHash ${hashing}s: $(echo "$peer / $hashing" | bc -l | cut -c1-5)x; whole covidx audit (decode + all facts + duplicates + probe) ${ours}s: $(echo "$peer / $ours" | bc -l | cut -c1-5)x"
done
for r in $(seq "$rounds"); do
  rm -rf "$work/out-f" "$work/out-nf"
  with=$(t "$bin" -q build pipelines/bench.toml --sources "$work/corpus-400" --out "$work/out-f")
  without=$(COVIDX_NO_FACTS=1 t "$bin" -q build pipelines/bench.toml --sources "$work/corpus-400" --out "$work/out-nf")
  echo "round $r: image stage with facts ${with}s, without ${without}s: +$(echo "($with / $without - 1) * 100" | bc -l | cut -c1-5)%"
done

# 3. metadata-level audit of a 30,000-record synthetic build
syn="$work/synthetic-30k"
if [ ! -f "$syn/sources/syn/meta.csv" ]; then
  python3 - "$syn" <<'PY'
import os, random, sys
root = sys.argv[1]; d = os.path.join(root, "sources", "syn"); os.makedirs(os.path.join(d, "images"), exist_ok=True)
rng = random.Random(7)
findings = ["No Finding", "Pneumonia", "COVID-19", "Pneumonia|Effusion", "Cardiomegaly"]
with open(os.path.join(d, "meta.csv"), "w") as f:
    f.write("image,patient,finding,view\n")
    for i in range(30000):
        name = f"img{i:05d}.png"
        open(os.path.join(d, "images", name), "wb").close()
        f.write(f"{name},p{rng.randrange(12000):05d},{rng.choice(findings)},{rng.choice(['PA', 'AP'])}\n")
with open(os.path.join(root, "pipeline.toml"), "w") as f:
    f.write("""name = "synthetic-30k"
seed = 1
classes = ["normal", "pneumonia", "COVID-19"]
[labels]
parse = "whole"
[labels.map]
"No Finding" = "normal"
Pneumonia = "pneumonia"
"COVID-19" = "COVID-19"
[[sources]]
name = "syn"
kind = "csv"
dir = "syn"
metadata = "meta.csv"
image_dir = "images"
finding_separator = "|"
columns = { patient = "patient", image = "image", finding = "finding", view = "view" }
[split]
method = "seeded"
test_fraction = 0.1
""")
PY
fi
"$bin" -q build "$syn/pipeline.toml" --sources "$syn/sources" --out "$syn/out" --metadata-only
for r in $(seq "$rounds"); do
  meta=$(t "$bin" -q audit "$syn/out" --metadata-only --format md,json)
  echo "round $r: metadata-level audit of 30,000 records ${meta}s"
done
