"""The release workflows: `relman nightly`, `promote`, `retire`, `debug-build`, `gc`, `reconcile`.
The work happens in release_manager.workflows; these parse options and print (text, or --json).
Every command writes a JSON summary (and a .txt) for Jenkins; see docs/workflows.md."""
from __future__ import annotations

import datetime as dt
import json

import click


def _ctx(settings, echo=None):
    from release_manager.spec import load_specs
    from release_manager.workflows.common import Context
    return Context(settings, load_specs(settings.specs_dir), echo=echo or click.echo)


def _out(report, as_json):
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))


def _echo_for(as_json):
    return (lambda m: click.echo(m, err=True)) if as_json else click.echo


def _date(value):
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date YYYY-MM-DD") from None


def register(main):
    @main.command("nightly")
    @click.argument("package")
    @click.option("--date", "day", help="the nightly's date YYYY-MM-DD (default: today, UTC); for backfills")
    @click.option("--no-verify", is_flag=True, help="build and tag only; the aliases do not move")
    @click.option("--force", is_flag=True, help="run even when nothing changed since the last nightly")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def nightly_cmd(settings, package, day, no_verify, force, as_json):
        """Nightly build of PACKAGE's default branch: build, verify, tag nightly-YYYYMMDD-<variant>, and
        move nightly-<variant> when verification passed. Exit 1 when it failed."""
        from release_manager.workflows.nightly import NightlyFailed, run_nightly
        ctx = _ctx(settings, _echo_for(as_json))
        try:
            report = run_nightly(ctx, package, _date(day), verify=not no_verify, force=force)
        except NightlyFailed as exc:
            _out(exc.report, as_json)
            raise
        _out(report, as_json)
        if not as_json:
            click.echo(f"nightly {package}: {report['status']}: {report.get('message', '')}")

    @main.command("promote")
    @click.argument("package")
    @click.argument("tag")
    @click.option("--to", "to", help="promoted tag (for one image) or name (NAME-<variant> for a release ref); "
                                     "default release-TAG")
    @click.option("--by", "by", required=True, help="who promotes (Jenkins: $BUILD_USER_ID)")
    @click.option("--reason", required=True, help="why: recorded with the promotion")
    @click.option("--override", is_flag=True, help="promote even an unverified image (audited; needs --reason)")
    @click.option("--channel", help="then move this channel of the spec (e.g. l1) to the promoted image; with an "
                                    "earlier promoted TAG: a rollback")
    @click.option("--dry-run", is_flag=True, help="check and say what would be promoted; change nothing")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def promote_cmd(settings, package, tag, to, by, reason, override, channel, dry_run, as_json):
        """Promote the verified image(s) of PACKAGE at TAG: a registry manifest copy, no rebuild."""
        from release_manager.workflows.promote import promote
        report = promote(_ctx(settings, _echo_for(as_json)), package, tag, to, by, reason, dry_run=dry_run,
                         override=override, channel=channel or None)
        _out(report, as_json)
        if not as_json:
            click.echo(f"promote {package} {tag}: {report['status']}: {report.get('message', '')}"
                       + (f"; channel {channel}: {report['channel'].get('result')}" if channel else ""))

    @main.command("channels")
    @click.argument("package")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def channels_cmd(settings, package, as_json):
        """PACKAGE's channels: where each points (registry and release database), and every move."""
        from release_manager.workflows.promote import channel_report
        report = channel_report(_ctx(settings, _echo_for(as_json)), package)
        if as_json:
            _out(report, True)
            return
        if not report["channels"]:
            click.echo(f"{package}: its spec declares no channel (spec field `channels`)")
        for c in report["channels"]:
            cur = c["current"]
            click.echo(f"{c['name']}: {c['description']} ({c['variant']})")
            click.echo(f"  registry {c['tag']} = {c['registry_digest'] or 'not set'}"
                       + ("" if c["in_step"] else "  MOVED OUTSIDE relman (the last recorded move differs)"))
            if cur:
                click.echo(f"  since {cur['moved_at']}: {cur['from_tag']} (image {cur['image']}) by {cur['moved_by']}"
                           + (f": {cur['reason']}" if cur["reason"] else ""))
            for m in c["history"][1:]:
                click.echo(f"  before {m['moved_at']}: {m['from_tag']} ({m['digest'][:19]}) by {m['moved_by']}")

    @main.command("retire")
    @click.argument("package")
    @click.argument("tag")
    @click.option("--by", "by", required=True, help="who retires it")
    @click.option("--reason", required=True, help="why: recorded in the audit log")
    @click.option("--dry-run", is_flag=True)
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def retire_cmd(settings, package, tag, by, reason, dry_run, as_json):
        """Undo a promotion: remove the promoted tag TAG (or TAG-<variant>) and retire the image(s)."""
        from release_manager.workflows.promote import retire
        report = retire(_ctx(settings, _echo_for(as_json)), package, tag, by, reason, dry_run=dry_run)
        _out(report, as_json)
        if not as_json:
            click.echo(f"retire {package} {tag}: {report['status']}: {len(report['images'])} image(s)")

    @main.command("debug-build")
    @click.argument("package")
    @click.option("--ref", required=True, help="tag, branch or commit to build")
    @click.option("--requester", required=True, help="user name the image is tagged for")
    @click.option("--ttl", type=int, default=14, show_default=True, help="days until gc removes it")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def debug_build_cmd(settings, package, ref, requester, ttl, as_json):
        """Build PACKAGE's debug image (and its runtime) at REF as dev-<requester>-<ref>-debug."""
        from release_manager.workflows.debug import debug_build
        report = debug_build(_ctx(settings, _echo_for(as_json)), package, ref, requester, ttl)
        if as_json:
            _out(report, True)
            return
        click.echo(f"debug image: {report['image']} ({report['digest']}), expires {report['expires']}")
        click.echo(f"pull it:     {report['pull']}")
        click.echo(f"debug in it: {report['gdb']}")
        click.echo(f"apptainer:   {report['apptainer']}")

    @main.command("gc")
    @click.option("--dry-run", is_flag=True, help="list what would go; change nothing")
    @click.option("--package", help="only this package")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def gc_cmd(settings, dry_run, package, as_json):
        """Retention: old nightlies, expired debug builds, failed builds (RELMAN_GC_* settings)."""
        from release_manager.workflows.gc import collect
        _out(collect(_ctx(settings, _echo_for(as_json)), dry_run=dry_run, package=package), as_json)

    @main.command("reconcile")
    @click.option("--fix", is_flag=True, help="repair the differences found")
    @click.option("--package", help="only this package")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def reconcile_cmd(settings, fix, package, as_json):
        """Compare the release database with the registry; exit 1 while differences remain."""
        from release_manager.workflows.reconcile import reconcile
        report = reconcile(_ctx(settings, _echo_for(as_json)), fix=fix, package=package)
        _out(report, as_json)
        if report["status"] == "differences":
            raise SystemExit(1)
