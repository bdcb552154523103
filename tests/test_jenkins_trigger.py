"""`relman jobs trigger` against the stand-in: queue -> build -> result, and the ways it goes wrong."""
from __future__ import annotations

import os
import sys
import threading

import pytest
from click.testing import CliRunner

from jenkins_standin import TOKEN, JenkinsStandin, reference_jobset, reference_settings
from release_manager.cli import main
from release_manager.jenkins.client import Client, JenkinsError
from release_manager.jenkins.runner import StageFailed, run_local
from release_manager.jenkins.sync import sync
from release_manager.jenkins.trigger import start, trigger, wait_for_build

JS = reference_jobset().only("evtselect")


@pytest.fixture
def server():
    with JenkinsStandin(build_seconds=0.2) as s:
        c = Client(reference_settings(jenkins_url=s.url, jenkins_user="admin", jenkins_token=TOKEN))
        sync(c, JS, echo=lambda m: None)
        s.client = c
        yield s


def test_trigger_and_wait_success(server):
    out = []
    res = trigger(server.client, "evtselect/build-runtime", {"REF": "v1.1.0"}, wait=True, poll=0.02,
                  echo=out.append)
    assert res.result == "SUCCESS" and res.number == 1
    assert server.items["evtselect/build-runtime"].builds[1].params == {"REF": "v1.1.0"}
    text = "\n".join(out)
    assert "queued evtselect/build-runtime" in text and "Finished: SUCCESS" in text


def test_result_is_null_while_running(server):
    qid = start(server.client, "evtselect/nightly", {})
    b = wait_for_build(server.client, "evtselect/nightly", qid, timeout=5, poll=0.01, echo=lambda m: None)
    info = server.client.server.get_build_info("evtselect/nightly", b.number)
    assert info["result"] is None and info["building"] is True


def test_failed_build_shows_console_and_fails(server):
    server.results["evtselect/build-full"] = "FAILURE"
    out = []
    with pytest.raises(JenkinsError, match="finished FAILURE"):
        trigger(server.client, "evtselect/build-full", {"REF": "v1.1.0"}, wait=True, poll=0.02, echo=out.append)
    assert any("Finished: FAILURE" in line for line in out)


def test_disabled_job(server):
    server.client.server.disable_job("evtselect/nightly")
    with pytest.raises(JenkinsError, match="disabled"):
        trigger(server.client, "evtselect/nightly", {}, echo=lambda m: None)


def test_parameters_on_a_job_without_parameters(server):
    server.add("evtselect/plain", "<flow-definition><description>x</description>"
                                  "<disabled>false</disabled></flow-definition>")
    with pytest.raises(JenkinsError, match="500"):
        trigger(server.client, "evtselect/plain", {"REF": "v1"}, echo=lambda m: None)


def test_cancelled_queue_item(server):
    server.hold_queue = True
    qid = start(server.client, "evtselect/nightly", {})
    server.client.server.cancel_queue(qid)
    with pytest.raises(JenkinsError, match="cancelled"):
        wait_for_build(server.client, "evtselect/nightly", qid, timeout=5, poll=0.01, echo=lambda m: None)


def test_queue_timeout_says_why(server):
    server.nodes = [{"name": "other", "labels": ["rhel6-builder"]}]
    out = []
    with pytest.raises(JenkinsError, match="did not start within .*no nodes with the label"):
        trigger(server.client, "evtselect/nightly", {}, timeout=0.3, poll=0.02, echo=out.append)
    assert any("waiting in the queue" in line for line in out)


def test_unknown_job(server):
    with pytest.raises(JenkinsError, match="not found"):
        trigger(server.client, "evtselect/nope", {}, echo=lambda m: None)


def test_nodes_with_labels(server):
    nodes = server.client.server.get_nodes_with_info()
    assert "local-builder" in [lb["name"] for lb in nodes[0]["assignedLabels"]]


def test_cli_trigger_validates_before_any_request(server, monkeypatch):
    monkeypatch.setenv("RELMAN_JENKINS_URL", server.url)
    monkeypatch.setenv("RELMAN_JENKINS_USER", "admin")
    monkeypatch.setenv("RELMAN_JENKINS_TOKEN", TOKEN)
    server.reset_counts()
    r = CliRunner().invoke(main, ["jobs", "trigger", "evtselect/debug-build", "--param", "REF=main",
                                  "--param", "REQUESTER=$(id)"])
    assert r.exit_code == 2 and "REQUESTER" in r.output and server.write_count == 0
    r = CliRunner().invoke(main, ["jobs", "trigger", "evtselect/debug-build", "--param", "REF=main",
                                  "--param", "REQUESTER=bob", "--wait", "--poll", "0.02"])
    assert r.exit_code == 0, r.output
    assert "SUCCESS" in r.output and TOKEN not in r.output


def test_builds_run_the_stages_through_the_local_runner(tmp_path):
    """The stand-in executes a triggered build with the same runner `relman pipeline run --local` uses."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "relman").write_text(f"#!{sys.executable}\nimport os, sys\n"
                                   "open(os.environ['LOG'], 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
                                   "if sys.argv[1] == 'pipeline': os.makedirs('results', exist_ok=True)\n"
                                   "sys.exit(4 if 'verify' in sys.argv else 0)\n")
    (bindir / "relman").chmod(0o755)
    log = tmp_path / "log"
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", LOG=str(log))
    lock = threading.Lock()

    def executor(job, params):
        lines = []
        with lock:
            try:
                run_local(JS.get(job), params, tmp_path / "ws", echo=lines.append, base_env=env)
                return "SUCCESS", "\n".join(lines)
            except StageFailed as exc:
                return "FAILURE", "\n".join(lines + [str(exc)])

    with JenkinsStandin(executor=executor) as s:
        c = Client(reference_settings(jenkins_url=s.url, jenkins_user="admin", jenkins_token=TOKEN))
        sync(c, JS, echo=lambda m: None)
        out = []
        res = trigger(c, "evtselect/build-env", {"REF": "v1.1.0"}, wait=True, poll=0.02, echo=out.append)
        assert res.result == "SUCCESS"
        assert log.read_text().splitlines()[1] == "build evtselect --ref v1.1.0 --variant env --push --json"
        with pytest.raises(JenkinsError, match="FAILURE"):
            trigger(c, "evtselect/build-runtime", {"REF": "v1.1.0"}, wait=True, poll=0.02, echo=out.append)
        assert any("stage 'Verify' failed" in line for line in out)


def test_build_timeout(server):
    server.build_seconds = 2.0
    with pytest.raises(JenkinsError, match="still running after"):
        trigger(server.client, "evtselect/nightly", {}, wait=True, timeout=0.4, poll=0.02, echo=lambda m: None)


def test_a_500_on_a_parameterized_job_says_what_jenkins_said(server):
    """Only a job that really defines no parameters is reported as such; any other 500 shows Jenkins' words."""
    server.trigger_errors["evtselect/promote"] = (500, "java.lang.NullPointerException in the agent selector")
    with pytest.raises(JenkinsError) as e:
        trigger(server.client, "evtselect/promote", {"TAG": "v1.1.0-runtime", "TARGET": "stable",
                                                     "REASON": "release ok"}, echo=lambda m: None)
    assert "500" in str(e.value) and "NullPointerException" in str(e.value)
    assert "defines no parameters" not in str(e.value)


def test_a_stale_crumb_is_not_called_a_token_problem(server):
    # python-jenkins fetched a crumb on its first POST and keeps it; the server restarts and issues another
    server.client.server.crumb = {"crumbRequestField": "Jenkins-Crumb", "crumb": "the-one-before-the-restart"}
    with pytest.raises(JenkinsError) as e:
        start(server.client, "evtselect/nightly", {})
    text = str(e.value)
    assert "crumb" in text.lower() and "stale" in text and "RELMAN_JENKINS_TOKEN" not in text


def test_credentials_in_the_url_never_appear_in_messages(server):
    url = server.url.replace("http://", "http://admin:s3cret-in-url@")
    c = Client(reference_settings(jenkins_url=url, jenkins_user="admin", jenkins_token=TOKEN))
    assert "s3cret-in-url" not in c.url and "s3cret-in-url" not in repr(c)
    with pytest.raises(JenkinsError) as e:
        start(c, "evtselect/no-such-job", {})
    assert "s3cret-in-url" not in str(e.value) and "admin:" not in str(e.value)
    assert c.scrub(f"see {url}") == f"see {server.url.replace('http://', 'http://***@')}"
