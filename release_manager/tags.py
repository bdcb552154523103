"""The image tag scheme, in one place.

    <registry>/<namespace>/<package>:<ref>-<variant>            release or branch build
    <registry>/<namespace>/<package>:nightly-YYYYMMDD-<variant>  dated nightly
    <registry>/<namespace>/<package>:nightly-<variant>           moving alias, moved only after verification passed
    <registry>/<namespace>/<package>:dev-<requester>-<ref>-debug on-demand debug build
    <registry>/<namespace>/<package>:bk-<build key[:40]>         the build key: a HEAD on it tells whether a build can be skipped

A component image uses the component name in place of the variant. Every tag is checked
against the registry's tag grammar before use.
"""
from __future__ import annotations

import datetime as dt
import re

from release_manager.errors import UsageError

from release_manager.validate import TAG_RE  # noqa: E402,F401 - one tag grammar
# Distribution's repository-name grammar (path components joined by '/').
REPO_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")


def check_tag(tag: str) -> str:
    from release_manager.validate import tag as valid_tag
    return valid_tag(tag)


def check_repository(name: str) -> str:
    if len(name) > 255 or not all(REPO_COMPONENT_RE.match(c) for c in name.split("/")):
        raise UsageError(f"repository {name!r} does not match the registry's name grammar "
                         "(lowercase components [a-z0-9] joined by '.', '_', '__' or '-', separated by '/')")
    return name


def check_requester(name: str) -> str:
    from release_manager.validate import user
    return user(name, "requester")


def ref_slug(ref: str) -> str:
    """A ref as a tag fragment: '/' becomes '-' (branches like feature/x)."""
    return ref.replace("/", "-")


def repository(registry: str, namespace: str, package: str) -> str:
    check_repository(f"{namespace}/{package}")
    return f"{registry}/{namespace}/{package}"


def registry_path(repository: str) -> str:
    """'host:port/ns/pkg' -> 'ns/pkg' (the name the registry's v2 API wants)."""
    return repository.split("/", 1)[1]


def release_tag(ref: str, suffix: str) -> str:
    return check_tag(f"{ref_slug(ref)}-{suffix}")


def nightly_tag(day: dt.date, suffix: str) -> str:
    return check_tag(f"nightly-{day:%Y%m%d}-{suffix}")


def nightly_alias(suffix: str) -> str:
    return check_tag(f"nightly-{suffix}")


def debug_tag(requester: str, ref: str) -> str:
    return check_tag(f"dev-{check_requester(requester)}-{ref_slug(ref)}-debug")


def key_tag(build_key: str) -> str:
    return check_tag(f"bk-{build_key[:40]}")
