#!/usr/bin/env bash
# Submits a partitioned covidx build to Slurm: an array of N parts, then the merge, which
# runs only when every part succeeded.
#
#   scripts/cluster/slurm-submit.sh N PIPELINE SOURCES WORK [SBATCH OPTION...]
#
# The options (e.g. --partition=cpu --account=me) go to both jobs. Prints both job ids.
set -euo pipefail
usage="usage: slurm-submit.sh N PIPELINE SOURCES WORK [SBATCH OPTION...]"
n=${1:?$usage}
pipeline=$(realpath "${2:?$usage}")
sources=$(realpath "${3:?$usage}")
work=${4:?$usage}
shift 4
mkdir -p "$work"
work=$(realpath "$work")
here=$(cd "$(dirname "$0")" && pwd)
array=$(sbatch --parsable --array="1-$n" "$@" "$here/slurm-part.sh" "$pipeline" "$sources" "$work")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterok:$array" "$@" "$here/slurm-merge.sh" "$work")
echo "parts: job $array (array 1-$n); merge: job ${merge%%;*} (after every part succeeds)"
