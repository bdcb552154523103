#!/bin/sh
# relman-entrypoint: the one command line of every relman image, rendered from the spec of l1-makeft1.
# It works as any UID, on a read-only root and with no writable HOME (how Apptainer runs images on the
# farms): the only thing it writes is the caller's own folder under $TMPDIR or /tmp, when one is writable.
set -eu

PACKAGE='l1-makeft1'
PREFIX='/opt/fermitools'

usage() {
    cat <<EOF
usage: IMAGE PROGRAM [ARGS...]   run PROGRAM of $PACKAGE with its environment set up
       IMAGE --version           package, ref, commit, variant and build date of this image
       IMAGE --list              the programs this image offers
       IMAGE --env               the environment a program runs with
       IMAGE --help              this text
EOF
}

# A writable folder of the caller: RELMAN_USER_DIR if set, else the first writable of $TMPDIR, /tmp, /dev/shm.
user_dir() {
    if [ -n "${RELMAN_USER_DIR:-}" ]; then
        mkdir -p "$RELMAN_USER_DIR" 2>/dev/null || true
        echo "$RELMAN_USER_DIR"
        return
    fi
    for base in "${TMPDIR:-}" /tmp /dev/shm; do
        [ -n "$base" ] && [ -d "$base" ] && [ -w "$base" ] || continue
        d="$base/relman-$(id -u)/$PACKAGE"
        if mkdir -p "$d" 2>/dev/null && chmod 700 "$base/relman-$(id -u)" 2>/dev/null; then
            echo "$d"
            return
        fi
    done
    echo "relman-entrypoint: warning: no writable folder (TMPDIR, /tmp, /dev/shm); programs that keep per-user files will warn" >&2
    echo "/nonexistent"
}

setup_environment() {
    RELMAN_USER_DIR=$(user_dir)
    export RELMAN_USER_DIR
    export PFILES="${RELMAN_USER_DIR}/pfiles;/opt/fermitools/syspfiles"
    # PFILES names a per-user folder: make it
    mkdir -p "${RELMAN_USER_DIR}/pfiles" 2>/dev/null || true
}

programs() {
    for p in $(ls "$PREFIX/bin" 2>/dev/null); do
        if command -v "$p" >/dev/null 2>&1; then
            printf '%-24s %s\n' "$p" "$(command -v "$p")"
        else
            printf '%-24s %s\n' "$p" "(missing from this image)"
        fi
    done
}

case "${1:---help}" in
    --help|-h)
        usage
        ;;
    --version)
        echo "package:    $PACKAGE"
        echo "ref:        ${RELMAN_IMAGE_REF:-unknown}"
        echo "version:    ${RELMAN_IMAGE_VERSION:-unknown}"
        echo "commit:     ${RELMAN_IMAGE_REVISION:-unknown}"
        echo "variant:    ${RELMAN_IMAGE_VARIANT:-unknown}"
        echo "platform:   ${RELMAN_IMAGE_PLATFORM:-unknown}"
        echo "build date: ${RELMAN_IMAGE_CREATED:-unknown}"
        ;;
    --list)
        programs
        ;;
    --env)
        setup_environment
        echo "FERMI_INST_DIR=${FERMI_INST_DIR:-}"
        echo "CLING_CPPSYSINCL=${CLING_CPPSYSINCL:-}"
        echo "PFILES=${PFILES:-}"
        echo "PATH=$PATH"
        ;;
    -*)
        echo "relman-entrypoint: unknown option $1" >&2
        usage >&2
        exit 2
        ;;
    *)
        if ! command -v "$1" >/dev/null 2>&1; then
            echo "relman-entrypoint: $1: no such program in this image; --list shows the programs of $PACKAGE" >&2
            exit 127
        fi
        setup_environment
        exec "$@"
        ;;
esac
