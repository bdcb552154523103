"""What each variant claims, checked inside the built image; a failed check fails the build.

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


def check_image(api, plan: ImagePlan, target: Target, image: str,
                runtime_layers: Optional[List[str]] = None, layers: Optional[List[str]] = None) -> List[CheckResult]:
    prefix = plan.spec.prefix
    results: List[CheckResult] = [_entrypoint(api, plan, target, image), _no_package_cache(api, plan, image)]
    v = target.variant
    if v in ("runtime", "debug", "full", "component"):
        elves = _elves(api, image, prefix)
        results.append(CheckResult("software-installed", bool(elves) or v == "component",
                                   f"{len(elves)} ELF file(s) under {prefix}"))
    if v == "runtime":
        with_debug = [e.path for e in elves if e.has_debug_info]
        results.append(CheckResult("no-debug-info", not with_debug,
                                   "no ELF file carries .debug_info" if not with_debug
                                   else f".debug_info in {', '.join(with_debug[:5])}"))
        results.append(_no_compiler(api, image))
        rc, out = _sh(api, image, f"test -e {plan.source_dir} && echo present; true")
        results.append(CheckResult("no-sources", "present" not in out,
                                   f"{plan.source_dir} absent" if "present" not in out else f"{plan.source_dir} present"))
    elif v == "debug":
        debug_files: Dict[str, bool] = {}
        for p, data in engine.iter_files(api, image, f"{DEBUG_ROOT}/.build-id"):
            info = elf_info(p, data)
            debug_files[p] = bool(info and info.has_debug_info)
        split = [e for e in elves if e.has_debuglink]
        missing = []
        for e in split:
            want = f"{DEBUG_ROOT}/.build-id/{e.build_id[:2]}/{e.build_id[2:]}.debug" if e.build_id else None
            if not want or not debug_files.get(want):
                missing.append(e.path)
        unsplit = len(elves) - len(split)
        note = f"; {unsplit} prebuilt without debug info" if unsplit else ""
        # a debug image without a single symbol file is the failure peers shipped unnoticed
        results.append(CheckResult("debug-files-by-build-id", bool(split) and not missing,
                                   f"{len(split)} ELF file(s), each with its debug file{note}" if split and not missing
                                   else f"no debug file for {', '.join(missing[:5]) or 'any ELF file'}{note}"))
        results.append(_gdb(api, plan, image, elves))
        if runtime_layers is not None and layers is not None:
            ok = len(layers) == len(runtime_layers) + 1 and layers[:-1] == runtime_layers
            results.append(CheckResult("one-layer-over-runtime", ok,
                                       f"runtime {len(runtime_layers)} layer(s), debug {len(layers)}; "
                                       + ("shares every runtime layer" if ok else "layers differ")))
    elif v == "full":
        results.append(_has_compiler(api, image))
    elif v == "env":
        results.append(_has_compiler(api, image))
        rc, out = _sh(api, image, f"test -e {prefix} && echo present; true")
        results.append(CheckResult("software-absent", "present" not in out, f"{prefix} {'present' if 'present' in out else 'absent'}"))
    elif v == "component":
        paths = " ".join(dest for _, dest in plan.component_copies(target.component))
        rc, out = _sh(api, image, f"for p in {paths}; do test -e \"$p\" || echo \"missing $p\"; done")
        results.append(CheckResult("component-paths", "missing" not in out, out.strip() or "all present"))
        results.append(_no_compiler(api, image))
    return results


def _main_binary(plan: ImagePlan, elves: List[ElfInfo]) -> Optional[str]:
    for p in plan.spec.run.programs:
        for e in elves:
            if e.path == f"{plan.spec.prefix}/bin/{p}":
                return e.path
    for e in elves:
        if e.path.startswith(f"{plan.spec.prefix}/bin/"):
            return e.path
    return None
