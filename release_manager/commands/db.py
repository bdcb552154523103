"""Commands of the release database: `relman db ...`, `relman images ...`, `relman history`, `relman audit`.
The work happens in release_manager.db; these only parse options and print (columns, or --json)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from release_manager.db.lifecycle import STATES


def _db(settings):
    from release_manager.db.connection import for_settings
    return for_settings(settings)


def _echo_json(obj):
    click.echo(json.dumps(obj, indent=2, default=str))


def _table(rows, columns):
    """Plain aligned columns: readable in a terminal, greppable, no colour codes in pipes."""
    if not rows:
        return
    cells = [[("" if r.get(k) is None else str(r.get(k))) for k, _ in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(columns)]
    click.echo("  ".join(h.ljust(w) for (_, h), w in zip(columns, widths)).rstrip())
    for c in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())


def _short(d):
    return None if not d else d.split(":", 1)[-1][:12]


def _size(n):
    return None if n is None else f"{n / 1e6:.0f}MB"


def _image_rows(rows):
    return [{**r, "tag": (r.get("tags") or ["-"])[0], "digest_short": _short(r.get("digest")) or
             (_short(r.get("image_id")) and "id:" + _short(r.get("image_id"))), "size_mb": _size(r.get("size")),
             "commit_short": (r.get("commit") or "")[:10]} for r in rows]


IMAGE_COLUMNS = [("id", "ID"), ("package", "PACKAGE"), ("variant", "VARIANT"), ("ref", "REF"),
                 ("commit_short", "COMMIT"), ("status", "STATUS"), ("tag", "TAG"), ("digest_short", "DIGEST"),
                 ("size_mb", "SIZE"), ("started", "STARTED")]


def register(main):
    # ------------------------------------------------------------------ relman db

    @main.group("db")
    def db_group():
        """The release database: migrate it, check it, record build results into it."""

    @db_group.command("upgrade")
    @click.option("--revision", default="head", show_default=True, help="migration to upgrade to")
    @click.pass_obj
    def db_upgrade(settings, revision):
        """Create or migrate the database at RELMAN_DB_URL to this relman's schema."""
        from release_manager.db import migrate
        db = _db(settings)
        before = migrate.status(db)
        if before.state in ("ahead", "unversioned"):
            from release_manager.db.connection import SchemaError
            raise SchemaError(before.advice)
        after = migrate.upgrade(db, revision)
        if before.current == after.current:
            click.echo(f"{db.masked_url}: already at migration {after.current}; nothing to do")
        else:
            click.echo(f"{db.masked_url}: migrated from {before.current or 'empty'} to {after.current}")

    @db_group.command("status")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def db_status(settings, as_json):
        """Where the database is, its migration, and how many rows it holds. Exit 1 unless it is usable."""
        from release_manager.db import migrate
        from release_manager.db.connection import SchemaError
        db = _db(settings)
        st = migrate.status(db)
        info = st.as_dict()
        if st.state == "current":
            info["counts"] = _counts(db)
        if as_json:
            _echo_json(info)
        else:
            click.echo(f"database:  {st.url} ({db.backend})")
            click.echo(f"migration: {st.current or '-'} (this relman: {st.head}), {st.state}")
            for k, v in info.get("counts", {}).items():
                click.echo(f"  {k:20} {v}")
        if st.state != "current":
            raise SchemaError(st.advice)

    @db_group.command("record-build")
    @click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
    @click.option("--actor", help="who records (default: $RELMAN_ACTOR, $BUILD_USER_ID or the login name)")
    @click.option("--requested-by", help="who asked for the build")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def db_record_build(settings, results, actor, requested_by, as_json):
        """Record build result files (what `relman build` writes; Jenkins archives them). All files are
        checked first and recorded in one transaction: all or nothing. Recording again changes nothing."""
        from release_manager.db import load_result_files, record_builds
        parsed = load_result_files(results)
        outcomes = record_builds(parsed, _db(settings), actor=actor, requested_by=requested_by)
        if as_json:
            _echo_json([o.as_dict() for o in outcomes])
            return
        for o, p in zip(outcomes, parsed):
            click.echo(f"{o.action:9} image {o.image:<6} {p.doc.package} {p.doc.target} {p.doc.ref} "
                       f"{o.status}  ({o.source})")

    # ------------------------------------------------------------------ relman images

    @main.group("images")
    def images_group():
        """The images in the release database."""

    @images_group.command("list")
    @click.option("--package", help="only this package")
    @click.option("--variant", help="only this variant (runtime, debug, full, or a component)")
    @click.option("--status", type=click.Choice(STATES), help="only images in this status")
    @click.option("--limit", type=int, help="at most this many, newest first")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def images_list(settings, package, variant, status, limit, as_json):
        """Images, newest first."""
        from release_manager.db.queries import list_images
        with _db(settings).read() as s:
            rows = list_images(s, package, variant, status, limit)
        if as_json:
            _echo_json(rows)
        elif not rows:
            click.echo("no images match", err=True)
        else:
            _table(_image_rows(rows), IMAGE_COLUMNS)

    @images_group.command("show")
    @click.argument("image")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def images_show(settings, image, as_json):
        """One image by row ID, digest, image id, or [PACKAGE:|REPOSITORY:]TAG: its build, tags,
        OS packages, verifications, promotions and audit trail."""
        from release_manager.db.queries import image_detail
        with _db(settings).read() as s:
            d = image_detail(s, image)
        if as_json:
            _echo_json(d)
            return
        _show(d)

    @images_group.command("retire")
    @click.argument("image")
    @click.option("--reason", required=True, help="why (kept in the audit log)")
    @click.option("--actor", help="who retires it (default: the login name)")
    @click.pass_obj
    def images_retire(settings, image, reason, actor):
        """Retire an image explicitly (this is also how a promoted release is withdrawn)."""
        from release_manager.db import transition
        o = transition(image, "retired", actor=actor, reason=reason, explicit=True, db=_db(settings))
        click.echo(f"image {o.image}: {o.status}" + (" (already)" if o.action == "unchanged" else ""))

    @images_group.command("transition")
    @click.argument("image")
    @click.argument("status", type=click.Choice(STATES))
    @click.option("--reason", help="why (kept in the audit log)")
    @click.option("--actor", help="who (default: the login name)")
    @click.pass_obj
    def images_transition(settings, image, status, reason, actor):
        """Move an image to STATUS by hand, if the lifecycle allows it (exit 2 if not)."""
        from release_manager.db import transition
        o = transition(image, status, actor=actor, reason=reason, db=_db(settings))
        click.echo(f"image {o.image}: {o.status}" + (" (already)" if o.action == "unchanged" else ""))

    # ------------------------------------------------------------------ relman history / audit

    @main.command("history")
    @click.argument("package")
    @click.option("--json", "as_json", is_flag=True)
    @click.option("--diff", "with_diff", is_flag=True,
                  help="also diff consecutive nightlies of each variant (layers read from the registry)")
    @click.pass_obj
    def history_cmd(settings, package, as_json, with_diff):
        """PACKAGE over time: images built, verifications, promotions, debug requests."""
        from release_manager.db.queries import history, timeline
        with _db(settings).read() as s:
            h = history(s, package)
        if with_diff and as_json:
            from release_manager.commands.inspect import nightly_diffs
            h["nightly_diffs"] = nightly_diffs(settings, h["images"])
        if as_json:
            _echo_json(h)
            return
        click.echo(f"{h['package']}: {len(h['images'])} image(s), {len(h['verifications'])} verification(s), "
                   f"{len(h['promotions'])} promotion(s), {len(h['debug_requests'])} debug request(s)")
        _table(timeline(h), [("at", "WHEN"), ("what", "EVENT"), ("image", "IMAGE"), ("text", "")])
        if with_diff:  # after the timeline, each pair printed as soon as it is compared
            from release_manager.commands.inspect import nightly_diffs
            nightly_diffs(settings, h["images"], echo=click.echo)

    @main.command("audit")
    @click.option("--package", help="only events of this package")
    @click.option("--limit", type=int, default=200, show_default=True, help="the newest N events (0: all)")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def audit_cmd(settings, package, limit, as_json):
        """The audit log: every state change, who made it and when (oldest first)."""
        from release_manager.db.queries import audit
        with _db(settings).read() as s:
            rows = audit(s, package, limit or None)
        if as_json:
            _echo_json(rows)
            return
        for r in rows:
            r["change"] = f"{r['from'] or '-'} -> {r['to']}" if r["to"] else ""
            r["what"] = f"{r['entity']} {r['entity_id']}"
            r["details"] = " ".join(f"{k}={v}" for k, v in (r["detail"] or {}).items())
        _table(rows, [("id", "ID"), ("at", "WHEN"), ("actor", "ACTOR"), ("action", "ACTION"),
                      ("package", "PACKAGE"), ("what", "ON"), ("change", "CHANGE"), ("details", "DETAIL")])


def _counts(db):
    from release_manager.db.queries import table_counts
    with db.read() as s:
        return table_counts(s)


def _show(d):
    click.echo(f"image {d['id']}: {d['package']} {d['variant']} ({d['target']}) {d['status']}")
    for label, key in (("ref", "ref"), ("commit", "commit"), ("repository", "repository"), ("digest", "digest"),
                       ("image id", "image_id"), ("build key", "build_key"), ("base digest", "base_digest"),
                       ("platform", "platform"), ("production", "production_platform"),
                       ("builder", "builder_host"), ("build url", "build_url"), ("requested by", "requested_by"),
                       ("started", "started"), ("finished", "finished"), ("message", "message")):
        if d.get(key):
            click.echo(f"  {label + ':':14}{d[key]}")
    if d.get("size") is not None:
        click.echo(f"  {'size:':14}{_size(d['size'])} in {len(d.get('layers') or [])} layer(s)")
    click.echo(f"  {'tags:':14}{', '.join(d['all_tags']) or '-'}")
    m = d.get("manifest")
    if m:
        click.echo(f"  {'os packages:':14}{m['package_count']} ({m['manager']})")
    for v in d["verifications"]:
        click.echo(f"  verification {v['id']}: {v['verdict']} {v['workload']} vs {v['reference']}, "
                   f"{v['checks']} check(s), {v['failed_checks']} not passed"
                   + (f", report {v['report_location']}" if v.get("report_location") else ""))
    for p in d["promotions"]:
        click.echo(f"  promotion {p['id']}: {p['from_tag'] or '-'} -> {p['to_tag']} by {p['promoted_by']} "
                   f"at {p['promoted_at']}" + (f" ({p['reason']})" if p["reason"] else ""))
    for f in d.get("sifs") or []:
        click.echo(f"  sif {f['id']}: {f['sha256']} {_size(f['size'])}, apptainer {f['apptainer_version']}, "
                   f"{'signed by ' + f['signer'] if f['signer'] else 'unsigned'}"
                   + (f", pushed to {f['registry_ref']}" if f.get("registry_ref") else "") + f", at {f['created_at']}")
    for r in d.get("farm_runs") or []:
        click.echo(f"  farm job {r['job_id']} at {r['site']}: {r['kind']}, {r['tasks']} task(s), {r['state']}, "
                   f"submitted {r['submitted_at']} by {r['submitted_by']}")
    click.echo("  audit:")
    for a in d["audit"]:
        click.echo(f"    {a['at']} {a['actor']:12} {a['action']:14} {a['from'] or '-'} -> {a['to'] or '-'}")
