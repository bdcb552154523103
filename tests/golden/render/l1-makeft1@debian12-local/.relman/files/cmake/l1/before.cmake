# Included by the umbrella's CMakeLists before its packages (l1-build-layer.sh puts the include there).
# xmlBase links XercesC::XercesC, which nothing in the umbrella looks for (Debian libxerces-c-dev).
if(EXISTS "${CMAKE_SOURCE_DIR}/src/xmlBase")
  find_package(XercesC REQUIRED)
  set_target_properties(XercesC::XercesC PROPERTIES IMPORTED_GLOBAL TRUE)
endif()
# ROOT from the pinned wheel in the build's virtual environment, once its layer has installed it.
# The wheel's CMake files name <venv>/lib/python3.11/mock_site_packages/ROOT/...: l1-build-layer.sh
# links mock_site_packages to site-packages. Its own libraries live in site-packages/root.libs under
# renamed files, which the linker only finds with -rpath-link.
if(EXISTS "${RELMAN_ROOT_VENV}/.relman-root-installed")
  file(GLOB RELMAN_ROOT_SITE "${RELMAN_ROOT_VENV}/lib/python3*/site-packages")
  find_package(ROOT 6 CONFIG REQUIRED COMPONENTS Core RIO Tree TreePlayer Hist XMLIO
               PATHS "${RELMAN_ROOT_SITE}/ROOT/cmake" NO_DEFAULT_PATH)
  set(RELMAN_ROOT_LINK_OPTIONS "LINKER:-rpath-link,${RELMAN_ROOT_SITE}/root.libs")
  # what the programs find at run time: the Fermi libraries and ROOT staged under the prefix (l1-stage.sh)
  set(RELMAN_L1_RPATH "${CMAKE_INSTALL_PREFIX}/lib;${CMAKE_INSTALL_PREFIX}/root/ROOT/lib")
endif()
