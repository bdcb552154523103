"""python-jenkins, configured from settings, with errors mapped to RelmanError.

The token lives in a SecretStr until the one call that hands it to python-jenkins; every message
that leaves this module is scrubbed of it (python-jenkins and requests put URLs and server text
into exceptions), and the client's repr never shows it.
"""
from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit
from typing import Callable, TypeVar

import jenkins
import requests

from release_manager.errors import RelmanError, UsageError

T = TypeVar("T")


class JenkinsError(RelmanError):
    """Jenkins refused a request, is unreachable or a build failed."""


class Client:
    def __init__(self, settings, timeout: float = 30):
        url = settings.jenkins_url or os.environ.get("JENKINS_URL")
        if not url:
            raise UsageError("no Jenkins URL: set RELMAN_JENKINS_URL (and RELMAN_JENKINS_USER, RELMAN_JENKINS_TOKEN)")
        real = url.rstrip("/") + "/"
        # credentials written into the URL (https://user:token@host/) are never shown: self.url is for
        # messages, the server object gets the real one
        parts = urlsplit(real)
        self.url = urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))) \
            if parts.username or parts.password else real
        self.user = settings.jenkins_user
        token = settings.jenkins_token.get_secret_value() if settings.jenkins_token else None
        if (self.user is None) != (token is None):
            raise UsageError("set both RELMAN_JENKINS_USER and RELMAN_JENKINS_TOKEN, or neither (anonymous)")
        # longest first: the whole user:token part goes before the token alone
        self._secrets = tuple(sorted({s for s in (token, parts.password, parts.netloc.rpartition("@")[0]) if s},
                                     key=len, reverse=True))
        self.server = jenkins.Jenkins(real, username=self.user, password=token, timeout=timeout)

    def __repr__(self):
        return f"Client(url={self.url!r}, user={self.user!r}, token={'***' if self._secrets else None})"

    def scrub(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def call(self, what: str, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run one python-jenkins call; its failures become JenkinsError with a clean message."""
        try:
            return fn(*args, **kwargs)
        except jenkins.NotFoundException:
            raise JenkinsError(f"{what}: not found on {self.url}") from None
        except jenkins.JenkinsException as exc:
            msg = str(exc).strip().splitlines()
            first = msg[0] if msg else type(exc).__name__
            if "[403]" in first and "crumb" in first.lower():
                # Jenkins' own words: the CSRF crumb (tied to the web session) was refused, not the token
                first = (f"refused (403: {first.split(': ', 1)[-1]}): the CSRF crumb is stale (Jenkins restarted "
                         "or the session changed); run the command again")
            elif "[401]" in first or "[403]" in first:
                first = (f"refused ({'401' if '[401]' in first else '403'}: {first.split(': ', 1)[-1]}): check "
                         "RELMAN_JENKINS_USER/RELMAN_JENKINS_TOKEN and the user's permissions")
            raise JenkinsError(self.scrub(f"{what}: {first}")) from None
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else "?"
            raise JenkinsError(self.scrub(f"{what}: HTTP {code} from {self.url}")) from None
        except requests.RequestException as exc:
            raise JenkinsError(self.scrub(f"{what}: cannot reach {self.url}: {type(exc).__name__}")) from None

    # ------------------------------------------------------------ thin helpers

    def version(self) -> str:
        return self.call("get version", self.server.get_version)

    def all_items(self):
        """[{fullname, name, url, folder: bool}] for every job and folder, at any depth."""
        items = self.call("list jobs", self.server.get_all_jobs, folder_depth=None)
        return [{"fullname": j["fullname"], "name": j["name"], "url": j.get("url"),
                 "color": j.get("color"), "folder": "jobs" in j} for j in items]

    def config(self, name: str) -> str:
        return self.call(f"read config of {name}", self.server.get_job_config, name)
