#!/bin/bash
# Job script written by relman farm submit for site s3df-slurm-apptainer (Slurm, apptainer).
#SBATCH --job-name=relman-20261201T000000-000000
#SBATCH --chdir=/farm/work/relman-20261201T000000-000000
#SBATCH --output=/farm/work/relman-20261201T000000-000000/task-%a.out
#SBATCH --array=1-4
#SBATCH --partition='<placeholder: S3DF partition, e.g. the Fermi partition>'
#SBATCH --time=08:00:00
#SBATCH --mem=4096M
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
[ -r '<placeholder: path of the read-only credentials file on the nodes>' ] || { echo "relman: cannot read the calibration credentials file <placeholder: path of the read-only credentials file on the nodes>" >&2; exit 1; }
# each task works in its own folder of the job's folder (its outputs are there, owned by the job's user)
taskdir=/farm/work/relman-20261201T000000-000000/task-"$task"
mkdir -p "$taskdir" && cd "$taskdir" || exit 1
# The job's environment reaches the container as APPTAINERENV_* (kept by --containall; values are
# taken verbatim, unlike --env's comma-separated list)
export APPTAINERENV_RELMAN_TASK_ID="$task"
export APPTAINERENV_GLAST_EXT=/sdf/software/ext
export APPTAINERENV_RELMAN_CALIBDB_CREDENTIALS=/run/relman/calibdb-credentials
export APPTAINERENV_RELMAN_CALIBDB_HOST='<placeholder: calibration MySQL host>'
export APPTAINERENV_RELMAN_IMAGE=127.0.0.1:5000/fermi-lat/evtselect@sha256:abababababababababababababababababababababababababababababababab
run_apptainer() { shift; apptainer "$@"; }
# The SIF is pulled once per node into the site's cache (named by its digest); the lock makes the
# node's other tasks wait for the first one's pull instead of pulling it again.
sif='<placeholder: node-local or shared folder for pulled SIFs>/sha256-cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd.sif'
mkdir -p '<placeholder: node-local or shared folder for pulled SIFs>'
(
    flock 9
    if [ ! -s "$sif" ]; then
        run_apptainer "$name-pull" pull "$sif.part-$task" oras://127.0.0.1:5000/fermi-lat/evtselect@sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd \
            && mv -f "$sif.part-$task" "$sif"
    fi
) 9>"$sif.lock"
[ -s "$sif" ] || { echo "relman: the SIF oras://127.0.0.1:5000/fermi-lat/evtselect@sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd could not be pulled into $sif" >&2; exit 1; }
run_apptainer "$name" exec --containall --pwd "$taskdir" -B /farm/work/relman-20261201T000000-000000 \
    -B '<placeholder: SAS software area on S3DF>':/sdf/software:ro \
    -B '<placeholder: calibration area on S3DF>':/calib:ro \
    -B '<placeholder: xrootd scratch mount>':/xrootd \
    -B /lscratch:/scratch \
    -B '<placeholder: path of the read-only credentials file on the nodes>':/run/relman/calibdb-credentials:ro \
    "$sif" \
    /usr/local/bin/relman-entrypoint evtselect infile=/scratch/ft1.fits.gz outfile=selected.fits emin=20000
