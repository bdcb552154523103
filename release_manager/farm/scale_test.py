"""`relman farm scale-test`: N tasks of a package's verification workload (its spec's `verification`
section, as `relman verify` runs it) through a site's scheduler, each task's outputs compared with the
reference under the spec's rules (release_manager.verify.compare), timed against a bare run.

    spec -> baseline (`verify_package`: the workload once in the image by `docker run`, the reference,
            their comparison; the program's own run time is the baseline)
         -> inputs staged in the site's scratch area, the workload's argv mapped to the task's folder
         -> one array job of N tasks (release_manager.farm.runs.submit: recorded) -> wait
         -> per task: accounting + node times (collect.task_rows) + comparison with the reference
         -> ScaleReport: JSON and a self-contained HTML report with plots; stored into farm_tasks

Per task: queue wait = relman's submit time -> the task's start on the node; run = start -> end on the
node (the container's or SIF's start included); start overhead = run - the bare program's run time.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shlex
import shutil
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from release_manager.errors import UsageError
from release_manager.farm import accounting, launcher, runs
from release_manager.farm.collect import log_tail, task_rows
from release_manager.farm.site import Site

Echo = Callable[[str], None]
INPUTS_DIR = "relman-inputs"


@dataclass
class ScaleReport:
    package: str
    site: str
    scheduler: str
    runtime: str
    image: str
    sif: Optional[str]
    job_id: Optional[str]
    tasks: int
    command: List[str]
    directory: str
    verdict: str = "fail"                 # pass: every task exit 0 and equal to the reference
    summary: Dict[str, Any] = field(default_factory=dict)
    baseline: Dict[str, Any] = field(default_factory=dict)
    registry: Dict[str, Any] = field(default_factory=dict)
    task_rows: List[Dict[str, Any]] = field(default_factory=list)
    record: Optional[int] = None
    report_dir: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @property
    def failures(self) -> List[Dict[str, Any]]:
        return [t for t in self.task_rows if t.get("verdict") != "pass"]


def package_of(image: str, package: Optional[str]) -> str:
    """--package, else the last part of the image's repository (HOST/fermi-lat/evtselect:TAG -> evtselect)."""
    return package or launcher.parse_ref(image).group("repo").split("/")[-1]


def stage_inputs(site: Site, inputs: Dict[str, Path]) -> Dict[str, Path]:
    """The workload's inputs copied (once: by content) into the site's scratch area; returns name -> the
    path the task sees. The scratch area is where the local sites' tasks read; at a real farm it must be a
    shared area (its bind's host path reachable from the submit host)."""
    scratch = site.binds.scratch if site.binds else None
    if scratch is None:
        raise UsageError(f"site {site.name}: a scale test stages its inputs in binds.scratch, which this site "
                         "does not have")
    out = {}
    for name, path in inputs.items():
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        sub = f"{INPUTS_DIR}/{h.hexdigest()[:16]}"
        dest = Path(scratch.host) / sub / name
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{name}.part-{os.getpid()}")
            shutil.copyfile(path, tmp)
            tmp.chmod(0o644)
            os.replace(tmp, dest)
            for d in (dest.parent, dest.parent.parent):
                d.chmod(0o755)
        out[name] = Path(scratch.container) / sub / name
    return out


def task_command(workload, staged: Dict[str, Path]) -> List[str]:
    """The workload's steps for the task's folder: /inputs/NAME -> the staged input, /outputs -> the task's
    working folder (`.`). One step runs as it is; several run in order under `sh -c`, each word quoted."""
    from release_manager.verify.runner import map_argv
    steps = [map_argv(list(st.command), staged, Path("."), None) for st in workload]
    if len(steps) == 1:
        return steps[0]
    return ["sh", "-c", " && ".join(" ".join(shlex.quote(w) for w in argv) for argv in steps)]


def _manifest_bytes(settings, pinned: str) -> Optional[int]:
    """Compressed bytes of an image's (or ORAS artifact's) config and layers, from its manifest."""
    m = launcher.parse_ref(pinned)
    got = runs.registry_for(settings)(m.group("host")).get_manifest(m.group("repo"), m.group("digest"))
    if not got:
        return None
    try:
        doc = json.loads(got[0])
    except ValueError:
        return None
    parts = list(doc.get("layers") or []) + ([doc["config"]] if doc.get("config") else [])
    return sum(int(p.get("size", 0)) for p in parts) or None


def _stats(values: List[float]) -> Dict[str, Optional[float]]:
    v = sorted(x for x in values if x is not None)
    if not v:
        return {"n": 0, "min": None, "median": None, "p90": None, "max": None, "mean": None}
    p90 = v[min(len(v) - 1, int(round(0.9 * (len(v) - 1))))]
    return {"n": len(v), "min": round(v[0], 3), "median": round(statistics.median(v), 3), "p90": round(p90, 3),
            "max": round(v[-1], 3), "mean": round(statistics.fmean(v), 3)}


def run_scale_test(settings, specs, site: Site, image: str, tasks: int, package: Optional[str] = None,
                   sif: Optional[str] = None, report_dir: Optional[Path] = None, timeout: float = 3600,
                   keep_outputs: bool = False, api=None, echo: Echo = lambda m: None) -> ScaleReport:
    from release_manager.verify.compare import compare_paths
    from release_manager.verify.runner import resolve_inputs, resolve_path, verify_package
    pkg = package_of(image, package)
    if pkg not in specs.packages:
        raise UsageError(f"no spec for package {pkg!r} (from --image {image}; have: "
                         f"{', '.join(sorted(specs.packages))}; give --package)")
    loaded = specs.packages[pkg]
    ver = loaded.spec.verification
    if ver is None:
        raise UsageError(f"{loaded.path}: package {pkg} has no verification section: nothing to scale-test")
    if not 1 <= tasks <= launcher.MAX_TASKS:
        raise UsageError(f"--tasks {tasks}: between 1 and {launcher.MAX_TASKS}")
    if site.placeholders():
        raise UsageError(f"site {site.name} still has placeholder(s) to fill: a scale test submits for real")
    inputs = resolve_inputs(ver, settings)
    db = runs.database(settings)
    ref = launcher.resolve(image, runs.registry_for(settings))
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(report_dir) if report_dir else settings.results_dir / pkg / "scale-test" / f"{site.name}-{stamp}"
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UsageError(f"--report {out_dir}: exists and is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)

    # ---- the baseline: the workload once by `docker run`, the reference, their comparison
    from release_manager import engine
    api = api or engine.connect(settings)
    had_image = _has_image(api, ref.pinned)
    echo(f"baseline: {pkg}'s workload in {ref.pinned} and the reference ({ver.reference.kind})")
    base = verify_package(settings, specs, pkg, ref.pinned, out_dir / "baseline", api=api, echo=lambda m: None,
                          plots=False)
    image_steps = [s for s in base.steps if s["side"] == "image"]
    program_s = sum(s["wall_seconds"] for s in image_steps)
    docker_run_s = sum(float(s["extra"].get("host_seconds_incl_container_start") or s["wall_seconds"])
                       for s in image_steps)
    ref_dir = (resolve_path(ver.reference.path, settings) if ver.reference.kind == "stored"
               else out_dir / "baseline" / "outputs" / "reference")
    baseline = {"verdict": base.verdict, "reference": base.reference, "reference_dir": str(ref_dir),
                "program_seconds": round(program_s, 3), "docker_run_seconds": round(docker_run_s, 3),
                "steps": [{k: s[k] for k in ("side", "step", "exit_code", "wall_seconds")} for s in base.steps],
                "failures": [c.message for c in base.failures()][:10]}
    echo(f"  the program alone: {program_s:.2f} s; `docker run` incl. container start: {docker_run_s:.2f} s; "
         f"image vs reference: {base.verdict}")

    # ---- the job
    staged = stage_inputs(site, inputs)
    command = task_command(ver.workload, staged)
    sif_bytes_before = None
    if site.runtime == "apptainer" and site.apptainer:     # the node's cache before the first task can fill it
        sif_ref = launcher.resolve(sif or launcher.default_sif_ref(image), runs.registry_for(settings), what="--sif")
        sif_bytes_before = (Path(site.apptainer.sif_cache) / (sif_ref.digest.replace(":", "-") + ".sif")).exists()
    sub = runs.submit(settings, site, image, command, tasks, sif=sif, kind="scale-test", package=pkg)
    echo(f"submitted job {sub.job_id}: {tasks} task(s) at {site.name} ({site.scheduler} + {site.runtime})")
    states = accounting.wait(site, sub.job_id, tasks=tasks, timeout=timeout, echo=echo)
    rows = task_rows(states, Path(sub.directory), sub.submitted_epoch)

    # ---- each task's outputs against the reference
    for r in rows:
        tdir = Path(sub.directory) / f"task-{r['task']}"
        r["overhead_seconds"] = round(r["run_seconds"] - program_s, 3) if r.get("run_seconds") is not None else None
        if r["state"] != "done":
            r["verdict"] = "error"
            r["detail"] = (r.get("detail") or f"{r['state']}, exit {r['exit_code']}").strip()
            continue
        if not tdir.is_dir():
            r["verdict"], r["detail"] = "error", f"no task folder {tdir}"
            continue
        cmp = compare_paths(ref_dir, tdir, ver.rules, ver.known_differences, outputs=ver.outputs, plots=False)
        r["verdict"] = "pass" if cmp.verdict == "pass" else "fail"
        r["checks"] = len(cmp.checks)
        if r["verdict"] == "pass" and not keep_outputs:
            shutil.rmtree(tdir, ignore_errors=True)   # N copies of an output equal to the reference: its log stays
        if r["verdict"] != "pass":
            r["detail"] = "differs from the reference: " + "; ".join(
                f"{c.file} {c.hdu or ''} {c.column or ''} {c.test}: {c.message}"[:300]
                for c in cmp.failures()[:5]) + "\n" + log_tail(Path(sub.directory), r["task"])

    # ---- figures
    starts = [r for r in rows if r.get("node_start")]
    ends = [r for r in rows if r.get("node_end")]
    t_first = sub.submitted_epoch
    t_last = max((_epoch(r["node_end"]) for r in ends), default=None)
    wall = round(t_last - t_first, 3) if t_last else None
    passed = sum(1 for r in rows if r.get("verdict") == "pass")
    summary = {
        "tasks": tasks, "accounted": len(rows), "passed": passed,
        "failed": sum(1 for r in rows if r.get("verdict") == "error"),
        "differ": sum(1 for r in rows if r.get("verdict") == "fail"),
        "wall_seconds": wall, "tasks_per_second": round(tasks / wall, 4) if wall else None,
        "queue_seconds": _stats([r.get("queue_seconds") for r in rows]),
        "run_seconds": _stats([r.get("run_seconds") for r in rows]),
        "overhead_seconds": _stats([r.get("overhead_seconds") for r in rows]),
        "program_seconds": round(program_s, 3),
        "hosts": sorted({r["host"] for r in rows if r.get("host")}),
        "started": len(starts),
        "load_average": list(os.getloadavg()),
    }
    img_bytes = _manifest_bytes(settings, sub.image)
    registry = {"measured": False,
                "how": "estimated from the registry's manifests and the node's caches (the local registry logs no "
                       "accesses): a node pulls the image (Docker) or the SIF (Apptainer) once",
                "image_compressed_bytes": img_bytes,
                "sif_bytes": _manifest_bytes(settings, sub.sif) if sub.sif else None}
    if site.runtime == "docker":
        registry["served_bytes_estimate"] = 0 if had_image else img_bytes
        registry["node_had_image"] = had_image
    else:
        registry["served_bytes_estimate"] = 0 if sif_bytes_before else registry["sif_bytes"]
        registry["node_had_sif"] = sif_bytes_before
    verdict = "pass" if passed == tasks and len(rows) == tasks else "fail"
    rep = ScaleReport(pkg, site.name, site.scheduler, site.runtime, sub.image, sub.sif, sub.job_id, tasks, command,
                      sub.directory, verdict, summary, baseline, registry, rows, sub.record, str(out_dir))
    db_rows = {r["task"]: {"verdict": r.get("verdict"), "overhead_seconds": r.get("overhead_seconds"),
                           "detail": r.get("detail")} for r in rows}
    runs.store(settings, site, sub.job_id, states, extra=db_rows, state="passed" if verdict == "pass" else "failed",
               summary={**summary, "baseline": {k: baseline[k] for k in ("verdict", "program_seconds",
                                                                        "docker_run_seconds")},
                        "registry": registry, "report": str(out_dir)}, db=db)
    write_report(rep, out_dir)
    return rep


def _has_image(api, ref: str) -> bool:
    try:
        api.inspect_image(ref)
        return True
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound
        return False


def _epoch(iso: Optional[str]) -> Optional[float]:
    from release_manager.farm.collect import epoch
    return epoch(iso)


# ---------------------------------------------------------------------- report

def plots(rep: ScaleReport) -> Dict[str, str]:
    """base64 PNGs: the timeline (each task's queue wait and run), and the distributions of queue wait,
    run time and start overhead."""
    import base64
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def png(fig) -> str:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        return base64.b64encode(buf.getvalue()).decode()

    out = {}
    rows = sorted(rep.task_rows, key=lambda r: r["task"])
    t0 = min((_epoch(r["node_start"]) or 0) - (r.get("queue_seconds") or 0) for r in rows) if rows else 0
    fig, ax = plt.subplots(figsize=(7.5, max(2.0, min(12.0, 0.06 * len(rows) + 1.5))))
    for r in rows:
        i = r["task"]
        s = _epoch(r.get("node_start"))
        e = _epoch(r.get("node_end"))
        if s is None:
            continue
        q = r.get("queue_seconds") or 0
        ax.barh(i, q, left=s - q - t0, color="#cccccc", height=0.8)
        colour = "#2ca02c" if r.get("verdict") == "pass" else "#d62728"
        ax.barh(i, (e or s) - s, left=s - t0, color=colour, height=0.8)
    ax.set_xlabel("seconds since submission")
    ax.set_ylabel("task")
    ax.set_title(f"{rep.tasks} tasks at {rep.site}: queue wait (grey), run (green: equal to the reference, "
                 "red: failed or differs)", fontsize=8)
    out["timeline"] = png(fig)
    for key, label in (("queue_seconds", "queue wait (s)"), ("run_seconds", "run on the node (s)"),
                       ("overhead_seconds", "start overhead: run - bare program (s)")):
        vals = [r[key] for r in rows if r.get(key) is not None]
        if not vals:
            continue
        fig, ax = plt.subplots(figsize=(4.2, 2.8))
        ax.hist(vals, bins=min(40, max(5, len(vals) // 3)), color="#1f77b4", edgecolor="white")  # bars apart when bins touch
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel("tasks", fontsize=8)
        ax.tick_params(labelsize=7)
        out[key] = png(fig)
    return out


def html(rep: ScaleReport, pngs: Optional[Dict[str, str]] = None, generated: Optional[str] = None) -> str:
    """The report page; pngs and generated default to plots(rep) and now (a golden test fixes both)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    env = Environment(loader=FileSystemLoader(str(launcher.TEMPLATES)), autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("scale_test.html.j2").render(
        r=rep, s=rep.summary, plots=plots(rep) if pngs is None else pngs, failures=rep.failures[:50],
        generated=generated or dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat())


def write_report(rep: ScaleReport, folder: Path) -> Dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "scale-test.json", "html": folder / "scale-test.html"}
    for key, text in (("json", json.dumps(rep.as_dict(), indent=2, default=str) + "\n"), ("html", html(rep))):
        tmp = paths[key].with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, paths[key])
    return paths


def table(rep: ScaleReport) -> List[str]:
    """The terminal's summary: one line per figure, then the failures."""
    s = rep.summary

    def st(k):
        d = s.get(k) or {}
        return (f"median {d.get('median')} s, p90 {d.get('p90')} s, max {d.get('max')} s"
                if d.get("n") else "-")
    lines = [f"scale test: {rep.package} at {rep.site} ({rep.scheduler} + {rep.runtime}), job {rep.job_id}: "
             f"{rep.verdict.upper()}",
             f"  image          {rep.image}" + (f"\n  sif            {rep.sif}" if rep.sif else ""),
             f"  tasks          {rep.tasks}: {s['passed']} equal to the reference, {s['differ']} differ, "
             f"{s['failed']} failed",
             f"  wall           {s['wall_seconds']} s ({s['tasks_per_second']} tasks/s), submission to last end",
             f"  queue wait     {st('queue_seconds')}",
             f"  run on node    {st('run_seconds')}",
             f"  bare program   {rep.baseline['program_seconds']} s (`docker run` incl. container start "
             f"{rep.baseline['docker_run_seconds']} s)",
             f"  start overhead {st('overhead_seconds')}",
             f"  registry       ~{rep.registry.get('served_bytes_estimate')} bytes served (estimate)",
             f"  report         {rep.report_dir}/scale-test.html"]
    for r in rep.failures[:10]:
        lines.append(f"  task {r['task']}: {r.get('verdict')} ({r['state']}, exit {r.get('exit_code')}): "
                     + (r.get("detail") or "").strip().replace("\n", "\n      ")[:800])
    return lines
