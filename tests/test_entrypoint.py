"""The uniform entrypoint, rendered from each spec and run here by /bin/sh (the engine tests run it in
the images): the same options everywhere, the per-user folder, clear errors."""
from __future__ import annotations

import os
import subprocess

import pytest

from release_manager.plan import make_plan
from release_manager.render import render_entrypoint

PACKAGES = ("evtselect", "sciencetools", "glastrelease", "asp", "datamonitoring", "fastcopy", "halfpipe",
            "isoc-monitoring")


def _script(specs, tmp_path, name):
    path = tmp_path / f"{name}-entrypoint.sh"
    path.write_text(render_entrypoint(make_plan(specs, name)))
    return path


def _run(script, *args, env=None):
    full = {"PATH": "/usr/bin:/bin", **(env or {})}
    return subprocess.run(["/bin/sh", str(script), *args], capture_output=True, text=True, env=full, timeout=30)


@pytest.mark.parametrize("name", PACKAGES)
def test_same_command_line_in_every_package(specs, tmp_path, name):
    script = _script(specs, tmp_path, name)
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0, "valid POSIX shell"
    help_ = _run(script, "--help")
    assert help_.returncode == 0
    assert [ln.split()[1] for ln in help_.stdout.splitlines() if ln.strip()] == \
        ["IMAGE", "--version", "--list", "--env", "--help"], help_.stdout
    version = _run(script, "--version", env={"RELMAN_IMAGE_VARIANT": "runtime", "RELMAN_IMAGE_REF": "v1"})
    assert f"package:    {name}" in version.stdout and "variant:    runtime" in version.stdout
    assert _run(script, "--bogus").returncode == 2
    missing = _run(script, "no-such-program-here")
    assert missing.returncode == 127 and "--list shows the programs" in missing.stderr


def test_sciencetools_sets_a_per_user_pfiles_folder(specs, tmp_path):
    script = _script(specs, tmp_path, "sciencetools")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = _run(script, "sh", "-c", 'echo "$PFILES"', env={"TMPDIR": str(tmp)})
    assert out.returncode == 0, out.stderr
    user_dir = tmp / f"relman-{os.getuid()}" / "sciencetools"
    assert out.stdout.strip() == f"{user_dir}/pfiles;/opt/fermitools/syspfiles"
    assert (user_dir / "pfiles").is_dir()
    assert oct((tmp / f"relman-{os.getuid()}").stat().st_mode & 0o777) == "0o700"
    env = _run(script, "--env", env={"TMPDIR": str(tmp)}).stdout
    assert "FERMI_INST_DIR=" in env and f"PFILES={user_dir}/pfiles;" in env
    listed = _run(script, "--list").stdout.split("\n")
    assert [ln.split()[0] for ln in listed if ln] == ["gtselect", "gtmktime", "gtbin"]


def test_no_writable_folder_still_runs(specs, tmp_path):
    script = _script(specs, tmp_path, "sciencetools")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):   # root writes anywhere: point at a folder that cannot exist instead
        out = _run(script, "true", env={"RELMAN_USER_DIR": "/proc/relman-cannot-exist"})
        assert out.returncode == 0
    else:
        out = _run(script, "true", env={"TMPDIR": str(ro)})
        assert out.returncode == 0


def test_environment_values_cannot_inject_shell(specs):
    from pydantic import ValidationError
    from release_manager.spec.model import Run
    for bad in ("$(id)", "`id`", 'a"b', "a\\b"):
        with pytest.raises(ValidationError, match="must not contain"):
            Run(environment={"X": bad})
    Run(environment={"PFILES": "{user_dir}/pfiles;/opt/x/syspfiles"})
