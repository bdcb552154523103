"""The verification workload once more, under Apptainer, as the farms run it: `apptainer exec --containall`
(read-only image, a non-root caller's uid, no HOME, clean environment) from a SIF of the very image the
Docker run used (its engine image id, exported with `docker save`, so the two cannot drift). The outputs
must equal the Docker run's under the spec's own rules: each file becomes a check named
`apptainer-vs-docker/<file>`, and a difference fails the verification like any other.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Optional

from release_manager.apptainer import Apptainer, Bind, sha256_file
from release_manager.verify.compare import compare_paths
from release_manager.verify.result import FAIL, PASS, Check, Outcome

PREFIX = "apptainer-vs-docker/"


def sif_of_image(settings, api, image_id: str, workdir: Path, app: Apptainer) -> Dict[str, object]:
    """workdir/image.sif from the engine's image (docker save -> docker-archive://)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tar, sif = workdir / "image.tar", workdir / "image.sif"
    with open(tar, "wb") as f:
        for chunk in api.get_image(image_id):
            f.write(chunk)
    try:
        r = app.build(sif, f"docker-archive://{tar}", binds=[Bind(tar)])
    finally:
        tar.unlink(missing_ok=True)
    return {"sif": str(sif), "sha256": sha256_file(sif), "size": sif.stat().st_size,
            "build_seconds": r.seconds, "apptainer_version": app.version(), "from": f"docker-archive of {image_id}"}


def run_workload(settings, api, image_id: str, workload, inputs: Dict[str, Path], docker_out: Path,
                 workdir: Path, uid: int, verification, out: Outcome, echo: Callable[[str], None],
                 sif: Optional[Path] = None) -> List[dict]:
    """Run the workload from a SIF of image_id (made here unless `sif` is one already made from it) and
    compare with docker_out; checks go into `out`, what ran into out.meta['apptainer']; returns the
    steps (side 'apptainer')."""
    from release_manager.verify.runner import StepRun, _fresh_dir
    app = Apptainer(api, settings.apptainer_image, nohttps=settings.registry_insecure, timeout=settings.docker_timeout)
    base = workdir / "apptainer"
    if base.exists():
        shutil.rmtree(base)
    if sif is None:
        echo(f"apptainer: building a SIF of {image_id[:19]}")
        meta = sif_of_image(settings, api, image_id, base, app)
        sif = base / "image.sif"
    else:
        base.mkdir(parents=True)
        meta = {"sif": str(sif), "sha256": sha256_file(sif), "size": sif.stat().st_size, "build_seconds": None,
                "apptainer_version": app.version(), "from": f"given, made from {image_id}"}
    entrypoint = list(api.inspect_image(image_id)["Config"].get("Entrypoint") or [])
    apt_out = _fresh_dir(workdir / "outputs" / "apptainer", uid)
    os.chmod(base, 0o755)
    binds = {f"/inputs/{n}": (p, True) for n, p in inputs.items()}
    binds["/outputs"] = (apt_out, False)
    meta.update(uid=uid, gid=uid, options=["exec", "--containall"], entrypoint=entrypoint)
    out.meta["apptainer"] = meta
    steps, ok = [], True
    for st in workload:
        argv = entrypoint + list(st.command)
        echo(f"apptainer: {st.name}: apptainer exec --containall image.sif {' '.join(argv)} (uid {uid})")
        r = app.exec(sif, argv, binds, uid=uid, gid=uid, pwd="/outputs")
        run = StepRun("apptainer", st.name, argv, exit_code=r.exit_code, wall_seconds=r.seconds,
                      memory_source="not measured (Apptainer runs inside its tool container)", log=r.output,
                      extra={"includes": "the tool container's start"})
        steps.append(run.as_dict())
        (workdir / "logs").mkdir(exist_ok=True)
        (workdir / "logs" / f"apptainer-{st.name}.log").write_text(r.output)
        echo(f"  exit {r.exit_code}, {r.seconds:.2f} s")
        if r.exit_code != 0:
            out.add(Check(PREFIX + "workload", "exit-code", FAIL, "", st.name,
                          f"step {st.name} exited with {r.exit_code} under apptainer exec --containall: "
                          f"{r.output.strip()[-500:]}"))
            ok = False
            break
        out.add(Check(PREFIX + "workload", "exit-code", PASS, "", st.name, f"step {st.name}: exit 0 under Apptainer"))
    if ok:
        sub = compare_paths(docker_out, apt_out, verification.rules, verification.known_differences,
                            outputs=verification.outputs, plots=False, echo=echo)
        for c in sub.checks:
            c.file = PREFIX + c.file
            out.add(c)
    meta["verdict"] = "pass" if ok and not any(c.failed for c in out.checks if c.file.startswith(PREFIX)) else "fail"
    return steps
