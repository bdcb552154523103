"""Strict validation of pipeline parameter values, in Python, before any stage uses them.

Jenkins exports parameters as environment variables and the stages only ever read them as
"$NAME" inside single-quoted shell strings, so a value is never parsed as code; validation is
the second wall: a value that is not what the parameter means is refused before anything runs.
Each parameter of the job model names one of the CHECKS below.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, Mapping

from release_manager.errors import UsageError
from release_manager.validate import ref as validate_ref
from release_manager import validate as valid
from release_manager.tags import check_tag

GROUPS_SPLIT_RE = re.compile(r"[,\s]+")


def _ref(value: str) -> str:
    return validate_ref(value)


def _build_ref(value: str) -> str:
    """A ref whose image tag is '<ref>-<variant>' unchanged: a tag or a branch without '/'."""
    validate_ref(value)
    if "/" in value:
        raise UsageError(f"ref {value!r}: build jobs take a tag, a branch without '/' or a commit id "
                         "(the image tag is '<ref>-<variant>'); build branches with '/' through debug-build")
    check_tag(f"{value}-runtime")
    return value


def _tag(value: str) -> str:
    return check_tag(value)


def _requester(value: str) -> str:
    return valid.user(value, "requester")


def _reason(value: str) -> str:
    return valid.reason(value, "reason")


def _channel(value: str) -> str:
    """Empty (move no channel) or a channel name; which channels the package has, `relman promote` checks."""
    from release_manager.spec.model import _channel_name
    if value == "":
        return value
    try:
        return _channel_name(value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


CHECKS: Dict[str, Callable[[str], str]] = {
    "channel": _channel,
    "ref": _ref,
    "build-ref": _build_ref,
    "tag": _tag,
    "requester": _requester,
    "reason": _reason,
}


def check_value(check: str, name: str, value) -> str:
    if not isinstance(value, str):
        raise UsageError(f"parameter {name}: expected a string, got {type(value).__name__}")
    try:
        return CHECKS[check](value)
    except UsageError as exc:
        raise UsageError(f"parameter {name}: {exc}") from None


def parse_assignments(items) -> Dict[str, str]:
    """['K=v', ...] (from --param) -> {K: v}; a name given twice is an error."""
    out: Dict[str, str] = {}
    for item in items or ():
        if "=" not in item:
            raise UsageError(f"--param {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        if k in out:
            raise UsageError(f"--param {k}: given twice")
        out[k] = v
    return out


def validate(job, given: Mapping[str, str], context: Mapping[str, str] = None) -> Dict[str, str]:
    """Every parameter of `job` checked: unknown names refused, defaults filled, each value checked.

    `context` holds the variables Jenkins provides itself (BUILD_USER_ID); they are checked too
    (None: not checked, e.g. when triggering, since Jenkins sets them).
    Returns {NAME: value} for parameters and context variables, ready to become environment variables.
    """
    known = {p.name: p for p in job.parameters}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise UsageError(f"job {job.full_name}: unknown parameter(s) {', '.join(unknown)}; "
                         f"it takes: {', '.join(known) or 'none'}")
    out: Dict[str, str] = {}
    problems = []
    todo = [(p, given.get(p.name, p.default), f"parameter {p.name}: required") for p in job.parameters]
    todo += [(c, context.get(c.name, ""), f"{c.name}: not set") for c in (job.context if context is not None else ())]
    for p, value, missing in todo:
        if value == "" and p.required:
            problems.append(f"{missing} ({p.description})")
            continue
        try:
            out[p.name] = check_value(p.check, p.name, value)
        except UsageError as exc:
            problems.append(str(exc))
    if problems:
        raise UsageError(f"job {job.full_name}: " + "; ".join(problems))
    return out


def check_groups(job, groups_value: str) -> None:
    """Jenkins (build-user-vars) exports BUILD_USER_GROUPS: the user must be in one of the job's groups."""
    if not job.allowed_groups:
        return
    groups = {g for g in GROUPS_SPLIT_RE.split(groups_value or "") if g}
    if not groups & set(job.allowed_groups):
        raise UsageError(f"job {job.full_name} may be run only by members of {', '.join(job.allowed_groups)}; "
                         f"the user's groups are {', '.join(sorted(groups)) or 'none'}")
