#!/usr/bin/env python3
"""What each part of the L1 makeFT1 runtime image weighs, measured in the image itself (file sizes summed
by a shell in a throw-away container, the image's layers from the engine, compressed sizes from the
registry manifest). Budget: 400 MB runtime (issue 16).

Usage: python3 benchmarks/l1_size.py [IMAGE]     (default: 127.0.0.1:5000/fermi-lat/l1-makeft1:v2.4.0-l1-runtime)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from release_manager import engine  # noqa: E402
from release_manager.config import load_settings  # noqa: E402

P = "/opt/fermitools"
R = f"{P}/root/ROOT"
# (label, find arguments): each file is counted once, in the first part it matches; the rest is "OS"
PARTS = [
    ("ROOT interpreter (libCling.so)", f"{R}/lib -name libCling.so"),
    ("ROOT modules (.pcm, .rootmap, modules.idx)", f"{R}/lib ( -name *.pcm -o -name *.rootmap -o -name modules.idx )"),
    ("ROOT libraries (lib/*.so*, root.libs)", f"{R}/lib {P}/root/root.libs -name *.so*"),
    ("ROOT headers and etc/", f"{R}/include {R}/etc"),
    ("C++ headers staged for the interpreter (root/cxx)", f"{P}/root/cxx"),
    ("system C headers (/usr/include: libc6-dev, for the interpreter)", "/usr/include"),
    ("CALDB", f"{P}/refdata/fermi/caldb"),
    ("Fermi libraries and makeFT1", f"{P}/lib {P}/bin"),
    ("evtClassDefs, ft1.tpl, par file", f"{P}/refdata/fermi/evtClassDefs {P}/refdata/fermi/fitsGen {P}/syspfiles"),
]


def _sh_words(args: str) -> str:
    return args.replace("(", "\\(").replace(")", "\\)").replace("*", "\\*")


def measure(api, image: str):
    """{part index or 'rest': (bytes, files)}: one find over the whole root (files only), then each part
    claims its files in order (comm against those claimed before): every byte is counted once."""
    sizes = "awk 'FNR==NR{s[$2]=$1; next} {t+=s[$0]; c++} END{printf \"%d %d\\n\", t, c}' /tmp/all"
    script = ["find / -xdev -type f -printf '%s %p\\n' 2>/dev/null > /tmp/all || true",
              "awk '{print $2}' /tmp/all | sort > /tmp/allnames", ": > /tmp/claimed"]
    for i, (_, args) in enumerate(PARTS):
        script += [f"find {_sh_words(args)} -type f -printf '%p\\n' 2>/dev/null | sort > /tmp/p{i} || true",
                   f"sort /tmp/claimed > /tmp/c; comm -23 /tmp/p{i} /tmp/c > /tmp/q{i}; cat /tmp/q{i} >> /tmp/claimed",
                   f"printf '{i} '; {sizes} /tmp/q{i}"]
    script += ["sort /tmp/claimed > /tmp/c; comm -23 /tmp/allnames /tmp/c > /tmp/rest",
               f"printf 'rest '; {sizes} /tmp/rest"]
    rc, out = engine.run(api, image, ["/bin/sh", "-c", "\n".join(script)], tmpfs={"/tmp": "rw"})
    if rc != 0:
        raise SystemExit(f"measuring {image} failed (exit {rc}): {out[-800:]}")
    rows = {}
    for ln in out.splitlines():
        f = ln.split()
        if len(f) == 3 and (f[0].isdigit() or f[0] == "rest"):
            rows[f[0]] = (int(f[1]), int(f[2]))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("image", nargs="?", default="127.0.0.1:5000/fermi-lat/l1-makeft1:v2.4.0-l1-runtime")
    ap.add_argument("--budget-mb", type=float, default=400.0)
    args = ap.parse_args()
    api = engine.connect(load_settings())
    info = api.inspect_image(args.image)
    rows = measure(api, args.image)
    total = sum(v[0] for v in rows.values())
    print(f"{args.image}\nimage size (engine): {info['Size'] / 1e6:.1f} MB; files counted: {total / 1e6:.1f} MB\n")
    print(f"{'part':60} {'MB':>8} {'files':>7} {'share':>6}")
    for i, (label, _) in enumerate(PARTS):
        b, n = rows.get(str(i), (0, 0))
        print(f"{label:60} {b / 1e6:8.1f} {n:7d} {b / total:6.1%}")
    b, n = rows.get("rest", (0, 0))
    print(f"{'OS (everything else: Debian base and run-time packages)':60} {b / 1e6:8.1f} {n:7d} {b / total:6.1%}")
    print("\nlayers (engine history, newest first):")
    for h in api.history(args.image):
        if h.get("Size"):
            print(f"  {h['Size'] / 1e6:8.1f} MB  {(h.get('CreatedBy') or '')[:100]}")
    budget = args.budget_mb * 1e6
    print(f"\nbudget {args.budget_mb:.0f} MB: {'within' if info['Size'] <= budget else 'OVER'} "
          f"({info['Size'] / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
