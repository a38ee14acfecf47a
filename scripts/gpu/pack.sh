#!/usr/bin/env bash
# Packs the release trainer binary for a GPU machine: builds it if needed (scripts/setup-train.sh),
# strips it and compresses it to gpu-bin/covidx.xz (~15 MB; the device tool carries at most
# 64 MiB, the stripped binary is ~75 MB). scripts/gpu/bench.sh unpacks it there with Python's
# lzma, so the GPU machine needs neither Rust nor xz.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x target/release/covidx ] || bash scripts/setup-train.sh >&2
mkdir -p gpu-bin
strip -o gpu-bin/covidx target/release/covidx
xz -T0 -6 -f gpu-bin/covidx
ls -la gpu-bin/covidx.xz >&2
echo gpu-bin/covidx.xz
