#!/bin/sh
# Build one layer of the Fermitools subset: RELMAN_LAYER (src/NAME) has just been copied in.
# The umbrella's CMakeLists lists all 38 packages and has no switch for a subset, so its package
# list is rewritten to the packages present so far (in packages.txt order), CMake is configured
# again and only this package's targets are built: earlier packages are up to date in _build.
# Run from the umbrella's root; PREFIX, CFLAGS and CXXFLAGS come from relman.
set -eu
files=$(cd "$(dirname "$0")" && pwd)
pkg=${RELMAN_LAYER#src/}
present=""
targets=""
while read -r name rest; do
    case "$name" in ''|\#*) continue ;; esac
    [ -d "src/$name" ] && present="$present $name"
    [ "$name" = "$pkg" ] && targets=$rest
done < "$files/packages.txt"
[ -n "$targets" ] || { echo "build-layer.sh: $pkg is not in $files/packages.txt" >&2; exit 2; }
python3 - "$present" <<'PY'
import re, sys
text = open("CMakeLists.txt").read()
new, n = re.subn(r"list\(\s*APPEND\s+FERMI_COMPONENTS\b[^)]*\)",
                 "list(APPEND FERMI_COMPONENTS" + sys.argv[1] + ")", text, count=1)
if n != 1:
    sys.exit("build-layer.sh: no 'list(APPEND FERMI_COMPONENTS ...)' in CMakeLists.txt")
open("CMakeLists.txt", "w").write(new)
PY
echo "build-layer.sh: $pkg (packages:$present; targets: $targets)"
# Every USE_SYSTEM_* on: otherwise FetchContent downloads f2c, fftw and healpix_cxx (no network).
cmake -S . -B _build -Wno-dev -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS="${CFLAGS:-} -I$files/include" -DCMAKE_CXX_FLAGS="${CXXFLAGS:-} -I$files/include" \
    -DCMAKE_INSTALL_PREFIX="$PREFIX" -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON \
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DCMAKE_MODULE_PATH="$files/cmake" -DBUILD_TESTING=OFF \
    -DUSE_SYSTEM_CFITSIO=ON -DUSE_SYSTEM_CLHEP=ON -DUSE_SYSTEM_CPPUNIT=ON -DUSE_SYSTEM_F2C=ON \
    -DUSE_SYSTEM_FFTW=ON -DUSE_SYSTEM_GSL=ON -DUSE_SYSTEM_HEALPIX_CXX=ON -DUSE_SYSTEM_WCSLIB=ON >/dev/null
# shellcheck disable=SC2086  # the target list is meant to split
cmake --build _build --parallel "${RELMAN_JOBS:-2}" --target $targets
