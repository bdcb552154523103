"""The job model and what it renders: one model, so Jenkinsfile, config.xml and the runner agree."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from jenkins_standin import SCM_URL, reference_jobset
from release_manager.config import PROJECT_ROOT
from release_manager.jenkins import lint
from release_manager.jenkins.model import MARKER, Job, Param, Stage, has_marker
from release_manager.jenkins.render import folder_config, groovy_sq, jenkinsfile, job_config, normalize_xml, parse_xml
from release_manager.spec import load_specs

SPECS = load_specs(PROJECT_ROOT / "image_specs")
JS = reference_jobset()
PIPELINES = [j for j in JS.jobs]
PIPELINE_IDS = [j.full_name for j in PIPELINES]


def test_jobs_per_package():
    for name, ls in SPECS.packages.items():
        spec = ls.spec
        have = {j.name for j in JS.jobs if j.folder == name}
        want = {f"build-{v}" for v in spec.variants} | {f"build-component-{c.name}" for c in spec.components}
        want |= {"promote", "maintenance"} | ({"debug-build"} if "debug" in spec.variants else set())
        want |= {"nightly"} if spec.jenkins.nightly else set()
        assert have == want, name
        label = SPECS.platforms[spec.build_platform].builder_label
        assert all(j.agent_label == label for j in JS.jobs if j.folder == name)
    assert JS.get("glastrelease/build-runtime").agent_label == "rhel6-builder"
    nightly = {j.folder for j in JS.jobs if j.kind == "nightly"}
    assert {"sciencetools", "evtselect"} <= nightly
    for j in JS.jobs:
        if j.kind == "nightly":
            assert j.cron == SPECS.packages[j.folder].spec.jenkins.nightly.cron


def _jf_params(text):
    return re.findall(r"string\(name: '([A-Z_]+)', defaultValue: '([^']*)'", text)


@pytest.mark.parametrize("job", PIPELINES, ids=PIPELINE_IDS)
def test_jenkinsfile_and_config_say_the_same(job):
    jf = jenkinsfile(job)
    root = parse_xml(job_config(job))
    assert root.tag == "flow-definition"
    # parameters
    defs = root.findall("properties/hudson.model.ParametersDefinitionProperty/parameterDefinitions/"
                        "hudson.model.StringParameterDefinition")
    assert [(d.findtext("name"), d.findtext("defaultValue") or "") for d in defs] == _jf_params(jf) == \
        [(p.name, p.default) for p in job.parameters]
    # triggers
    timer = root.findtext("properties/org.jenkinsci.plugins.workflow.job.properties.PipelineTriggersJobProperty/"
                          "triggers/hudson.triggers.TimerTrigger/spec")
    assert timer == job.cron
    assert (f"cron('{job.cron}')" in jf) == bool(job.cron)
    # options
    keep = root.findtext("properties/jenkins.model.BuildDiscarderProperty/strategy/numToKeep")
    assert keep == str(job.keep_builds) and f"logRotator(numToKeepStr: '{keep}')" in jf
    concurrent = root.find("properties/org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty")
    assert (concurrent is not None) == ("disableConcurrentBuilds()" in jf) == job.disable_concurrent
    assert f"timeout(time: {job.timeout_minutes}, unit: 'MINUTES')" in jf and "timestamps()" in jf
    assert f"agent {{ label '{job.agent_label}' }}" in jf
    # every stage command is in the Jenkinsfile exactly as the runner runs it
    for s in job.stages:
        if s.kind == "sh":
            assert f"sh {groovy_sq(s.command)}\n" in jf
    # the script inside config.xml is the Jenkinsfile (inline mode), or the scm definition (seed)
    d = root.find("definition")
    if job.scm is None:
        assert d.get("class") == "org.jenkinsci.plugins.workflow.cps.CpsFlowDefinition"
        assert d.findtext("script") == jf and d.findtext("sandbox") == "true"
    else:
        assert d.get("class") == "org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition"
        assert d.findtext("scriptPath") == "Jenkinsfile"
    assert root.findtext("disabled") == "false" and root.find("triggers") is not None
    assert root.find("keepDependencies") is not None and root.find("actions") is not None


@pytest.mark.parametrize("job", PIPELINES, ids=PIPELINE_IDS)
def test_marker_and_spec_hash(job):
    desc = parse_xml(job_config(job)).findtext("description")
    assert has_marker(desc)
    if job.package:
        h = SPECS.packages[job.package].hash
        assert f"[{MARKER} job={job.full_name} spec-hash={h}]" in desc
        assert h[:12] in jenkinsfile(job)


def test_folders():
    assert {f.name for f in JS.folders} == set(SPECS.packages)
    for f in JS.folders:
        root = parse_xml(folder_config(f))
        assert root.tag == "com.cloudbees.hudson.plugins.folder.Folder"
        assert has_marker(root.findtext("description"))
        assert SPECS.packages[f.package].hash in root.findtext("description")


@pytest.mark.parametrize("job", [j for j in PIPELINES if j.kind != "seed"],
                         ids=[j.full_name for j in PIPELINES if j.kind != "seed"])
def test_each_stage_is_one_relman_call(job):
    for s in job.stages:
        assert s.command.startswith("relman "), s.command
        assert not re.search(r"[;&|`]|\$\(|\n", s.command), s.command
        # parameters only as "$NAME" (double-quoted shell expansion of an environment variable)
        for p in job.parameters + job.context:
            for m in re.finditer(rf"\${p.name}\b", s.command):
                assert s.command[m.start() - 1] == '"' or s.command[:m.start()].count('"') % 2 == 1


def test_stage_commands():
    b = JS.get("evtselect/build-runtime")
    assert [s.name for s in b.stages] == ["Prepare", "Build", "Record", "Verify"]
    assert b.stages[1].command == ('relman build evtselect --ref "$REF" --variant runtime --push --json '
                                   '> results/build-runtime.json')
    assert b.stages[2].command == "relman db record-build results/build-runtime.json"
    assert b.stages[3].command.startswith('relman verify evtselect --image "$RELMAN_REGISTRY/$RELMAN_NAMESPACE/'
                                          'evtselect:$REF-runtime" --report reports/')
    assert [s.name for s in JS.get("evtselect/build-env").stages] == ["Prepare", "Build", "Record"]
    assert JS.get("evtselect/promote").stages[-1].command == \
        'relman promote evtselect "$TAG" --to "$TARGET" --channel "$CHANNEL" --by "$BUILD_USER_ID" --reason "$REASON"'
    # a package without channels has no CHANNEL parameter
    assert JS.get("sciencetools/promote").stages[-1].command == \
        'relman promote sciencetools "$TAG" --to "$TARGET" --by "$BUILD_USER_ID" --reason "$REASON"'
    assert JS.get("evtselect/debug-build").stages[-1].command == \
        'relman debug-build evtselect --ref "$REF" --requester "$REQUESTER"'
    assert JS.get("sciencetools/nightly").stages[-1].command == "relman nightly sciencetools"
    promote = jenkinsfile(JS.get("evtselect/promote"))
    assert "wrap([$class: 'BuildUser'])" in promote
    assert "withCredentials([usernamePassword(credentialsId: 'relman-registry'" in promote
    cfg = job_config(JS.get("evtselect/promote"))
    assert "GROUP:hudson.model.Item.Build:release-managers" in cfg


def test_post_steps():
    jf = jenkinsfile(JS.get("evtselect/build-full"))
    assert "junit allowEmptyResults: true, testResults: 'reports/**/*.xml'" in jf
    assert "archiveArtifacts allowEmptyArchive: true, artifacts: 'results/*.json,reports/**/*.html'" in jf


@pytest.mark.parametrize("job", PIPELINES, ids=PIPELINE_IDS)
def test_no_interpolation(job):
    """Fails when any generated pipeline puts a value into a double-quoted (GString) string."""
    jf = jenkinsfile(job)
    assert lint.problems(jf, job.full_name) == []
    assert '"' not in "".join(t.text for t in lint.tokenize(jf) if t.kind == "code")


def test_root_jenkinsfile_is_the_rendered_seed():
    assert (PROJECT_ROOT / "Jenkinsfile").read_text() == jenkinsfile(JS.get("relman-seed"))
    assert lint.problems((PROJECT_ROOT / "Jenkinsfile").read_text()) == []
    seed = JS.get("relman-seed")
    cmds = [s.command for s in seed.stages]
    assert any("specs check" in c for c in cmds) and any("jobs sync --prune" in c for c in cmds)
    assert any(c.id == "relman-jenkins-api" for s in seed.stages for c in s.credentials)


def test_lint_catches_interpolation():
    bad = {
        'sh "relman build x --ref ${params.REF}"': "interpolation",
        "sh \"relman build x --ref $REF\"": "interpolation",
        'sh """relman build $REF"""': "interpolation",
        "sh(script: 'relman build')": "sh(",
        'echo "${env.TOKEN}"': "interpolation",
        "def s = \"a\"\nsh s": "not a single-quoted",
    }
    for src, what in bad.items():
        found = lint.problems(src)
        assert found and any(what in f for f in found), (src, found)
    assert lint.problems("sh 'relman build x --ref \"$REF\"' // \"$x\" in a comment") == []
    assert lint.problems("echo 'it\\'s \"$REF\"'") == []


def test_hostile_text_is_escaped():
    """Values with quotes, markup and dollars stay literal in both outputs."""
    nasty = "it's <b>&</b> \"$(id)\" ${x} `y` \\"
    job = Job(folder="p", name="j", kind="build", summary=nasty, agent_label="local-builder",
              parameters=[Param("REF", nasty, "ref", default="main")],
              stages=[Stage("S'1", "relman build p --ref \"$REF\"")])
    jf = jenkinsfile(job)
    assert lint.problems(jf) == []
    root = ET.fromstring(job_config(job).split("?>", 1)[1])
    assert nasty in root.findtext("description")
    assert root.findtext("definition/script") == jf
    assert root.findtext(".//hudson.model.StringParameterDefinition/description") == nasty
    with pytest.raises(ValueError):
        groovy_sq("two\nlines")


def test_scm_mode():
    js = reference_jobset(jenkins_script_mode="scm", jenkins_scm_url=SCM_URL)
    for j in js.jobs:
        d = parse_xml(job_config(j)).find("definition")
        assert d.get("class") == "org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition"
        assert d.findtext("scm/userRemoteConfigs/hudson.plugins.git.UserRemoteConfig/url") == SCM_URL
        want = "Jenkinsfile" if j.kind == "seed" else f"jenkinsfiles/jobs/{j.full_name}/Jenkinsfile"
        assert d.findtext("scriptPath") == want


def test_normalize_ignores_server_noise():
    cfg = job_config(JS.get("evtselect/promote"))
    server = cfg.replace("<?xml version='1.0' encoding='UTF-8'?>", "<?xml version='1.1' encoding='UTF-8'?>")
    server = server.replace('plugin="workflow-job"', 'plugin="workflow-job@1436.vfa_244484591f"')
    server = server.replace("<disabled>false</disabled>", "<disabled>true</disabled>").replace("\n", "\r\n")
    assert normalize_xml(server) == normalize_xml(cfg)
    assert normalize_xml(cfg.replace("<numToKeep>30<", "<numToKeep>31<")) != normalize_xml(cfg)


def test_maintenance_job_runs_gc_status_then_reconcile_daily():
    for name in SPECS.packages:
        job = next(j for j in JS.jobs if j.folder == name and j.name == "maintenance")
        assert job.cron and not job.parameters
        commands = [s.command for s in job.stages]
        assert commands[1:] == [f"relman gc --package {name}", "relman status --html status-site",
                                f"relman reconcile --package {name}"]
        assert "status-site/**" in job.archive.split(",")


def test_platform_override_picks_the_builders_and_is_passed_in_plain_sight():
    from jenkins_standin import reference_jobset
    plain = reference_jobset().get("sciencetools/nightly")
    assert plain.agent_label == "rhel7-builder"
    assert "RELMAN_PLATFORM_OVERRIDES" not in dict(plain.environment)
    local = reference_jobset(platform_overrides={"rhel7": "debian12-local"}).get("sciencetools/nightly")
    assert local.agent_label == "local-builder"
    assert dict(local.environment)["RELMAN_PLATFORM_OVERRIDES"] == "rhel7=debian12-local"
    # other packages keep their own platform
    other = reference_jobset(platform_overrides={"rhel7": "debian12-local"}).get("glastrelease/promote")
    assert other.agent_label == "rhel6-builder"
