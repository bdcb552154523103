#!/bin/sh
# Build one layer of the L1 makeFT1 image: RELMAN_LAYER (src/NAME) has just been copied in.
# As the ScienceTools layers (../sciencetools/build-layer.sh, whose find modules and compatibility
# headers are merged into $RELMAN_FILES): the umbrella's package list is rewritten to the packages
# present that have a CMake file of their own, CMake is configured again and only this package's
# targets are built. On top: the CMake files of evtUtils and fitsGenApps (cmake/l1/, included after the
# umbrella's packages), XercesC for xmlBase and ROOT from PyPI (cmake/l1/before.cmake). The layer of the
# package marked `+root` in l1-packages.txt installs the pinned ROOT wheel into a virtual environment
# of the build tree (_root); the run-time parts are staged into PREFIX by l1-stage.sh.
# Run from the umbrella's root; PREFIX, CFLAGS and CXXFLAGS come from relman.
set -eu
files=$(cd "$(dirname "$0")" && pwd)
pkg=${RELMAN_LAYER#src/}
venv=$PWD/_root
present=""
targets=""
found=""
root_layer=""
while read -r name rest; do
    case "$name" in ''|\#*) continue ;; esac
    [ -f "src/$name/CMakeLists.txt" ] && present="$present $name"
    if [ "$name" = "$pkg" ]; then
        found=1
        case "$rest" in +root*) root_layer=1; rest=${rest#+root} ;; esac
        targets=$rest
    fi
done < "$files/l1-packages.txt"
[ -n "$found" ] || { echo "l1-build-layer.sh: $pkg is not in $files/l1-packages.txt" >&2; exit 2; }
if [ -n "$root_layer" ] && [ ! -e "$venv/.relman-root-installed" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    pip_install() {
        "$venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check --require-hashes \
            -r "$files/l1-root-requirements.txt" "$@"
    }
    # A build container behind a TLS-intercepting proxy does not know the proxy's CA (the host may):
    # then the index is reached without certificate checks; what is installed is still checked against
    # the pinned sha256 of every file (--require-hashes), so a changed file stops the build either way.
    if ! pip_install; then
        echo "l1-build-layer.sh: PyPI's certificate not verified here; retrying with the hashes as the only check" >&2
        pip_install --trusted-host pypi.org --trusted-host files.pythonhosted.org
    fi
    site=$(echo "$venv"/lib/python3*/site-packages)
    # the wheel's CMake files name <venv>/lib/python3.X/mock_site_packages/ROOT/...
    ln -s site-packages "$(dirname "$site")/mock_site_packages"
    touch "$venv/.relman-root-installed"
    echo "l1-build-layer.sh: ROOT $(cat "$site"/root-*.dist-info/METADATA | sed -n 's/^Version: //p') in $venv"
fi
if [ -z "${targets# }" ]; then
    echo "l1-build-layer.sh: $pkg has nothing to build (data read at run time)"
    exit 0
fi
python3 - "$present" "$files/cmake/l1" <<'PY'
import re, sys
text = open("CMakeLists.txt").read()
new, n = re.subn(r"list\(\s*APPEND\s+FERMI_COMPONENTS\b[^)]*\)",
                 "list(APPEND FERMI_COMPONENTS" + sys.argv[1] + ")", text, count=1)
if n != 1:
    sys.exit("l1-build-layer.sh: no 'list(APPEND FERMI_COMPONENTS ...)' in CMakeLists.txt")
loop = "foreach(pkg ${FERMI_COMPONENTS})"
before, after = "include(${RELMAN_L1_CMAKE}/before.cmake)\n", "\ninclude(${RELMAN_L1_CMAKE}/after.cmake)"
new = new.replace(before, "").replace(after, "")     # the previous layer's, put back once below
if new.count(loop) != 1:
    sys.exit("l1-build-layer.sh: no single 'foreach(pkg ${FERMI_COMPONENTS})' in CMakeLists.txt")
head, tail = new.split(loop)
end = tail.index("endforeach()") + len("endforeach()")
new = head + before + loop + tail[:end] + after + tail[end:]
open("CMakeLists.txt", "w").write(new)
PY
echo "l1-build-layer.sh: $pkg (packages:$present; targets:$targets)"
# Every USE_SYSTEM_* on: otherwise FetchContent downloads f2c, fftw and healpix_cxx (no network).
cmake -S . -B _build -Wno-dev -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS="${CFLAGS:-} -I$files/include" -DCMAKE_CXX_FLAGS="${CXXFLAGS:-} -I$files/include" \
    -DCMAKE_INSTALL_PREFIX="$PREFIX" -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON \
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DCMAKE_MODULE_PATH="$files/cmake" -DBUILD_TESTING=OFF \
    -DRELMAN_L1_CMAKE="$files/cmake/l1" -DRELMAN_ROOT_VENV="$venv" \
    -DUSE_SYSTEM_CFITSIO=ON -DUSE_SYSTEM_CLHEP=ON -DUSE_SYSTEM_CPPUNIT=ON -DUSE_SYSTEM_F2C=ON \
    -DUSE_SYSTEM_FFTW=ON -DUSE_SYSTEM_GSL=ON -DUSE_SYSTEM_HEALPIX_CXX=ON -DUSE_SYSTEM_WCSLIB=ON >/dev/null
# shellcheck disable=SC2086  # the target list is meant to split
cmake --build _build --parallel "${RELMAN_JOBS:-2}" --target $targets
