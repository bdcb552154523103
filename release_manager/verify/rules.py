"""Rules: which comparator and which tolerances apply to an output file, per-column overrides, and
known differences (reason + expiry date)."""
from __future__ import annotations

import datetime as dt
import fnmatch
from pathlib import Path
from typing import Iterable, List, Optional

import yaml
from pydantic import ValidationError

from release_manager.errors import UsageError
from release_manager.spec.model import ColumnRule, CompareRule, KnownDifference, Tolerance
from release_manager.verify.lat_columns import DEFAULT_ULPS
from release_manager.verify.result import FAIL, KNOWN, Check

DEFAULT_IGNORE_KEYWORDS = ("DATE", "CREATOR", "DATASUM", "CHECKSUM", "FILENAME")
# `relman compare` without --rules: exact for integers, bits and strings; floats within a few ULPs of
# their own type (zeros and denormals equal). A relative tolerance is no default: rtol 1e-6 lets a MET
# time (4e8 s) move by 400 s.
DEFAULT_FLOAT_TOLERANCE = Tolerance(ulps=DEFAULT_ULPS)


class VerifyUsageError(UsageError):
    """A rule, a reference or an input that makes the comparison meaningless (exit 2)."""


def default_rules() -> List[CompareRule]:
    return [
        CompareRule(pattern="*.fits", comparator="fits", floats=DEFAULT_FLOAT_TOLERANCE),
        CompareRule(pattern="*.fits.gz", comparator="fits", floats=DEFAULT_FLOAT_TOLERANCE),
        CompareRule(pattern="*.fit", comparator="fits", floats=DEFAULT_FLOAT_TOLERANCE),
        CompareRule(pattern="*.fts", comparator="fits", floats=DEFAULT_FLOAT_TOLERANCE),
        CompareRule(pattern="*.root", comparator="root", floats=DEFAULT_FLOAT_TOLERANCE),
        CompareRule(pattern="*.log", comparator="text"),
        CompareRule(pattern="*.txt", comparator="text"),
        CompareRule(pattern="*.par", comparator="text"),
        CompareRule(pattern="*", comparator="bytes"),
    ]


def load_rules_file(path: Path) -> List[CompareRule]:
    """A YAML list of CompareRule (or a mapping with key `rules:`, or a spec's verification section)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise VerifyUsageError(f"rules file {path}: no such file") from None
    except yaml.YAMLError as exc:
        raise VerifyUsageError(f"rules file {path}: not valid YAML: {exc}") from None
    if isinstance(data, dict) and "rules" in data:
        data = data["rules"]
    if not isinstance(data, list) or not data:
        raise VerifyUsageError(f"rules file {path}: expected a non-empty YAML list of rules "
                               "(pattern, comparator, ...)")
    rules = []
    for i, item in enumerate(data):
        try:
            rules.append(CompareRule.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '(rule)'}: {e['msg']}" for e in exc.errors())
            raise VerifyUsageError(f"rules file {path}: rule {i + 1}: {problems}") from None
    return rules


def rule_label(rule: CompareRule, rules: List[CompareRule]) -> str:
    try:
        n = rules.index(rule) + 1
    except ValueError:
        n = "?"
    return f"rule {n} (pattern {rule.pattern!r}, comparator {rule.comparator})"


def _match(pattern: str, relpath: str) -> bool:
    name = relpath.rsplit("/", 1)[-1]
    return fnmatch.fnmatchcase(relpath, pattern) or ("/" not in pattern and fnmatch.fnmatchcase(name, pattern))


def rule_for(relpath: str, rules: List[CompareRule]) -> CompareRule:
    """The first rule whose pattern matches; an output no rule covers is an error, never a silent pass."""
    for r in rules:
        if _match(r.pattern, relpath):
            return r
    raise VerifyUsageError(f"output file {relpath!r} is not covered by any rule (patterns: "
                           f"{', '.join(repr(r.pattern) for r in rules)}); add a rule for it")


def ignore_keywords(rule: CompareRule) -> set:
    return set(k.upper() for k in (rule.ignore_keywords if rule.ignore_keywords is not None
                                   else DEFAULT_IGNORE_KEYWORDS))


def is_glob(name: str) -> bool:
    return any(ch in name for ch in "*?[")


def column_rule(rule: CompareRule, column: str) -> Optional[ColumnRule]:
    """An exact column name wins over a glob; globs are tried in the order written."""
    if column in rule.columns:
        return rule.columns[column]
    for pat, cr in rule.columns.items():
        if is_glob(pat) and fnmatch.fnmatchcase(column, pat):
            return cr
    return None


def check_rule_columns(rule: CompareRule, rules: List[CompareRule], relpath: str, columns: Iterable[str]) -> None:
    """Every column a rule names (columns:, key_columns:) must exist in the file: a typo must not pass."""
    have = set(columns)
    label = rule_label(rule, rules)
    for name in list(rule.columns) + list(rule.key_columns):
        if is_glob(name):
            if not any(fnmatch.fnmatchcase(c, name) for c in have):
                raise VerifyUsageError(f"{relpath}: {label} names column pattern {name!r}, which matches no column "
                                       "of the reference")
        elif name not in have:
            raise VerifyUsageError(f"{relpath}: {label} names column {name!r}, which the reference does not have "
                                   f"(columns: {', '.join(sorted(have)[:30])}{' ...' if len(have) > 30 else ''})")


def apply_known_differences(checks: List[Check], known: List[KnownDifference],
                            today: Optional[dt.date] = None) -> List[Check]:
    """Failing checks a live known difference covers become `known`; an expired entry fails the run."""
    today = today or dt.date.today()
    extra = []
    for kd in known:
        expired = kd.expires < today
        where = kd.file + (f" column {kd.column}" if kd.column else "")
        if expired:
            extra.append(Check(file=kd.file, column=kd.column or "", test="known-difference", result=FAIL,
                               message=f"known difference for {where} expired on {kd.expires.isoformat()} "
                                       f"({kd.reason}): fix the difference or renew the entry"))
            continue
        for c in checks:
            if c.result == FAIL and _match(kd.file, c.file) and (kd.column is None or kd.column == c.column):
                c.result = KNOWN
                c.known_reason = f"{kd.reason} (until {kd.expires.isoformat()})"
    return checks + extra
