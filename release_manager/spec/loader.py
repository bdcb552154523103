"""Load and validate platforms.yaml and the package specs of a folder.

Errors name the file, the field path, the line (from the YAML node tree), the bad value
and what is allowed; all problems of all files are collected before anything fails.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml
from pydantic import ValidationError

from release_manager.errors import SpecError
from release_manager.spec.model import PackageSpec, Platform, PlatformsFile

PLATFORMS_FILE = "platforms.yaml"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: several times faster


@dataclass(frozen=True)
class SpecProblem:
    file: str
    path: str
    message: str
    line: Optional[int] = None

    def __str__(self):
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '(document)'}: {self.message}"


@dataclass
class LoadedSpec:
    spec: PackageSpec
    path: Path
    hash: str
    files: Dict[str, str] = field(default_factory=dict)   # build.files: {relative path: text}


@dataclass
class SpecSet:
    platforms: Dict[str, Platform]
    packages: Dict[str, LoadedSpec] = field(default_factory=dict)
    platforms_path: Optional[Path] = None

    def get(self, name: str) -> LoadedSpec:
        try:
            return self.packages[name]
        except KeyError:
            raise SpecError([SpecProblem(str(self.platforms_path.parent if self.platforms_path else "image_specs"),
                                         "name", f"no package named {name!r}; known: "
                                         f"{', '.join(sorted(self.packages))}")]) from None


def _line_map(node, path=(), out=None, dups=None):
    """Map field paths to 1-based line numbers; collect duplicate keys (PyYAML keeps the last silently)."""
    out = {} if out is None else out
    dups = [] if dups is None else dups
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for k, v in node.value:
            key = k.value
            if key in seen:
                dups.append((path + (key,), k.start_mark.line + 1))
            seen.add(key)
            _line_map(v, path + (key,), out, dups)
            out[path + (key,)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, path + (i,), out, dups)
    return out, dups


def _fmt_path(loc) -> str:
    s = ""
    for p in loc:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def read_yaml(path: Path) -> Tuple[Optional[dict], dict, List[SpecProblem]]:
    """Parse one YAML file: (data, line map, problems)."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, {}, [SpecProblem(name, "", f"cannot read: {exc}")]
    if not text.strip():
        return None, {}, [SpecProblem(name, "", "empty file; expected a YAML mapping of spec fields")]
    try:
        # one parse: the node tree gives line numbers, the same tree is constructed into data
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        return None, {}, [SpecProblem(name, "", f"YAML syntax error: {problem}", mark.line + 1 if mark else None)]
    lines, dups = _line_map(node) if node is not None else ({}, [])
    problems = [SpecProblem(name, _fmt_path(p), "key given twice", ln) for p, ln in dups]
    if not isinstance(data, dict):
        problems.append(SpecProblem(name, "", f"expected a YAML mapping of spec fields, got {type(data).__name__}", 1))
        return None, lines, problems
    return data, lines, problems


def _problems_from(exc: ValidationError, name: str, lines: dict, data) -> List[SpecProblem]:
    out = []
    for e in exc.errors():
        loc = tuple(e["loc"])
        line = None
        for n in range(len(loc), -1, -1):  # nearest known line: the field or its parent
            if loc[:n] in lines:
                line = lines[loc[:n]]
                break
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (a typo?); allowed here: " + ", ".join(_allowed_keys(data, loc))
        elif e["type"] == "missing":
            msg = "required field is missing"
        else:
            value = e.get("input")
            if value is not None and repr(value) not in msg:
                msg = f"{msg} (got {_short(value)})"
        out.append(SpecProblem(name, _fmt_path(loc), msg, line))
    return out


def _allowed_keys(data, loc) -> List[str]:
    """Field names the model accepts at the parent of loc."""
    model = PlatformsFile if isinstance(data, dict) and "platforms" in data and len(loc) and loc[0] == "platforms" \
        else PackageSpec
    cur: type = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if cur is PlatformsFile and part == "platforms":
            cur = Platform
            continue
        if cur is Platform and part not in Platform.model_fields:
            continue  # the platform name itself
        f = getattr(cur, "model_fields", {}).get(part)
        if f is None:
            return []
        cur = _inner_model(f.annotation)
        if cur is None:
            return []
    return sorted(getattr(cur, "model_fields", {}))


def _inner_model(ann):
    import typing
    from pydantic import BaseModel
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for a in typing.get_args(ann):
        m = _inner_model(a)
        if m is not None:
            return m
    return None


def canonical_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def load_platforms(path: Path) -> Tuple[Dict[str, Platform], List[SpecProblem]]:
    data, lines, problems = read_yaml(path)
    if data is None:
        return {}, problems
    try:
        return PlatformsFile.model_validate(data).platforms, problems
    except ValidationError as exc:
        return {}, problems + _problems_from(exc, str(path), lines, data)


def load_package(path: Path, platforms: Dict[str, Platform]) -> Tuple[Optional[LoadedSpec], List[SpecProblem]]:
    data, lines, problems = read_yaml(path)
    if data is None:
        return None, problems
    try:
        spec = PackageSpec.model_validate(data)
    except ValidationError as exc:
        return None, problems + _problems_from(exc, str(path), lines, data)
    known = ", ".join(sorted(platforms)) or "(none loaded)"
    refs = [("build_platform", spec.build_platform)] + [(f"run_platforms[{i}]", p) for i, p in enumerate(spec.run_platforms)]
    for fpath, p in refs:
        if p not in platforms:
            key = tuple(int(x) if x.isdigit() else x for x in fpath.replace("[", ".").replace("]", "").split("."))
            problems.append(SpecProblem(str(path), fpath, f"unknown platform {p!r}; known: {known}", lines.get(key)))
    files: Dict[str, str] = {}
    folders = [spec.build.files] if isinstance(spec.build.files, str) else (spec.build.files or [])
    for rel in folders:
        more, probs = _read_files(path, rel, lines.get(("build", "files")))
        twice = sorted(set(files) & set(more))
        if twice:
            probs.append(SpecProblem(str(path), "build.files", f"{rel!r}: {', '.join(twice)} also in an earlier "
                                     "folder (merged folders must not share a file name)", lines.get(("build", "files"))))
        files.update(more)
        problems += probs
    if problems:
        return None, problems
    dump = spec.model_dump(mode="json")
    plat = platforms[spec.build_platform].model_dump(mode="json")
    return LoadedSpec(spec, path, canonical_hash({"spec": dump, "platform": plat, "files": files}), files), []


def _read_files(spec_path: Path, rel: str, line: Optional[int]) -> Tuple[Dict[str, str], List[SpecProblem]]:
    """The support files that live with a spec (Find modules, build scripts, patches), as text."""
    folder = spec_path.parent / rel
    if not folder.is_dir():
        return {}, [SpecProblem(str(spec_path), "build.files", f"{rel!r}: no such folder next to the spec "
                                f"({folder})", line)]
    out, problems = {}, []
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = f.relative_to(folder).as_posix()
        try:
            out[name] = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            problems.append(SpecProblem(str(spec_path), "build.files", f"{f}: not UTF-8 text (support files are "
                                        "scripts, CMake modules, headers and patches)", line))
    if not out and not problems:
        problems.append(SpecProblem(str(spec_path), "build.files", f"{rel!r}: the folder is empty", line))
    return out, problems


def load_specs(specs_dir: Path, only: Optional[List[Path]] = None) -> SpecSet:
    """Load platforms.yaml and every *.yaml package spec of specs_dir; raise SpecError listing all problems."""
    specs_dir = Path(specs_dir)
    ppath = specs_dir / PLATFORMS_FILE
    if not ppath.is_file():
        raise SpecError([SpecProblem(str(ppath), "", "missing: every spec folder needs its platforms file")])
    platforms, problems = load_platforms(ppath)
    files = only if only is not None else sorted(p for p in specs_dir.glob("*.y*ml") if p.name != PLATFORMS_FILE)
    result = SpecSet(platforms, platforms_path=ppath)
    first_seen: Dict[str, Path] = {}
    for f in files:
        if f.suffix not in (".yaml", ".yml"):
            problems.append(SpecProblem(str(f), "", "spec files end in .yaml or .yml"))
            continue
        loaded, probs = load_package(f, platforms)
        problems += probs
        if loaded:
            name = loaded.spec.name
            if name in first_seen:
                problems.append(SpecProblem(str(f), "name", f"package {name!r} is already defined in {first_seen[name]}"))
                continue
            first_seen[name] = f
            result.packages[name] = loaded
    problems += _extends_problems(result, check_missing=only is None)
    if problems:
        raise SpecError(problems)
    return result


def _extends_problems(specs: SpecSet, check_missing: bool) -> List[SpecProblem]:
    """A spec built on another's images (extends) must fit on them: the other spec exists and is not itself built
    on a third; same prefix and runtime package lists (the runtime image is the other's plus a layer); the
    other's build.layers are the first of its own, in the same order (they are built already, in its image)."""
    out = []
    for name, loaded in specs.packages.items():
        ext = loaded.spec.extends
        if ext is None:
            continue
        f = str(loaded.path)
        up = specs.packages.get(ext.package)
        if up is None:
            if check_missing:
                out.append(SpecProblem(f, "extends.package", f"no package named {ext.package!r}; known: "
                                       f"{', '.join(sorted(specs.packages))}"))
            continue
        s, u = loaded.spec, up.spec
        if u.extends is not None:
            out.append(SpecProblem(f, "extends.package", f"{ext.package!r} is itself built on {u.extends.package!r}: "
                                   "one level only"))
        missing = [v for v in ("runtime", "full") if v not in u.variants]
        if missing:
            out.append(SpecProblem(f, "extends.package", f"{ext.package!r} has no {' or '.join(missing)} variant "
                                   "(the build starts from its full image, the runtime image from its runtime image)"))
        if s.prefix != u.prefix:
            out.append(SpecProblem(f, "prefix", f"{s.prefix!r} differs from {ext.package}'s {u.prefix!r}: a spec built "
                                   "on another's images installs into the same prefix"))
        for mgr in ("apt", "yum"):
            mine, theirs = s.os_packages.for_manager(mgr).runtime, u.os_packages.for_manager(mgr).runtime
            if mine != theirs:
                out.append(SpecProblem(f, f"os_packages.{mgr}.runtime", f"{mine} differs from {ext.package}'s "
                                       f"{theirs}: list the same packages (more go in runtime_extra)"))
        own = [p.rstrip("/") for p in (s.build.layers.paths if s.build.layers else [])]
        theirs_l = [p.rstrip("/") for p in (u.build.layers.paths if u.build.layers else [])]
        if own[:len(theirs_l)] != theirs_l:
            out.append(SpecProblem(f, "build.layers.paths", f"must start with {ext.package}'s {len(theirs_l)} "
                                   f"layer(s) in the same order ({', '.join(theirs_l) or 'none'}): they are built "
                                   "in its full image already"))
    return out
