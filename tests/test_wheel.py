"""The installed package, as the seed job installs it (`pip install .`): a wheel built from this checkout,
installed into a fresh virtual environment outside the source tree, renders every output - Dockerfiles,
support files, Apptainer definitions, Jenkinsfiles and config.xml - equal to the golden fixtures."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from release_manager.config import PROJECT_ROOT

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(work / "dist"), str(PROJECT_ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next((work / "dist").glob("release_manager-*.whl"))
    # the dependencies come from this interpreter's site-packages; relman itself only from the wheel
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(work / "venv")], check=True)
    py = work / "venv" / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return py, work


def test_wheel_renders_every_golden(venv_python):
    py, work = venv_python
    script = textwrap.dedent(f"""
        import json, sys, pathlib
        import release_manager
        assert "site-packages" in release_manager.__file__, release_manager.__file__
        from release_manager.config import load_settings
        from release_manager.spec import load_specs
        from release_manager.plan import make_plan
        from release_manager.render import render_package
        from release_manager.jenkins.model import JenkinsOptions, build_jobs
        from release_manager.jenkins.render import render_all
        specs = load_specs(pathlib.Path({str(PROJECT_ROOT / "image_specs")!r}))
        out = {{}}
        for name in specs.packages:
            for rel, text in render_package(make_plan(specs, name), "127.0.0.1:5000", "fermi-lat").items():
                out["render/" + name + "/" + rel] = text
        # the settings and options the golden files are rendered with (tests/jenkins_standin.py)
        settings = load_settings(registry="127.0.0.1:5000", namespace="fermi-lat", jenkins_script_mode="inline",
                                 jenkins_scm_url="<placeholder: Release Manager git URL>", jenkins_url=None,
                                 jenkins_user=None, jenkins_token=None)
        for rel, text in render_all(build_jobs(specs, settings, JenkinsOptions.model_construct())).items():
            out["jenkins/inline/" + rel] = text
        print(json.dumps({{"module": release_manager.__file__, "files": out}}))
    """)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "RELMAN_CONFIG": "", "PYTHONNOUSERSITE": "1"}
    r = subprocess.run([str(py), "-c", script], capture_output=True, text=True, cwd=work, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    import json
    got = json.loads(r.stdout)
    assert str(PROJECT_ROOT) not in got["module"]
    files = got["files"]
    assert len([f for f in files if f.startswith("render/")]) > 50
    assert len([f for f in files if f.startswith("jenkins/")]) > 100
    differ = [rel for rel, text in sorted(files.items()) if (GOLDEN / rel).read_text() != text]
    assert not differ, differ[:10]
