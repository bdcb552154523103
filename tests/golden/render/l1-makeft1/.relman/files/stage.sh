#!/bin/sh
# Stage the built subset into PREFIX: `cmake --install` would install every target of the 14
# packages (tests included), so the three tools, the shared libraries they need (read from
# DT_NEEDED, found in _build), their parameter files and the data they read are copied by hand:
#   PREFIX/bin, PREFIX/lib, PREFIX/syspfiles, PREFIX/refdata/fermi/{caldb,evtbin}
# Run from the umbrella's root after the last layer.
set -eu
tools="gtselect gtmktime gtbin"
mkdir -p "$PREFIX/bin" "$PREFIX/lib" "$PREFIX/syspfiles" "$PREFIX/refdata/fermi"
queue=""
for t in $tools; do
    f=$(find _build -type f -name "$t" -perm -u+x | head -n 1)
    [ -n "$f" ] || { echo "stage.sh: $t was not built" >&2; exit 1; }
    cp -p "$f" "$PREFIX/bin/$t"
    queue="$queue $PREFIX/bin/$t"
done
seen=" "
while [ -n "${queue# }" ]; do
    set -- $queue
    elf=$1; shift; queue="$*"
    for lib in $(readelf -d "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        case "$seen" in *" $lib "*) continue ;; esac
        seen="$seen$lib "
        f=$(find _build -name "$lib" \( -type f -o -type l \) | head -n 1)
        [ -n "$f" ] || continue      # a system library: the runtime OS packages bring it
        cp -L "$f" "$PREFIX/lib/$lib"
        queue="$queue $PREFIX/lib/$lib"
    done
done
cp -p src/dataSubselector/pfiles/gtselect.par src/dataSubselector/pfiles/gtmktime.par \
      src/evtbin/pfiles/gtbin.par "$PREFIX/syspfiles/"
rm -rf "$PREFIX/refdata/fermi/caldb" "$PREFIX/refdata/fermi/evtbin"
cp -R src/irfs/caldb/CALDB "$PREFIX/refdata/fermi/caldb"
cp -R src/evtbin/data "$PREFIX/refdata/fermi/evtbin"
chmod -R a+rX "$PREFIX"
echo "stage.sh: $(ls "$PREFIX/bin" | wc -l) programs, $(ls "$PREFIX/lib" | wc -l) libraries in $PREFIX"
