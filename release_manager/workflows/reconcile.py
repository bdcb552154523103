"""`relman reconcile [--fix]`: the release database against the registry.

Reported (and with --fix repaired):
  - missing: an image the database has as pushed (or verifying, verified, verification-failed) whose
    manifest the registry lacks. Fix: the row is retired ("not in the registry"). A promoted image
    is never retired here: it is reported for a person to restore or retire explicitly.
  - promoted-tag: a promoted tag missing from the registry, or pointing at another digest, while the
    image is there. Fix: the tag is put back on the recorded digest (a manifest copy).
  - channel: a channel's tag (the spec's `channels`, e.g. `l1-makeft1:l1`) missing from the registry or
    pointing elsewhere than its last recorded move (someone moved it by hand). Fix: it is put back on the
    recorded digest; moving a channel on purpose is `relman promote --channel`, which records the move.
    Its `<channel>-sif` likewise, against the newest pushed SIF of that image.
Reported only: tags in the registry of a package relman knows that no image row carries (untracked).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from release_manager.errors import RelmanError
from release_manager.workflows.common import Context, image_rows, sif_artifacts, tag_digests, write_summary
from release_manager.tags import registry_path

LIVE = ("pushed", "verifying", "verified", "verification-failed", "promoted")


def reconcile(ctx: Context, fix: bool = False, package: Optional[str] = None) -> Dict[str, Any]:
    from release_manager.db import transition
    rows = image_rows(ctx, package)
    host = ctx.settings.registry
    reg = ctx.registry()
    report: Dict[str, Any] = {"status": "checking", "fix": fix, "missing": [], "promoted_tags": [], "channels": [], "untracked": [],
                              "fixed": [], "unfixable": []}
    repos = sorted({r["repository"] for r in rows if r["repository"].split("/", 1)[0] == host})
    tagmap = {repo: tag_digests(reg, registry_path(repo)) for repo in repos}
    for r in rows:
        if r["repository"] not in tagmap or r["status"] not in LIVE or not r["digest"]:
            continue
        path = registry_path(r["repository"])
        present = reg.manifest_digest(path, r["digest"]) == r["digest"]
        if not present:
            item = {"image": r["id"], "package": r["package"], "variant": r["variant"], "status": r["status"],
                    "digest": r["digest"], "tags": r["tags"]}
            report["missing"].append(item)
            ctx.echo(f"missing   image {r['id']} {r['package']} {r['variant']} {r['status']}: "
                     f"{r['repository']}@{r['digest']} is not in the registry")
            if fix:
                if r["status"] == "promoted" or r["promotions"]:
                    report["unfixable"].append({**item, "why": "promoted: restore the image or retire it "
                                                               "explicitly (`relman retire`)"})
                else:
                    try:
                        transition(r["id"], "retired", actor="relman-reconcile",
                                   reason="reconcile: the registry lacks the manifest", db=ctx.database())
                        report["fixed"].append({**item, "action": "retired"})
                        ctx.echo(f"fixed     image {r['id']}: retired")
                    except RelmanError as exc:
                        report["unfixable"].append({**item, "why": str(exc)})
            continue
        if r["status"] == "retired":
            continue
        for p in r["promotions"]:
            if r["status"] == "retired":
                break
            current = tagmap[r["repository"]].get(p["to_tag"])
            if current == r["digest"]:
                continue
            item = {"image": r["id"], "tag": f"{r['repository']}:{p['to_tag']}", "digest": r["digest"],
                    "registry": current}
            report["promoted_tags"].append(item)
            ctx.echo(f"promoted  {item['tag']} should be {r['digest']}, the registry has {current or 'nothing'}")
            if fix:
                got = reg.retag(path, r["digest"], p["to_tag"])
                report["fixed"].append({**item, "action": "retagged", "now": got})
                ctx.echo(f"fixed     {item['tag']} -> {got}")
    carried: Dict[str, set] = {}
    for r in rows:
        carried.setdefault(r["repository"], set()).update(r["tags"])
    for item in _channels(ctx, rows, tagmap, fix, report):
        carried.setdefault(item["repository"], set()).add(item["channel"])
    for repo, tmap in tagmap.items():
        for tag in sorted(set(tmap) - carried.get(repo, set())):
            report["untracked"].append(f"{repo}:{tag}")
    problems = len(report["missing"]) + len(report["promoted_tags"]) + len(report["channels"])
    left = problems - len(report["fixed"])
    report["status"] = "clean" if problems == 0 else ("fixed" if fix and left == 0 else "differences")
    report["message"] = (f"{problems} difference(s)" + (f", {len(report['fixed'])} fixed" if fix else "")
                         + f"; {len(report['untracked'])} registry tag(s) not recorded (reported only)")
    ctx.echo(report["message"])
    write_summary(ctx, "reconcile", package, report)
    return report


def _channels(ctx: Context, rows, tagmap, fix: bool, report: Dict[str, Any]):
    """Each channel's registry tag against its last recorded move; yields every channel it checked."""
    from release_manager.db.channels import current_channels
    by_id = {r["id"]: r for r in rows}
    with ctx.database().read() as s:
        moves = {pkg: current_channels(s, pkg) for pkg in sorted({r["package"] for r in rows})}
    reg = ctx.registry()
    for pkg, current in moves.items():
        for name, move in sorted(current.items()):
            r = by_id.get(move["image"])
            if r is None or r["repository"] not in tagmap:
                continue
            yield {"repository": r["repository"], "channel": name}
            yield {"repository": r["repository"], "channel": f"{name}-sif"}
            _channel_sif(ctx, reg, r, name, move, tagmap[r["repository"]].get(f"{name}-sif"), fix, report)
            held = tagmap[r["repository"]].get(name)
            if held == move["digest"]:
                continue
            item = {"package": pkg, "channel": name, "tag": f"{r['repository']}:{name}", "digest": move["digest"],
                    "registry": held, "from_tag": move["from_tag"], "moved_at": move["moved_at"]}
            report["channels"].append(item)
            ctx.echo(f"channel   {item['tag']} should be {move['digest']} (moved to {move['from_tag']} at "
                     f"{move['moved_at']}), the registry has {held or 'nothing'}")
            if not fix:
                continue
            path = registry_path(r["repository"])
            if reg.manifest_digest(path, move["digest"]) != move["digest"]:
                report["unfixable"].append({**item, "why": "the registry lacks the image the channel was moved to: "
                                                           "move the channel with `relman promote --channel`"})
                continue
            got = reg.retag(path, move["digest"], name)
            report["fixed"].append({**item, "action": "retagged", "now": got})
            ctx.echo(f"fixed     {item['tag']} -> {got}")


def _channel_sif(ctx: Context, reg, r, name: str, move, held: Optional[str], fix: bool, report: Dict[str, Any]) -> None:
    """`<channel>-sif` against the newest pushed SIF of the image the channel was moved to (Apptainer sites run
    the channel from it). Fix: retagged; a SIF tag left from another image while this one has none is reported
    unfixable (`relman sif PKG --image <channel> --push` makes the right one)."""
    path = registry_path(r["repository"])
    present = [x["registry_digest"] for x in reversed(sif_artifacts(ctx, move["digest"]))
               if reg.manifest_digest(path, x["registry_digest"]) == x["registry_digest"]]
    want = present[0] if present else None
    if held == want or (want is None and held is None):
        return
    item = {"package": r["package"], "channel": f"{name}-sif", "tag": f"{r['repository']}:{name}-sif",
            "digest": want, "registry": held, "from_tag": move["from_tag"], "moved_at": move["moved_at"]}
    report["channels"].append(item)
    ctx.echo(f"channel   {item['tag']} should be {want or 'a SIF of ' + move['digest']}, the registry has "
             f"{held or 'nothing'}")
    if not fix:
        return
    if want is None:
        report["unfixable"].append({**item, "why": f"no pushed SIF of {move['digest']}: `relman sif {r['package']} "
                                                   f"--image {name} --push` makes it"})
        return
    got = reg.retag(path, want, f"{name}-sif")
    report["fixed"].append({**item, "action": "retagged", "now": got})
    ctx.echo(f"fixed     {item['tag']} -> {got}")
