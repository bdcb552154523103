"""Bytecode for relman's modules before a benchmark times whole commands.

An installed relman has its .pyc files (pip compiles a wheel at install time). An editable checkout
on a machine that sets PYTHONDONTWRITEBYTECODE=1 (as these do) has none, so every command would
compile its ~40 modules from source first: about 0.1 s that no installed relman pays. Python still
reads .pyc files with that variable set, and checks them against the sources' times."""
from __future__ import annotations

import compileall
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def compile_relman() -> None:
    compileall.compile_dir(str(ROOT / "release_manager"), quiet=1)
