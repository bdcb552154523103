"""What each variant claims, checked inside the built image; a failed check fails the build. Which
checks a target runs, and in which order, its kind says (release_manager/targets.py).

- runtime: no ELF under the prefix carries .debug_info; no compiler; no sources
- debug:   every ELF under the prefix has its split debug file (by GNU build-id) and gdb
           finds the main binary's source lines; the image is the runtime image plus one layer
- full:    compiler and headers present, software installed
- env:     compiler present, software absent
- component: its paths present, no compiler
- every image: the uniform entrypoint answers --version and --list as an arbitrary UID on a read-only
  root with no HOME (how Apptainer runs it), and no downloaded package files were left behind
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Dict, List, Optional

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from release_manager import engine
from release_manager.plan import DEBUG_ROOT, ImagePlan, Target

COMPILERS = ("gcc", "g++", "cc", "c++", "clang")
ARBITRARY_UID = "23456:23456"   # no passwd entry, no home: what a farm's Apptainer gives
FARM_RUN = {"user": ARBITRARY_UID, "read_only": True, "tmpfs": {"/tmp": "rw,size=64m"},
            "environment": {"HOME": "/nonexistent"}, "through_entrypoint": True}


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str

    def as_dict(self):
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class ElfInfo:
    path: str
    build_id: Optional[str]
    has_debug_info: bool
    has_debuglink: bool = False   # split by split-debug.sh (prebuilt files without -g have none)


def elf_info(path: str, data: bytes) -> Optional[ElfInfo]:
    if not data.startswith(b"\x7fELF"):
        return None
    try:
        elf = ELFFile(io.BytesIO(data))
        build_id = None
        for sec in elf.iter_sections():
            if sec.name == ".note.gnu.build-id":
                for note in sec.iter_notes():
                    if note["n_type"] == "NT_GNU_BUILD_ID":
                        build_id = note["n_desc"]
        return ElfInfo(path, build_id, elf.get_section_by_name(".debug_info") is not None,
                       elf.get_section_by_name(".gnu_debuglink") is not None)
    except ELFError:
        return None


def _elves(api, image: str, path: str) -> List[ElfInfo]:
    out = []
    for p, data in engine.iter_files(api, image, path):
        info = elf_info(p, data)
        if info:
            out.append(info)
    return out


def _sh(api, image: str, script: str):
    return engine.run(api, image, ["/bin/sh", "-c", script])


def _no_compiler(api, image) -> CheckResult:
    rc, out = _sh(api, image, "for c in " + " ".join(COMPILERS) + "; do command -v $c; done; true")
    found = out.split()
    return CheckResult("no-compiler", not found, "none found" if not found else f"found: {' '.join(found)}")


def _has_compiler(api, image) -> CheckResult:
    rc, out = _sh(api, image, "command -v c++ || command -v g++; test -e /usr/include/stdio.h && echo headers-ok")
    ok = "headers-ok" in out and "/" in out
    return CheckResult("compiler-and-headers", ok, " ".join(out.split()) or "no compiler, no headers")


def _entrypoint(api, plan: ImagePlan, target: Target, image: str) -> CheckResult:
    rc, out = engine.run(api, image, ["--version"], **FARM_RUN)
    want = [f"package:    {plan.name}", f"variant:    {target.variant}"]
    if rc != 0 or not all(w in out for w in want):
        return CheckResult("entrypoint", False, f"--version as UID {ARBITRARY_UID} on a read-only root: exit {rc}: "
                           + " ".join(out.split())[:300])
    rc, listed = engine.run(api, image, ["--list"], **FARM_RUN)
    names = [line.split()[0] for line in listed.splitlines() if line.strip()]
    # env holds no software (it is for code mounted from NFS/AFS): its programs are missing by design
    missing = [line.split()[0] for line in listed.splitlines() if "(missing" in line
               and target.variant not in ("env", "component")]
    ok = rc == 0 and not missing and (bool(names) or target.variant in ("env", "component"))
    return CheckResult("entrypoint", ok, f"--version and --list as UID {ARBITRARY_UID}, read-only root: "
                       + (f"programs {', '.join(names)}" if ok else f"exit {rc}, missing {missing or 'programs'}"))


def _no_package_cache(api, plan: ImagePlan, image: str) -> CheckResult:
    where = "/var/cache/apt/archives" if plan.manager == "apt" else "/var/cache/yum"
    rc, out = _sh(api, image, f"find {where} -name '*.deb' -o -name '*.rpm' 2>/dev/null | wc -l")
    n = int(out.split()[0]) if out.split() and out.split()[0].isdigit() else -1
    return CheckResult("no-package-cache", n == 0, f"{n} downloaded package file(s) under {where}")


def _gdb(api, plan: ImagePlan, image: str, elves: List[ElfInfo]) -> CheckResult:
    want = plan.spec.checks.gdb
    program = f"{plan.spec.prefix}/bin/{want.program}" if want else _main_binary(plan, elves)
    functions = list(want.functions) if want else ["main"]
    if not program:
        return CheckResult("gdb-finds-symbols", False, f"no executable under {plan.spec.prefix}/bin")
    # stopped at main, the shared libraries are loaded: their functions resolve through their debug files
    cmd = ["gdb", "-batch", "-ex", "set breakpoint pending on", "-ex", "break main", "-ex", "run"]
    for i, f in enumerate(functions):
        cmd += ["-ex", f"echo @@relman-{i}\\n", "-ex", f"info line {f}"]
    cmd += ["-ex", "echo @@relman-end\\n", "-ex", "kill", program]
    rc, out = engine.run(api, image, cmd, user=ARBITRARY_UID, tmpfs={"/tmp": "rw"})
    shown, bad = [], []
    for i, f in enumerate(functions):
        part = out.split(f"@@relman-{i}\n", 1)[-1].split("@@relman-", 1)[0] if f"@@relman-{i}" in out else ""
        m = re.search(r'Line (\d+) of "([^"]+)"', part)
        if m:
            shown.append(f"{f} -> {m.group(2)}:{m.group(1)}")
        else:
            bad.append(f"{f}: {' '.join(part.split())[:120] or 'no answer'}")
    detail = "; ".join(shown) if not bad else "; ".join(bad) + (f" (gdb: {' '.join(out.split())[-200:]})"
                                                                  if "@@relman-0" not in out else "")
    return CheckResult("gdb-finds-symbols", not bad, detail)


@dataclass
class CheckContext:
    """What one image's checks look at; the ELF files under the prefix are read once, when first asked."""
    api: object
    plan: ImagePlan
    target: Target
    image: str
    runtime_layers: Optional[List[str]] = None
    layers: Optional[List[str]] = None
    _elves: Optional[List[ElfInfo]] = None

    @property
    def elves(self) -> List[ElfInfo]:
        if self._elves is None:
            self._elves = _elves(self.api, self.image, self.plan.spec.prefix)
        return self._elves


def check_image(api, plan: ImagePlan, target: Target, image: str,
                runtime_layers: Optional[List[str]] = None, layers: Optional[List[str]] = None) -> List[CheckResult]:
    """Every image: its entrypoint and no package cache; then what its kind of target claims
    (targets.Kind.checks names the functions below, in order)."""
    ctx = CheckContext(api, plan, target, image, runtime_layers, layers)
    return [_entrypoint(api, plan, target, image), _no_package_cache(api, plan, image)] + target.kind.run_checks(ctx)


# ---------------------------------------------------------------- the checks targets name

def software_installed(ctx: CheckContext) -> List[CheckResult]:
    prefix = ctx.plan.spec.prefix
    return [CheckResult("software-installed", bool(ctx.elves) or ctx.target.component is not None,
                        f"{len(ctx.elves)} ELF file(s) under {prefix}")]


def no_debug_info(ctx: CheckContext) -> List[CheckResult]:
    with_debug = [e.path for e in ctx.elves if e.has_debug_info]
    return [CheckResult("no-debug-info", not with_debug, "no ELF file carries .debug_info" if not with_debug
                        else f".debug_info in {', '.join(with_debug[:5])}")]


def no_compiler(ctx: CheckContext) -> List[CheckResult]:
    return [_no_compiler(ctx.api, ctx.image)]


def has_compiler(ctx: CheckContext) -> List[CheckResult]:
    return [_has_compiler(ctx.api, ctx.image)]


def no_sources(ctx: CheckContext) -> List[CheckResult]:
    src = ctx.plan.build_dir     # where the sources were built (the extended package's tree for L1)
    rc, out = _sh(ctx.api, ctx.image, f"test -e {src} && echo present; true")
    return [CheckResult("no-sources", "present" not in out, f"{src} absent" if "present" not in out
                        else f"{src} present")]


def debug_files(ctx: CheckContext) -> List[CheckResult]:
    found: Dict[str, bool] = {}
    for p, data in engine.iter_files(ctx.api, ctx.image, f"{DEBUG_ROOT}/.build-id"):
        info = elf_info(p, data)
        found[p] = bool(info and info.has_debug_info)
    split = [e for e in ctx.elves if e.has_debuglink]
    missing = []
    for e in split:
        want = f"{DEBUG_ROOT}/.build-id/{e.build_id[:2]}/{e.build_id[2:]}.debug" if e.build_id else None
        if not want or not found.get(want):
            missing.append(e.path)
    unsplit = len(ctx.elves) - len(split)
    note = f"; {unsplit} prebuilt without debug info" if unsplit else ""
    # a debug image without a single symbol file is the failure peers shipped unnoticed
    return [CheckResult("debug-files-by-build-id", bool(split) and not missing,
                        f"{len(split)} ELF file(s), each with its debug file{note}" if split and not missing
                        else f"no debug file for {', '.join(missing[:5]) or 'any ELF file'}{note}")]


def gdb_finds_symbols(ctx: CheckContext) -> List[CheckResult]:
    return [_gdb(ctx.api, ctx.plan, ctx.image, ctx.elves)]


def one_layer_over_runtime(ctx: CheckContext) -> List[CheckResult]:
    if ctx.runtime_layers is None or ctx.layers is None:
        return []
    ok = len(ctx.layers) == len(ctx.runtime_layers) + 1 and ctx.layers[:-1] == ctx.runtime_layers
    return [CheckResult("one-layer-over-runtime", ok, f"runtime {len(ctx.runtime_layers)} layer(s), debug "
                        f"{len(ctx.layers)}; " + ("shares every runtime layer" if ok else "layers differ"))]


def software_absent(ctx: CheckContext) -> List[CheckResult]:
    prefix = ctx.plan.spec.prefix
    rc, out = _sh(ctx.api, ctx.image, f"test -e {prefix} && echo present; true")
    return [CheckResult("software-absent", "present" not in out,
                        f"{prefix} {'present' if 'present' in out else 'absent'}")]


def component_paths(ctx: CheckContext) -> List[CheckResult]:
    paths = " ".join(dest for _, dest in ctx.plan.component_copies(ctx.target.component))
    rc, out = _sh(ctx.api, ctx.image, f"for p in {paths}; do test -e \"$p\" || echo \"missing $p\"; done")
    return [CheckResult("component-paths", "missing" not in out, out.strip() or "all present")]


def _main_binary(plan: ImagePlan, elves: List[ElfInfo]) -> Optional[str]:
    for p in plan.spec.run.programs:
        for e in elves:
            if e.path == f"{plan.spec.prefix}/bin/{p}":
                return e.path
    for e in elves:
        if e.path.startswith(f"{plan.spec.prefix}/bin/"):
            return e.path
    return None
