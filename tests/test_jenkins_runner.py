"""The local runner and parameter validation: same stages as Jenkins, hostile values never run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from jenkins_standin import reference_jobset
from release_manager.cli import main
from release_manager.errors import UsageError
from release_manager.jenkins import params as P
from release_manager.jenkins.runner import StageFailed, prepare, run_local

JS = reference_jobset()

FAKE = """#!{python}
# Stand-in for `relman` on PATH: logs its argv; `pipeline ...` goes to the real relman.
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_RELMAN_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
if args[:1] == ["pipeline"]:
    sys.exit(subprocess.call([sys.executable, "-m", "release_manager", *args]))
if args and args[0] == os.environ.get("FAKE_RELMAN_FAIL"):
    print("relman: error: simulated failure of " + args[0], file=sys.stderr)
    sys.exit(3)
if "--json" in args:
    print(json.dumps([{{"target": args[args.index("--variant") + 1], "status": "built"}}]))
"""


@pytest.fixture
def fake(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "relman"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(0o755)
    log = tmp_path / "relman.log"
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", FAKE_RELMAN_LOG=str(log),
               BUILD_USER_ID="alice")
    for k in ("JENKINS_URL", "BUILD_URL", "BUILD_USER_GROUPS"):
        env.pop(k, None)

    class Fake:
        pass
    f = Fake()
    f.env, f.log, f.ws, f.marker = env, log, tmp_path / "ws", tmp_path / "MARKER"
    f.calls = lambda: [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return f


def test_local_run_runs_the_stages_in_order(fake):
    out = []
    res = run_local(JS.get("evtselect/build-runtime"), {"REF": "v1.1.0"}, fake.ws, echo=out.append,
                    base_env=fake.env)
    calls = fake.calls()
    assert [c[:2] for c in calls] == [["pipeline", "prepare"], ["build", "evtselect"], ["db", "record-build"],
                                      ["verify", "evtselect"]]
    assert calls[1] == ["build", "evtselect", "--ref", "v1.1.0", "--variant", "runtime", "--push", "--json"]
    assert calls[3][:4] == ["verify", "evtselect", "--image", "127.0.0.1:5000/fermi-lat/evtselect:v1.1.0-runtime"]
    assert json.loads((fake.ws / "results" / "build-runtime.json").read_text())[0]["target"] == "runtime"
    assert [rc for _, rc in res.stages] == [0, 0, 0, 0]
    assert "results/build-runtime.json" in res.artifacts


def test_local_run_stops_at_first_failure(fake):
    fake.env["FAKE_RELMAN_FAIL"] = "db"
    with pytest.raises(StageFailed, match="stage 'Record' failed with exit code 3"):
        run_local(JS.get("evtselect/build-full"), {"REF": "v1.1.0"}, fake.ws, echo=lambda m: None,
                  base_env=fake.env)
    assert [c[0] for c in fake.calls()] == ["pipeline", "build", "db"]


def test_workflow_jobs_locally(fake):
    run_local(JS.get("evtselect/promote"), {"TAG": "v1.1.0-runtime", "TARGET": "stable-runtime",
                                             "REASON": "passed verification, see #12"},
              fake.ws, echo=lambda m: None, base_env=fake.env)
    run_local(JS.get("evtselect/promote"), {"TAG": "v1.1.0-runtime", "TARGET": "stable-runtime",
                                             "REASON": "for batch", "CHANNEL": "batch"},
              fake.ws, echo=lambda m: None, base_env=fake.env)
    run_local(JS.get("evtselect/debug-build"), {"REF": "feature/x", "REQUESTER": "bob"}, fake.ws,
              echo=lambda m: None, base_env=fake.env)
    run_local(JS.get("sciencetools/nightly"), {}, fake.ws, echo=lambda m: None, base_env=fake.env)
    calls = [c for c in fake.calls() if c[0] != "pipeline"]
    assert calls == [["promote", "evtselect", "v1.1.0-runtime", "--to", "stable-runtime", "--channel", "", "--by",
                      "alice", "--reason", "passed verification, see #12"],
                     ["promote", "evtselect", "v1.1.0-runtime", "--to", "stable-runtime", "--channel", "batch", "--by",
                      "alice", "--reason", "for batch"],
                     ["debug-build", "evtselect", "--ref", "feature/x", "--requester", "bob"],
                     ["nightly", "sciencetools"]]


HOSTILE = ["; touch {m}", "$(touch {m})", "`touch {m}`", "v1\ntouch {m}", "${{IFS}}touch${{IFS}}{m}",
           '"; touch {m}; "', "'; touch {m}; '", "v1 && touch {m}", "v1|touch {m}", "-rf", "../etc",
           "$(id)", "${{PATH}}", "v1;rm -rf /"]
CASES = [("evtselect/build-runtime", "REF", {}), ("evtselect/debug-build", "REF", {"REQUESTER": "bob"}),
         ("evtselect/debug-build", "REQUESTER", {"REF": "main"}),
         ("evtselect/promote", "TAG", {"TARGET": "stable", "REASON": "ok"}),
         ("evtselect/promote", "TARGET", {"TAG": "v1.1.0-runtime", "REASON": "ok"}),
         ("evtselect/promote", "REASON", {"TAG": "v1.1.0-runtime", "TARGET": "stable"}),
         ("evtselect/promote", "CHANNEL", {"TAG": "v1.1.0-runtime", "TARGET": "stable", "REASON": "ok"})]


@pytest.mark.parametrize("job,param,others", CASES, ids=[f"{j}:{p}" for j, p, _ in CASES])
def test_hostile_values_are_rejected_and_never_run(fake, job, param, others):
    for raw in HOSTILE:
        value = raw.format(m=fake.marker)
        with pytest.raises(UsageError, match=param):
            run_local(JS.get(job), {**others, param: value}, fake.ws, echo=lambda m: None, base_env=fake.env)
    assert fake.calls() == [] and not fake.marker.exists()


def test_hostile_build_user_is_rejected(fake):
    fake.env["BUILD_USER_ID"] = "$(touch x)"
    with pytest.raises(UsageError, match="BUILD_USER_ID"):
        run_local(JS.get("evtselect/promote"), {"TAG": "a", "TARGET": "b", "REASON": "c"}, fake.ws,
                  echo=lambda m: None, base_env=fake.env)
    assert fake.calls() == []


def test_unknown_and_missing_parameters():
    with pytest.raises(UsageError, match="unknown parameter"):
        P.validate(JS.get("evtselect/build-runtime"), {"REF": "v1", "EXTRA": "1"})
    with pytest.raises(UsageError, match="REQUESTER: required"):
        P.validate(JS.get("evtselect/debug-build"), {"REF": "main"})
    assert P.validate(JS.get("evtselect/build-runtime"), {}) == {"REF": "main"}   # the default branch
    with pytest.raises(UsageError, match="build jobs take a tag"):
        P.validate(JS.get("evtselect/build-runtime"), {"REF": "feature/x"})
    with pytest.raises(UsageError, match="NAME=VALUE"):
        P.parse_assignments(["REF"])


def test_the_shell_never_evaluates_a_value_even_unvalidated(fake):
    """Second wall: the stage text is fixed, values arrive as environment variables in "$NAME"."""
    job = JS.get("evtselect/build-runtime")
    build = job.stages[1].command.split(" > ")[0]
    for raw in HOSTILE:
        value = raw.format(m=fake.marker)
        subprocess.run(["bash", "-e", "-c", build], env={**fake.env, "REF": value}, cwd=fake.ws.parent,
                       check=True, capture_output=True)
    assert not fake.marker.exists()
    refs = [c[c.index("--ref") + 1] for c in fake.calls()]
    assert refs == [raw.format(m=fake.marker) for raw in HOSTILE]


def test_prepare_validates_the_environment(tmp_path):
    job = JS.get("evtselect/promote")
    env = {"TAG": "v1.1.0-runtime", "TARGET": "stable", "REASON": "release ok", "BUILD_USER_ID": "alice"}
    assert prepare(job, env, tmp_path, echo=lambda m: None)["BUILD_USER_ID"] == "alice"
    assert (tmp_path / "results").is_dir() and (tmp_path / "reports").is_dir()
    with pytest.raises(UsageError, match="TAG"):
        prepare(job, {**env, "TAG": "$(id)"}, tmp_path, echo=lambda m: None)
    with pytest.raises(UsageError, match="BUILD_USER_ID"):
        prepare(job, {k: v for k, v in env.items() if k != "BUILD_USER_ID"}, tmp_path, echo=lambda m: None)
    # in Jenkins the user's groups must include one of spec.jenkins.promote_by
    jenv = {**env, "JENKINS_URL": "http://jenkins/", "BUILD_USER_GROUPS": "authenticated,developers"}
    with pytest.raises(UsageError, match="release-managers"):
        prepare(job, jenv, tmp_path, echo=lambda m: None)
    prepare(job, {**jenv, "BUILD_USER_GROUPS": "authenticated,release-managers"}, tmp_path, echo=lambda m: None)
    warned = []
    prepare(job, {**env, "RELMAN_JOB_SPEC_HASH": "0" * 64}, tmp_path, echo=lambda m: None, warn=warned.append)
    assert warned and "run the seed job" in warned[0]


def test_cli_pipeline_run_and_prepare(fake, monkeypatch):
    for k, v in fake.env.items():
        monkeypatch.setenv(k, v)
    fake.ws.mkdir()
    r = CliRunner().invoke(main, ["pipeline", "run", "evtselect/debug-build", "--local", "--param", "REF=v1.1.0",
                                  "--param", "REQUESTER=bob", "--workspace", str(fake.ws)])
    assert r.exit_code == 0, r.output
    assert ["debug-build", "evtselect", "--ref", "v1.1.0", "--requester", "bob"] in fake.calls()
    r = CliRunner().invoke(main, ["pipeline", "run", "evtselect/debug-build", "--local", "--param",
                                  f"REF=$(touch {fake.marker})", "--param", "REQUESTER=bob"])
    assert r.exit_code == 2 and "REF" in r.output and not fake.marker.exists()
    monkeypatch.setenv("REF", "v1;id")
    r = CliRunner().invoke(main, ["pipeline", "prepare", "evtselect/build-runtime", "--workspace", str(fake.ws)])
    assert r.exit_code == 2 and "not a valid git ref" in r.output
