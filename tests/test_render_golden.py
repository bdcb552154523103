"""Every rendered file of every spec equals its golden fixture, and every Dockerfile parses.

After an intended change, regenerate and review the diff:
    RELMAN_REGENERATE_GOLDEN=1 python -m pytest tests/test_render_golden.py
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import dockerfile
import pytest

from release_manager.config import PROJECT_ROOT
from release_manager.plan import make_plan
from release_manager.render import render_package
from release_manager.spec import load_specs

GOLDEN = Path(__file__).parent / "golden" / "render"
SPECS = load_specs(PROJECT_ROOT / "image_specs")
REGENERATE = os.environ.get("RELMAN_REGENERATE_GOLDEN") == "1"


# (package, platform override): what is rendered for its production platform, and what is built here
CASES = [(n, None) for n in sorted(SPECS.packages)] + [("sciencetools", "debian12-local"), ("l1-makeft1", "debian12-local")]


def _rendered(name, platform=None):
    return render_package(make_plan(SPECS, name, platform), registry="127.0.0.1:5000", namespace="fermi-lat")


@pytest.mark.parametrize("name,platform", CASES, ids=lambda v: v or "")
def test_render_matches_golden(name, platform):
    files = _rendered(name, platform)
    gdir = GOLDEN / (name if platform is None else f"{name}@{platform}")
    if REGENERATE:
        for rel, text in files.items():
            (gdir / rel).parent.mkdir(parents=True, exist_ok=True)
            (gdir / rel).write_text(text)
    expected = sorted(str(p.relative_to(gdir)) for p in gdir.rglob("*") if p.is_file())
    assert sorted(files) == expected, "rendered file set differs from the golden one"
    for rel, text in files.items():
        assert text == (gdir / rel).read_text(), f"{name}/{rel} differs from its golden fixture"


@pytest.mark.parametrize("name", sorted(SPECS.packages))
def test_dockerfile_parses_with_every_target(name):
    plan = make_plan(SPECS, name)
    text = _rendered(name)["Dockerfile"]
    commands = dockerfile.parse_string(text)
    stages = [c.value[2] for c in commands if c.cmd == "FROM" and len(c.value) == 3]
    for t in plan.targets:
        assert t.name in stages
    assert "base" in stages and "build" in stages
    # every ARG a LABEL uses is declared: no label can be silently empty
    declared = {c.value[0] for c in commands if c.cmd == "ARG"}
    for c in commands:
        if c.cmd == "LABEL":
            for var in re.findall(r"\$\{(\w+)\}", " ".join(c.value)):
                assert var in declared
    # each final target ends with its labels and runs as the non-root user
    for t in plan.targets:
        i = next(k for k, c in enumerate(commands) if c.cmd == "FROM" and c.value[-1] == t.name)
        nxt = next((k for k, c in enumerate(commands) if k > i and c.cmd == "FROM"), len(commands))
        body = commands[i + 1:nxt]
        assert body[-1].cmd == "LABEL"
        users = [c.value[0] for c in body if c.cmd == "USER"]
        assert users and users[-1] != "root"


def test_singularity_definitions_render_for_each_target():
    for name in SPECS.packages:
        files = _rendered(name)
        plan = make_plan(SPECS, name)
        for t in plan.targets:
            text = files[f"singularity/{t.name}.def"]
            assert text.count("Bootstrap: docker") == 1 and f"/fermi-lat/{name}:" in text


def test_components_render_for_glastrelease():
    text = _rendered("glastrelease")["Dockerfile"]
    for comp in ("digi", "recon-merit"):
        assert f"AS component-{comp}" in text
    # L1 component images copy only their own paths from the build (no Geant4 external, no full prefix)
    for comp in ("digi", "recon-merit"):
        section = text[text.index(f"AS component-{comp}"):].split("# ----")[0]
        copies = [ln for ln in section.splitlines() if ln.startswith("COPY --from=build")]
        assert copies and all("geant4" not in ln.lower() for ln in copies), copies
        assert not any(ln.split()[2] == "/opt/glast/" for ln in copies), "the whole prefix is not copied"


def test_render_writes_files(tmp_path):
    from click.testing import CliRunner
    from release_manager.cli import main
    r = CliRunner().invoke(main, ["render", "evtselect", "--variant", "runtime", "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "Dockerfile").is_file()
    assert (tmp_path / "out" / "singularity" / "runtime.def").is_file()
    assert (tmp_path / "out" / ".relman" / "split-debug.sh").is_file()
