"""`relman jobs trigger`: start a job, follow its queue item to the build, the build to its result.

Jenkins answers a build request with 201 and a queue item; the item shows `why` while it waits,
`cancelled` if someone cancelled it, and `executable` once a build started. The build's `result`
stays null while it runs. A disabled job answers 409; a job that has no parameters defined answers
buildWithParameters with 500.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import jenkins
import requests

from release_manager.jenkins.client import Client, JenkinsError


@dataclass
class BuildOutcome:
    job: str
    queue_id: int
    number: Optional[int] = None
    url: Optional[str] = None
    result: Optional[str] = None
    console_tail: str = ""


def start(client: Client, job: str, params: Dict[str, str]) -> int:
    """Queue a build; returns the queue item number."""
    try:
        return client.server.build_job(job, params or None)
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else None
        if code == 409:
            raise JenkinsError(f"job {job} is disabled: it cannot be triggered until someone enables it") from None
        raise JenkinsError(client.scrub(f"trigger {job}: HTTP {code}")) from None
    except jenkins.NotFoundException:
        raise JenkinsError(f"job {job} not found on {client.url} (run `relman jobs sync`)") from None
    except jenkins.JenkinsException as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "[500]" in first and params and not _defines_parameters(client, job):
            raise JenkinsError(f"trigger {job}: the server refused the parameters (HTTP 500): the job defines "
                               "no parameters; run `relman jobs sync` so its config.xml carries them") from None
        if "[403]" in first and "crumb" in first.lower():
            raise JenkinsError(client.scrub(f"trigger {job}: Jenkins refused the CSRF crumb ({first.split(': ', 1)[-1]}); "
                                            "the crumb is stale (Jenkins restarted or the session changed): run "
                                            "the command again")) from None
        # what really happened: the HTTP status and Jenkins's own message
        raise JenkinsError(client.scrub(f"trigger {job}: {first}")) from None
    except requests.RequestException as exc:
        raise JenkinsError(client.scrub(f"trigger {job}: cannot reach {client.url}: {type(exc).__name__}")) from None


def wait_for_build(client: Client, job: str, queue_id: int, timeout: float, poll: float,
                   echo: Callable[[str], None]) -> BuildOutcome:
    deadline = time.monotonic() + timeout
    said = None
    while True:
        item = client.call(f"queue item {queue_id}", client.server.get_queue_item, queue_id)
        if item.get("cancelled"):
            raise JenkinsError(f"queue item {queue_id} of {job} was cancelled before a build started")
        exe = item.get("executable")
        if exe and exe.get("number") is not None:
            return BuildOutcome(job, queue_id, int(exe["number"]), exe.get("url"))
        why = item.get("why")
        if why and why != said:
            echo(f"waiting in the queue: {why}")
            said = why
        if time.monotonic() > deadline:
            raise JenkinsError(f"queue item {queue_id} of {job} did not start within {timeout:g} s"
                               + (f" (still: {why})" if why else ""))
        time.sleep(poll)


def wait_for_result(client: Client, out: BuildOutcome, timeout: float, poll: float, tail: int) -> BuildOutcome:
    deadline = time.monotonic() + timeout
    while True:
        info = client.call(f"build {out.job} #{out.number}", client.server.get_build_info, out.job, out.number)
        if info and info.get("result") is not None and not info.get("building"):
            out.result = info["result"]
            out.url = info.get("url") or out.url
            break
        if time.monotonic() > deadline:
            raise JenkinsError(f"build {out.job} #{out.number} still running after {timeout:g} s: {out.url or ''}")
        time.sleep(poll)
    text = client.call(f"console of {out.job} #{out.number}", client.server.get_build_console_output,
                       out.job, out.number)
    out.console_tail = "\n".join(text.splitlines()[-tail:]) if tail > 0 else ""
    return out


def trigger(client: Client, job: str, params: Dict[str, str], wait: bool = False, timeout: float = 3600,
            poll: float = 1.0, tail: int = 30, echo: Callable[[str], None] = print) -> BuildOutcome:
    deadline = time.monotonic() + timeout          # one budget for the queue and the build
    queue_id = start(client, job, params)
    echo(f"queued {job}: queue item {queue_id}")
    out = wait_for_build(client, job, queue_id, timeout, poll, echo)
    echo(f"started {job} #{out.number}: {out.url or ''}".rstrip())
    if not wait:
        return out
    out = wait_for_result(client, out, max(0.0, deadline - time.monotonic()), poll, tail)
    if out.console_tail:
        echo(f"--- last lines of the console of {job} #{out.number} ---")
        echo(out.console_tail)
        echo("---")
    echo(f"{job} #{out.number}: {out.result}")
    if out.result != "SUCCESS":
        raise JenkinsError(f"build {job} #{out.number} finished {out.result}: {out.url or ''}".rstrip(": "))
    return out


def _defines_parameters(client: Client, job: str) -> bool:
    """Whether the job's config on the server declares parameters (a failed lookup counts as unknown: True)."""
    try:
        info = client.server.get_job_info(job)
    except (jenkins.JenkinsException, requests.RequestException):
        return True
    return any(p.get("parameterDefinitions") for p in info.get("property") or [])
