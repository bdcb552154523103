// evtselect: gtselect-like energy / zenith angle / time cuts on FT1 files.
#include "selection.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>
#include <strings.h>
#include <utility>
#include <vector>

#ifndef EVTSELECT_VERSION
#define EVTSELECT_VERSION "1.0.0"
#endif

using evtselect::RangeCut;
using evtselect::check_fits;

namespace {

const char* kUsage =
    "usage: evtselect infile=IN outfile=OUT [emin=MeV] [emax=MeV] [zmin=deg]\n"
    "                 [zmax=deg] [tmin=MET] [tmax=MET] [clobber=yes|no]\n"
    "       evtselect --help | --version\n"
    "\n"
    "Keeps EVENTS rows with emin <= ENERGY <= emax, zmin <= ZENITH_ANGLE <= zmax\n"
    "and tmin <= TIME <= tmax; other HDUs are copied (GTI trimmed to the time\n"
    "range). Cuts left out or set to INDEF are not applied. Parameters may also\n"
    "be written --key=value. Input may be gzip-compressed.\n";

struct Options {
    std::string infile, outfile;
    RangeCut energy{"ENERGY", "MeV", -INFINITY, INFINITY};
    RangeCut zenith{"ZENITH_ANGLE", "deg", -INFINITY, INFINITY};
    RangeCut time{"TIME", "s", -INFINITY, INFINITY};
    bool clobber = true;
};

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// INDEF (or an empty value) keeps the open default bound.
void parse_bound(const std::string& key, const std::string& value, double& bound) {
    if (value.empty() || strcasecmp(value.c_str(), "INDEF") == 0) return;
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    if (*end != '\0' || !std::isfinite(v))
        throw UsageError("invalid number for " + key + ": '" + value + "'");
    bound = v;
}

bool parse_bool(const std::string& key, const std::string& value) {
    for (const char* t : {"yes", "y", "true", "1"})
        if (strcasecmp(value.c_str(), t) == 0) return true;
    for (const char* f : {"no", "n", "false", "0"})
        if (strcasecmp(value.c_str(), f) == 0) return false;
    throw UsageError("invalid boolean for " + key + ": '" + value + "'");
}

Options parse_args(int argc, char** argv) {
    Options opt;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg.compare(0, 2, "--") == 0) arg.erase(0, 2);
        const std::string::size_type eq = arg.find('=');
        if (eq == std::string::npos) throw UsageError("unexpected argument '" + std::string(argv[i]) + "'");
        const std::string key = arg.substr(0, eq), value = arg.substr(eq + 1);
        if (key == "infile") opt.infile = value;
        else if (key == "outfile") opt.outfile = value;
        else if (key == "emin") parse_bound(key, value, opt.energy.lo);
        else if (key == "emax") parse_bound(key, value, opt.energy.hi);
        else if (key == "zmin") parse_bound(key, value, opt.zenith.lo);
        else if (key == "zmax") parse_bound(key, value, opt.zenith.hi);
        else if (key == "tmin") parse_bound(key, value, opt.time.lo);
        else if (key == "tmax") parse_bound(key, value, opt.time.hi);
        else if (key == "clobber") opt.clobber = parse_bool(key, value);
        else throw UsageError("unknown parameter '" + key + "'");
    }
    if (opt.infile.empty()) throw UsageError("infile is required");
    if (opt.outfile.empty()) throw UsageError("outfile is required");
    if (opt.infile == opt.outfile) throw UsageError("outfile must differ from infile");
    for (const RangeCut* c : {&opt.energy, &opt.zenith, &opt.time})
        if (c->lo > c->hi) throw UsageError("empty range for " + c->column);
    // Zenith angles lie in [0, 180]; closing the range gives gtselect's "0:90" DSVAL.
    if (opt.zenith.active()) {
        opt.zenith.lo = std::max(opt.zenith.lo, 0.0);
        opt.zenith.hi = std::min(opt.zenith.hi, 180.0);
    }
    return opt;
}

std::string extname(fitsfile* f) {
    char buf[FLEN_VALUE] = "";
    int status = 0;
    if (fits_read_key(f, TSTRING, "EXTNAME", buf, nullptr, &status) == KEY_NO_EXIST)
        fits_clear_errmsg();
    return buf;
}

// Old files may carry a DATASUM without value, which fits_write_chksum
// refuses to update, so drop any stale pair before recomputing it.
void write_checksum(fitsfile* out, int* status) {
    for (const char* key : {"CHECKSUM", "DATASUM"}) {
        int st = 0;
        if (fits_delete_key(out, key, &st) == KEY_NO_EXIST) fits_clear_errmsg();
    }
    fits_write_chksum(out, status);
}

std::string history_line(const Options& opt) {
    std::string h = "evtselect " EVTSELECT_VERSION ":";
    if (!opt.energy.active() && !opt.zenith.active() && !opt.time.active()) h += " no cuts";
    for (const RangeCut* c : {&opt.energy, &opt.zenith, &opt.time})
        if (c->active()) h += " " + c->column + "=" + evtselect::format_range(c->lo, c->hi);
    return h;
}

// Copies every HDU of `in` to `out`, filtering EVENTS; returns {read, selected}.
std::pair<long long, long long> run(const Options& opt, fitsfile* in, fitsfile* out) {
    int status = 0, nhdu = 0, type = 0;
    fits_get_num_hdus(in, &nhdu, &status);
    check_fits(status, "reading " + opt.infile);
    long long nread = -1, nsel = 0;
    const std::vector<RangeCut> cuts = {opt.energy, opt.zenith, opt.time};
    for (int i = 1; i <= nhdu; ++i) {
        fits_movabs_hdu(in, i, &type, &status);
        check_fits(status, "moving to HDU " + std::to_string(i));
        const std::string name = extname(in);
        if (type == BINARY_TBL && strcasecmp(name.c_str(), "EVENTS") == 0) {
            LONGLONG n = 0;
            fits_get_num_rowsll(in, &n, &status);
            check_fits(status, "reading EVENTS size");
            nread = n;
            nsel = evtselect::copy_selected_rows(in, out, cuts);
            evtselect::update_dss_keywords(out, cuts);
            evtselect::clamp_time_keywords(out, opt.time.lo, opt.time.hi);
            fits_update_key_str(out, "CREATOR", "evtselect " EVTSELECT_VERSION,
                                "Software that created this file", &status);
            fits_write_history(out, history_line(opt).c_str(), &status);
        } else if (type == BINARY_TBL && opt.time.active() && strcasecmp(name.c_str(), "GTI") == 0) {
            evtselect::copy_trimmed_gti(in, out, opt.time.lo, opt.time.hi);
        } else {
            fits_copy_hdu(in, out, 0, &status);
        }
        write_checksum(out, &status);
        check_fits(status, "writing HDU " + std::to_string(i) + " " + name);
    }
    if (nread < 0) throw std::runtime_error("no EVENTS extension in " + opt.infile);
    return {nread, nsel};
}

}  // namespace

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
            std::cout << kUsage;
            return 0;
        }
        if (!std::strcmp(argv[i], "--version")) {
            std::cout << "evtselect " EVTSELECT_VERSION "\n";
            return 0;
        }
    }

    Options opt;
    try {
        opt = parse_args(argc, argv);
    } catch (const UsageError& e) {
        std::cerr << "evtselect: " << e.what() << "\nTry 'evtselect --help'.\n";
        return 2;
    }

    fitsfile* in = nullptr;
    fitsfile* out = nullptr;
    int status = 0;
    try {
        fits_open_file(&in, opt.infile.c_str(), READONLY, &status);
        check_fits(status, "cannot open " + opt.infile);
        // cfitsio's "!" prefix overwrites an existing file.
        const std::string target = (opt.clobber ? "!" : "") + opt.outfile;
        fits_create_file(&out, target.c_str(), &status);
        check_fits(status, "cannot create " + opt.outfile +
                                          (opt.clobber ? "" : " (exists? clobber=no)"));
        const std::pair<long long, long long> n = run(opt, in, out);
        fits_close_file(out, &status);
        out = nullptr;
        check_fits(status, "closing " + opt.outfile);
        fits_close_file(in, &status);
        std::cout << "evtselect: " << n.first << " events read, " << n.second
                  << " selected -> " << opt.outfile << "\n";
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "evtselect: " << e.what() << "\n";
        status = 0;
        if (out) fits_delete_file(out, &status);  // never leave a partial output
        status = 0;
        if (in) fits_close_file(in, &status);
        return 1;
    }
}
