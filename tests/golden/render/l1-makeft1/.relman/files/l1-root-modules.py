"""Keep only the ROOT C++ modules makeFT1 can reach, in a staged ROOT lib folder (run by l1-stage.sh).

ROOT's interpreter loads, when it starts, every module of its module map that has a .pcm file on disk;
a module named in the map without its .pcm is built at run time into the lib folder (impossible on a
read-only image). So the modules dropped here leave both: their .pcm and their block in
include/ROOT.modulemap. Kept: the modules ROOT itself loads when it starts (TCling's core, common and
"FIXME" lists), the module of every ROOT library staged (a loaded library registers its module), and
everything those import (read from each .pcm: the names of the .pcm files it was built against).
modules.idx (the global module index, naming every module) is removed: l1-stage.sh has ROOT write a
new one for the modules kept.

Usage: python3 l1-root-modules.py ROOT_LIB_DIR ROOT_MODULEMAP
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

# What TCling loads at start-up whatever the program (ROOT 6.40, core/metacling/src/TCling.cxx:
# RegisterCxxModules), and the interpreter's own runtime modules.
AT_STARTUP = ("libc", "std", "_Builtin_intrinsics", "_Builtin_stddef", "ROOT_Foundation_C", "ROOT_Config",
              "ROOT_Rtypes", "ROOT_Foundation_Stage1_NoRTTI", "Core", "RIO", "Rint", "MathCore", "Hist", "Gpad",
              "Graf", "GenVector", "Smatrix", "Tree", "TreePlayer", "Physics", "Cling_Runtime",
              "Cling_Runtime_Extra")
PCM_NAME = re.compile(rb"([A-Za-z0-9_]+)\.pcm")
# a top-level module block: `module Name {` or `module "Name" {` at the start of a line
MODULE_BLOCK = re.compile(r'^module\s+"?([A-Za-z0-9_.]+)"?[^{\n]*\{', re.M)


def imports(lib: Path, name: str, have: set) -> set:
    return {m.decode() for m in PCM_NAME.findall((lib / f"{name}.pcm").read_bytes())} & have - {name}


def keep_set(lib: Path) -> set:
    have = {p.stem for p in lib.glob("*.pcm")}
    staged = {p.name[3:-3] for p in lib.glob("lib*.so")}
    todo = sorted((set(AT_STARTUP) | staged) & have)
    keep: set = set()
    while todo:
        m = todo.pop()
        if m not in keep:
            keep.add(m)
            todo.extend(sorted(imports(lib, m, have) - keep))
    return keep


def drop_blocks(text: str, drop: set) -> tuple:
    """text without the top-level module blocks named in drop (braces counted); (text, names dropped)."""
    out, dropped, i = [], [], 0
    while True:
        m = MODULE_BLOCK.search(text, i)
        if not m:
            out.append(text[i:])
            break
        depth, j = 0, m.end() - 1
        while True:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
            if depth == 0:
                break
        out.append(text[i:m.start()] if m.group(1) in drop else text[i:j])
        if m.group(1) in drop:
            dropped.append(m.group(1))
        i = j
    return "".join(out), dropped


def main(lib_dir: str, modulemap: str) -> int:
    lib, mmap = Path(lib_dir), Path(modulemap)
    keep = keep_set(lib)
    drop = {p.stem for p in lib.glob("*.pcm")} - keep
    text, dropped = drop_blocks(mmap.read_text(), drop)
    mmap.write_text(text)
    freed = sum((lib / f"{m}.pcm").stat().st_size for m in drop)
    for m in drop:
        (lib / f"{m}.pcm").unlink()
    (lib / "modules.idx").unlink(missing_ok=True)
    kept = sum((lib / f"{m}.pcm").stat().st_size for m in keep)
    print(f"l1-root-modules.py: kept {len(keep)} ROOT modules ({kept / 1e6:.1f} MB): {' '.join(sorted(keep))}; "
          f"dropped {len(drop)} ({freed / 1e6:.1f} MB), {len(dropped)} of them from {mmap.name}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
