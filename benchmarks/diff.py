#!/usr/bin/env python3
"""How fast `relman diff` compares two ~600 MB images that differ in one layer, side by side with
unpacking both with `docker save` + tar.

Setup (not measured): two images built FROM the demo's full image (evtselect v1.1.0-full, ~590 MB
uncompressed; built and pushed first when the registry lacks it), each adding one small layer with a
different file, pushed to the local registry as fermi-lat/t13-bench:a and :b.

Measured:
  * `relman diff A B --json` as a subprocess with an empty layer-index cache (cold: every layer
    streamed from the registry once), then again (cached: only manifests and configs are read);
  * the same two diffs in this process (no interpreter start-up);
  * baseline: `docker save` of each image piped into tar, then every layer tar extracted into a root
    folder (what a diff by unpacking needs before it can compare anything).
Targets: ≤ 10 s cold, ≤ 1 s cached. Prints the figures; exit 1 when a target is missed.

    python3 benchmarks/diff.py
"""
from __future__ import annotations

import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from startup import compile_relman  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from release_manager import engine  # noqa: E402
from release_manager.config import PROJECT_ROOT, load_settings  # noqa: E402
from release_manager.imagediff import diff_images  # noqa: E402
from release_manager.imagemeta import ImageReader  # noqa: E402
from release_manager.registry import Registry  # noqa: E402

COLD_TARGET, CACHED_TARGET = 10.0, 1.0


def ensure_base(settings, api) -> str:
    """The demo's full image in the registry (built and pushed when missing)."""
    ref = f"{settings.registry}/{settings.namespace}/evtselect:v1.1.0-full"
    if Registry(settings.registry).manifest_digest(f"{settings.namespace}/evtselect", "v1.1.0-full") is None:
        from release_manager.build import Builder
        from release_manager.demo import init_repo
        from release_manager.spec import load_specs
        init_repo(settings.data_dir / "repos" / "evtselect", echo=lambda m: None)
        Builder(settings, load_specs(PROJECT_ROOT / "image_specs"), echo=lambda m: None, api=api).build(
            "evtselect", "v1.1.0", ["full"], push=True)
    api.pull(ref)
    return ref


def build_pair(settings, api, base: str):
    repo = f"{settings.registry}/{settings.namespace}/t13-bench"
    out = []
    for tag in ("a", "b"):
        df = f"FROM {base}\nUSER root\nRUN echo 'benchmark image {tag}' > /opt/bench-marker && date +%s%N >> /opt/bench-marker\n"
        for line in api.build(fileobj=io.BytesIO(df.encode()), tag=f"{repo}:{tag}", rm=True, nocache=True,
                              decode=True):
            if "error" in line:
                raise SystemExit(f"build of {repo}:{tag} failed: {line['error']}")
        for line in api.push(repo, tag=tag, stream=True, decode=True):
            if "error" in line:
                raise SystemExit(f"push of {repo}:{tag} failed: {line['error']}")
        out.append(f"{repo}:{tag}")
    return out


def cleanup(settings, api, refs) -> None:
    """Drop the two benchmark images from the registry and the engine (the base stays)."""
    reg = Registry(settings.registry)
    for ref in refs:
        repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
        digest = reg.manifest_digest(repo, tag)
        if digest:
            reg.delete_manifest(repo, digest)
        api.remove_image(ref, force=True, noprune=True)


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def relman_diff(a, b, data_dir):
    env = dict(os.environ, RELMAN_DATA_DIR=str(data_dir), PYTHONPATH=str(PROJECT_ROOT))
    p = subprocess.run([sys.executable, "-m", "release_manager", "diff", a, b, "--json"], env=env,
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"relman diff failed: {p.stderr}")
    return json.loads(p.stdout)


def unpack(image: str, into: Path) -> int:
    """docker save | tar x, then each layer tar (in manifest order) extracted into rootfs/."""
    into.mkdir(parents=True)
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=save.stdout, check=True)
    save.wait()
    manifest = json.loads((into / "manifest.json").read_text())[0]
    root = into / "rootfs"
    root.mkdir()
    for layer in manifest["Layers"]:
        subprocess.run(["tar", "-x", "-f", str(into / layer), "-C", str(root)], check=True)
    return len(manifest["Layers"])


def main():
    compile_relman()  # as an installed relman has them (benchmarks/startup.py)
    settings = load_settings()
    api = engine.connect(settings)
    base = ensure_base(settings, api)
    a, b = build_pair(settings, api, base)
    print(f"images: {a} and {b} (FROM {base}); load average {os.getloadavg()[0]:.2f}")
    work = Path(tempfile.mkdtemp(prefix="relman-t13-bench-"))
    try:
        c0 = child_cpu()
        cold, d = timed(lambda: relman_diff(a, b, work / "cli"))
        c1 = child_cpu()
        cached, d2 = timed(lambda: relman_diff(a, b, work / "cli"))
        c2 = child_cpu()
        print(f"CPU time (user+sys) of the relman diff processes: cold {c1 - c0:.2f} s, cached {c2 - c1:.2f} s "
              "(what the wall times shrink to on an idle 2-core machine, at most)")
        assert d2["files"] == d["files"] and d2["layers_streamed"] == 0
        s = settings.model_copy(update={"data_dir": work / "inproc"})
        reader = ImageReader(s)
        cold_in, _ = timed(lambda: diff_images(reader, reader.image(reader.parse(a)), reader.image(reader.parse(b))))
        reader2 = ImageReader(s)
        cached_in, _ = timed(lambda: diff_images(reader2, reader2.image(reader2.parse(a)),
                                                  reader2.image(reader2.parse(b))))
        base_s, n_layers = timed(lambda: unpack(a, work / "save-a") + unpack(b, work / "save-b"))
        du = subprocess.run(["du", "-sb", str(work / "save-a" / "rootfs")], capture_output=True, text=True)
        size = int(du.stdout.split()[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
        cleanup(settings, api, [a, b])
    print(f"A: {d['a']['uncompressed'] / 1e6:.0f} MB uncompressed in {d['a']['layers']} layers "
          f"({d['a']['files']} paths); unpacked root folder {size / 1e6:.0f} MB")
    print(f"diff: {len(d['files']['changed'])} changed, {len(d['files']['added'])} added, "
          f"{len(d['files']['removed'])} removed; layers {len(d['layers']['shared'])} shared, "
          f"{len(d['layers']['only_a'])}+{len(d['layers']['only_b'])} different; "
          f"{d['layers_streamed']} streamed cold")
    print(f"{'measured':52} {'s':>7}   {'baseline':44} {'s':>7} {'ratio':>6} target")
    rows = [("relman diff, cold (empty layer-index cache)", cold, COLD_TARGET),
            ("relman diff, layer indexes cached", cached, CACHED_TARGET),
            ("diff_images in-process, cold", cold_in, None), ("diff_images in-process, cached", cached_in, None)]
    ok = True
    for name, sec, target in rows:
        tgt = f"<= {target:.0f} s" if target else ""
        if target and sec > target:
            ok = False
            tgt += "  MISSED"
        print(f"{name:52} {sec:7.2f}   {'docker save + tar of both (' + str(n_layers) + ' layers)':44} "
              f"{base_s:7.2f} {sec / base_s:6.2f} {tgt}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
