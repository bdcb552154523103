#!/bin/bash
# Job script written by relman farm submit for site local-slurm-apptainer (Slurm, apptainer).
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
# The job's environment reaches the container as APPTAINERENV_* (kept by --containall; values are
# taken verbatim, unlike --env's comma-separated list)
export APPTAINERENV_RELMAN_TASK_ID="$task"
export APPTAINERENV_FARM_SITE=local-slurm-apptainer
export APPTAINERENV_RELMAN_CALIBDB_CREDENTIALS=/run/relman/calibdb-credentials
export APPTAINERENV_RELMAN_CALIBDB_HOST=127.0.0.1:3306
export APPTAINERENV_RELMAN_IMAGE=127.0.0.1:5000/fermi-lat/evtselect@sha256:abababababababababababababababababababababababababababababababab
# Apptainer runs inside its tool image here (it cannot be installed on the node): root in that
# container opens /dev/fuse, then drops to the job's user; the paths keep their names inside.
APPTAINER=(docker run --rm -i --network host --security-opt seccomp=unconfined
    --security-opt systempaths=unconfined --device /dev/fuse
    -e RELMAN_UID="$(id -u)" -e RELMAN_GID="$(id -g)" -e APPTAINER_CACHEDIR=/tmp -e APPTAINERENV_RELMAN_TASK_ID
    -e APPTAINERENV_FARM_SITE
    -e APPTAINERENV_RELMAN_CALIBDB_CREDENTIALS
    -e APPTAINERENV_RELMAN_CALIBDB_HOST
    -e APPTAINERENV_RELMAN_IMAGE
    -v /var/lib/relman-farm/scratch:/var/lib/relman-farm/scratch
    -v /var/lib/relman-farm/calibdb-credentials:/var/lib/relman-farm/calibdb-credentials:ro
    -v /var/lib/relman-farm/sif-cache:/var/lib/relman-farm/sif-cache -v /farm/work/relman-20261201T000000-000000:/farm/work/relman-20261201T000000-000000 -w "$taskdir"
    --user 0 relman/apptainer:sid
    sh -c 'chmod 666 /dev/fuse && { getent passwd "$RELMAN_UID" >/dev/null || echo "farm:x:$RELMAN_UID:$RELMAN_GID:farm:/nonexistent:/bin/sh" >>/etc/passwd; } && { getent group "$RELMAN_GID" >/dev/null || echo "farm:x:$RELMAN_GID:" >>/etc/group; } && exec setpriv --reuid="$RELMAN_UID" --regid="$RELMAN_GID" --clear-groups -- "$@"' sh apptainer)
# A cancelled job stops its container: the container is not the scheduler's child, so the signal the
# scheduler sends first (TERM) removes it while the job waits on it. The signal can come while
# `docker run` is still creating it: stop the client, then remove the container until none is left.
child=""
stop_container() {
    trap '' TERM
    [ -n "$child" ] && kill "$child" 2>/dev/null
    for _ in $(seq 1 40); do
        docker rm -f "$name" "$name-pull" >/dev/null 2>&1
        { [ -n "$child" ] && kill -0 "$child" 2>/dev/null; } || docker container inspect "$name" "$name-pull" >/dev/null 2>&1 || break
        sleep 0.1
    done
    exit 143
}
trap stop_container TERM
run_apptainer() { local cname=$1; shift; "${APPTAINER[@]:0:3}" --name "$cname" "${APPTAINER[@]:3}" "$@" & child=$!; wait "$child"; }
# The SIF is pulled once per node into the site's cache (named by its digest); the lock makes the
# node's other tasks wait for the first one's pull instead of pulling it again.
sif=/var/lib/relman-farm/sif-cache/sha256-cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd.sif
mkdir -p /var/lib/relman-farm/sif-cache
(
    flock 9
    if [ ! -s "$sif" ]; then
        run_apptainer "$name-pull" pull --no-https "$sif.part-$task" oras://127.0.0.1:5000/fermi-lat/evtselect@sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd \
            && mv -f "$sif.part-$task" "$sif"
    fi
) 9>"$sif.lock"
[ -s "$sif" ] || { echo "relman: the SIF oras://127.0.0.1:5000/fermi-lat/evtselect@sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd could not be pulled into $sif" >&2; exit 1; }
run_apptainer "$name" exec --containall --pwd "$taskdir" -B /farm/work/relman-20261201T000000-000000 \
    -B /var/lib/relman-farm/scratch:/scratch \
    -B /var/lib/relman-farm/calibdb-credentials:/run/relman/calibdb-credentials:ro \
    "$sif" \
    /usr/local/bin/relman-entrypoint evtselect infile=/scratch/ft1.fits.gz outfile=selected.fits emin=20000
