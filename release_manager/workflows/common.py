"""What every workflow shares: the context (settings, specs, engine, registry, database), reading
images back from the release database, summary files for Jenkins and failure notifications."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from release_manager.errors import UsageError

Echo = Callable[[str], None]
GC_ACTOR = "relman-gc"
NIGHTLY_RE = re.compile(r"^nightly-(\d{8})-(.+)\Z")


def utcnow() -> dt.datetime:
    """Naive UTC, as the release database stores times."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)


def check_user(name: Optional[str], what: str = "--by") -> str:
    from release_manager.validate import user
    return user(name, what)


def check_reason(reason: Optional[str], what: str = "--reason") -> str:
    from release_manager.validate import reason as valid_reason
    return valid_reason(reason, what)


@dataclass
class Context:
    settings: Any
    specs: Any
    echo: Echo = print
    api: Any = None                      # docker APIClient; connected on first use
    db: Any = None                       # release_manager.db.connection.Database; on first use
    actor: Optional[str] = None
    _registry: Any = field(default=None, repr=False)

    def engine(self):
        if self.api is None:
            from release_manager import engine
            self.api = engine.connect(self.settings)
        return self.api

    def database(self):
        if self.db is None:
            from release_manager.db.connection import for_settings
            self.db = for_settings(self.settings)
        return self.db

    def registry(self):
        if self._registry is None:
            from release_manager.registry import Registry, load_credentials
            s = self.settings
            self._registry = Registry(s.registry, load_credentials(s, s.registry), s.registry_insecure,
                                      s.push_retries)
        return self._registry

    def builder(self):
        from release_manager.build import Builder
        return Builder(self.settings, self.specs, echo=self.echo, api=self.engine())

    def spec(self, package: str):
        if package not in self.specs.packages:
            raise UsageError(f"no spec for package {package!r} (have: {', '.join(sorted(self.specs.packages))})")
        return self.specs.packages[package].spec

    def repository(self, package: str) -> str:
        from release_manager import tags
        return tags.repository(self.settings.registry, self.settings.namespace, package)

    def who(self) -> str:
        if self.actor:
            return self.actor
        from release_manager.db.records import default_actor
        return default_actor()


# ---------------------------------------------------------------------- the database, read side

def image_rows(ctx: Context, package: Optional[str] = None, build_key: Optional[str] = None,
               variant: Optional[str] = None) -> List[Dict[str, Any]]:
    """Images (with every tag they carried, their promotions and their latest verification verdict)."""
    from release_manager.db.queries import workflow_images
    with ctx.database().read() as s:
        return workflow_images(s, package, build_key, variant)


def sif_artifacts(ctx: Context, image_digest: str) -> List[Dict[str, Any]]:
    """Pushed SIFs built from an image (release_manager/sif.py): they follow it on promotion and gc."""
    from release_manager.db.queries import sif_artifacts as q
    with ctx.database().read() as s:
        return q(s, image_digest)


def write_audit(ctx: Context, action: str, package: Optional[str], detail: Dict[str, Any],
                entity: str = "package", entity_id: Optional[int] = None, actor: Optional[str] = None) -> None:
    """An audit event for something that changes no row of its own (a skipped nightly, an override)."""
    from release_manager.db.records import record_audit_event
    record_audit_event(action, package, detail, entity, entity_id, actor or ctx.who(), db=ctx.database())


def record_result(ctx: Context, result: Dict[str, Any], extra_tags=(), requested_by: Optional[str] = None):
    """record_build of one BuildResult document, with tags the workflow added (dated nightly, alias)."""
    from release_manager.db import record_build
    doc = dict(result)
    doc["tags"] = list(dict.fromkeys(list(doc.get("tags") or []) + list(extra_tags)))
    return record_build(doc, db=ctx.database(), actor=ctx.who(), requested_by=requested_by,
                        source=f"{doc.get('package')} {doc.get('target')}")


def record_failed_results(ctx: Context, package: str, ref: str, targets: List[str]) -> List[int]:
    """After a BuildError: the Builder wrote each target's result JSON; record the failed ones."""
    from release_manager import tags
    out = []
    folder = ctx.settings.results_dir / package / tags.ref_slug(ref)
    for t in targets:
        p = folder / f"{t}.json"
        if not p.is_file():
            continue
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("status") == "failed":
            try:
                out.append(record_result(ctx, doc).image)
            except Exception as exc:  # noqa: BLE001 - recording a failure must not hide the failure
                ctx.echo(f"warning: could not record the failed result {p}: {exc}")
    return out


# ---------------------------------------------------------------------- summaries and notifications

def _secrets(settings) -> List[str]:
    out = []
    for name in ("registry_password", "jenkins_token"):
        v = getattr(settings, name, None)
        if v is not None:
            out.append(v.get_secret_value() if hasattr(v, "get_secret_value") else str(v))
    if getattr(settings, "db_url", None):
        from sqlalchemy.engine import make_url
        try:
            pw = make_url(settings.db_url).password
            if pw:
                out.append(str(pw))
        except Exception:  # noqa: BLE001
            pass
    if getattr(settings, "webhook_url", None):
        out.append(settings.webhook_url)
    return [s for s in out if s and len(s) >= 3]


def scrub(settings, obj):
    """Remove anything secret from a summary or a message: known secrets, and user:password@ in URLs."""
    text = json.dumps(obj, default=str)
    for secret in _secrets(settings):
        text = text.replace(json.dumps(secret)[1:-1], "***")
    text = re.sub(r"(://)[^/\s:@\"]+:[^/\s@\"]+@", r"\1***@", text)
    return json.loads(text)


def summary_path(settings, workflow: str, package: Optional[str]) -> Path:
    """Where the workflow's summary goes: $RELMAN_SUMMARY_DIR, else $WORKSPACE/results under Jenkins
    (the jobs archive results/*.json), else <data_dir>/results/<package>/workflows."""
    name = f"{workflow}-{package}" if package else workflow
    explicit = os.environ.get("RELMAN_SUMMARY_DIR")
    if explicit:
        return Path(explicit) / f"{name}.json"
    if os.environ.get("WORKSPACE") and os.environ.get("JENKINS_URL"):
        return Path(os.environ["WORKSPACE"]) / "results" / f"{name}.json"
    return settings.results_dir / (package or "_all") / "workflows" / f"{name}.json"


def write_summary(ctx: Context, workflow: str, package: Optional[str], report: Dict[str, Any]) -> Path:
    """The report as JSON plus a few lines of text next to it (.txt), both without secrets."""
    clean = scrub(ctx.settings, {"workflow": workflow, "package": package, "at": utcnow().isoformat() + "Z",
                                 "build_url": ctx.settings.build_url, **report})
    path = summary_path(ctx.settings, workflow, package)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(clean, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    lines = [f"relman {workflow} {package or ''}: {clean.get('status', '?')}".rstrip()]
    if clean.get("message"):
        lines.append(str(clean["message"]))
    for item in clean.get("images", []) or []:
        lines.append("  " + " ".join(str(item.get(k, "")) for k in ("variant", "status", "verdict", "tag", "digest")
                                     if item.get(k)))
    path.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    report["summary_file"] = str(path)
    return path


def notify(ctx: Context, workflow: str, package: Optional[str], status: str, message: str,
           details: Optional[Dict[str, Any]] = None) -> bool:
    """POST a JSON message to RELMAN_WEBHOOK_URL when it is set; never fails the workflow."""
    url = ctx.settings.webhook_url
    if not url:
        return False
    import requests
    body = scrub(ctx.settings, {"source": "relman", "workflow": workflow, "package": package, "status": status,
                                "message": message[:2000], "build_url": ctx.settings.build_url,
                                "at": utcnow().isoformat() + "Z", "details": details or {}})
    try:
        r = requests.post(url, json=body, timeout=10)
        if r.status_code >= 400:
            ctx.echo(f"warning: the notification webhook answered {r.status_code}")
            return False
        return True
    except requests.RequestException as exc:
        ctx.echo(f"warning: the notification webhook is unreachable ({exc.__class__.__name__})")
        return False


# ---------------------------------------------------------------------- registry helpers

def untag(reg, path: str, tag: str) -> bool:
    """Remove one tag and nothing else. Distribution 2.x cannot delete a tag by name (DELETE by digest
    removes every tag of the image), so the tag is first pointed at a tombstone: the same manifest
    with one annotation more (a new digest over the same blobs), and that tombstone is deleted."""
    import uuid
    got = reg.get_manifest(path, tag)
    if got is None:
        return False
    raw, media_type, _ = got
    doc = json.loads(raw)
    doc.setdefault("annotations", {})["org.relman.tombstone"] = uuid.uuid4().hex
    tomb = reg.put_manifest(path, tag, json.dumps(doc).encode(), media_type)
    return reg.delete_manifest(path, tomb)


def tag_digests(reg, path: str) -> Dict[str, Optional[str]]:
    """Every tag of a repository and the digest it points at (one HEAD per tag)."""
    return {t: reg.manifest_digest(path, t) for t in reg.tags(path)}
