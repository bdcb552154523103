/* relman (obstacle 4): healpix_cxx 3.80 dropped fftpack_support.h. Only fermi-lat/healpix's
   src/alm_filter_tools.cxx includes it ("FIXME -- this file is broken" upstream), and gtselect,
   gtmktime and gtbin never call it: this declares what that file names, and any call fails loudly. */
#ifndef RELMAN_FFTPACK_SUPPORT_H
#define RELMAN_FFTPACK_SUPPORT_H
#include <cstddef>
#include <stdexcept>
#include "arr.h"
#include "xcomplex.h"

class rfft {
  std::size_t n_ = 0;
 public:
  std::size_t size() const { return n_; }
  void Set(std::size_t) { fail(); }
  void forward_c(arr<xcomplex<double> > &) { fail(); }
  void backward_c(arr<xcomplex<double> > &) { fail(); }
 private:
  [[noreturn]] static void fail() {
    throw std::runtime_error("healpix alm_filter_tools: fftpack is not available with healpix_cxx 3.80");
  }
};
#endif
