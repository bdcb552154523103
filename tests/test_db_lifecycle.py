"""The image lifecycle table itself (no database needed)."""
from __future__ import annotations

import pytest

from release_manager.db import lifecycle as lc
from release_manager.db.lifecycle import IllegalTransition, check

# the MariaDB and PostgreSQL databases are one per server, shared by this module's tests in file order
pytestmark = pytest.mark.random_order(disabled=True)


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


def test_the_query_benchmark_runs_and_prints_its_figures():
    """benchmarks/db_queries.py at a small scale (the full run: `python benchmarks/db_queries.py`)."""
    import subprocess
    import sys

    from release_manager.config import PROJECT_ROOT
    p = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / "db_queries.py"), "--images", "300",
                        "--repeat", "1"], capture_output=True, text=True, timeout=300)
    # the budgets are for the full run on a quiet machine: here only that it runs and reports
    assert p.returncode in (0, 1) and not p.stderr, p.stdout + p.stderr
    assert "query   images list --package pkg03: 30 rows" in p.stdout
    assert "command relman history pkg03 --json" in p.stdout
    assert ("all within budget" in p.stdout) != ("OVER BUDGET" in p.stdout)
