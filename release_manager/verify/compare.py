"""Compare two files or two folders under a list of rules: the entry point of `relman compare`
and the comparison half of `relman verify`."""
from __future__ import annotations

import fnmatch
import os
import time
from pathlib import Path
from typing import Callable, List, Optional

from release_manager.spec.model import CompareRule, KnownDifference
from release_manager.verify.fastpath import identical_files
from release_manager.verify.result import FAIL, PASS, Check, Outcome
from release_manager.verify.rules import (VerifyUsageError, apply_known_differences, check_rule_columns, rule_for)


def compare_file(ref: Path, cand: Path, relpath: str, rule: CompareRule, rules: List[CompareRule],
                 plots: Optional[dict] = None) -> List[Check]:
    checks = _compare_file(ref, cand, relpath, rule, rules, plots)
    if rule.mode == "statistical":
        from release_manager.verify.family import grade_family
        checks = grade_family(checks, rule)
    return checks


def _compare_file(ref: Path, cand: Path, relpath: str, rule: CompareRule, rules: List[CompareRule],
                  plots: Optional[dict] = None) -> List[Check]:
    t0 = time.monotonic()
    for side, p in (("reference", ref), ("candidate", cand)):
        if not os.access(p, os.R_OK):
            raise VerifyUsageError(f"{relpath}: the {side} file {p} is not readable")
    if identical_files(ref, cand):
        if rule.columns or rule.key_columns:
            _validate_columns(ref, relpath, rule, rules)
        size = ref.stat().st_size
        return [Check(relpath, "bytes", PASS, "", "", f"byte-identical ({size} bytes; no parsing needed)",
                      details={"bytes": size, "seconds": round(time.monotonic() - t0, 3)})]
    if rule.comparator == "fits":
        from release_manager.verify.fits_cmp import compare_fits
        return compare_fits(ref, cand, relpath, rule, rules, plots)
    if rule.comparator == "root":
        from release_manager.verify.root_cmp import compare_root
        return compare_root(ref, cand, relpath, rule, rules, plots)
    if rule.comparator == "text":
        from release_manager.verify.text_cmp import compare_text
        return compare_text(ref, cand, relpath, rule)
    from release_manager.verify.text_cmp import compare_bytes
    return compare_bytes(ref, cand, relpath)


def _validate_columns(path: Path, relpath: str, rule: CompareRule, rules: List[CompareRule]) -> None:
    """Identical files skip parsing, but a rule naming a column the file lacks is still an error."""
    if rule.comparator == "fits":
        from release_manager.verify.fits_cmp import FitsFile
        from astropy.io import fits
        f = FitsFile(path, relpath, "reference")
        try:
            cols = [c for h in f.hdul if isinstance(h, fits.BinTableHDU) for c in h.columns.names]
        finally:
            f.close()
        check_rule_columns(rule, rules, relpath, cols)
    elif rule.comparator == "root":
        from release_manager.verify.root_cmp import RootTree, _objects, _open
        f = _open(path, relpath, "reference")
        try:
            cols = [b for k, c in _objects(f).items() if c.startswith("TTree")
                    for b in RootTree(f[k], relpath, "reference").names]
        finally:
            f.close()
        check_rule_columns(rule, rules, relpath, cols)


def _files(root: Path) -> List[str]:
    out = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            out.append(os.path.relpath(os.path.join(dirpath, n), root).replace(os.sep, "/"))
    return sorted(out)


def _selected(rel: str, outputs: Optional[List[str]]) -> bool:
    if outputs is None:
        return True
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, g) or ("/" not in g and fnmatch.fnmatchcase(name, g)) for g in outputs)


def compare_paths(reference: Path, candidate: Path, rules: List[CompareRule],
                  known: Optional[List[KnownDifference]] = None, outputs: Optional[List[str]] = None,
                  plots: bool = True, outcome: Optional[Outcome] = None,
                  echo: Callable[[str], None] = lambda m: None) -> Outcome:
    reference, candidate = Path(reference), Path(candidate)
    out = outcome or Outcome(reference=str(reference), candidate=str(candidate))
    if not reference.exists():
        raise VerifyUsageError(f"reference {reference} does not exist")
    if not candidate.exists():
        raise VerifyUsageError(f"candidate {candidate} does not exist")
    if reference.is_dir() != candidate.is_dir():
        raise VerifyUsageError(f"compare a file with a file or a folder with a folder: {reference} is a "
                               f"{'folder' if reference.is_dir() else 'file'}, {candidate} is a "
                               f"{'folder' if candidate.is_dir() else 'file'}")
    store = {} if plots else None
    checks: List[Check] = []
    if reference.is_file():
        rel = reference.name
        rule = rule_for(rel, rules)
        checks += compare_file(reference, candidate, rel, rule, rules, store)
    else:
        rf = [f for f in _files(reference) if _selected(f, outputs)]
        cf = [f for f in _files(candidate) if _selected(f, outputs)]
        if not rf and not cf:
            raise VerifyUsageError(f"no output files to compare in {reference} and {candidate}"
                                   + (f" (outputs: {', '.join(outputs)})" if outputs else ""))
        chosen = {rel: rule_for(rel, rules) for rel in sorted(set(rf) | set(cf))}   # uncovered -> error first
        for rel, rule in chosen.items():
            if rel not in cf:
                checks.append(Check(rel, "file", FAIL, "", "", f"{rel}: in the reference, missing in the candidate"))
                continue
            if rel not in rf:
                checks.append(Check(rel, "file", FAIL, "", "", f"{rel}: produced by the candidate, missing in the "
                                    "reference"))
                continue
            echo(f"comparing {rel} ({rule.comparator})")
            checks += compare_file(reference / rel, candidate / rel, rel, rule, rules, store)
    out.extend(apply_known_differences(checks, known or []))
    if store:
        out.plots.update(store)
    return out
