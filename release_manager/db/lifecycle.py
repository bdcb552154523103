"""The image lifecycle, in one place: every status change of an image goes through `check`.

    requested -> building -> built -> pushed -> verifying -> verified -> promoted
                    |          |        |          |
                    v          v        v          v
                  failed     failed   failed   verification-failed -> verifying (a re-run)

    verified -> verifying (a re-run);  any state -> retired, except promoted -> retired, which
    must be explicit (a person retiring a release, with a reason): garbage collection never
    retires a promoted image.  retired is final.
"""
from __future__ import annotations

from typing import Dict, FrozenSet, Optional

from release_manager.errors import UsageError

REQUESTED = "requested"
BUILDING = "building"
BUILT = "built"
FAILED = "failed"
PUSHED = "pushed"
VERIFYING = "verifying"
VERIFIED = "verified"
VERIFICATION_FAILED = "verification-failed"
PROMOTED = "promoted"
RETIRED = "retired"

STATES = (REQUESTED, BUILDING, BUILT, FAILED, PUSHED, VERIFYING, VERIFIED, VERIFICATION_FAILED, PROMOTED, RETIRED)

# What an image may become from each state (retired is added below for all but promoted and retired).
_NEXT: Dict[str, FrozenSet[str]] = {
    REQUESTED: frozenset({BUILDING, FAILED}),
    BUILDING: frozenset({BUILT, PUSHED, FAILED}),      # a build that pushes reports built and pushed at once
    BUILT: frozenset({PUSHED, FAILED}),                # failed: the push failed
    FAILED: frozenset(),
    PUSHED: frozenset({VERIFYING}),
    VERIFYING: frozenset({VERIFIED, VERIFICATION_FAILED}),
    VERIFIED: frozenset({PROMOTED, VERIFYING}),
    VERIFICATION_FAILED: frozenset({VERIFYING}),
    PROMOTED: frozenset(),
    RETIRED: frozenset(),
}
NEXT = {s: (n | {RETIRED}) if s not in (PROMOTED, RETIRED) else n for s, n in _NEXT.items()}

# The states a record may start in: a workflow's request, or a build result arriving whole.
INITIAL = frozenset({REQUESTED, BUILDING, BUILT, PUSHED, FAILED})


class IllegalTransition(UsageError):
    """An image status change the lifecycle does not allow. Exit code 2."""


def check(current: Optional[str], new: str, explicit: bool = False, reason: Optional[str] = None,
          what: str = "image") -> None:
    """Raise IllegalTransition unless `current -> new` is allowed (`current` None: a new record)."""
    if new not in STATES:
        raise IllegalTransition(f"{what}: unknown status {new!r}; the statuses are {', '.join(STATES)}")
    if current is None:
        if new not in INITIAL:
            raise IllegalTransition(f"{what}: a new image cannot start as {new!r}; it starts as one of "
                                    f"{', '.join(s for s in STATES if s in INITIAL)}")
        return
    if current == PROMOTED and new == RETIRED:
        if not explicit or not (reason or "").strip():
            raise IllegalTransition(f"{what} is promoted: retiring it needs an explicit request with a reason "
                                    "(garbage collection never retires promoted images)")
        return
    if new not in NEXT[current]:
        allowed = ", ".join(s for s in STATES if s in NEXT[current]) or "nothing (final state)"
        raise IllegalTransition(f"{what}: cannot go from {current} to {new}; from {current} it may go to {allowed}")


def path(current: Optional[str], target: str) -> list:
    """The shortest chain of allowed states from `current` to `target` (for a result that skips steps,
    such as a pushed build arriving for a requested image), without retired; [] when there is none."""
    frontier = [[current]] if current else [[s] for s in INITIAL]
    seen = set()
    while frontier:
        nxt = []
        for chain in frontier:
            last = chain[-1]
            if last == target:
                return chain[1:] if current else chain
            if last in seen:
                continue
            seen.add(last)
            nxt += [chain + [s] for s in STATES if s in _NEXT[last]]
        frontier = nxt
    return []
