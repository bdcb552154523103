# Included by the umbrella's CMakeLists after its packages (l1-build-layer.sh puts the include there).
# evtUtils and fitsGenApps are built with SCons upstream: their CMake files live here, written from
# their SConscripts, and read the sources in place (no file of the source tree is changed).
if(EXISTS "${CMAKE_SOURCE_DIR}/src/evtUtils")
  add_subdirectory("${RELMAN_L1_CMAKE}/evtUtils" "${CMAKE_BINARY_DIR}/evtUtils")
endif()
# fitsGen's CMake file builds it without ROOT (its own BUILD_WITHOUT_ROOT, and the one tip passes on
# to everything that links it): makeFT1 needs MeritFile2, which reads merit trees with ROOT, and
# fitsGen's headers declare the ROOT parts only without that definition. -U after the -D (CMake puts
# compile options after the definitions) takes it away for fitsGen and what links it (PUBLIC: makeFT1);
# the libraries built before keep their flags (and their layers).
if(TARGET fitsGen AND TARGET evtUtils)
  target_compile_options(fitsGen PUBLIC -UBUILD_WITHOUT_ROOT)
  target_link_libraries(fitsGen PUBLIC evtUtils ROOT::Core ROOT::RIO ROOT::Tree ROOT::TreePlayer)
endif()
if(EXISTS "${CMAKE_SOURCE_DIR}/src/fitsGenApps")
  add_subdirectory("${RELMAN_L1_CMAKE}/fitsGenApps" "${CMAKE_BINARY_DIR}/fitsGenApps")
endif()
