"""One validator per concept, for every way a value comes in: the CLI, the Jenkins parameters, the
workflows. Each matches the whole string (a value ending in a newline is refused) and raises a
UsageError that says what was given and what is allowed.

    user       a person (--by, a debug build's requester, Jenkins' BUILD_USER_ID): a login name
    reason     why something was done: one line, recorded in the database and the audit log
    ref        a git ref (tags, branches, commit ids; sources.py uses it as validate_ref)
    tag        an image tag (the registry's grammar)
"""
from __future__ import annotations

import re
from typing import Optional

from release_manager.errors import UsageError

# A login name: it becomes part of image tags (dev-<user>-<ref>-debug), so lowercase letters and digits only.
USER_RE = re.compile(r"^[a-z][a-z0-9]{0,31}\Z")
# One line a shell, Groovy, XML and a database all carry as plain text.
REASON_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .,:_()/#+@=-]{2,199}\Z")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")


# A git ref as a user may give it: no shell or option metacharacters, no '..', no leading '-'. Here and
# not in sources.py, so that validating does not import gitpython (a tenth of a second at start-up).
REF_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9][A-Za-z0-9._/+-]{0,199}\Z")


def ref(value: str) -> str:
    if not isinstance(value, str) or not REF_RE.match(value) or value.endswith((".lock", "/", ".")):
        raise UsageError(f"ref {value!r} is not a valid git ref: letters, digits and ._/+- only, "
                         "starting with a letter or digit, no '..', at most 200 characters")
    return value


def user(name: Optional[str], what: str = "user") -> str:
    if not isinstance(name, str) or not USER_RE.match(name):
        raise UsageError(f"{what} {name!r} is not a valid user name: a lowercase letter, then up to 31 lowercase "
                         "letters or digits (a login name; it becomes part of image tags)")
    return name


def reason(text: Optional[str], what: str = "reason") -> str:
    value = (text or "").strip()
    if len(value) < 3:
        raise UsageError(f"{what} is required: say why (at least 3 characters); it is recorded and audited")
    if not REASON_RE.match(value):
        raise UsageError(f"{what} {value!r} is not accepted: one line of 3 to 200 characters, starting with a "
                         "letter or digit, made of letters, digits, spaces and .,:_()/#+@=-")
    return value


def tag(value: Optional[str]) -> str:
    if not isinstance(value, str) or not TAG_RE.match(value):
        raise UsageError(f"tag {value!r} does not match the registry's tag grammar "
                         "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
    return value
