#!/bin/sh
# Stage makeFT1 into PREFIX with what it needs at run time, and nothing else (`cmake --install` would
# install every target of the packages, tests included):
#   PREFIX/bin/makeFT1, PREFIX/lib (the Fermi libraries it needs, from DT_NEEDED, found in _build)
#   PREFIX/root/ROOT/{lib,etc,include}, PREFIX/root/root.libs: the parts of the ROOT wheel used at run
#     time: the libraries makeFT1 and the interpreter (libCling) need, the C++ modules (.pcm) it can
#     reach (l1-root-modules.py: the others leave the module map too, else ROOT would build them at run
#     time into its lib folder, not possible on a read-only image) with a module index (modules.idx)
#     written by ROOT for them here, the .rootmap files, etc/ and include/ (read by the interpreter),
#     the wheel's own libraries
#   PREFIX/root/cxx: the C++ standard library headers of the build compiler, which the interpreter reads
#     (CLING_CPPSYSINCL names them): no libstdc++-dev package (and its sanitizer libraries) at run time
#   PREFIX/syspfiles/makeFT1.par, PREFIX/refdata/fermi/{fitsGen,caldb,evtClassDefs}
# The layout below PREFIX/root is the wheel's: ROOT finds etc/ and include/ from libCore's folder, and
# its libraries find root.libs through their $ORIGIN/../../root.libs RPATH.
# Run from the umbrella's root after the last layer.
set -eu
files=$(cd "$(dirname "$0")" && pwd)
site=$(echo "$PWD"/_root/lib/python3*/site-packages)
[ -d "$site/ROOT/lib" ] || { echo "l1-stage.sh: no ROOT in $site (the +root layer installs it)" >&2; exit 1; }
rootlib=$site/ROOT/lib
mkdir -p "$PREFIX/bin" "$PREFIX/lib" "$PREFIX/syspfiles" "$PREFIX/refdata/fermi" "$PREFIX/root/ROOT/lib"
f=$(find _build -type f -name makeFT1 -perm -u+x | head -n 1)
[ -n "$f" ] || { echo "l1-stage.sh: makeFT1 was not built" >&2; exit 1; }
cp -p "$f" "$PREFIX/bin/makeFT1"
queue="$PREFIX/bin/makeFT1 $rootlib/libCling.so"
cp -p "$rootlib/libCling.so" "$PREFIX/root/ROOT/lib/"
seen=" "
while [ -n "${queue# }" ]; do
    set -- $queue
    elf=$1; shift; queue="$*"
    for lib in $(readelf -d "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        case "$seen" in *" $lib "*) continue ;; esac
        seen="$seen$lib "
        if [ -e "$rootlib/$lib" ]; then
            cp -pL "$rootlib/$lib" "$PREFIX/root/ROOT/lib/$lib"
            queue="$queue $rootlib/$lib"
            continue
        fi
        f=$(find _build -name "$lib" \( -type f -o -type l \) | head -n 1)
        [ -n "$f" ] || continue      # a system library (the runtime OS packages) or one of root.libs
        # a library the prefix has already is kept: in the image, the ScienceTools one this build starts
        # from (built from the same objects, its debug info split there); a host build's prefix starts empty
        [ -e "$PREFIX/lib/$lib" ] || cp -L "$f" "$PREFIX/lib/$lib"
        queue="$queue $PREFIX/lib/$lib"
    done
done
cp -p "$rootlib"/*.pcm "$rootlib"/*.rootmap "$rootlib/modules.idx" "$PREFIX/root/ROOT/lib/"
rm -rf "$PREFIX/root/ROOT/etc" "$PREFIX/root/ROOT/include" "$PREFIX/root/root.libs"
cp -R "$site/ROOT/etc" "$site/ROOT/include" "$PREFIX/root/ROOT/"
cp -R "$site/root.libs" "$PREFIX/root/root.libs"
# The C++ headers the interpreter reads: the build compiler's (the run-time libstdc++ is the same version)
cxx=$PREFIX/root/cxx
gccv=$(c++ -dumpversion | cut -d. -f1)
arch=$(c++ -print-multiarch)
rm -rf "$cxx"
mkdir -p "$cxx/c++" "$cxx/$arch/c++"
cp -RL "/usr/include/c++/$gccv" "$cxx/c++/"
cp -RL "/usr/include/$arch/c++/$gccv" "$cxx/$arch/c++/"
# Only the C++ modules makeFT1 can reach; then ROOT writes the module index of those into its lib
# folder (writable here, not at run time): a small program starts the interpreter once.
lib=$PREFIX/root/ROOT/lib
python3 "$files/l1-root-modules.py" "$lib" "$PREFIX/root/ROOT/include/ROOT.modulemap"
tmp=$(mktemp -d)
printf '#include "TInterpreter.h"\nint main() { return gInterpreter->Declare("int relman_l1_index;") ? 0 : 1; }\n' \
    > "$tmp/index.cxx"
c++ -std=c++17 -o "$tmp/index" "$tmp/index.cxx" -I"$PREFIX/root/ROOT/include" -L"$lib" -lCore \
    -Wl,-rpath,"$lib" -Wl,-rpath-link,"$PREFIX/root/root.libs"
ls "$lib" > "$tmp/before"
HOME=$tmp "$tmp/index" > "$tmp/log" 2>&1 || { cat "$tmp/log" >&2; echo "l1-stage.sh: ROOT's interpreter did not start" >&2; exit 1; }
ls "$lib" > "$tmp/after"
# clang's module cache also notes a modules.timestamp: not shipped (the wheel has none)
rm -f "$lib/modules.timestamp"
new=$(comm -13 "$tmp/before" "$tmp/after" | grep -vx modules.timestamp | tr '\n' ' ')
if [ "$new" != "modules.idx " ]; then
    cat "$tmp/log" >&2
    echo "l1-stage.sh: ROOT wrote '$new' into $lib (want modules.idx only: a kept module needs a dropped one)" >&2
    exit 1
fi
rm -rf "$tmp"
# The wheel's own libraries (root.libs) keep a .gnu_debuglink to debug files that are not shipped:
# without debug info of their own they are prebuilt, not split, files (the debug image's check
# looks for the debug file of every ELF file that names one).
for f in "$PREFIX"/root/root.libs/*; do
    if readelf -S "$f" | grep -q '\.gnu_debuglink' && ! readelf -S "$f" | grep -q '\.debug_info'; then
        objcopy --remove-section=.gnu_debuglink "$f"
    fi
done
cp -p src/fitsGenApps/pfiles/makeFT1.par "$PREFIX/syspfiles/"
rm -rf "$PREFIX/refdata/fermi/caldb" "$PREFIX/refdata/fermi/fitsGen" "$PREFIX/refdata/fermi/evtClassDefs"
cp -R src/irfs/caldb/CALDB "$PREFIX/refdata/fermi/caldb"
mkdir -p "$PREFIX/refdata/fermi/fitsGen" "$PREFIX/refdata/fermi/evtClassDefs"
cp -p src/fitsGen/data/*.tpl "$PREFIX/refdata/fermi/fitsGen/"
cp -R src/evtClassDefs/data src/evtClassDefs/xml "$PREFIX/refdata/fermi/evtClassDefs/"
chmod -R a+rX "$PREFIX"
echo "l1-stage.sh: makeFT1, $(ls "$PREFIX/lib" | wc -l) Fermi libraries, $(ls "$lib" | grep -c '\.so') ROOT libraries, $(ls "$lib" | grep -c '\.pcm$') ROOT modules in $PREFIX"
