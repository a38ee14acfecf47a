#!/usr/bin/env bash
# One command for the trainer: installs libtorch (scripts/setup-libtorch.sh) and builds the
# release binary with `--features train`; the binary finds libtorch through its rpath, so no
# LD_LIBRARY_PATH is needed. Prints the binary's path.
#   bash scripts/setup-train.sh && target/release/covidx train BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
LIBTORCH=$(bash scripts/setup-libtorch.sh)
export LIBTORCH
cargo build --release --locked --features train --bin covidx >&2
echo "${CARGO_TARGET_DIR:-target}/release/covidx"
