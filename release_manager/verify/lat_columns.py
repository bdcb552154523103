"""Documented per-column tolerances for LAT products, chosen by a rule's `profile:` (ft1, ft2, merit).

Reproducible mode compares floats in ULPs by default; these profiles add absolute tolerances in the
column's own unit where the unit, not the precision, says what matters:
  - times (MET seconds, ~4e8 s): 1e-6 s. A relative tolerance cannot do this: rtol 1e-6 of 4e8 s is
    400 s, so a 10 s shift would pass;
  - sky and instrument angles: 1e-4 deg (0.36 arcsec, far under the PSF; a float32 angle near 360 deg
    has a ULP of 3e-5 deg);
  - spacecraft positions: 1 m (a float32 ULP near 7e6 m is 0.5 m);
  - live times: 1e-6 s.
Energies and response columns keep the ULP comparison; integer, bit and string columns stay exact.
An entry of the rule's own `columns:` always wins over the profile.
"""
from __future__ import annotations

import fnmatch
from typing import Dict, Optional

from release_manager.spec.model import ColumnRule

DEFAULT_ULPS = 4          # what two builds of the same code with other compilers/libm typically differ by

SECONDS = ColumnRule(test="tolerance", atol=1e-6)
DEGREES = ColumnRule(test="tolerance", atol=1e-4)
METRES = ColumnRule(test="tolerance", atol=1.0)

PROFILES: Dict[str, Dict[str, ColumnRule]] = {
    "ft1": {
        "TIME": SECONDS, "LIVETIME": SECONDS,
        "RA": DEGREES, "DEC": DEGREES, "L": DEGREES, "B": DEGREES, "THETA": DEGREES, "PHI": DEGREES,
        "ZENITH_ANGLE": DEGREES, "EARTH_AZIMUTH_ANGLE": DEGREES,
        "START": SECONDS, "STOP": SECONDS,                       # the GTI extension
    },
    "ft2": {
        "START": SECONDS, "STOP": SECONDS, "LIVETIME": SECONDS,
        "SC_POSITION": METRES, "RAD_GEO": METRES,
        "RA_SCZ": DEGREES, "DEC_SCZ": DEGREES, "RA_SCX": DEGREES, "DEC_SCX": DEGREES,
        "RA_ZENITH": DEGREES, "DEC_ZENITH": DEGREES, "LON_GEO": DEGREES, "LAT_GEO": DEGREES,
        "GEOMAG_LAT": DEGREES, "B_MCILWAIN": ColumnRule(test="tolerance", atol=1e-5),
        "L_MCILWAIN": ColumnRule(test="tolerance", atol=1e-5),
        "ROCK_ANGLE": DEGREES, "RA_NPOLE": DEGREES, "DEC_NPOLE": DEGREES,
    },
    "merit": {
        "EvtElapsedTime": SECONDS, "EvtLiveTime": SECONDS, "FT1ZenithTheta": DEGREES, "FT1EarthAzimuth": DEGREES,
        "FT1Ra": DEGREES, "FT1Dec": DEGREES, "FT1L": DEGREES, "FT1B": DEGREES, "FT1Theta": DEGREES,
        "FT1Phi": DEGREES, "PtRa*": DEGREES, "PtDec*": DEGREES, "PtLat": DEGREES, "PtLon": DEGREES,
        "PtPos": METRES,
    },
}

# units for the report where the file does not carry them (ROOT trees have no TUNIT)
MERIT_UNITS = {"EvtElapsedTime": "s", "EvtLiveTime": "s", "FT1Energy": "MeV", "PtPos": "m"}


def profile_rule(profile: Optional[str], column: str) -> Optional[ColumnRule]:
    if not profile:
        return None
    table = PROFILES[profile]
    if column in table:
        return table[column]
    for pat, cr in table.items():
        if "*" in pat and fnmatch.fnmatchcase(column, pat):
            return cr
    return None


def profile_unit(profile: Optional[str], column: str) -> str:
    if profile == "merit":
        if column in MERIT_UNITS:
            return MERIT_UNITS[column]
        cr = profile_rule(profile, column)
        if cr is DEGREES:
            return "deg"
    return ""
