"""JobSet -> files: a Jenkinsfile and a config.xml per job, a config.xml per folder.

Templates live in release_manager/templates/jenkins/ (jinja2, StrictUndefined, through release_manager.render.environment).
XML templates are rendered with autoescaping on; in the Jenkinsfile every value passes the `gs`
filter (a single-quoted Groovy string: no interpolation is possible).
"""
from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, Iterable, Optional

import jinja2

from release_manager.jenkins.model import SEED_JOB, Folder, Job, JobSet
from release_manager.render import environment

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "jenkins"   # inside the package
_ENVS: Dict[bool, jinja2.Environment] = {}


def groovy_sq(value) -> str:
    """A single-quoted Groovy string literal: no GString interpolation can happen inside it."""
    s = str(value)
    if "\n" in s or "\r" in s:
        raise ValueError(f"{s!r}: a Groovy single-quoted string must be one line")
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _env(xml: bool) -> jinja2.Environment:
    if xml not in _ENVS:
        env = environment(TEMPLATES)
        env.autoescape = xml
        env.filters["gs"] = groovy_sq
        _ENVS[xml] = env
    return _ENVS[xml]


def jenkinsfile(job: Job) -> str:
    return _env(False).get_template("pipeline.Jenkinsfile.j2").render(job=job, seed=SEED_JOB)


def job_config(job: Job, script: Optional[str] = None) -> str:
    script = jenkinsfile(job) if script is None else script
    return _env(True).get_template("job.config.xml.j2").render(job=job, script=script)


def folder_config(folder: Folder) -> str:
    return _env(True).get_template("folder.config.xml.j2").render(folder=folder)


def configs(jobset: JobSet) -> Dict[str, str]:
    """{full name: config.xml}, folders first (the order they must be created in)."""
    out = {f.full_name: folder_config(f) for f in jobset.folders}
    out.update({j.full_name: job_config(j) for j in jobset.jobs})
    return out


def render_all(jobset: JobSet) -> Dict[str, str]:
    """Every file `relman jobs render` writes: {relative path: text}.

        <folder>/config.xml, <folder>/<job>/Jenkinsfile, <folder>/<job>/config.xml, relman-seed/...
    """
    files: Dict[str, str] = {}
    for f in jobset.folders:
        files[f"{f.full_name}/config.xml"] = folder_config(f)
    for j in jobset.jobs:
        script = jenkinsfile(j)
        files[f"{j.full_name}/Jenkinsfile"] = script
        files[f"{j.full_name}/config.xml"] = job_config(j, script)
    return files


# ---------------------------------------------------------------- comparing with the server

_DECL_RE = re.compile(r"^\s*<\?xml[^>]*\?>")


def parse_xml(text: str) -> ET.Element:
    """Parse a config.xml; Jenkins writes version='1.1' declarations that expat refuses, so drop it."""
    return ET.fromstring(_DECL_RE.sub("", text, count=1))


def normalize_xml(text: str, ignore: Iterable[str] = ("disabled",), owned: Optional[str] = None) -> str:
    """A canonical form for comparing our config.xml with the server's.

    Drops the declaration, `plugin="name@version"` attributes (Jenkins adds versions), whitespace
    between elements, the top-level elements in `ignore` (the server's enabled/disabled state is
    the admins' to keep), orders <properties> children by name and <permission> entries by text
    (Jenkins and the matrix-authorization plugin order them their own way). With `owned` (our
    config.xml), only what relman writes is kept: elements Jenkins or its plugins add on their own
    (<actions> after a build, <removeLastBuild>, new default elements) are not ours to compare.
    """
    root = parse_xml(text)
    if owned is not None:
        _project(root, parse_xml(owned))
    for name in ignore:
        for el in root.findall(name):
            root.remove(el)
    for el in root.iter():
        el.attrib.pop("plugin", None)
        if el.text is not None and not el.text.strip():
            el.text = None
        elif el.text is not None and len(el) == 0:
            el.text = el.text.replace("\r\n", "\n").strip()
        if el.tail is not None and not el.tail.strip():
            el.tail = None
    props = root.find("properties")
    if props is not None:
        props[:] = sorted(props, key=lambda e: e.tag)
    for el in root.iter():
        perms = [c for c in el if c.tag == "permission"]
        if perms:
            rest = [c for c in el if c.tag != "permission"]
            el[:] = rest + sorted(perms, key=lambda e: e.text or "")
    ET.indent(root, "  ")
    return ET.tostring(root, encoding="unicode")


def _pairs(theirs: ET.Element, ours: ET.Element):
    """(their child, our child of the same tag and rank) for each of their children we also write."""
    ranks: Dict[str, int] = {}
    by_tag: Dict[str, list] = {}
    for c in ours:
        by_tag.setdefault(c.tag, []).append(c)
    for c in theirs:
        i = ranks[c.tag] = ranks.get(c.tag, -1) + 1
        mine = by_tag.get(c.tag, [])
        yield c, (mine[i] if i < len(mine) else None)


def _project(theirs: ET.Element, ours: ET.Element) -> None:
    """Keep in `theirs` only the elements `ours` has (by tag and rank, recursively)."""
    for c, mine in list(_pairs(theirs, ours)):
        if mine is None:
            theirs.remove(c)
        else:
            _project(c, mine)


def graft_server_additions(ours_text: str, server_text: str) -> str:
    """Our config.xml plus what Jenkins or its plugins added to the server's copy on their own (elements
    relman never writes), so that an update never wipes them (e.g. the declarative job actions)."""
    try:
        ours, theirs = parse_xml(ours_text), parse_xml(server_text)
    except ET.ParseError:
        return ours_text
    if not _graft(ours, theirs):
        return ours_text
    decl = _DECL_RE.match(ours_text)
    return (decl.group(0).strip() + "\n" if decl else "") + ET.tostring(ours, encoding="unicode")


def _graft(ours: ET.Element, theirs: ET.Element) -> bool:
    changed = False
    for c, mine in _pairs(theirs, ours):
        if mine is None:
            ours.append(copy.deepcopy(c))
            changed = True
        else:
            changed = _graft(mine, c) or changed
    return changed


def description_of(text: str) -> str:
    try:
        return parse_xml(text).findtext("description") or ""
    except ET.ParseError:
        return ""


def disabled_of(text: str) -> Optional[str]:
    try:
        return parse_xml(text).findtext("disabled")
    except ET.ParseError:
        return None


def write_tree(files: Dict[str, str], out: Path) -> None:
    from release_manager.render import write_files
    write_files(files, out)
