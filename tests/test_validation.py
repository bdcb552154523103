"""Validators match whole strings: a value that ends in a newline (what `re.match` with `$` lets
through) is refused everywhere a user or Jenkins parameter enters."""
from __future__ import annotations

import pytest

from release_manager import sources, tags
from release_manager.errors import UsageError
from release_manager.jenkins import params
from release_manager.spec import model
from release_manager.workflows import common

PATTERNS = [model.NAME_RE, model.ENV_KEY_RE, model.OS_PACKAGE_RE, model.DIGEST_RE, model.LABEL_RE,
            model.PLACEHOLDER_RE, tags.TAG_RE, tags.REPO_COMPONENT_RE, tags.REQUESTER_RE, sources.REF_RE,
            sources.SUBMODULE_URL_RE, common.USER_RE, common.NIGHTLY_RE, params.REASON_RE]
GOOD = {model.DIGEST_RE: "sha256:" + "a" * 64, model.PLACEHOLDER_RE: "<placeholder: x>",
        common.NIGHTLY_RE: "nightly-20261130-runtime", sources.SUBMODULE_URL_RE: "https://github.com/fermi-lat/ape.git",
        tags.REQUESTER_RE: "alice"}


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
