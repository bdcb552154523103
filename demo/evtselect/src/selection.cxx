#include "selection.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace evtselect {

namespace {

// Rows processed per pass: bounds memory independently of the table size.
const LONGLONG kChunkRows = 65536;

// Optional keywords: false if absent, throws on any other error.
bool read_key(fitsfile* f, const std::string& key, std::string& value) {
    char buf[FLEN_VALUE];
    int status = 0;
    fits_read_key(f, TSTRING, key.c_str(), buf, nullptr, &status);
    if (status == KEY_NO_EXIST) {
        fits_clear_errmsg();
        return false;
    }
    check_fits(status, "reading keyword " + key);
    value = buf;
    return true;
}

bool read_key(fitsfile* f, const std::string& key, double& value) {
    int status = 0;
    fits_read_key(f, TDOUBLE, key.c_str(), &value, nullptr, &status);
    if (status == KEY_NO_EXIST) {
        fits_clear_errmsg();
        return false;
    }
    check_fits(status, "reading keyword " + key);
    return true;
}

// Clones the table header with zero rows so that fits_copy_rows appends
// from row 1 (fits_copy_header alone keeps the input NAXIS2).
void start_empty_table(fitsfile* in, fitsfile* out) {
    int status = 0;
    fits_copy_header(in, out, &status);
    fits_modify_key_lng(out, "NAXIS2", 0, "&", &status);
    fits_modify_key_lng(out, "PCOUNT", 0, "&", &status);
    fits_set_hdustruc(out, &status);
    check_fits(status, "creating output table");
}

// Full precision in %G form (MET values need ~10 significant digits).
void update_dbl(fitsfile* f, const char* key, double value, int* status) {
    fits_update_key(f, TDOUBLE, key, &value, "&", status);
}

int scalar_column(fitsfile* in, const std::string& name) {
    int status = 0, col = 0, type = 0;
    long repeat = 0, width = 0;
    fits_get_colnum(in, CASEINSEN, const_cast<char*>(name.c_str()), &col, &status);
    check_fits(status, "looking up column " + name);
    fits_get_coltype(in, col, &type, &repeat, &width, &status);
    check_fits(status, "reading type of column " + name);
    if (repeat != 1)
        throw std::runtime_error("column " + name + " is not a scalar column");
    return col;
}

}  // namespace

bool RangeCut::active() const { return std::isfinite(lo) || std::isfinite(hi); }

bool RangeCut::accepts(double value) const { return value >= lo && value <= hi; }

void check_fits(int status, const std::string& context) {
    if (status <= 0) return;
    char text[FLEN_STATUS];
    fits_get_errstatus(status, text);
    std::string msg = context + ": " + text;
    char detail[FLEN_ERRMSG];
    while (fits_read_errmsg(detail)) msg += std::string("\n  ") + detail;
    throw std::runtime_error(msg);
}

std::string format_range(double lo, double hi) {
    char buf[64];
    std::string out;
    if (std::isfinite(lo)) {
        std::snprintf(buf, sizeof buf, "%.15g", lo);
        out += buf;
    }
    out += ':';
    if (std::isfinite(hi)) {
        std::snprintf(buf, sizeof buf, "%.15g", hi);
        out += buf;
    }
    return out;
}

bool parse_range(const std::string& text, double& lo, double& hi) {
    const std::string::size_type colon = text.find(':');
    if (colon == std::string::npos) return false;
    const std::string parts[2] = {text.substr(0, colon), text.substr(colon + 1)};
    double vals[2] = {-INFINITY, INFINITY};
    for (int i = 0; i < 2; ++i) {
        if (parts[i].find_first_not_of(' ') == std::string::npos) continue;
        char* end = nullptr;
        vals[i] = std::strtod(parts[i].c_str(), &end);
        if (end == parts[i].c_str() || parts[i].find_first_not_of(' ', end - parts[i].c_str()) != std::string::npos)
            return false;
    }
    lo = vals[0];
    hi = vals[1];
    return true;
}

long long copy_selected_rows(fitsfile* in, fitsfile* out,
                             const std::vector<RangeCut>& cuts) {
    std::vector<const RangeCut*> active;
    std::vector<int> cols;
    for (const RangeCut& cut : cuts) {
        if (!cut.active()) continue;
        active.push_back(&cut);
        cols.push_back(scalar_column(in, cut.column));
    }

    int status = 0;
    LONGLONG nrows = 0;
    fits_get_num_rowsll(in, &nrows, &status);
    check_fits(status, "reading number of rows");
    start_empty_table(in, out);

    std::vector<double> values(kChunkRows);
    std::vector<char> keep(kChunkRows);
    long long selected = 0;
    for (LONGLONG first = 1; first <= nrows; first += kChunkRows) {
        const LONGLONG n = std::min(kChunkRows, nrows - first + 1);
        std::fill(keep.begin(), keep.begin() + n, 1);
        for (size_t k = 0; k < active.size(); ++k) {
            int anynul = 0;
            fits_read_col(in, TDOUBLE, cols[k], first, 1, n, nullptr,
                          values.data(), &anynul, &status);
            check_fits(status, "reading column " + active[k]->column);
            for (LONGLONG i = 0; i < n; ++i)
                if (keep[i] && !active[k]->accepts(values[i])) keep[i] = 0;
        }
        // Copy runs of consecutive kept rows: one call per run, not per row.
        for (LONGLONG i = 0; i < n;) {
            if (!keep[i]) { ++i; continue; }
            LONGLONG j = i;
            while (j < n && keep[j]) ++j;
            fits_copy_rows(in, out, first + i, j - i, &status);
            selected += j - i;
            i = j;
        }
        check_fits(status, "copying selected rows");
    }
    return selected;
}

void copy_trimmed_gti(fitsfile* in, fitsfile* out, double tmin, double tmax) {
    const int start_col = scalar_column(in, "START");
    const int stop_col = scalar_column(in, "STOP");
    int status = 0;
    LONGLONG nrows = 0;
    fits_get_num_rowsll(in, &nrows, &status);
    check_fits(status, "reading number of GTI rows");
    start_empty_table(in, out);

    std::vector<double> start(kChunkRows), stop(kChunkRows);
    LONGLONG written = 0;
    double ontime = 0;
    for (LONGLONG first = 1; first <= nrows; first += kChunkRows) {
        const LONGLONG n = std::min(kChunkRows, nrows - first + 1);
        int anynul = 0;
        fits_read_col(in, TDOUBLE, start_col, first, 1, n, nullptr, start.data(), &anynul, &status);
        fits_read_col(in, TDOUBLE, stop_col, first, 1, n, nullptr, stop.data(), &anynul, &status);
        check_fits(status, "reading GTI");
        for (LONGLONG i = 0; i < n; ++i) {
            double s = std::max(start[i], tmin), e = std::min(stop[i], tmax);
            if (!(s < e)) continue;
            // Copy the whole row so any extra GTI columns survive.
            fits_copy_rows(in, out, first + i, 1, &status);
            ++written;
            fits_write_col(out, TDOUBLE, start_col, written, 1, 1, &s, &status);
            fits_write_col(out, TDOUBLE, stop_col, written, 1, 1, &e, &status);
            ontime += e - s;
        }
        check_fits(status, "writing GTI");
    }

    double old = 0;
    if (read_key(out, "ONTIME", old))
        update_dbl(out, "ONTIME", ontime, &status);
    clamp_time_keywords(out, tmin, tmax);
    double tstart = 0, tstop = 0;
    if (read_key(out, "TELAPSE", old) && read_key(out, "TSTART", tstart) &&
        read_key(out, "TSTOP", tstop))
        update_dbl(out, "TELAPSE", tstop - tstart, &status);
    check_fits(status, "updating GTI keywords");
}

void update_dss_keywords(fitsfile* out, const std::vector<RangeCut>& cuts) {
    // Existing keywords are numbered 1..n without gaps (gtselect convention);
    // NDSKEYS may be missing in hand-made files, so scan instead of trusting it.
    int n = 0;
    std::vector<std::string> types;
    for (std::string type; read_key(out, "DSTYP" + std::to_string(n + 1), type); ++n)
        types.push_back(type);

    int status = 0;
    for (const RangeCut& cut : cuts) {
        if (!cut.active()) continue;
        int slot = 0;
        double lo = cut.lo, hi = cut.hi;
        for (int i = 1; i <= n && slot == 0; ++i) {
            std::string val;
            double old_lo, old_hi;
            if (types[i - 1] == cut.column && read_key(out, "DSVAL" + std::to_string(i), val) &&
                parse_range(val, old_lo, old_hi)) {
                slot = i;
                lo = std::max(lo, old_lo);
                hi = std::min(hi, old_hi);
            }
        }
        if (slot == 0) {
            slot = ++n;
            types.push_back(cut.column);
            fits_update_key_str(out, ("DSTYP" + std::to_string(slot)).c_str(),
                                cut.column.c_str(), "Data selection type", &status);
            fits_update_key_str(out, ("DSUNI" + std::to_string(slot)).c_str(),
                                cut.unit.c_str(), "Data selection unit", &status);
        }
        fits_update_key_str(out, ("DSVAL" + std::to_string(slot)).c_str(),
                            format_range(lo, hi).c_str(), "Data selection value", &status);
    }
    fits_update_key_lng(out, "NDSKEYS", n, "Number of data subspace keywords", &status);
    check_fits(status, "writing data selection keywords");
}

void clamp_time_keywords(fitsfile* out, double tmin, double tmax) {
    int status = 0;
    double t = 0;
    if (std::isfinite(tmin) && read_key(out, "TSTART", t) && t < tmin)
        update_dbl(out, "TSTART", tmin, &status);
    if (std::isfinite(tmax) && read_key(out, "TSTOP", t) && t > tmax)
        update_dbl(out, "TSTOP", tmax, &status);
    check_fits(status, "updating TSTART/TSTOP");
}

}  // namespace evtselect
