# Shared by scripts/farm/gridengine and scripts/farm/slurm (sourced, not run): step timing, package
# installation with debconf answers, and the non-root farm user that jobs run as.
FARM_USER=${RELMAN_FARM_USER:-relfarm}
FARM_STATE=${RELMAN_FARM_DIR:-/var/lib/relman-farm}
changed=0

say() { printf '%s: %s\n' "$FARM_NAME" "$*"; }
need_root() { [ "$(id -u)" = 0 ] || { say "must run as root (installs packages, starts daemons)"; exit 1; }; }

# step NAME CMD...: runs CMD and prints how long it took (set-up time is a measured figure)
step() {
    local name=$1 t0=${EPOCHREALTIME/./}
    shift
    "$@"
    local us=$(( ${EPOCHREALTIME/./} - t0 ))
    printf '%s: step %-16s %d.%02d s\n' "$FARM_NAME" "$name" $((us / 1000000)) $((us % 1000000 / 10000))
}

# apt_packages PKG...: installs the missing ones (debconf answers were set by the caller)
apt_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} = 0 ] && return
    need_root
    say "installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=900 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq "${missing[@]}" >/dev/null
    changed=1
}

# The farm user: non-root (Grid Engine refuses UIDs below 1000 by default), in the docker group so that
# its jobs can run containers (the docker group is root-equivalent: why CC-IN2P3 prefers Apptainer).
farm_user() {
    if ! id -u "$FARM_USER" >/dev/null 2>&1; then
        need_root
        useradd --create-home --shell /bin/bash --key UID_MIN=1000 "$FARM_USER"
        say "made user $FARM_USER (uid $(id -u "$FARM_USER"))"
        changed=1
    fi
    if getent group docker >/dev/null && ! id -nG "$FARM_USER" | tr ' ' '\n' | grep -qx docker; then
        usermod -aG docker "$FARM_USER"
        say "added $FARM_USER to the docker group"
        changed=1
    fi
    # a folder the farm user owns, for job scripts and outputs of the local sites
    mkdir -p "$FARM_STATE/work" "$FARM_STATE/sif-cache" "$FARM_STATE/scratch"
    chown "$FARM_USER:" "$FARM_STATE/work" "$FARM_STATE/sif-cache" "$FARM_STATE/scratch"
    # the local sites' stand-in for the calibration database's credentials file: throw-away, readable
    # by the farm user only (jobs get it bound read-only; its content never reaches a script or log)
    local cred="$FARM_STATE/calibdb-credentials"
    if [ ! -f "$cred" ]; then
        printf '[client]\nuser=calib-reader\npassword=%s\n' "$(head -c 18 /dev/urandom | base64)" >"$cred"
        changed=1
    fi
    chown "root:$FARM_USER" "$cred"; chmod 640 "$cred"
}
