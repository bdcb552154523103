"""Every generated Jenkinsfile (and the root seed Jenkinsfile) parsed by a real Groovy parser.

scripts/groovy-parse runs Debian's `groovy` once for all files (JVM starts are slow). Without
groovy the test skips on a developer machine but FAILS when CI is set (.ci/run installs it).
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from jenkins_standin import SCM_URL, reference_jobset
from release_manager.config import PROJECT_ROOT
from release_manager.jenkins.render import jenkinsfile

SCRIPT = PROJECT_ROOT / "scripts" / "groovy-parse"


def _groovy_or_fail():
    if shutil.which("groovy"):
        return
    if os.environ.get("CI"):
        pytest.fail("groovy is not installed but CI is set: install Debian's groovy (and a JDK 17)")
    pytest.skip("groovy is not installed (apt-get install groovy); CI runs this test")


def test_generated_jenkinsfiles_parse(tmp_path):
    _groovy_or_fail()
    files = {}
    for js in (reference_jobset(), reference_jobset(jenkins_script_mode="scm", jenkins_scm_url=SCM_URL)):
        for j in js.jobs:
            files[f"{js.script_mode}-{j.full_name.replace('/', '__')}.Jenkinsfile"] = jenkinsfile(j)
    paths = []
    for name, text in files.items():
        p = tmp_path / name
        p.write_text(text)
        paths.append(str(p))
    paths.append(str(PROJECT_ROOT / "Jenkinsfile"))
    broken = tmp_path / "broken.Jenkinsfile"
    broken.write_text(files[next(iter(files))].replace("stages {", "stages {{", 1).rstrip("}\n"))
    paths.append(str(broken))
    r = subprocess.run([str(SCRIPT), *paths], capture_output=True, text=True, timeout=240)
    lines = r.stdout.splitlines()
    failed = [ln for ln in lines if ln.startswith("FAIL")]
    assert len(lines) == len(paths), r.stdout + r.stderr
    assert [ln.split(":")[0] for ln in failed] == [f"FAIL {broken}"], r.stdout + r.stderr
    assert r.returncode == 1
