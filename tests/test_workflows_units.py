"""Small pieces of the workflows that need neither engine nor registry."""
from __future__ import annotations

import json

import pytest

from release_manager.config import load_settings
from release_manager.errors import UsageError
from release_manager.workflows.common import check_reason, check_user, scrub, summary_path
from release_manager.workflows.debug import check_ttl
from release_manager.workflows.gc import GcSettings


def test_gc_settings_from_environment(monkeypatch):
    assert GcSettings.from_env() == GcSettings(14, 7, 7)
    monkeypatch.setenv("RELMAN_GC_NIGHTLY_DAYS", "30")
    monkeypatch.setenv("RELMAN_GC_KEEP", "3")
    monkeypatch.setenv("RELMAN_GC_FAILED_DAYS", "0")
    assert GcSettings.from_env() == GcSettings(30, 3, 0)


@pytest.mark.parametrize("value", ["-1", "ten", "1.5", "7; rm"])
def test_gc_settings_refuse_bad_values(monkeypatch, value):
    monkeypatch.setenv("RELMAN_GC_KEEP", value)
    with pytest.raises(UsageError, match="RELMAN_GC_KEEP"):
        GcSettings.from_env()


def test_scrub_removes_secrets(tmp_path):
    s = load_settings(data_dir=tmp_path, registry_user="ci", registry_password="pw-very-secret",
                      db_url="postgresql+psycopg2://relman:db-secret@db.example.org/relman",
                      webhook_url="https://hooks.example.org/T000/SECRETPATH")
    doc = {"message": "push failed with pw-very-secret", "url": "https://user:hunter2@git.example.org/x.git",
           "db": "postgresql+psycopg2://relman:db-secret@db.example.org/relman", "n": 3,
           "hook": "https://hooks.example.org/T000/SECRETPATH"}
    out = json.dumps(scrub(s, doc))
    for secret in ("pw-very-secret", "hunter2", "db-secret", "SECRETPATH"):
        assert secret not in out
    assert scrub(s, doc)["n"] == 3


def test_summary_path(monkeypatch, tmp_path):
    s = load_settings(data_dir=tmp_path)
    monkeypatch.delenv("RELMAN_SUMMARY_DIR", raising=False)
    monkeypatch.delenv("JENKINS_URL", raising=False)
    assert summary_path(s, "nightly", "evtselect") == tmp_path / "results" / "evtselect" / "workflows" / \
        "nightly-evtselect.json"
    monkeypatch.setenv("WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("JENKINS_URL", "https://jenkins.example.org/")
    assert summary_path(s, "gc", None) == tmp_path / "ws" / "results" / "gc.json"
    monkeypatch.setenv("RELMAN_SUMMARY_DIR", str(tmp_path / "sum"))
    assert summary_path(s, "promote", "x") == tmp_path / "sum" / "promote-x.json"


@pytest.mark.parametrize("user", ["alice", "u1", "bob2"])
def test_users_accepted(user):
    assert check_user(user) == user


# one rule for every person (validate.user): a login name, since it becomes part of image tags
@pytest.mark.parametrize("user", ["", "-x", "a b", "a;b", "$(id)", "x" * 129, None, "john.doe", "jd@example.org",
                                  "Alice"])
def test_users_refused(user):
    with pytest.raises(UsageError):
        check_user(user)


@pytest.mark.parametrize("reason", [None, "", "  ", "ok", "two\nlines"])
def test_reasons_refused(reason):
    with pytest.raises(UsageError):
        check_reason(reason)


@pytest.mark.parametrize("ttl", [0, 91, -3, True, "7"])
def test_ttl_refused(ttl):
    with pytest.raises(UsageError):
        check_ttl(ttl)
