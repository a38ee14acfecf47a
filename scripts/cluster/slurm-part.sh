#!/usr/bin/env bash
# One part of a partitioned covidx build, as one task of a Slurm job array.
#
#   sbatch --array=1-8 scripts/cluster/slurm-part.sh PIPELINE SOURCES WORK
#
# Array task K of N writes part K/N (the shards it owns and part.json) to WORK/parts/part-K;
# when every task has succeeded, scripts/cluster/slurm-merge.sh WORK joins them into
# WORK/build. scripts/cluster/slurm-submit.sh submits both, the merge after the array.
# The array must be contiguous without a step (1-N or 0-(N-1); a % throttle is fine).
# COVIDX names the binary (default: covidx on PATH).
#SBATCH --job-name=covidx-part
#SBATCH --cpus-per-task=16
#SBATCH --mem=32G
#SBATCH --time=04:00:00
#SBATCH --output=covidx-part-%A_%a.out
set -euo pipefail
usage="usage: sbatch --array=1-N slurm-part.sh PIPELINE SOURCES WORK"
pipeline=${1:?$usage}
sources=${2:?$usage}
work=${3:?$usage}
id=${SLURM_ARRAY_TASK_ID:?not a Slurm array task ($usage)}
n=${SLURM_ARRAY_TASK_COUNT:?not a Slurm array task ($usage)}
min=${SLURM_ARRAY_TASK_MIN:-1}
k=$((id - min + 1))
if [ "$k" -lt 1 ] || [ "$k" -gt "$n" ]; then
  echo "array task $id is not one of $n contiguous tasks from $min: submit with --array=1-$n" >&2
  exit 2
fi
if [ -n "${SLURM_CPUS_PER_TASK:-}" ] && [ -z "${RAYON_NUM_THREADS:-}" ]; then
  export RAYON_NUM_THREADS=$SLURM_CPUS_PER_TASK
fi
exec "${COVIDX:-covidx}" build "$pipeline" --sources "$sources" \
  --out "$work/parts/part-$k" --part "$k/$n"
