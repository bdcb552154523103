/* relman (obstacle 4): healpix_cxx 3.80 dropped openmp_support.h; alm_filter_tools.cxx includes it
   but uses only OpenMP pragmas. */
#ifndef RELMAN_OPENMP_SUPPORT_H
#define RELMAN_OPENMP_SUPPORT_H
#endif
