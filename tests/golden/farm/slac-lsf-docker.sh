#!/bin/bash
# Job script written by relman farm submit for site slac-lsf-docker (LSF, docker).
# Submitted with `bsub < job.sh` (bsub reads the #BSUB lines from its standard input).
#BSUB -J "relman-20261201T000000-000000[1-4]"
#BSUB -cwd /farm/work/relman-20261201T000000-000000
#BSUB -o /farm/work/relman-20261201T000000-000000/task-%I.out
#BSUB -q '<placeholder: SLAC LSF queue, e.g. the long queue of the glast group>'
#BSUB -W 480
#BSUB -M 4096
#BSUB -n 1
set -uo pipefail
# the array task (1..4) becomes RELMAN_TASK_ID inside the container
task=${LSB_JOBINDEX}
name="relman-${LSB_JOBID}-${task}"
# when the task began and ended on the node, to the nanosecond (the accounting has whole seconds):
# task-N.times, read by `relman farm collect` and `scale-test`
times=/farm/work/relman-20261201T000000-000000/task-"$task".times
echo "start $(date +%s.%N) $(hostname)" > "$times"
trap 'rc=$?; echo "end $(date +%s.%N) $rc" >> "$times"' EXIT
# the calibration database's credentials: bound read-only, read by the program, never printed here
[ -r '<placeholder: path of the read-only credentials file on the nodes>' ] || { echo "relman: cannot read the calibration credentials file <placeholder: path of the read-only credentials file on the nodes>" >&2; exit 1; }
# each task works in its own folder of the job's folder (its outputs are there, owned by the job's user)
taskdir=/farm/work/relman-20261201T000000-000000/task-"$task"
mkdir -p "$taskdir" && cd "$taskdir" || exit 1
# A cancelled job stops its container: the container is not the scheduler's child, so the signal the
# scheduler sends first (INT TERM) removes it while the job waits on it. The signal can come while
# `docker run` is still creating it: stop the client, then remove the container until none is left.
child=""
stop_container() {
    trap '' INT TERM
    [ -n "$child" ] && kill "$child" 2>/dev/null
    for _ in $(seq 1 40); do
        docker rm -f "$name" >/dev/null 2>&1
        { [ -n "$child" ] && kill -0 "$child" 2>/dev/null; } || docker container inspect "$name" >/dev/null 2>&1 || break
        sleep 0.1
    done
    exit 143
}
trap stop_container INT TERM
docker run --rm --init --name "$name" --user "$(id -u):$(id -g)" \
    --memory 4096m --cpus 1 \
    -e RELMAN_TASK_ID="$task" \
    -e GLAST_EXT=/sdf/software/ext \
    -e RELMAN_CALIBDB_CREDENTIALS=/run/relman/calibdb-credentials \
    -e RELMAN_CALIBDB_HOST='<placeholder: calibration MySQL host>' \
    -e RELMAN_IMAGE=127.0.0.1:5000/fermi-lat/evtselect@sha256:abababababababababababababababababababababababababababababababab \
    -v '<placeholder: SAS software area on NFS/AFS>':/sdf/software:ro \
    -v '<placeholder: calibration area on NFS>':/calib:ro \
    -v '<placeholder: xrootd scratch mount>':/xrootd \
    -v /scratch:/scratch \
    -v '<placeholder: path of the read-only credentials file on the nodes>':/run/relman/calibdb-credentials:ro \
    -v /farm/work/relman-20261201T000000-000000:/farm/work/relman-20261201T000000-000000 -w "$taskdir" \
    127.0.0.1:5000/fermi-lat/evtselect@sha256:abababababababababababababababababababababababababababababababab \
    evtselect infile=/scratch/ft1.fits.gz outfile=selected.fits emin=20000 &
child=$!
wait "$child"
