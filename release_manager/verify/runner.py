"""The workload runner: run a spec's verification workload in the image and in the reference
environment (stored outputs, the bare-metal host build, or a reference image), then compare.

Inside the image: inputs bind-mounted read-only at /inputs/<name>, a fresh host folder at /outputs
(owned by the image user's uid), no network. Measured per step:
  - wall time: the engine's StartedAt..FinishedAt of the container's process;
  - peak memory: memory.max_usage_in_bytes (cgroup v1) or memory.peak (v2) of a per-step parent
    cgroup the container runs under, read after it exits: the container's whole peak charge,
    page cache included. When the engine's cgroups are not visible here (remote engine, systemd
    driver), the stats API is polled instead and the figure is a lower bound.
On the host: wall time around the process, peak memory = ru_maxrss of the process (os.wait4):
resident set only, no page cache. The two memory figures are not the same quantity.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from release_manager.config import PROJECT_ROOT
from release_manager.errors import EngineError
from release_manager.verify.compare import compare_paths
from release_manager.verify.result import FAIL, PASS, Check, Outcome
from release_manager.verify.rules import VerifyUsageError

Echo = Callable[[str], None]
STEP_TIMEOUT = 3600
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class StepRun:
    side: str
    step: str
    argv: List[str]
    exit_code: int = -1
    wall_seconds: float = 0.0
    peak_memory_bytes: Optional[int] = None
    memory_source: str = ""
    log: str = ""
    extra: Dict[str, object] = field(default_factory=dict)

    def as_dict(self):
        d = asdict(self)
        d["log"] = self.log[-4000:]
        return d


def resolve_path(value: str, settings, base: Optional[Path] = None) -> Path:
    """{data_dir} is the settings' data folder; relative paths are relative to the project root
    (the folder that holds image_specs/)."""
    v = value.replace("{data_dir}", str(settings.data_dir))
    p = Path(v)
    if not p.is_absolute():
        root = base or Path(settings.specs_dir).resolve().parent
        p = (root / p) if (root / p).exists() or not (PROJECT_ROOT / p).exists() else PROJECT_ROOT / p
    return p.resolve()


def resolve_inputs(verification, settings) -> Dict[str, Path]:
    out = {}
    for name, value in verification.inputs.items():
        p = resolve_path(value, settings)
        if not p.is_file() or not os.access(p, os.R_OK):
            raise VerifyUsageError(f"verification input {name!r}: {value} -> {p}: no such readable file")
        out[name] = p
    return out


def _fresh_dir(path: Path, uid: Optional[int] = None) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    if uid is not None:
        try:
            os.chown(path, uid, uid)
        except PermissionError:
            os.chmod(path, 0o777)     # not root: let any uid write, the folder is ours and fresh
    return path


# ---------------------------------------------------------------------- in a container

class _CgroupPeak:
    """A private parent cgroup for one container: its peak usage survives the container's exit."""

    def __init__(self, api):
        self.name = f"relman-verify-{uuid.uuid4().hex[:12]}"
        self.path = None
        self.file = None
        try:
            info = api.info()
        except Exception:  # noqa: BLE001
            return
        if info.get("CgroupDriver") != "cgroupfs":
            return
        if str(info.get("CgroupVersion", "1")) == "2":
            path, file = CGROUP_ROOT / self.name, "memory.peak"
        else:
            path, file = CGROUP_ROOT / "memory" / self.name, "memory.max_usage_in_bytes"
        try:
            path.mkdir()
        except OSError:
            return
        self.path, self.file = path, file

    @property
    def parent(self) -> Optional[str]:
        return "/" + self.name if self.path else None

    def peak(self) -> Optional[int]:
        if not self.path:
            return None
        try:
            return int((self.path / self.file).read_text().strip())
        except (OSError, ValueError):
            return None

    def remove(self):
        if not self.path:
            return
        for ctl in CGROUP_ROOT.iterdir():
            p = ctl / self.name
            for _ in range(20):
                try:
                    if p.is_dir():
                        p.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


def _engine_seconds(state: dict) -> Optional[float]:
    def parse(s):
        m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", s or "")
        if not m:
            return None
        t = dt.datetime.fromisoformat(m.group(1)).replace(tzinfo=dt.timezone.utc).timestamp()
        return t + (float("0." + m.group(2)) if m.group(2) else 0.0)
    a, b = parse(state.get("StartedAt")), parse(state.get("FinishedAt"))
    return (b - a) if a is not None and b is not None and b >= a else None


def run_in_image(api, image: str, argv: List[str], inputs: Dict[str, Path], outdir: Path, step: str,
                 side: str = "image", environment: Optional[Dict[str, str]] = None,
                 timeout: int = STEP_TIMEOUT) -> StepRun:
    import docker.errors
    binds = {str(p): {"bind": f"/inputs/{n}", "mode": "ro"} for n, p in inputs.items()}
    binds[str(outdir)] = {"bind": "/outputs", "mode": "rw"}
    cg = _CgroupPeak(api)
    run = StepRun(side, step, list(argv))
    c = None
    try:
        hc = api.create_host_config(binds=binds, network_mode="none", cgroup_parent=cg.parent)
        c = api.create_container(image, command=list(argv), host_config=hc, working_dir="/outputs",
                                 environment=environment or None, labels={"relman.throwaway": "1"})
        samples = []
        stop = threading.Event()
        if not cg.parent:
            threading.Thread(target=_poll_stats, args=(api, c, samples, stop), daemon=True).start()
        t0 = time.monotonic()
        api.start(c)
        try:
            run.exit_code = api.wait(c, timeout=timeout)["StatusCode"]
        except Exception:  # noqa: BLE001 - requests' ReadTimeout and friends
            api.kill(c)
            run.exit_code = -1
            run.log = f"timed out after {timeout} s\n"
        host_seconds = time.monotonic() - t0
        stop.set()
        state = api.inspect_container(c)["State"]
        run.wall_seconds = round(_engine_seconds(state) or host_seconds, 4)
        run.extra["host_seconds_incl_container_start"] = round(host_seconds, 4)
        run.log += api.logs(c, stdout=True, stderr=True).decode(errors="replace")
        if cg.parent:
            run.peak_memory_bytes = cg.peak()
            run.memory_source = "cgroup memory high-water mark of the container (incl. page cache)"
        elif samples:
            run.peak_memory_bytes = max(samples)
            run.memory_source = "docker stats API, polled (lower bound)"
        else:
            run.memory_source = "not measured (no cgroup access, no stats sample)"
    except docker.errors.ImageNotFound:
        raise VerifyUsageError(f"image {image} not found") from None
    except docker.errors.APIError as exc:
        raise EngineError(f"running {step} in {image}: {exc.explanation or exc}") from None
    finally:
        if c is not None:
            try:
                api.remove_container(c, force=True)
            except Exception:  # noqa: BLE001
                pass
        cg.remove()
    return run


def _poll_stats(api, c, samples, stop):
    while not stop.is_set():
        try:
            s = api.stats(c, stream=False)
            m = s.get("memory_stats", {})
            v = m.get("max_usage") or m.get("usage")
            if v:
                samples.append(int(v))
        except Exception:  # noqa: BLE001
            pass
        stop.wait(0.1)


# ---------------------------------------------------------------------- on the host

def map_argv(argv: List[str], inputs: Dict[str, Path], outdir: Path, bindir: Optional[Path],
             prefix: Optional[str] = None) -> List[str]:
    """The image's argv for the host: /inputs/<name>, /outputs and the image prefix (files the image
    installs, e.g. makeFT1's cut files) replaced by their host places."""
    out = []
    names = sorted(inputs, key=len, reverse=True)
    for i, a in enumerate(argv):
        if i == 0 and bindir is not None and "/" not in a:
            cand = bindir / a
            if not cand.exists():
                raise VerifyUsageError(f"reference host build: {cand} does not exist")
            a = str(cand)
        for n in names:
            a = re.sub(rf"/inputs/{re.escape(n)}(?![\w.-])", str(inputs[n]).replace("\\", "\\\\"), a)
        a = re.sub(r"/outputs(?=/|$)", str(outdir).replace("\\", "\\\\"), a)
        if prefix and bindir is not None:
            a = re.sub(rf"{re.escape(prefix.rstrip('/'))}(?=/|$)", str(bindir.parent).replace("\\", "\\\\"), a)
        out.append(a)
    return out


def host_environment(spec, prefix: Path, user_dir: Path) -> Dict[str, str]:
    """What the image's entrypoint sets up, for the host build in prefix: the image environment and the
    per-run one ({user_dir} -> a fresh folder of this run), the image prefix replaced by the host's."""
    env = dict(os.environ)
    for k, v in list(spec.environment.items()) + list(spec.run.environment.items()):
        env[k] = v.replace(spec.prefix, str(prefix)).replace("{user_dir}", str(user_dir))
        for part in re.split(r"[;:]", v):
            if "{user_dir}" in part:
                Path(part.replace("{user_dir}", str(user_dir))).mkdir(parents=True, exist_ok=True)
    env["PATH"] = f"{prefix / 'bin'}:{env.get('PATH', '')}"
    return env


def run_on_host(argv: List[str], step: str, cwd: Path, env: Dict[str, str], timeout: int = STEP_TIMEOUT) -> StepRun:
    run = StepRun("reference", step, list(argv))
    t0 = time.monotonic()
    try:
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as exc:
        raise VerifyUsageError(f"reference step {step}: cannot run {argv[0]}: {exc}") from None
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    run.wall_seconds = round(time.monotonic() - t0, 4)
    run.exit_code = p.returncode
    run.peak_memory_bytes = ru.ru_maxrss * 1024
    run.memory_source = "ru_maxrss of the process (resident set, no page cache)"
    run.log = out.decode(errors="replace")
    return run


# ---------------------------------------------------------------------- verify a package

def image_reference(settings, package: str, image: str) -> str:
    from release_manager import tags
    if "/" not in image and ":" not in image and not image.startswith("sha256"):
        return f"{tags.repository(settings.registry, settings.namespace, package)}:{image}"
    return image


def ensure_image(api, image: str) -> str:
    import docker.errors
    try:
        return api.inspect_image(image)["Id"]
    except docker.errors.ImageNotFound:
        pass
    try:
        # the engine takes the whole reference: repo:tag or repo@sha256:digest
        for item in api.pull(image, stream=True, decode=True):
            if "error" in item:
                raise VerifyUsageError(f"image {image} is neither here nor pullable: {item['error']}")
        return api.inspect_image(image)["Id"]
    except docker.errors.APIError as exc:
        raise VerifyUsageError(f"image {image} is neither here nor pullable: {exc.explanation or exc}") from None


def verify_package(settings, specs, package: str, image: str, workdir: Path, api=None, echo: Echo = print,
                   plots: bool = True, apptainer: bool = False) -> Outcome:
    """apptainer: also run the workload with `apptainer exec --containall` from a SIF of the image, and
    require its outputs to equal the Docker run's (release_manager/verify/under_apptainer.py)."""
    from release_manager import engine
    if package not in specs.packages:
        raise VerifyUsageError(f"no spec for package {package!r} (have: {', '.join(sorted(specs.packages))})")
    loaded = specs.packages[package]
    spec = loaded.spec
    ver = spec.verification
    if ver is None:
        raise VerifyUsageError(f"{loaded.path}: package {package} has no verification section")
    holes = [f"{path}: {value}" for path, value in spec.placeholders() if path.startswith("verification.")]
    if holes:
        raise VerifyUsageError(f"{loaded.path}: the verification section still has placeholder(s) to fill:\n  "
                               + "\n  ".join(holes))
    inputs = resolve_inputs(ver, settings)
    platform = specs.platforms[spec.build_platform]
    workdir = Path(workdir)
    img_out = _fresh_dir(workdir / "outputs" / "image", platform.uid)
    ref_out = workdir / "outputs" / "reference"
    logs = _fresh_dir(workdir / "logs")

    # the reference first: a missing reference is a usage error before any container runs
    if ver.reference.kind == "rerun" and ver.reference.environment == "host" and ver.reference.host_ref:
        from release_manager.hostbuild import ensure_host_reference
        ensure_host_reference(settings, specs, package, echo=echo)
    ref_desc, host_bin, ref_image = _reference(ver.reference, settings)
    api = api or engine.connect(settings)
    full = image_reference(settings, package, image)
    image_id = ensure_image(api, full)
    if ref_image:
        ensure_image(api, ref_image)
    out = Outcome(title=f"{package} in {full}", reference=ref_desc, candidate=f"{full} ({image_id[:19]})")
    out.meta.update(package=package, image=full, image_id=image_id, spec=str(loaded.path), spec_hash=loaded.hash,
                    inputs={n: str(p) for n, p in inputs.items()})
    steps: List[StepRun] = []
    ok = True
    for st in ver.workload:
        echo(f"image: {st.name}: {' '.join(st.command)}")
        r = run_in_image(api, full, st.command, inputs, img_out, st.name, environment=None)
        steps.append(r)
        (logs / f"image-{st.name}.log").write_text(r.log)
        echo(f"  exit {r.exit_code}, {r.wall_seconds:.2f} s, peak "
             f"{(r.peak_memory_bytes or 0) / 1e6:.1f} MB ({r.memory_source})")
        if r.exit_code != 0:
            out.add(Check("workload", "exit-code", FAIL, "", st.name, f"step {st.name} exited with {r.exit_code} "
                          f"in the image: {r.log.strip()[-500:]}"))
            ok = False
            break
        out.add(Check("workload", "exit-code", PASS, "", st.name, f"step {st.name}: exit 0 in the image"))
    if ok and ver.determinism:
        from release_manager.verify.determinism import rerun_checks
        out.extend(rerun_checks(
            ver, lambda st, d: run_in_image(api, full, st.command, inputs, d, st.name, environment=None),
            img_out, workdir, lambda p: _fresh_dir(p, platform.uid), echo=echo))
    out.meta["apptainer"] = None
    if apptainer and ok:
        from release_manager.verify.under_apptainer import run_workload
        apt_steps = run_workload(settings, api, image_id, ver.workload, inputs, img_out, workdir, platform.uid,
                                 ver, out, echo)

    if ver.reference.kind == "stored":
        ref_dir = ref_out = Path(ref_desc)
    else:
        _fresh_dir(ref_out, platform.uid if ref_image else None)
        # on the host too the inputs go by their names (the tools write input file names into HISTORY)
        host_inputs = {}
        if not ref_image:
            named = _fresh_dir(workdir / "host-inputs")
            for n, p in inputs.items():
                (named / n).symlink_to(p)
                host_inputs[n] = named / n
        for st in ver.workload:
            if ref_image:
                r = run_in_image(api, ref_image, st.command, inputs, ref_out, st.name, side="reference")
            else:
                env = host_environment(spec, host_bin.parent, _fresh_dir(workdir / "host-user"))
                argv = map_argv(st.command, host_inputs, ref_out, host_bin, spec.prefix)
                echo(f"reference: {st.name}: {' '.join(argv)}")
                r = run_on_host(argv, st.name, ref_out, env)
            steps.append(r)
            (logs / f"reference-{st.name}.log").write_text(r.log)
            echo(f"  exit {r.exit_code}, {r.wall_seconds:.2f} s, peak {(r.peak_memory_bytes or 0) / 1e6:.1f} MB")
            if r.exit_code != 0:
                raise VerifyUsageError(f"the reference ({ref_desc}) failed at step {st.name} with exit "
                                       f"{r.exit_code}: {r.log.strip()[-800:]}")
        ref_dir = ref_out
    out.steps = [s.as_dict() for s in steps] + (apt_steps if apptainer and ok else [])
    if ok:
        compare_paths(ref_dir, img_out, ver.rules, ver.known_differences, outputs=ver.outputs, plots=plots,
                      outcome=out, echo=echo)
    else:
        from release_manager.verify.rules import apply_known_differences
        out.checks = apply_known_differences(out.checks, ver.known_differences)
    return out


def _reference(ref, settings):
    """(description, host bin folder or None, reference image or None); missing reference -> usage error."""
    if ref.kind == "stored":
        p = resolve_path(ref.path, settings)
        if not p.is_dir() or not any(p.iterdir()):
            raise VerifyUsageError(f"stored reference {ref.path} -> {p}: missing or empty")
        return str(p), None, None
    if ref.environment == "host":
        if not ref.host_prefix:
            raise VerifyUsageError("verification.reference: a host rerun needs 'host_prefix'")
        prefix = resolve_path(ref.host_prefix, settings)
        bindir = prefix / "bin"
        if not bindir.is_dir():
            raise VerifyUsageError(f"reference host build missing: {bindir} does not exist (make it with "
                                   "`relman host-build PACKAGE --ref REF`; for the demo: `relman demo host-build`)")
        return f"host build in {prefix}", bindir, None
    if not ref.image:
        raise VerifyUsageError("verification.reference: an image rerun needs 'image'")
    return f"image {ref.image}", None, ref.image
