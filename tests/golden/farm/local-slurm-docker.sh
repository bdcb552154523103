#!/bin/bash
# Job script written by relman farm submit for site local-slurm-docker (Slurm, docker).
#SBATCH --job-name=relman-20261201T000000-000000
#SBATCH --chdir=/farm/work/relman-20261201T000000-000000
#SBATCH --output=/farm/work/relman-20261201T000000-000000/task-%a.out
#SBATCH --array=1-4
#SBATCH --partition=relman
#SBATCH --time=00:30:00
#SBATCH --mem=2048M
#SBATCH --cpus-per-task=1
set -uo pipefail
# the array task (1..4) becomes RELMAN_TASK_ID inside the container
task=${SLURM_ARRAY_TASK_ID}
name="relman-${SLURM_ARRAY_JOB_ID}-${task}"
# when the task began and ended on the node, to the nanosecond (the accounting has whole seconds):
# task-N.times, read by `relman farm collect` and `scale-test`
times=/farm/work/relman-20261201T000000-000000/task-"$task".times
echo "start $(date +%s.%N) $(hostname)" > "$times"
trap 'rc=$?; echo "end $(date +%s.%N) $rc" >> "$times"' EXIT
# the calibration database's credentials: bound read-only, read by the program, never printed here
[ -r /var/lib/relman-farm/calibdb-credentials ] || { echo "relman: cannot read the calibration credentials file /var/lib/relman-farm/calibdb-credentials" >&2; exit 1; }
# each task works in its own folder of the job's folder (its outputs are there, owned by the job's user)
taskdir=/farm/work/relman-20261201T000000-000000/task-"$task"
mkdir -p "$taskdir" && cd "$taskdir" || exit 1
# A cancelled job stops its container: the container is not the scheduler's child, so the signal the
# scheduler sends first (TERM) removes it while the job waits on it. The signal can come while
# `docker run` is still creating it: stop the client, then remove the container until none is left.
child=""
stop_container() {
    trap '' TERM
    [ -n "$child" ] && kill "$child" 2>/dev/null
    for _ in $(seq 1 40); do
        docker rm -f "$name" >/dev/null 2>&1
        { [ -n "$child" ] && kill -0 "$child" 2>/dev/null; } || docker container inspect "$name" >/dev/null 2>&1 || break
        sleep 0.1
    done
    exit 143
}
trap stop_container TERM
docker run --rm --init --name "$name" --user "$(id -u):$(id -g)" \
    --memory 2048m --cpus 1 \
    -e RELMAN_TASK_ID="$task" \
    -e FARM_SITE=local-slurm-docker \
    -e RELMAN_CALIBDB_CREDENTIALS=/run/relman/calibdb-credentials \
    -e RELMAN_CALIBDB_HOST=127.0.0.1:3306 \
    -e RELMAN_IMAGE=127.0.0.1:5000/fermi-lat/evtselect@sha256:abababababababababababababababababababababababababababababababab \
    -v /var/lib/relman-farm/scratch:/scratch \
    -v /var/lib/relman-farm/calibdb-credentials:/run/relman/calibdb-credentials:ro \
    -v /farm/work/relman-20261201T000000-000000:/farm/work/relman-20261201T000000-000000 -w "$taskdir" \
    127.0.0.1:5000/fermi-lat/evtselect@sha256:abababababababababababababababababababababababababababababababab \
    evtselect infile=/scratch/ft1.fits.gz outfile=selected.fits emin=20000 &
child=$!
wait "$child"
