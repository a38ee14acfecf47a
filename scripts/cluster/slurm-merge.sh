#!/usr/bin/env bash
# The merge step of a partitioned covidx build: joins every WORK/parts/part-K into OUT
# (default WORK/build), byte for byte the build one machine would write. Pipeline and sources
# are those the parts record. Submit it after the array (slurm-submit.sh does):
#
#   sbatch --dependency=afterok:ARRAY_JOB_ID scripts/cluster/slurm-merge.sh WORK [OUT]
#
# COVIDX names the binary (default: covidx on PATH).
#SBATCH --job-name=covidx-merge
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=02:00:00
#SBATCH --output=covidx-merge-%j.out
set -euo pipefail
work=${1:?usage: slurm-merge.sh WORK [OUT]}
out=${2:-$work/build}
shopt -s nullglob
parts=("$work"/parts/part-*)
if [ ${#parts[@]} -eq 0 ]; then
  echo "no parts under $work/parts (run slurm-part.sh first)" >&2
  exit 2
fi
exec "${COVIDX:-covidx}" merge "$out" "${parts[@]}"
