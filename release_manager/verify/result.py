"""The outcome of a comparison: one Check per file, HDU/tree, column and test, and their verdict.

Results are graded the way ALICE's QC does: pass (good), warning, fail (bad). A failing check that a
known difference of the spec covers becomes `known` (reported, not failing) until the entry expires.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

PASS, WARNING, FAIL, KNOWN = "pass", "warning", "fail", "known"
GRADE = {PASS: "good", WARNING: "warning", FAIL: "bad", KNOWN: "known"}


def _num(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else str(x)


@dataclass
class Check:
    file: str
    test: str                       # bytes, header, hdus, columns, rows, keys, exact, tolerance, ks, chi2, hist-chi2, text, ...
    result: str = PASS
    hdu: str = ""                   # FITS HDU or ROOT tree / histogram
    column: str = ""
    message: str = ""
    statistic: Optional[float] = None
    pvalue: Optional[float] = None
    thresholds: Dict[str, float] = field(default_factory=dict)
    details: Dict[str, object] = field(default_factory=dict)
    known_reason: Optional[str] = None

    @property
    def failed(self) -> bool:
        return self.result == FAIL

    @property
    def name(self) -> str:
        return ".".join(p for p in (self.hdu, self.column, self.test) if p)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["statistic"] = _num(self.statistic)
        d["pvalue"] = _num(self.pvalue)
        d["grade"] = GRADE[self.result]
        d["details"] = {k: (_num(v) if isinstance(v, float) else v) for k, v in self.details.items()}
        return d


def grade_pvalue(p: float, warn_below: float, fail_below: float) -> str:
    if p is None or not math.isfinite(p):
        return FAIL
    if p < fail_below:
        return FAIL
    if p < warn_below:
        return WARNING
    return PASS


@dataclass
class Outcome:
    """Every check of one verification or comparison, plus what ran (workload steps) and where."""
    checks: List[Check] = field(default_factory=list)
    title: str = "comparison"
    reference: str = ""
    candidate: str = ""
    steps: List[dict] = field(default_factory=list)
    meta: Dict[str, object] = field(default_factory=dict)
    plots: Dict[str, dict] = field(default_factory=dict)   # "file|hdu|column" -> sample data for plots

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    def extend(self, checks) -> None:
        self.checks.extend(checks)

    def counts(self) -> Dict[str, int]:
        c = {PASS: 0, WARNING: 0, FAIL: 0, KNOWN: 0}
        for ch in self.checks:
            c[ch.result] += 1
        return c

    @property
    def verdict(self) -> str:
        return FAIL if any(c.result == FAIL for c in self.checks) or not self.checks else PASS

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict == PASS else 1

    def failures(self) -> List[Check]:
        return [c for c in self.checks if c.result in (FAIL, WARNING, KNOWN)]

    def summary(self) -> dict:
        return {"title": self.title, "verdict": self.verdict, "reference": self.reference,
                "candidate": self.candidate, "counts": self.counts(), "steps": self.steps, "meta": self.meta,
                "checks": [c.as_dict() for c in self.checks]}
