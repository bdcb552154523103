"""Targets as building blocks (the HPCCM way): each kind of image a package can produce is one object
that owns everything about it, and every other module asks it:

    its stage(s) of the Dockerfile        templates/targets/<kind>.j2 (rendered by render.py)
    its checks in the built image         checks(), which runs the checks.py functions it names
    its place in the build order          order: runtime before debug (debug is checked against it)
    whether science verification runs     verified: the nightly and the Jenkins build jobs alike
    what it is                            summary, for the Dockerfile and the documentation

Adding a kind of image is adding one object here and one template fragment.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple


@dataclass(frozen=True)
class Kind:
    variant: str
    order: int
    verified: bool
    summary: str
    checks: Tuple[str, ...]     # names of functions in release_manager.checks, run in this order

    @property
    def fragment(self) -> str:
        return f"targets/{self.variant}.j2"

    def run_checks(self, ctx) -> List:
        from release_manager import checks
        out = []
        for name in self.checks:
            out.extend(getattr(checks, name)(ctx))
        return out


KINDS: Dict[str, Kind] = {k.variant: k for k in (
    Kind("runtime", 0, True, "the install prefix and the runtime OS packages only; no compiler, sources or debug info",
         ("software_installed", "no_debug_info", "no_compiler", "no_sources")),
    Kind("debug", 1, True, "runtime plus one layer with the debug files, the sources and the debugger",
         ("software_installed", "debug_files", "gdb_finds_symbols", "one_layer_over_runtime")),
    Kind("full", 2, True, "the build environment and the installed software (debug files included)",
         ("software_installed", "has_compiler")),
    Kind("env", 3, False, "the OS packages without the software, for code mounted from NFS/AFS or built inside",
         ("has_compiler", "software_absent")),
    Kind("component", 4, False, "a part of the install prefix for one task (GlastRelease's L1 steps)",
         ("software_installed", "component_paths", "no_compiler")),
)}
VARIANTS = tuple(k for k in KINDS if k != "component")


def kind(variant: str) -> Kind:
    return KINDS[variant]


def verified_variants() -> Tuple[str, ...]:
    """The variants whose images science verification runs on (they carry the software)."""
    return tuple(k.variant for k in KINDS.values() if k.verified)
