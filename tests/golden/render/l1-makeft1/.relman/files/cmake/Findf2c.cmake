# relman (obstacle 2): Debian ships f2c without a CMake package configuration; the umbrella
# expects the imported target f2c::f2c. st_facilities' dgaus8.c includes <f2c/f2c.h>: the
# include folder of these support files maps it to the system f2c.h.
find_path(F2C_INCLUDE_DIR NAMES f2c.h)
find_library(F2C_LIBRARY NAMES f2c)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(f2c REQUIRED_VARS F2C_LIBRARY F2C_INCLUDE_DIR)
if(f2c_FOUND AND NOT TARGET f2c::f2c)
  add_library(f2c::f2c UNKNOWN IMPORTED)
  get_filename_component(_relman_files "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
  set_target_properties(f2c::f2c PROPERTIES
    IMPORTED_LOCATION "${F2C_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${_relman_files}/include;${F2C_INCLUDE_DIR}"
    INTERFACE_COMPILE_DEFINITIONS "Skip_f2c_Undefs")
endif()
