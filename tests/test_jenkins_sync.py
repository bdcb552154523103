"""`relman jobs sync` against the Jenkins stand-in: create, leave alone, reconfigure, prune, dry-run."""
from __future__ import annotations

import shutil

import pytest
import requests
import yaml
from click.testing import CliRunner

from jenkins_standin import TOKEN, JenkinsStandin, reference_jobset, reference_settings
from release_manager.cli import main
from release_manager.config import PROJECT_ROOT
from release_manager.jenkins.client import Client, JenkinsError
from release_manager.jenkins.model import marker_line
from release_manager.jenkins.render import job_config
from release_manager.jenkins.sync import sync


@pytest.fixture
def server():
    with JenkinsStandin() as s:
        yield s


def _client(server, **over):
    return Client(reference_settings(jenkins_url=server.url, jenkins_user="admin", jenkins_token=TOKEN, **over))


def _marked_job(name):
    return (f"<?xml version='1.1' encoding='UTF-8'?>\n<flow-definition plugin=\"workflow-job@1\">\n"
            f"<description>old job\n{marker_line(name, 'x' * 64)}</description>\n<disabled>false</disabled>\n"
            "</flow-definition>")


HAND_MADE = "<?xml version='1.1' encoding='UTF-8'?>\n<flow-definition><description>by hand</description></flow-definition>"


def test_first_sync_creates_folders_first_then_second_sync_writes_nothing(server):
    js = reference_jobset()
    c = _client(server)
    counts = sync(c, js, echo=lambda m: None)
    wanted = [f.full_name for f in js.folders] + [j.full_name for j in js.jobs if j.name != "relman-seed"]
    assert counts["create"] == len(wanted) and counts["skip"] == 1      # seed: no repository URL
    assert sorted(server.items) == sorted(wanted)
    creates = [p for _, p in server.posts if "createItem" in p]
    folder_posts = [i for i, p in enumerate(creates) if p.startswith("/createItem")]
    assert folder_posts == list(range(len(js.folders)))                 # every folder before any job
    assert server.items["evtselect/promote"].config == job_config(js.get("evtselect/promote"))
    server.reset_counts()
    counts = sync(c, js, echo=lambda m: None)
    assert counts.get("keep") == len(wanted) and not counts.get("update") and not counts.get("create")
    assert server.write_count == 0


def test_changed_spec_reconfigures_only_that_package(server, tmp_path):
    c = _client(server)
    sync(c, reference_jobset(), echo=lambda m: None)
    specs = tmp_path / "image_specs"      # same folder name: same spec_path in the jobs
    shutil.copytree(PROJECT_ROOT / "image_specs", specs)
    p = specs / "evtselect.yaml"
    data = yaml.safe_load(p.read_text())
    data["jenkins"]["keep_builds"] = 12
    p.write_text(yaml.safe_dump(data))
    js = reference_jobset(specs)
    server.reset_counts()
    out = []
    counts = sync(c, js, echo=out.append)
    n_evt = len([j for j in js.jobs if j.package == "evtselect"]) + 1       # + the folder (spec hash)
    assert counts["update"] == n_evt and counts.get("create", 0) == 0
    assert all("/job/evtselect/" in p or p.startswith("/job/evtselect/") for _, p in server.posts)
    assert server.write_count == n_evt
    assert "<numToKeep>12</numToKeep>" in server.items["evtselect/build-runtime"].config


def test_dry_run_prints_the_diff_and_writes_nothing(server):
    c = _client(server)
    js = reference_jobset()
    sync(c, js, echo=lambda m: None)
    server.items["evtselect/nightly"].config = server.items["evtselect/nightly"].config.replace(
        "<spec>H 3 * * *</spec>", "<spec>H 5 * * *</spec>")
    server.add("evtselect/obsolete", _marked_job("evtselect/obsolete"))
    server.reset_counts()
    out = []
    counts = sync(c, js, dry_run=True, prune=True, echo=out.append)
    text = "\n".join(out)
    assert counts["update"] == 1 and counts["delete"] == 1
    assert "-          <spec>H 5 * * *</spec>" in text and "+          <spec>H 3 * * *</spec>" in text
    assert "dry run: nothing written" in text
    assert server.write_count == 0
    assert "H 5 * * *" in server.items["evtselect/nightly"].config


def test_prune_deletes_only_marked_jobs(server):
    c = _client(server)
    js = reference_jobset()
    sync(c, js, echo=lambda m: None)
    server.add("evtselect/build-old", _marked_job("evtselect/build-old"))
    server.add("evtselect/hand-made", HAND_MADE)
    server.add("hand-folder", "<com.cloudbees.hudson.plugins.folder.Folder><description>mine"
                              "</description></com.cloudbees.hudson.plugins.folder.Folder>")
    server.add("hand-folder/x", HAND_MADE)
    gone_pkg = "<com.cloudbees.hudson.plugins.folder.Folder><description>{}</description>" \
               "</com.cloudbees.hudson.plugins.folder.Folder>"
    server.add("oldpkg", gone_pkg.format(marker_line("oldpkg", "y" * 64)))
    server.add("oldpkg/promote", _marked_job("oldpkg/promote"))
    server.add("mixed", gone_pkg.format(marker_line("mixed", "z" * 64)))
    server.add("mixed/promote", _marked_job("mixed/promote"))
    server.add("mixed/notes", HAND_MADE)
    # without --prune nothing goes
    server.reset_counts()
    sync(c, js, echo=lambda m: None)
    assert server.write_count == 0
    out = []
    counts = sync(c, js, prune=True, echo=out.append)
    assert counts["delete"] == 4
    for gone in ("evtselect/build-old", "oldpkg", "oldpkg/promote", "mixed/promote"):
        assert gone not in server.items
    for kept in ("evtselect/hand-made", "hand-folder", "hand-folder/x", "mixed", "mixed/notes"):
        assert kept in server.items
    assert any("mixed" in line and "relman does not delete" in line for line in out)


def test_only_one_package(server):
    c = _client(server)
    js = reference_jobset()
    counts = sync(c, js, only="evtselect", echo=lambda m: None)
    assert sorted(server.items) == sorted(["evtselect"] + [j.full_name for j in js.jobs if j.package == "evtselect"])
    assert counts["create"] == len(server.items)
    server.add("glastrelease/obsolete", _marked_job("glastrelease/obsolete"))
    sync(c, js, only="evtselect", prune=True, echo=lambda m: None)
    assert "glastrelease/obsolete" in server.items                     # outside the scope


def test_unmarked_job_in_the_way_is_left_alone_unless_adopted(server):
    c = _client(server)
    js = reference_jobset().only("evtselect")
    server.add("evtselect", "<com.cloudbees.hudson.plugins.folder.Folder><description>made by hand"
                            "</description></com.cloudbees.hudson.plugins.folder.Folder>")
    server.add("evtselect/promote", HAND_MADE)
    out = []
    counts = sync(c, js, echo=out.append)
    assert counts["conflict"] == 2
    assert server.items["evtselect/promote"].config == HAND_MADE
    counts = sync(c, js, adopt=True, echo=out.append)
    assert counts["update"] == 2 and "relman-managed" in server.items["evtselect/promote"].config


def test_disabled_job_stays_disabled(server):
    c = _client(server)
    js = reference_jobset().only("evtselect")
    sync(c, js, echo=lambda m: None)
    c.server.disable_job("evtselect/nightly")
    assert server.items["evtselect/nightly"].disabled
    server.reset_counts()
    assert sync(c, js, echo=lambda m: None).get("update") is None and server.write_count == 0
    # a real change still keeps the admin's disabled flag
    server.items["evtselect/nightly"].config = server.items["evtselect/nightly"].config.replace(
        "<numToKeep>30<", "<numToKeep>3<")
    sync(c, js, echo=lambda m: None)
    assert server.items["evtselect/nightly"].disabled and "<numToKeep>30<" in server.items["evtselect/nightly"].config


def test_seed_job_synced_when_the_repository_is_known(server):
    c = _client(server)
    js = reference_jobset(jenkins_scm_url="https://git.example.org/relman.git")
    sync(c, js, echo=lambda m: None)
    cfg = server.items["relman-seed"].config
    assert "CpsScmFlowDefinition" in cfg and "<scriptPath>Jenkinsfile</scriptPath>" in cfg
    assert "hudson.triggers.SCMTrigger" in cfg


def test_auth_and_crumbs(server):
    s = reference_settings(jenkins_url=server.url, jenkins_user="admin", jenkins_token="wrong-token-987654")
    with pytest.raises(JenkinsError) as e:
        sync(Client(s), reference_jobset(), echo=lambda m: None)
    assert "wrong-token-987654" not in str(e.value) and "401" in str(e.value)
    with pytest.raises(JenkinsError, match="403"):
        Client(reference_settings(jenkins_url=server.url)).all_items()     # anonymous on a secured server
    assert requests.get(server.url, timeout=5).headers["X-Jenkins"] == server.version
    auth = ("admin", TOKEN)
    r = requests.post(server.url + "createItem?name=x", data=HAND_MADE, auth=auth,
                      headers={"Content-Type": "text/xml"}, timeout=5)
    assert r.status_code == 403 and "crumb" in r.text
    crumb = requests.get(server.url + "crumbIssuer/api/json", auth=auth, timeout=5).json()
    r = requests.post(server.url + "createItem?name=x", data=HAND_MADE, auth=auth, timeout=5,
                      headers={"Content-Type": "text/xml", crumb["crumbRequestField"]: crumb["crumb"]})
    assert r.status_code == 200 and "x" in server.items
    assert "Client(" in repr(_client(server)) and TOKEN not in repr(_client(server))


def test_no_crumbs_and_no_security():
    with JenkinsStandin(security=False, crumbs=False) as s:
        c = Client(reference_settings(jenkins_url=s.url))
        sync(c, reference_jobset().only("evtselect"), echo=lambda m: None)
        assert "evtselect/promote" in s.items


def test_cli_sync_never_prints_the_token(server, monkeypatch):
    monkeypatch.setenv("RELMAN_JENKINS_URL", server.url)
    monkeypatch.setenv("RELMAN_JENKINS_USER", "admin")
    monkeypatch.setenv("RELMAN_JENKINS_TOKEN", TOKEN)
    r = CliRunner().invoke(main, ["jobs", "sync", "--only", "evtselect"])
    assert r.exit_code == 0, r.output
    assert "7 create" in r.output or "create" in r.output
    r = CliRunner().invoke(main, ["jobs", "sync", "--dry-run", "--prune"])
    assert r.exit_code == 0 and "dry run" in r.output and TOKEN not in r.output
    monkeypatch.setenv("RELMAN_JENKINS_TOKEN", "another-secret-555")
    r = CliRunner().invoke(main, ["jobs", "sync"])
    assert r.exit_code == 1 and "another-secret-555" not in r.output and "401" in r.output
    monkeypatch.delenv("RELMAN_JENKINS_URL")
    r = CliRunner().invoke(main, ["jobs", "sync"])
    assert r.exit_code == 2 and "RELMAN_JENKINS_URL" in r.output


def test_cli_render(tmp_path):
    r = CliRunner().invoke(main, ["jobs", "render", "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "glastrelease" / "build-runtime" / "Jenkinsfile").is_file()
    assert (tmp_path / "out" / "glastrelease" / "config.xml").is_file()
    r = CliRunner().invoke(main, ["jobs", "list", "--json"])
    assert r.exit_code == 0 and "sciencetools/nightly" in r.output


def test_sync_is_idempotent_against_a_jenkins_that_resaves(tmp_path):
    """A real Jenkins rewrites config.xml on every save (XStream, plugin versions, matrix-auth's sorted
    permissions, <removeLastBuild>) and keeps declarative job actions in <actions> after a build: first
    sync, re-save and build every job, sync again: no write at all, and nothing Jenkins added is lost."""
    import time
    with JenkinsStandin(resave=True) as server:
        js = reference_jobset()
        c = _client(server)
        sync(c, js, echo=lambda m: None)
        promote = server.items["evtselect/promote"].config
        assert "version='1.1'" in promote and "<removeLastBuild>false</removeLastBuild>" in promote
        assert 'plugin="matrix-auth@' in promote
        assert promote != job_config(js.get("evtselect/promote")), "the stand-in re-saved the job its own way"
        jobs = [n for n, i in server.items.items() if i.kind != "folder"]
        for name in jobs:   # every job built once: Jenkins records its declarative actions
            defined = server.items[name].parameters()
            params = {p: "x" for p, _ in defined or []}
            (c.server.build_job(name, params) if defined else c.server.build_job(name))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
                "DeclarativeJobAction" in server.items[n].config for n in jobs):
            time.sleep(0.1)
        assert all("DeclarativeJobAction" in server.items[n].config for n in jobs)
        server.reset_counts()
        counts = sync(c, js, echo=lambda m: None)
        assert not counts.get("update") and not counts.get("create") and server.write_count == 0, counts
        # a job changed on the server is put back, and what Jenkins added stays
        from release_manager.jenkins.render import normalize_xml
        ours = job_config(js.get("evtselect/promote"))
        server.items["evtselect/promote"].config = server.items["evtselect/promote"].config.replace(
            "release managers: release-managers", "someone edited this")
        server.reset_counts()
        counts = sync(c, js, echo=lambda m: None)
        assert counts.get("update") == 1 and server.write_count == 1
        after = server.items["evtselect/promote"].config
        assert "DeclarativeJobAction" in after and "someone edited this" not in after
        assert normalize_xml(after, owned=ours) == normalize_xml(ours)


def test_prune_leaves_a_copy_made_in_jenkins(server):
    """A job copied in Jenkins from a relman job carries the marker of the original: it is not relman's."""
    c = _client(server)
    js = reference_jobset()
    sync(c, js, echo=lambda m: None)
    server.add("evtselect/promote-copy", server.items["evtselect/promote"].config)
    server.add("evtselect/old-job", _marked_job("evtselect/old-job"))
    counts = sync(c, js, prune=True, echo=lambda m: None)
    assert "evtselect/promote-copy" in server.items, "a copy is not relman's to delete"
    assert "evtselect/old-job" not in server.items and counts.get("delete") == 1
