"""`relman jobs sync`: make the server's jobs what the model says, touching only what differs.

    missing          -> created (folders first)
    differs          -> reconfigured (normalised config.xml compared with the server's)
    same             -> left alone: no write request at all
    not in the model -> deleted with --prune, but only if its description carries the relman marker;
                        a folder only when everything in it goes too
    exists, no marker, wanted by the model -> left alone and reported (--adopt takes it over)

A job an administrator disabled stays disabled: <disabled> is not compared and is carried over.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from release_manager.errors import UsageError
from release_manager.jenkins.client import Client
from release_manager.jenkins.model import JobSet, has_marker, marker_job
from release_manager.jenkins.render import (description_of, disabled_of, folder_config, graft_server_additions,
                                            job_config, normalize_xml)
from release_manager.spec.model import is_placeholder


@dataclass
class Action:
    kind: str            # create | update | delete | keep | conflict | skip
    name: str
    folder: bool = False
    xml: str = ""
    diff: str = ""
    reason: str = ""

    def line(self) -> str:
        what = "folder" if self.folder else "job"
        note = f" ({self.reason})" if self.reason else ""
        return f"{self.kind:8} {what:6} {self.name}{note}"


def _diff(old: str, new: str, name: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        f"{name} (server)", f"{name} (relman)", n=2))


def _with_disabled(xml: str, disabled: Optional[str]) -> str:
    if disabled == "true":
        return xml.replace("<disabled>false</disabled>", "<disabled>true</disabled>", 1)
    return xml


def plan(client: Client, jobset: JobSet, prune: bool = False, adopt: bool = False,
         scope: Optional[str] = None) -> List[Action]:
    """What a sync would do. Reads only (GET requests)."""
    if jobset.script_mode == "scm" and any(j.scm and is_placeholder(j.scm.url) for j in jobset.jobs):
        raise UsageError("RELMAN_JENKINS_SCRIPT_MODE=scm needs RELMAN_JENKINS_SCM_URL, the Release Manager "
                         "repository the jobs load their Jenkinsfiles from")
    existing = {i["fullname"]: i for i in client.all_items()}
    desired = [(f.full_name, True, folder_config(f)) for f in jobset.folders]
    desired += [(j.full_name, False, job_config(j)) for j in jobset.jobs]
    # the seed job loads its Jenkinsfile from the repository: no URL, no job
    unsourced = {j.full_name for j in jobset.jobs if j.scm and is_placeholder(j.scm.url)}
    actions: List[Action] = []
    for name, is_folder, xml in desired:
        if name in unsourced:
            actions.append(Action("skip", name, is_folder, reason="RELMAN_JENKINS_SCM_URL is a placeholder"))
            continue
        have = existing.get(name)
        if have is None:
            actions.append(Action("create", name, is_folder, xml))
            continue
        if have["folder"] != is_folder:
            actions.append(Action("conflict", name, is_folder, reason="exists as a "
                                  f"{'folder' if have['folder'] else 'job'}; left alone"))
            continue
        server_xml = client.config(name)
        if not has_marker(description_of(server_xml)) and not adopt:
            actions.append(Action("conflict", name, is_folder,
                                  reason="exists without the relman marker; left alone (--adopt takes it over)"))
            continue
        owner = marker_job(description_of(server_xml))
        if owner not in (None, name) and not adopt:
            actions.append(Action("conflict", name, is_folder, reason=f"carries the marker of {owner} (a copy made "
                                  "in Jenkins?); left alone (--adopt takes it over)"))
            continue
        # only what relman writes is compared; what Jenkins added on its own is kept on an update
        ours, theirs = normalize_xml(xml), normalize_xml(server_xml, owned=xml)
        if ours == theirs:
            actions.append(Action("keep", name, is_folder))
        else:
            merged = graft_server_additions(_with_disabled(xml, disabled_of(server_xml)), server_xml)
            actions.append(Action("update", name, is_folder, merged, _diff(theirs, ours, name)))
    if prune:
        actions += _prune(client, jobset, existing, {n for n, _, _ in desired}, scope)
    return actions


def _prune(client, jobset, existing, wanted, scope) -> List[Action]:
    def in_scope(name):
        return scope is None or name == scope or name.startswith(scope + "/")

    candidates = [n for n in existing if n not in wanted and in_scope(n)]
    marked = {}
    for n in candidates:   # only a job whose marker names it: a copy made in Jenkins carries another's
        marked[n] = marker_job(description_of(client.config(n))) == n
    out: List[Action] = []
    going = set()
    # deepest first, so a folder is decided after everything in it
    for n in sorted(candidates, key=lambda x: (-x.count("/"), x)):
        item = existing[n]
        if not marked[n]:
            continue
        if item["folder"]:
            inside = [c for c in existing if c.startswith(n + "/")]
            staying = [c for c in inside if c not in going]
            if staying:
                out.append(Action("keep", n, True, reason=f"marked but holds {len(staying)} item(s) "
                                  "relman does not delete"))
                continue
        going.add(n)
        out.append(Action("delete", n, item["folder"], reason="carries the relman marker, no longer in the specs"))
    return out


def apply(client: Client, actions: List[Action], echo: Callable[[str], None] = print) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    # folders are created before jobs (plan order), deletions come last, deepest first
    for a in actions:
        counts[a.kind] = counts.get(a.kind, 0) + 1
        if a.kind == "create":
            client.call(f"create {a.name}", client.server.create_job, a.name, a.xml)
        elif a.kind == "update":
            client.call(f"reconfigure {a.name}", client.server.reconfig_job, a.name, a.xml)
        elif a.kind == "delete":
            client.call(f"delete {a.name}", client.server.delete_job, a.name)
        if a.kind != "keep" or a.reason:
            echo(a.line())
    return counts


def sync(client: Client, jobset: JobSet, dry_run: bool = False, prune: bool = False, adopt: bool = False,
         only: Optional[str] = None, echo: Callable[[str], None] = print) -> Dict[str, int]:
    scoped = jobset.only(only)
    actions = plan(client, scoped, prune=prune, adopt=adopt, scope=only)
    if dry_run:
        counts: Dict[str, int] = {}
        for a in actions:
            counts[a.kind] = counts.get(a.kind, 0) + 1
            if a.kind != "keep" or a.reason:
                echo(a.line())
            if a.diff:
                echo(a.diff.rstrip("\n"))
        echo("dry run: nothing written. " + _summary(counts))
        return counts
    counts = apply(client, actions, echo)
    echo(_summary(counts))
    return counts


def _summary(counts: Dict[str, int]) -> str:
    order = ("create", "update", "delete", "keep", "conflict", "skip")
    return ", ".join(f"{counts.get(k, 0)} {k}" for k in order if counts.get(k) or k in ("create", "update", "keep"))
