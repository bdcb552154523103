"""Running science verification from a workflow, and recording its verdict.

The verification module's callable API (release_manager.verify.runner.verify_package) is used
when it imports; otherwise `relman verify` as a subprocess when the command exists; otherwise the
verdict is "not-run". Verdicts: passed | failed | error | not-run | not-applicable.
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from release_manager.targets import verified_variants
from release_manager.workflows.common import Context, utcnow

# Variants that carry the software: the targets say (env does not; components are checked by their build checks).
VERIFIABLE = verified_variants()
_RESULT = {"pass": "pass", "warning": "pass", "known": "skip", "fail": "fail"}


@dataclass
class Verdict:
    verdict: str
    reason: str = ""
    reference: str = ""
    workload: str = ""
    checks: List[Dict[str, Any]] = field(default_factory=list)
    counts: Dict[str, int] = field(default_factory=dict)
    report: Optional[str] = None
    started: Optional[dt.datetime] = None
    finished: Optional[dt.datetime] = None
    how: str = ""

    @property
    def recordable(self) -> bool:
        return self.verdict in ("passed", "failed", "error")


def _checks_from(summary_checks) -> List[Dict[str, Any]]:
    out = []
    for c in summary_checks:
        out.append({"file": c.get("file") or "-", "hdu": c.get("hdu") or None, "column": c.get("column") or None,
                    "test": c.get("test") or "?", "statistic": _num(c.get("statistic")),
                    "p_value": _num(c.get("pvalue", c.get("p_value"))), "thresholds": c.get("thresholds") or None,
                    "result": _RESULT.get(c.get("result"), "error")})
    return out


def _num(v):
    return v if isinstance(v, (int, float)) else None


def ensure_local(ctx: Context, repository: str, digest: str) -> str:
    """repository@digest, pulled by digest when the engine lacks it (a build skipped from the registry)."""
    import docker.errors
    ref = f"{repository}@{digest}"
    api = ctx.engine()
    try:
        api.inspect_image(ref)
    except docker.errors.ImageNotFound:
        from release_manager.registry import load_credentials
        creds = load_credentials(ctx.settings, ctx.settings.registry)
        for line in api.pull(repository, tag=digest, stream=True, decode=True,
                             auth_config=creds.docker_auth() if creds else None):
            if "error" in line:
                ctx.echo(f"warning: pulling {ref}: {line['error']}")
                break
    return ref


def verify_image(ctx: Context, package: str, image: str, workdir: Path, apptainer: bool = False) -> Verdict:
    """apptainer: the workload also runs under `apptainer exec --containall` and must equal the Docker run."""
    spec = ctx.spec(package)
    if spec.verification is None:
        return Verdict("not-run", f"{package} has no verification section in its spec", how="none")
    workload = ",".join(s.name for s in spec.verification.workload)
    started = utcnow()
    try:
        from release_manager.verify.report import write_reports
        from release_manager.verify.runner import verify_package
    except ImportError:
        return _verify_subprocess(ctx, package, image, workdir, workload, started)
    from release_manager.errors import RelmanError, UsageError
    try:
        outcome = verify_package(ctx.settings, ctx.specs, package, image, workdir, api=ctx.engine(),
                                 echo=ctx.echo, plots=False, **({"apptainer": True} if apptainer else {}))
    except UsageError as exc:      # a missing reference or a spec problem: the science was not checked
        return Verdict("not-run", str(exc), workload=workload, started=started, finished=utcnow(), how="api")
    except TypeError:              # the API changed under us: fall back to the command
        return _verify_subprocess(ctx, package, image, workdir, workload, started)
    except RelmanError as exc:
        return Verdict("error", str(exc), workload=workload, started=started, finished=utcnow(), how="api")
    report = None
    try:
        paths = write_reports(outcome, workdir, html=True)
        report = str(paths.get("json") or workdir)
    except Exception as exc:  # noqa: BLE001 - a report problem must not lose the verdict
        ctx.echo(f"warning: verification report not written: {exc}")
    summary = outcome.summary()
    verdict = "passed" if outcome.verdict == "pass" else "failed"
    return Verdict(verdict, "", outcome.reference, workload, _checks_from(summary.get("checks", [])),
                   outcome.counts(), report, started, utcnow(), "api+apptainer" if apptainer else "api")


def _verify_subprocess(ctx, package, image, workdir, workload, started) -> Verdict:
    base = [sys.executable, "-m", "release_manager"]
    probe = subprocess.run(base + ["verify", "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        return Verdict("not-run", "verification is not available (no `relman verify` command)", how="none")
    r = subprocess.run(base + ["verify", package, "--image", image, "--report", str(workdir), "--no-html"],
                       capture_output=True, text=True)
    for line in (r.stdout + r.stderr).splitlines()[-5:]:
        ctx.echo(f"  verify: {line}")
    summary: Dict[str, Any] = {}
    p = Path(workdir) / "summary.json"
    if p.is_file():
        try:
            summary = json.loads(p.read_text())
        except ValueError:
            summary = {}
    if r.returncode == 2:
        return Verdict("not-run", (r.stderr or r.stdout).strip()[-500:], workload=workload, started=started,
                       finished=utcnow(), how="subprocess")
    verdict = {0: "passed", 1: "failed"}.get(r.returncode, "error")
    return Verdict(verdict, "" if verdict == "passed" else (r.stdout + r.stderr).strip()[-500:],
                   summary.get("reference", ""), workload, _checks_from(summary.get("checks", [])),
                   summary.get("counts", {}), str(p) if p.is_file() else None, started, utcnow(), "subprocess")


def record(ctx: Context, image_pk: int, v: Verdict) -> Optional[int]:
    """Record a verdict on an image row (it goes through verifying to verified or verification-failed)."""
    if not v.recordable:
        return None
    from release_manager.db import record_verification
    return record_verification(image_pk, reference=v.reference or "unknown", workload=v.workload or "workload",
                               verdict=v.verdict, checks=v.checks, started=v.started, finished=v.finished,
                               report_location=v.report, summary={"counts": v.counts, "how": v.how},
                               actor=ctx.who(), db=ctx.database())
