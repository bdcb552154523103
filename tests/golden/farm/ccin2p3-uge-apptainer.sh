#!/bin/bash
# Job script written by relman farm submit for site ccin2p3-uge-apptainer (Grid Engine / UGE, apptainer).
#$ -N relman-20261201T000000-000000
#$ -S /bin/bash
#$ -wd /farm/work/relman-20261201T000000-000000
#$ -o /farm/work/relman-20261201T000000-000000/task-$TASK_ID.out
#$ -j y
#$ -t 1-4
#$ -notify
#$ -q '<placeholder: CC-IN2P3 queue, e.g. long>'
#$ -l h_rt=08:00:00,mem_free=3072M
set -uo pipefail
# the array task (1..4) becomes RELMAN_TASK_ID inside the container
task=${SGE_TASK_ID}
name="relman-${JOB_ID}-${task}"
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
# The job's environment reaches the container as APPTAINERENV_* (kept by --containall; values are
# taken verbatim, unlike --env's comma-separated list)
export APPTAINERENV_RELMAN_TASK_ID="$task"
export APPTAINERENV_GLAST_EXT=/sw/ext
export APPTAINERENV_RELMAN_CALIBDB_CREDENTIALS=/run/relman/calibdb-credentials
export APPTAINERENV_RELMAN_CALIBDB_HOST='<placeholder: calibration MySQL host at CC-IN2P3>'
export APPTAINERENV_RELMAN_IMAGE=127.0.0.1:5000/fermi-lat/evtselect@sha256:abababababababababababababababababababababababababababababababab
run_apptainer() { shift; apptainer "$@"; }
# The SIF is pulled once per node into the site's cache (named by its digest); the lock makes the
# node's other tasks wait for the first one's pull instead of pulling it again.
sif='<placeholder: node-local folder for pulled SIFs, e.g. under $TMPDIR'"'"'s parent>/sha256-cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd.sif'
mkdir -p '<placeholder: node-local folder for pulled SIFs, e.g. under $TMPDIR'"'"'s parent>'
(
    flock 9
    if [ ! -s "$sif" ]; then
        run_apptainer "$name-pull" pull "$sif.part-$task" oras://127.0.0.1:5000/fermi-lat/evtselect@sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd \
            && mv -f "$sif.part-$task" "$sif"
    fi
) 9>"$sif.lock"
[ -s "$sif" ] || { echo "relman: the SIF oras://127.0.0.1:5000/fermi-lat/evtselect@sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd could not be pulled into $sif" >&2; exit 1; }
run_apptainer "$name" exec --containall --pwd "$taskdir" -B /farm/work/relman-20261201T000000-000000 \
    -B '<placeholder: Fermi software area (sps or cvmfs)>':/sw:ro \
    -B '<placeholder: calibration area>':/calib:ro \
    -B '<placeholder: xrootd scratch mount>':/xrootd \
    -B /scratch:/scratch \
    -B '<placeholder: path of the read-only credentials file on the nodes>':/run/relman/calibdb-credentials:ro \
    "$sif" \
    /usr/local/bin/relman-entrypoint evtselect infile=/scratch/ft1.fits.gz outfile=selected.fits emin=20000
