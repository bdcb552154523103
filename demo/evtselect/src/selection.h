// Event selection on FT1 tables: range cuts, row filtering, GTI trimming
// and gtselect-style data sub-space (DSS) keywords.
#ifndef EVTSELECT_SELECTION_H
#define EVTSELECT_SELECTION_H

#include <fitsio.h>

#include <string>
#include <vector>

namespace evtselect {

// Inclusive interval cut lo <= column <= hi; an infinite bound means "open".
struct RangeCut {
    std::string column;  // FITS column tested, also used as DSTYPn
    std::string unit;    // DSUNIn
    double lo;
    double hi;

    bool active() const;
    bool accepts(double value) const;  // false for NaN
};

// Throws std::runtime_error with the cfitsio message if status is set.
void check_fits(int status, const std::string& context);

// "lo:hi" with empty sides for open bounds (the DSVAL convention).
std::string format_range(double lo, double hi);
// Parses a DSVAL range; returns false for non-range values such as "TABLE".
bool parse_range(const std::string& text, double& lo, double& hi);

// Appends a new table HDU to `out` with the header of the current HDU of
// `in` and only the rows passing all active cuts. Returns rows selected.
long long copy_selected_rows(fitsfile* in, fitsfile* out,
                             const std::vector<RangeCut>& cuts);

// Copies the current GTI HDU of `in`, intersecting each interval with
// [tmin, tmax] and updating ONTIME/TELAPSE.
void copy_trimmed_gti(fitsfile* in, fitsfile* out, double tmin, double tmax);

// Records the cuts in DSTYPn/DSUNIn/DSVALn/NDSKEYS: an existing range cut on
// the same quantity is narrowed (as gtselect merges cuts), otherwise the cut
// is appended under the next free n.
void update_dss_keywords(fitsfile* out, const std::vector<RangeCut>& cuts);

// Narrows TSTART/TSTOP of the current HDU to [tmin, tmax] when present.
void clamp_time_keywords(fitsfile* out, double tmin, double tmax);

}  // namespace evtselect

#endif
