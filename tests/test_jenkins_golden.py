"""Golden files: every Jenkinsfile and config.xml relman generates, as committed under tests/golden/jenkins/.

    inline/   every job and folder of image_specs/ (the default: the script inside config.xml)
    scm/      the evtselect jobs in scm mode (CpsScmFlowDefinition, scriptPath in the relman repository)

After an intended change (a template, the model, a spec), regenerate and review the diff:

    RELMAN_REGENERATE_GOLDEN=1 pytest tests/test_jenkins_golden.py
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from jenkins_standin import SCM_URL, reference_jobset
from release_manager.jenkins.render import render_all

GOLDEN = Path(__file__).parent / "golden" / "jenkins"
REGENERATE = os.environ.get("RELMAN_REGENERATE_GOLDEN") == "1"


def _expected():
    return {
        "inline": render_all(reference_jobset()),
        "scm": render_all(reference_jobset(jenkins_script_mode="scm", jenkins_scm_url=SCM_URL).only("evtselect")),
    }


@pytest.mark.parametrize("mode", ["inline", "scm"])
def test_golden(mode):
    files = _expected()[mode]
    root = GOLDEN / mode
    if REGENERATE:
        shutil.rmtree(root, ignore_errors=True)
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    missing = sorted(set(files) - on_disk)
    extra = sorted(on_disk - set(files))
    assert not missing, f"no golden file for {missing[:5]}...: regenerate (see this file's docstring)"
    assert not extra, f"golden files for jobs no longer generated: {extra[:5]}: regenerate"
    differ = [rel for rel, text in sorted(files.items()) if (root / rel).read_text() != text]
    assert not differ, (f"{len(differ)} generated file(s) differ from tests/golden/jenkins/{mode}: {differ[:5]}; "
                        "if intended, regenerate with RELMAN_REGENERATE_GOLDEN=1 and review the diff")


def test_every_job_has_both_files():
    files = _expected()["inline"]
    js = reference_jobset()
    for j in js.jobs:
        assert f"{j.full_name}/Jenkinsfile" in files and f"{j.full_name}/config.xml" in files
    for f in js.folders:
        assert f"{f.full_name}/config.xml" in files
