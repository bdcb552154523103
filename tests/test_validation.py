"""Validators match whole strings: a value that ends in a newline (what `re.match` with `$` lets
through) is refused everywhere a user or Jenkins parameter enters."""
from __future__ import annotations

import pytest

from release_manager import sources, tags, validate
from release_manager.errors import UsageError
from release_manager.spec import model
from release_manager.workflows import common

PATTERNS = [model.NAME_RE, model.ENV_KEY_RE, model.OS_PACKAGE_RE, model.DIGEST_RE, model.LABEL_RE,
            model.PLACEHOLDER_RE, validate.TAG_RE, tags.REPO_COMPONENT_RE, validate.USER_RE, sources.REF_RE,
            sources.SUBMODULE_URL_RE, common.NIGHTLY_RE, validate.REASON_RE]
GOOD = {model.DIGEST_RE: "sha256:" + "a" * 64, model.PLACEHOLDER_RE: "<placeholder: x>",
        common.NIGHTLY_RE: "nightly-20261130-runtime", sources.SUBMODULE_URL_RE: "https://github.com/fermi-lat/ape.git",
        validate.USER_RE: "alice"}


@pytest.mark.parametrize("rx", PATTERNS, ids=lambda r: r.pattern[:30])
def test_trailing_newline_never_matches(rx):
    good = GOOD.get(rx, "abc")
    assert rx.match(good), good
    assert not rx.match(good + "\n")


def test_refs_and_urls_with_a_newline_are_refused():
    with pytest.raises(UsageError):
        sources.validate_ref("main\n")
    with pytest.raises(UsageError):
        sources.validate_submodule_url("https://github.com/fermi-lat/ape.git\n", "t")
    with pytest.raises(ValueError):
        model._url_or_placeholder("https://example.org/x.git\n")


def test_one_rule_per_concept_for_the_cli_and_jenkins():
    """--by, a debug build's requester and Jenkins' BUILD_USER_ID follow one rule; so do reasons."""
    from release_manager.jenkins.params import check_value
    from release_manager.workflows.common import check_reason, check_user
    for name in ("alice", "bob2"):
        assert check_user(name) == tags.check_requester(name) == check_value("requester", "BUILD_USER_ID", name)
    for bad in ("Alice", "alice@slac", "a;b", "alice\n", "-x"):
        for f in (check_user, tags.check_requester, lambda v: check_value("requester", "BUILD_USER_ID", v)):
            with pytest.raises(UsageError):
                f(bad)
    for text in ("release 3.0.0", "new calibration, JIRA LAT-1"):
        assert check_reason(text) == check_value("reason", "REASON", text)
    for bad in ("ok", "x; rm -rf /", "line\nbreak", "$(id)", "a" * 201):
        for f in (check_reason, lambda v: check_value("reason", "REASON", v)):
            with pytest.raises(UsageError):
                f(bad)
