"""Reading a build result document (BuildResult.as_dict(), as `relman build` writes it) before
anything is recorded: every problem names the file and the field."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from release_manager.errors import UsageError

SHA256 = r"^sha256:[0-9a-f]{64}$"


class InvalidResult(UsageError):
    """A build result document relman cannot record. Exit code 2."""


def parse_time(value, where: str = "time") -> Optional[dt.datetime]:
    """ISO 8601 (with Z or an offset, or naive meaning UTC) to naive UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        t = value
    else:
        try:
            t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {value!r}") from None
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return t


class BuildDoc(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    package: str = Field(min_length=1, max_length=128)
    ref: str = Field(min_length=1, max_length=255)
    commit: str = Field(pattern=r"^[0-9a-f]{7,64}$")
    variant: str = Field(min_length=1, max_length=128)
    target: str = Field(min_length=1, max_length=128)
    build_key: str = Field(pattern=r"^[0-9a-f]{16,80}$")
    repository: str = Field(min_length=1, max_length=255)
    tags: List[str]
    status: Literal["built", "skipped", "failed"]
    image_id: Optional[str] = Field(None, pattern=SHA256)
    digest: Optional[str] = Field(None, pattern=SHA256)
    pushed: bool = False
    size: Optional[int] = Field(None, ge=0)
    layers: List[Dict[str, Any]] = []
    labels: Dict[str, str] = {}
    base_digest: Optional[str] = Field(None, max_length=80)
    spec_hash: Optional[str] = Field(None, max_length=80)
    platform: Optional[str] = Field(None, max_length=128)
    production_platform: Optional[str] = Field(None, max_length=128)
    manifest_file: Optional[str] = None
    checks: List[Dict[str, Any]] = []
    size_budget: Optional[Dict[str, Any]] = None
    started: Optional[dt.datetime] = None
    finished: Optional[dt.datetime] = None
    duration: Optional[float] = None
    message: str = ""
    builder_host: str = ""
    build_url: Optional[str] = Field(None, max_length=512)

    @field_validator("started", "finished", mode="before")
    @classmethod
    def _time(cls, v):
        return parse_time(v)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v):
        from release_manager.tags import TAG_RE
        bad = [t for t in v if not TAG_RE.match(t)]
        if bad:
            raise ValueError(f"not valid tag(s): {', '.join(map(repr, bad))}")
        return v

    # ------------------------------------------------------------------ derived

    @property
    def image_status(self) -> str:
        if self.status == "failed":
            return "failed"
        return "pushed" if self.pushed else "built"

    @property
    def identity(self) -> str:
        if self.digest:
            return self.digest
        if self.image_id:
            return f"image:{self.image_id}"
        when = self.started or self.finished
        return f"attempt:{when.isoformat() if when else 'unknown'}"

    def check_consistency(self) -> None:
        if self.status != "failed" and not (self.image_id or self.digest):
            raise ValueError(("image_id", f"a {self.status} result must name its image_id or digest"))
        if self.pushed and not self.digest:
            raise ValueError(("digest", "pushed is true but there is no digest"))
        if self.status == "failed" and not (self.image_id or self.digest or self.started or self.finished):
            raise ValueError(("started", "a failed result without an image must say when it started"))


class ParsedResult:
    def __init__(self, doc: BuildDoc, source: str, manifest: Optional[dict], manifest_file: Optional[str]):
        self.doc = doc
        self.source = source
        self.manifest = manifest
        self.manifest_file = manifest_file


def _field_error(source: str, index: Optional[int], exc: ValidationError) -> InvalidResult:
    where = source + (f" [result {index}]" if index is not None else "")
    lines = []
    for e in exc.errors():
        field = ".".join(str(x) for x in e["loc"]) or "(document)"
        got = e.get("input")
        shown = "" if e["type"] == "missing" else f" (got {json.dumps(got, default=str)[:80]})"
        lines.append(f"{where}: field {field!r}: {e['msg']}{shown}")
    return InvalidResult("\n".join(lines) + "\nnothing was recorded")


def _manifest(doc: BuildDoc, source_path: Optional[Path], where: str):
    """The OS package list the build wrote: at manifest_file, or next to the result (Jenkins archives both)."""
    if not doc.manifest_file:
        return None, None
    candidates = [Path(doc.manifest_file)]
    if source_path is not None:
        candidates.append(source_path.parent / Path(doc.manifest_file).name)
    for p in candidates:
        if p.is_file():
            try:
                data = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise InvalidResult(f"{p} (manifest_file of {where}): not valid JSON: {exc}\nnothing was recorded")
            if not isinstance(data, dict) or not isinstance(data.get("packages"), list):
                raise InvalidResult(f"{p} (manifest_file of {where}): field 'packages': expected a list of "
                                    "{name, version, arch}\nnothing was recorded")
            return data, str(p)
    return None, doc.manifest_file


def parse_result(data: Any, source: str = "<result>", index: Optional[int] = None,
                 source_path: Optional[Path] = None) -> ParsedResult:
    where = source + (f" [result {index}]" if index is not None else "")
    if not isinstance(data, dict):
        raise InvalidResult(f"{where}: expected a JSON object (a build result), got {type(data).__name__}\n"
                            "nothing was recorded")
    try:
        doc = BuildDoc.model_validate(data)
    except ValidationError as exc:
        raise _field_error(source, index, exc) from None
    try:
        doc.check_consistency()
    except ValueError as exc:
        field, msg = exc.args[0]
        raise InvalidResult(f"{where}: field {field!r}: {msg}\nnothing was recorded") from None
    manifest, manifest_file = _manifest(doc, source_path, where)
    return ParsedResult(doc, where, manifest, manifest_file)


def load_result_files(paths) -> List[ParsedResult]:
    """Every result in the files (an object, or a list as `relman build --json` prints), all checked first."""
    parsed: List[ParsedResult] = []
    for p in map(Path, paths):
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            raise InvalidResult(f"{p}: no such file\nnothing was recorded") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidResult(f"{p}: cannot read: {exc}\nnothing was recorded") from None
        except json.JSONDecodeError as exc:
            raise InvalidResult(f"{p}: not valid JSON: {exc}\nnothing was recorded") from None
        if isinstance(data, list):
            if not data:
                raise InvalidResult(f"{p}: an empty list: no build result in it\nnothing was recorded")
            parsed += [parse_result(d, str(p), i, p) for i, d in enumerate(data)]
        else:
            parsed.append(parse_result(data, str(p), None, p))
    return parsed
