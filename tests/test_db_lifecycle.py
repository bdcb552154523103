"""The image lifecycle table itself (no database needed)."""
from __future__ import annotations

import pytest

from release_manager.db import lifecycle as lc
from release_manager.db.lifecycle import IllegalTransition, check

HAPPY = [lc.REQUESTED, lc.BUILDING, lc.BUILT, lc.PUSHED, lc.VERIFYING, lc.VERIFIED, lc.PROMOTED]


def test_the_happy_path_is_allowed():
    for a, b in zip(HAPPY, HAPPY[1:]):
        check(a, b)


@pytest.mark.parametrize("a,b", [
    (lc.BUILT, lc.VERIFYING), (lc.PUSHED, lc.PROMOTED), (lc.VERIFICATION_FAILED, lc.PROMOTED),
    (lc.FAILED, lc.BUILDING), (lc.RETIRED, lc.PUSHED), (lc.RETIRED, lc.RETIRED), (lc.PROMOTED, lc.VERIFYING),
    (lc.VERIFYING, lc.PROMOTED), (lc.REQUESTED, lc.PUSHED),
])
def test_illegal_steps_are_refused_with_the_allowed_ones_named(a, b):
    with pytest.raises(IllegalTransition, match=f"cannot go from {a} to {b}; from {a} it may go to") as err:
        check(a, b)
    assert err.value.exit_code == 2


def test_anything_but_promoted_can_be_retired_promoted_only_explicitly():
    for s in lc.STATES:
        if s in (lc.PROMOTED, lc.RETIRED):
            continue
        check(s, lc.RETIRED)
    with pytest.raises(IllegalTransition, match="garbage collection never retires"):
        check(lc.PROMOTED, lc.RETIRED)
    with pytest.raises(IllegalTransition):
        check(lc.PROMOTED, lc.RETIRED, explicit=True, reason="  ")
    check(lc.PROMOTED, lc.RETIRED, explicit=True, reason="withdrawn: CVE-2024-1234")


def test_new_records_start_only_where_a_build_can_start():
    for s in (lc.REQUESTED, lc.BUILDING, lc.BUILT, lc.PUSHED, lc.FAILED):
        check(None, s)
    for s in (lc.VERIFIED, lc.PROMOTED, lc.VERIFYING, lc.RETIRED):
        with pytest.raises(IllegalTransition, match="cannot start as"):
            check(None, s)
    with pytest.raises(IllegalTransition, match="unknown status"):
        check(lc.BUILT, "shipped")


def test_path_walks_the_intermediate_states():
    assert lc.path(lc.REQUESTED, lc.PUSHED) == [lc.BUILDING, lc.PUSHED]
    assert lc.path(lc.BUILT, lc.PUSHED) == [lc.PUSHED]
    assert lc.path(lc.FAILED, lc.PUSHED) == []
    assert lc.path(lc.PUSHED, lc.RETIRED) == []          # retiring is never a side effect
