"""Determinism check (verification.determinism): the workload runs again in the same image and every
product is compared with the first run's by the spec's own rules, before image and reference are
compared. A product that differs between two runs of the same image cannot be judged against a
reference: each difference is a failed check named `determinism`, with the file, HDU, column or keyword.

The static half (a program run without the parameters that make its products reproducible, e.g.
makeFT1 without tstart/tstop) is refused when the spec is read (spec/model.py, Verification).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List

from release_manager.verify.result import FAIL, PASS, Check


def rerun_checks(ver, run_step: Callable[[object, Path], object], first: Path, workdir: Path,
                 fresh_dir: Callable[[Path], Path], echo: Callable[[str], None] = print) -> List[Check]:
    """Run the workload ver.determinism.runs - 1 more times (run_step(step, outdir) -> StepRun) and
    compare each run's products with the first run's (folder first)."""
    from release_manager.verify.compare import compare_paths
    out: List[Check] = []
    for n in range(2, ver.determinism.runs + 1):
        outdir = fresh_dir(workdir / "outputs" / f"image-run{n}")
        for st in ver.workload:
            r = run_step(st, outdir)
            if r.exit_code != 0:
                out.append(Check("workload", "determinism", FAIL, "", st.name,
                                 f"run {n} of step {st.name} exited with {r.exit_code} (run 1: 0)"))
                return out
        echo(f"determinism: comparing run {n} with run 1 in the same image")
        res = compare_paths(first, outdir, ver.rules, [], outputs=ver.outputs, plots=False)
        by_file: Dict[str, List[Check]] = {}
        for c in res.checks:
            by_file.setdefault(c.file, []).append(c)
        for f, checks in sorted(by_file.items()):
            bad = [c for c in checks if c.result == FAIL]
            if not bad:
                out.append(Check(f, "determinism", PASS, "", "", f"{f}: the same in run 1 and run {n} "
                                 f"({len(checks)} checks)"))
                continue
            for c in bad:
                out.append(Check(f, "determinism", FAIL, c.hdu, c.column,
                                 f"differs between run 1 and run {n} of the same image: {c.message}",
                                 details={"check": c.test}))
    return out
