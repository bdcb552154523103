"""Statistical mode: all the distribution tests of one file pair are graded together, so that the
chance that an equivalent rerun fails anywhere (the family-wise false-alarm rate) is the rule's
family_alpha, not about alpha times the number of columns.

Holm's step-down correction: valid whatever the dependence between the tests (columns of one event
file are correlated), and uniformly more powerful than Bonferroni. Each check keeps its own p-value;
the adjusted one is added to its details and message. (scipy has Benjamini-Hochberg, which controls
the false discovery rate, not the family-wise rate; Holm is the few lines below.)
"""
from __future__ import annotations

import math
from typing import List

import numpy as np

from release_manager.spec.model import CompareRule
from release_manager.verify.result import FAIL, PASS, WARNING, Check

FAMILY_TESTS = ("rows", "nonfinite", "ks", "chi2", "hist-chi2")


def holm_adjust(pvalues) -> np.ndarray:
    """Holm-adjusted p-values: p_(i) * (m - i + 1), made monotone, capped at 1."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


def grade_family(checks: List[Check], rule: CompareRule) -> List[Check]:
    """Regrades, in place, the p-valued checks of one file; checks that failed for another reason
    (no values on one side, a missing column) stay failed and outside the family."""
    fam = [c for c in checks if c.test in FAMILY_TESTS and c.pvalue is not None and math.isfinite(c.pvalue)]
    if not fam:
        return checks
    adj = holm_adjust([c.pvalue for c in fam])
    for c, a in zip(fam, adj):
        c.result = FAIL if a < rule.family_alpha else WARNING if a < rule.family_warn else PASS
        c.thresholds = {"family_alpha": rule.family_alpha, "family_warn": rule.family_warn, "family_size": len(fam)}
        c.details["p_holm"] = float(a)
        c.message += f"; Holm-adjusted p={a:.3g} ({len(fam)} tests, family-wise level {rule.family_alpha:g})"
    return checks
