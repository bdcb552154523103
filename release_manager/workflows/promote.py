"""`relman promote PACKAGE TAG [--to NAME] [--channel C] --by USER --reason TEXT` and `relman retire PACKAGE TAG`.

TAG is either one image's tag (v1.1.0-runtime: that image; the promoted tag is NAME) or a release
ref (v1.1.0: every variant built from it; the promoted tags are NAME-<variant>). NAME defaults to
release-TAG. Promotion never rebuilds: the registry copies the manifest (Registry.retag) and the
digest is checked before and after. Only images whose latest verification passed are promoted,
unless --override (audited, with the reason). A promoted tag is immutable: it never moves to
another digest, not even after the image is retired.

A channel (the spec's `channels`, e.g. L1's `l1`) is the one kind of tag that moves: --channel C, after
the promotion, points C at the promoted image of C's variant and records the move (db/channels.py). TAG
may be an earlier promoted tag: that is a rollback. An image a channel points at cannot be retired.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from release_manager import tags
from release_manager.errors import NotFound, RelmanError, UsageError
from release_manager.workflows.common import (Context, check_reason, check_user, image_rows, notify, sif_artifacts, untag,
                                             write_summary)
from release_manager.tags import registry_path


class PromotionRefused(RelmanError):
    """A promotion the rules do not allow (unverified image, a promoted tag on another digest)."""


def _plan_targets(ctx: Context, package: str):
    from release_manager.plan import make_plan
    return make_plan(ctx.specs, package).targets


def find_sources(ctx: Context, package: str, tag: str, to: Optional[str]) -> List[Dict[str, Any]]:
    """[{row, source_tag, to_tag}] for TAG: one image carrying TAG, else every variant built from ref TAG."""
    from release_manager.db.queries import find_image
    tags.check_tag(tags.ref_slug(tag))
    rows = {r["id"]: r for r in image_rows(ctx, package)}
    if not rows:
        raise NotFound(f"package {package!r} has no image in the release database")

    def carrier(t):
        with ctx.database().read() as s:
            try:
                return find_image(s, f"{package}:{t}").id
            except (NotFound, UsageError):
                return None
    one = carrier(tag)
    if one is not None:
        if to is None and tag in {p["to_tag"] for p in rows[one]["promotions"]}:
            to = tag    # already a promoted tag of it (a channel moved back to an earlier release)
        return [{"row": rows[one], "source_tag": tag, "to_tag": tags.check_tag(to or f"release-{tag}")}]
    name = to or f"release-{tags.ref_slug(tag)}"
    out, missing = [], []
    for t in _plan_targets(ctx, package):
        src = tags.release_tag(tag, t.image_suffix)
        pk = carrier(src)
        if pk is not None and rows[pk]["status"] not in ("failed",):
            out.append({"row": rows[pk], "source_tag": src, "to_tag": tags.check_tag(f"{name}-{t.image_suffix}")})
        else:
            missing.append(src)
    if out and missing:
        ctx.echo(f"note: no recorded image carries {', '.join(missing)}: those variants are not promoted")
    if not out:
        raise NotFound(f"no image of {package} carries the tag {tag!r} or was built from ref {tag!r} "
                       "(`relman images list --package` shows what was recorded)")
    return out


def check_channel(ctx: Context, package: str, channel: str, override: bool):
    """The spec's channel of that name (a typo must not create a tag nobody runs from)."""
    from release_manager.plan import make_plan
    channels = make_plan(ctx.specs, package).spec.channels
    if channel not in channels:
        raise UsageError(f"--channel {channel!r}: {package}'s spec declares "
                         + (f"the channel(s) {', '.join(sorted(channels))}" if channels else "no channel")
                         + " (spec field `channels`)")
    if override:
        raise UsageError(f"--channel {channel} with --override: a channel points only at verified images")
    return channels[channel]


def promote(ctx: Context, package: str, tag: str, to: Optional[str], by: str, reason: str,
            dry_run: bool = False, override: bool = False, channel: Optional[str] = None) -> Dict[str, Any]:
    """Promote; with a channel, then move the channel's tag to the promoted image of its variant."""
    check_user(by, "--by")
    reason = check_reason(reason, "--reason" if not override else "--reason (required with --override)")
    ch = check_channel(ctx, package, channel, override) if channel else None
    ctx.actor = by
    report: Dict[str, Any] = {"status": "checking", "tag": tag, "by": by, "reason": reason, "override": override,
                              "dry_run": dry_run, "images": []}
    if channel:
        report["channel"] = {"name": channel}
    try:
        return _promote(ctx, package, tag, to, by, reason, dry_run, override, report, (channel, ch))
    except RelmanError as exc:
        report.update(status="refused" if isinstance(exc, (PromotionRefused, NotFound)) else "failed",
                      message=str(exc))
        write_summary(ctx, "promote", package, report)
        if not dry_run:
            report["notified"] = notify(ctx, "promote", package, report["status"], str(exc),
                                        {"tag": tag, "to": to, "by": by})
        raise


def _promote(ctx, package, tag, to, by, reason, dry_run, override, report, channel=(None, None)):
    sources = find_sources(ctx, package, tag, to)
    name, ch = channel
    on_channel = None
    if ch is not None:
        hits = [s for s in sources if ch.variant in (s["row"]["variant"], s["row"]["target"])]
        if not hits:
            raise PromotionRefused(f"channel {name} takes the {ch.variant} image; {tag} gives "
                                   f"{', '.join(s['row']['target'] for s in sources)}: nothing moved")
        on_channel = hits[0]
    reg = ctx.registry()
    all_rows = image_rows(ctx, package)
    promoted_to = {}                        # promoted tag -> digest it was promoted with (immutable)
    for r in all_rows:
        for p in r["promotions"]:
            promoted_to.setdefault(p["to_tag"], set()).add(r["digest"])
    problems, plan, overridden, unverified = [], [], [], []
    for s in sources:
        r, dest = s["row"], s["to_tag"]
        path = registry_path(r["repository"])
        item = {"variant": r["variant"], "image": r["id"], "status": r["status"], "verdict": r["verdict"],
                "digest": r["digest"], "from": s["source_tag"], "tag": f"{r['repository']}:{dest}", "to_tag": dest}
        report["images"].append(item)
        if not r["digest"] or r["status"] in ("failed", "retired"):
            problems.append(f"{r['variant']} (image {r['id']}) is {r['status']}: nothing to promote")
            continue
        verified = r["status"] in ("verified", "promoted") and r["verdict"] == "passed"
        if not verified:
            why = (f"{r['variant']} (image {r['id']}, {s['source_tag']}) is not verified: status {r['status']}, "
                   f"last verification {r['verdict'] or 'none'}")
            if override:
                overridden.append(why)
                item["override"] = True
            else:
                problems.append(why)
                unverified.append(why)
        others = promoted_to.get(dest, set()) - {r["digest"]}
        if others:
            problems.append(f"{dest} is a promoted tag of {', '.join(sorted(others))}; promoted tags are "
                            f"immutable, it cannot point at {r['digest']}")
            continue
        current = reg.manifest_digest(path, dest)
        if current and current != r["digest"]:
            problems.append(f"{r['repository']}:{dest} exists in the registry at {current}, not {r['digest']}: "
                            "refusing to move it")
            continue
        have = reg.manifest_digest(path, r["digest"])
        if have != r["digest"]:
            problems.append(f"{r['repository']}@{r['digest']} is missing from the registry (`relman reconcile`)")
            continue
        item["already"] = current == r["digest"] and dest in promoted_to
        plan.append((r, dest, path, item, s["source_tag"]))
    if problems:
        raise PromotionRefused(f"promotion of {package} {tag} refused:\n  " + "\n  ".join(problems)
                               + ("\n  (--override with a --reason promotes an unverified image; it is audited)"
                                  if unverified else ""))
    if dry_run:
        for r, dest, path, item, _ in plan:
            ctx.echo(f"would promote {r['variant']:8} {r['repository']}@{r['digest']} -> {dest}"
                     + (" (already)" if item["already"] else "") + (" OVERRIDE" if item.get("override") else ""))
        report.update(status="dry-run", message=f"{len(plan)} image(s) would be promoted")
        if on_channel is not None:
            _move_channel(ctx, reg, package, name, on_channel, by, reason, report, dry_run=True)
        write_summary(ctx, "promote", package, report)
        return report
    from release_manager.db import record_promotion
    for r, dest, path, item, src in plan:
        if item["already"]:
            ctx.echo(f"{r['repository']}:{dest} is already promoted at {r['digest']}")
            item["result"] = "unchanged"
            continue
        before = reg.manifest_digest(path, r["digest"])
        got = reg.retag(path, r["digest"], dest)
        after = reg.manifest_digest(path, dest)
        if not (before == got == after == r["digest"]):
            raise RelmanError(f"promotion of {r['repository']}@{r['digest']} to {dest}: digest changed "
                              f"(before {before}, copy {got}, after {after})")
        if item.get("override"):
            item["promotion"] = _record_override(ctx, r, dest, src, by, reason)
        else:
            item["promotion"] = record_promotion(r["id"], dest, actor=by, reason=reason, from_tag=src,
                                                 db=ctx.database())
        item["result"] = "promoted"
        ctx.echo(f"promoted {r['variant']:8} {r['repository']}:{dest} = {after}")
        item["sifs"] = _promote_sifs(ctx, reg, path, r, dest)
    report.update(status="promoted", message=f"{sum(i.get('result') == 'promoted' for i in report['images'])} "
                                             f"image(s) promoted" + (" WITH OVERRIDE" if overridden else ""))
    if overridden:
        report["overridden"] = overridden
    if on_channel is not None:
        _move_channel(ctx, reg, package, name, on_channel, by, reason, report)
    write_summary(ctx, "promote", package, report)
    return report


def _move_channel(ctx: Context, reg, package: str, channel: str, source: Dict[str, Any], by: str, reason: str,
                  report: Dict[str, Any], dry_run: bool = False) -> None:
    """The channel's tag becomes a manifest copy of the promoted image (checked before and after), and the move
    is recorded with what the tag held before. The promotion above already checked the image is verified."""
    from release_manager.db.channels import current_channels, record_channel_move
    r, dest = source["row"], source["to_tag"]
    path = registry_path(r["repository"])
    held = reg.manifest_digest(path, channel)
    with ctx.database().read() as s:
        recorded = current_channels(s, package).get(channel)
    info = report["channel"]
    info.update(tag=f"{r['repository']}:{channel}", digest=r["digest"], previous_digest=held, from_tag=dest,
                image=r["id"])
    if recorded and held and recorded["digest"] != held:
        ctx.echo(f"note: {r['repository']}:{channel} holds {held}, but its last recorded move was to "
                 f"{recorded['digest']}: it was moved outside relman")
    info["sif"] = _move_channel_sif(ctx, reg, path, r, channel, dry_run)
    if held == r["digest"] and recorded and recorded["digest"] == r["digest"]:
        info["result"] = "unchanged"
        ctx.echo(f"channel {channel} already points at {r['digest']} ({dest})")
        return
    if dry_run:
        info["result"] = "would move"
        ctx.echo(f"would move channel {channel}: {held or '(new)'} -> {r['digest']} ({dest})")
        return
    got = reg.retag(path, r["digest"], channel)
    after = reg.manifest_digest(path, channel)
    if not (got == after == r["digest"]):
        raise RelmanError(f"moving channel {channel} to {r['repository']}@{r['digest']}: digest changed "
                          f"(copy {got}, after {after})")
    info["move"] = record_channel_move(package, channel, r["id"], r["digest"], dest, held, actor=by, reason=reason,
                                       db=ctx.database())
    info["result"] = "moved"
    ctx.echo(f"channel {channel}: {r['repository']}:{channel} = {after} ({dest}; was {held or 'not set'})")


def _move_channel_sif(ctx: Context, reg, path: str, r, channel: str, dry_run: bool) -> Dict[str, Any]:
    """`<channel>-sif` follows the channel: Apptainer farms run `--image REPO:<channel>` from that SIF, so it
    must be the SIF of the image the channel points at (the newest pushed one). When the image has none, a
    `<channel>-sif` left from an earlier image is reported: `relman farm submit` refuses a SIF relman built from
    another image, and `relman sif PKG --image <channel> --push` makes the right one."""
    tag = f"{channel}-sif"
    held = reg.manifest_digest(path, tag)
    present = [x for x in reversed(sif_artifacts(ctx, r["digest"]))
               if reg.manifest_digest(path, x["registry_digest"]) == x["registry_digest"]]
    if not present:
        if held:
            ctx.echo(f"note: {r['repository']}:{tag} holds {held}, a SIF of another image; this image has no pushed "
                     f"SIF: Apptainer sites refuse it until `relman sif {r['package']} --image {channel} --push`")
        return {"tag": f"{r['repository']}:{tag}", "digest": held, "result": "no SIF of this image" if held else "none"}
    want = present[0]["registry_digest"]
    out = {"tag": f"{r['repository']}:{tag}", "digest": want, "previous_digest": held}
    if held == want:
        return {**out, "result": "unchanged"}
    if dry_run:
        ctx.echo(f"would move {tag}: {held or '(new)'} -> {want}")
        return {**out, "result": "would move"}
    got = reg.retag(path, want, tag)
    ctx.echo(f"channel SIF {r['repository']}:{tag} = {got} (was {held or 'not set'})")
    return {**out, "digest": got, "result": "moved"}


def _promote_sifs(ctx: Context, reg, path: str, r, dest: str) -> List[str]:
    """A SIF pushed next to the promoted image (`<tag>-sif`, ORAS, in the image's repository) gets the
    promoted tag too, so farms pulling `<dest>-sif` run exactly the promoted image. The newest SIF of
    the image wins; a SIF whose artifact left the registry is skipped with a message."""
    from release_manager.sif import oras_tag
    done = []
    for sif in reversed(sif_artifacts(ctx, r["digest"])):
        if reg.manifest_digest(path, sif["registry_digest"]) != sif["registry_digest"]:
            ctx.echo(f"  SIF {sif['registry_ref']} ({sif['registry_digest']}) is no longer in the registry: not promoted")
            continue
        tag = oras_tag(dest, r["digest"])
        reg.retag(path, sif["registry_digest"], tag)
        ctx.echo(f"promoted SIF     {r['repository']}:{tag} = {sif['registry_digest']}")
        done.append(f"{r['repository']}:{tag}")
        break
    return done


def _record_override(ctx: Context, r, dest: str, src: str, by: str, reason: str) -> int:
    """An unverified image promoted on a person's word (db.records.record_override_promotion)."""
    from release_manager.db.records import record_override_promotion
    return record_override_promotion(r["id"], src, dest, by, reason, r["verdict"], db=ctx.database())


def channel_report(ctx: Context, package: str) -> Dict[str, Any]:
    """Each channel of the spec: the registry's digest, the recorded moves (newest first), whether they agree."""
    from release_manager.db.channels import channel_moves
    from release_manager.plan import make_plan
    spec = make_plan(ctx.specs, package).spec
    if not spec.channels:   # nothing to look up: no database or registry needed to say so
        return {"package": package, "channels": []}
    repository = tags.repository(ctx.settings.registry, ctx.settings.namespace, package)
    reg = ctx.registry()
    out = []
    with ctx.database().read() as s:
        moves = channel_moves(s, package)
    for name, ch in sorted(spec.channels.items()):
        history = [m for m in moves if m["channel"] == name]
        held = reg.manifest_digest(registry_path(repository), name)
        out.append({"name": name, "variant": ch.variant, "description": ch.description,
                    "tag": f"{repository}:{name}", "registry_digest": held,
                    "current": history[0] if history else None, "history": history,
                    "in_step": held == (history[0]["digest"] if history else None)})
    return {"package": package, "channels": out}


# ---------------------------------------------------------------------- retire

def retire(ctx: Context, package: str, tag: str, by: str, reason: str, dry_run: bool = False) -> Dict[str, Any]:
    """The reverse of promote: the promoted tag(s) TAG (or NAME-<variant>) leave the registry and the
    images are retired (explicitly, with the reason). The images' other tags stay; gc collects the rest."""
    check_user(by, "--by")
    reason = check_reason(reason)
    ctx.actor = by
    suffixes = [t.image_suffix for t in _plan_targets(ctx, package)]
    hits = []
    for r in image_rows(ctx, package):
        for p in r["promotions"]:
            if p["to_tag"] == tag or p["to_tag"] in {f"{tag}-{sfx}" for sfx in suffixes}:
                hits.append((r, p["to_tag"]))
    if not hits:
        raise NotFound(f"{package}: no promoted tag {tag!r} (nor {tag}-<variant>) in the release database")
    from release_manager.db.channels import current_channels
    with ctx.database().read() as s:
        pointing = {c: m for c, m in current_channels(s, package).items() if m["image"] in {r["id"] for r, _ in hits}}
    if pointing:   # a pipeline runs from it: move the channel first, or the next jobs pull a retired image
        raise PromotionRefused(f"retire {package} {tag} refused: channel(s) " + ", ".join(
            f"{c} (since {m['moved_at']}, by {m['moved_by']})" for c, m in sorted(pointing.items()))
            + f" point at it; move them first (`relman promote {package} OTHER-TAG --channel NAME`)")
    report: Dict[str, Any] = {"status": "dry-run" if dry_run else "retired", "tag": tag, "by": by, "reason": reason,
                              "images": []}
    from release_manager.db import transition
    reg = ctx.registry()
    done = set()
    for r, dest in hits:
        path = registry_path(r["repository"])
        item = {"variant": r["variant"], "image": r["id"], "digest": r["digest"], "tag": f"{r['repository']}:{dest}",
                "status": r["status"]}
        report["images"].append(item)
        if dry_run:
            ctx.echo(f"would retire {r['variant']:8} image {r['id']} and remove {r['repository']}:{dest}")
            continue
        if reg.manifest_digest(path, dest) == r["digest"]:
            item["untagged"] = untag(reg, path, dest)
        if r["id"] not in done and r["status"] != "retired":
            transition(r["id"], "retired", actor=by, reason=reason, explicit=True, db=ctx.database())
            done.add(r["id"])
        item["result"] = "retired"
        ctx.echo(f"retired {r['variant']:8} image {r['id']}: {r['repository']}:{dest} removed")
    write_summary(ctx, "retire", package, report)
    return report
