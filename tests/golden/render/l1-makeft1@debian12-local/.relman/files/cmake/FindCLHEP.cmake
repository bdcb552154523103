# relman (obstacle 1): Debian ships CLHEP without a CMake package configuration; the umbrella
# expects the imported targets CLHEP::CLHEP and CLHEP::RandomS. Both stand on the one libCLHEP.
find_path(CLHEP_INCLUDE_DIR NAMES CLHEP/ClhepVersion.h)
find_library(CLHEP_LIBRARY NAMES CLHEP)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CLHEP REQUIRED_VARS CLHEP_LIBRARY CLHEP_INCLUDE_DIR)
if(CLHEP_FOUND AND NOT TARGET CLHEP::CLHEP)
  add_library(CLHEP::CLHEP UNKNOWN IMPORTED)
  set_target_properties(CLHEP::CLHEP PROPERTIES
    IMPORTED_LOCATION "${CLHEP_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${CLHEP_INCLUDE_DIR}")
  add_library(CLHEP::RandomS INTERFACE IMPORTED)
  set_target_properties(CLHEP::RandomS PROPERTIES INTERFACE_LINK_LIBRARIES CLHEP::CLHEP)
endif()
