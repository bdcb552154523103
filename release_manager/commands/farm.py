"""`relman farm`: submit container jobs to a batch farm (Grid Engine/UGE, Slurm, LSF) with Docker or
Apptainer, the same command line for every site; read back per-task state. See docs/farm.md."""
from __future__ import annotations

import json

import click


def _site(ref):
    from release_manager.farm.site import load_site
    return load_site(ref)[0]


def register(main):
    @main.group("farm")
    def farm():
        """Batch farm jobs: submit, status, wait; the sites relman knows."""

    @farm.command("sites")
    @click.option("--json", "as_json", is_flag=True)
    def sites_cmd(as_json):
        """List the shipped sites and the placeholders each still has."""
        from release_manager.farm.site import load_site, site_names
        rows = []
        for n in site_names():
            s, p = load_site(n)
            rows.append({"name": n, "file": str(p), "scheduler": s.scheduler, "runtime": s.runtime,
                         "queue": s.queue, "placeholders": [f"{k}: {v}" for k, v in s.placeholders()]})
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        for r in rows:
            note = f"  {len(r['placeholders'])} placeholder(s): render only (--dry-run)" if r["placeholders"] else ""
            click.echo(f"{r['name']:24} {r['scheduler']:6} {r['runtime']:10}{note}")

    @farm.command("submit", context_settings={"ignore_unknown_options": True})
    @click.option("--site", "site_ref", required=True, help="a shipped site's name or a site file's path")
    @click.option("--image", "image", required=True, help="HOST/REPO:TAG or HOST/REPO@sha256:..., resolved to its digest")
    @click.option("--sif", "sif", help="Apptainer sites: the SIF as an ORAS artifact (default: the image's REPO:TAG-sif)")
    @click.option("--tasks", type=int, default=1, show_default=True, help="array job of N tasks (RELMAN_TASK_ID=1..N)")
    @click.option("--dry-run", is_flag=True, help="write the job script and print its path; submit nothing")
    @click.option("--workdir", type=click.Path(), help="folder for the job's folder (default: the site's workdir)")
    @click.option("--no-record", is_flag=True, help="do not record the run in the release database")
    @click.option("--json", "as_json", is_flag=True)
    @click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
    @click.pass_obj
    def submit_cmd(settings, site_ref, image, sif, tasks, dry_run, workdir, no_record, as_json, command):
        """Submit PROGRAM ARGS... (after `--`) as an array job of --tasks tasks at --site; recorded in the
        release database (site, job id, image and SIF digests, tasks, who, when)."""
        from pathlib import Path

        from release_manager.farm import runs
        site = _site(site_ref)
        res = runs.submit(settings, site, image, list(command), tasks, sif=sif,
                          workdir=Path(workdir) if workdir else None, dry_run=dry_run, record=not no_record)
        if as_json:
            d = res.as_dict()
            d["script"], d["directory"] = res.script, res.directory
            click.echo(json.dumps(d, indent=2))
        elif res.job_id:
            click.echo(f"submitted job {res.job_id} ({tasks} task(s)) to {site.name}: {res.image}")
            click.echo(f"script {res.script}; task logs {res.directory}/task-N.out")
            if res.record:
                click.echo(f"recorded: farm run {res.record} (relman farm show {res.job_id} --site {site.name})")
        else:
            click.echo(f"wrote {res.script} (dry run: nothing submitted)")

    def _print(rows, as_json, job_id, site):
        if as_json:
            click.echo(json.dumps({"site": site.name, "job_id": job_id, "tasks": [r.as_dict() for r in rows]}, indent=2))
            return
        click.echo(f"{'task':>5} {'state':10} {'exit':>4}  {'submit':20} {'start':20} {'end':20}")
        for r in rows:
            click.echo(f"{r.task:>5} {r.state:10} {'' if r.exit_code is None else r.exit_code:>4}  "
                       f"{r.submit or '-':20} {r.start or '-':20} {r.end or '-':20}")

    def _store(settings, site, job_id, rows):
        """A recorded run's task rows follow what the scheduler says; a job relman did not record is only shown."""
        from release_manager.db.connection import DatabaseError
        from release_manager.farm import runs
        try:
            return runs.store(settings, site, job_id, rows)
        except DatabaseError as e:
            click.echo(f"relman: warning: not stored in the release database: {e}", err=True)
            return None

    @_job_command(farm, "status")
    def status_cmd(settings, job_id, site_ref, as_json):
        """Per-task state, exit code and times of JOB_ID (exit 1 when a finished task failed)."""
        from release_manager.farm import accounting
        site = _site(site_ref)
        rows = accounting.status(site, job_id)
        _store(settings, site, job_id, rows)
        _print(rows, as_json, job_id, site)
        raise SystemExit(1 if any(r.state in ("failed", "cancelled", "timeout") for r in rows) else 0)

    @farm.command("wait")
    @click.argument("job_id")
    @click.option("--site", "site_ref", required=True)
    @click.option("--tasks", type=int, help="how many tasks the job has (else: until none is live)")
    @click.option("--timeout", type=float, default=3600, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def wait_cmd(settings, job_id, site_ref, tasks, timeout, as_json):
        """Wait until every task of JOB_ID has finished; print them (exit 1 when one failed)."""
        from release_manager.farm import accounting
        site = _site(site_ref)
        rows = accounting.wait(site, job_id, tasks=tasks, timeout=timeout,
                               echo=(lambda m: None) if as_json else (lambda m: click.echo(m, err=True)))
        _store(settings, site, job_id, rows)
        _print(rows, as_json, job_id, site)
        raise SystemExit(1 if any(r.state != "done" for r in rows) else 0)

    @_job_command(farm, "collect")
    def collect_cmd(settings, job_id, site_ref, as_json):
        """Per-task submit/start/end/exit of JOB_ID from the scheduler's accounting (qacct, Slurm's job-completion
        log, bjobs), the node's own start/end and, for failed tasks, their log's end; stored into the release
        database's rows of the run (exit 1 when a task failed)."""
        from release_manager.farm import accounting
        from release_manager.farm.collect import task_rows
        site = _site(site_ref)
        states = accounting.status(site, job_id)
        stored = _store(settings, site, job_id, states)
        rows = stored[2] if stored else task_rows(states, None)
        if as_json:
            click.echo(json.dumps({"site": site.name, "job_id": job_id, "recorded": stored[0] if stored else None,
                                   "state": stored[1] if stored else None, "tasks": rows}, indent=2))
        else:
            click.echo(f"{'task':>5} {'state':10} {'exit':>4}  {'host':12} {'submit':20} {'start':20} {'end':20} "
                       f"{'queue s':>8} {'run s':>8}")
            for r in rows:
                click.echo(f"{r['task']:>5} {r['state']:10} {'' if r['exit_code'] is None else r['exit_code']:>4}  "
                           f"{(r.get('host') or '-')[:12]:12} {r['submit'] or '-':20} {r['start'] or '-':20} "
                           f"{r['end'] or '-':20} {_num(r.get('queue_seconds')):>8} {_num(r.get('run_seconds')):>8}")
            for r in rows:
                if r["state"] in ("failed", "cancelled", "timeout") and r.get("detail"):
                    click.echo(f"task {r['task']} ({r['state']}, exit {r['exit_code']}):\n    "
                               + r["detail"].replace("\n", "\n    "))
            if stored:
                click.echo(f"stored: farm run {stored[0]}, {stored[1]}")
            else:
                click.echo(f"job {job_id} at {site.name} is not in the release database (submitted with --no-record "
                           "or not by relman): shown, not stored", err=True)
        raise SystemExit(1 if any(r["state"] in ("failed", "cancelled", "timeout") for r in rows) else 0)

    @farm.command("runs")
    @click.option("--image", help="a digest (or 8+ of its hex digits), REPO@DIGEST, or the reference as submitted")
    @click.option("--site", "site_name", help="only this site's runs")
    @click.option("--package", help="only this package's runs")
    @click.option("--limit", type=int, default=50, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def runs_cmd(settings, image, site_name, package, limit, as_json):
        """The recorded farm runs, newest first: where, which job, which image, how it went."""
        from release_manager.db.connection import for_settings
        from release_manager.db.farm import list_farm_runs
        with for_settings(settings).read() as s:
            rows = list_farm_runs(s, image=image, site=site_name, package=package, limit=limit)
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            click.echo("no farm run recorded" + (" for that filter" if image or site_name or package else ""))
            return
        click.echo(f"{'job':>8} {'site':22} {'kind':10} {'state':10} {'tasks':>5}  {'submitted':20} {'by':10} image")
        for r in rows:
            click.echo(f"{r['job_id']:>8} {r['site'][:22]:22} {r['kind']:10} {r['state']:10} {r['tasks']:>5}  "
                       f"{r['submitted_at']:20} {r['submitted_by'][:10]:10} {r['image_ref']} ({r['image_digest'][:19]})")

    @farm.command("show")
    @click.argument("job_id")
    @click.option("--site", "site_name", help="the site (needed when the job id was used at several)")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def show_cmd(settings, job_id, site_name, as_json):
        """One recorded farm run: which image (and SIF) ran JOB_ID, submitted by whom and when, and its tasks."""
        from release_manager.db.connection import for_settings
        from release_manager.db.farm import farm_run_detail
        from release_manager.farm.accounting import validate_job_id
        validate_job_id(job_id)
        with for_settings(settings).read() as s:
            d = farm_run_detail(s, job_id, site_name)
        if as_json:
            click.echo(json.dumps(d, indent=2, default=str))
            return
        click.echo(f"farm run {d['id']}: job {d['job_id']} at {d['site']} ({d['scheduler']} + {d['runtime']}), "
                   f"{d['kind']}, {d['state']}")
        click.echo(f"  image:     {d['image_ref']}\n  digest:    {d['image_digest']}")
        if d.get("image"):
            i = d["image"]
            click.echo(f"  release:   image {i['id']} ({i['repository']} {', '.join(i['tags'] or [])}; {i['status']})")
        if d["sif_digest"]:
            click.echo(f"  sif:       {d['sif_ref']} ({d['sif_digest']})" + (f", sif {d['sif_row']}" if d["sif_row"] else ""))
        click.echo(f"  package:   {d['package'] or '-'}\n  submitted: {d['submitted_at']} by {d['submitted_by']}, "
                   f"{d['tasks']} task(s)\n  command:   {' '.join(d['command'])}\n  folder:    {d['directory']}")
        for t in d["task_rows"]:
            extra = f" {t['verdict']}" if t["verdict"] else ""
            click.echo(f"  task {t['task']:>4}: {t['state']:9} exit {'' if t['exit_code'] is None else t['exit_code']!s:>3} "
                       f"{t['start'] or '-'} -> {t['end'] or '-'} on {t['host'] or '-'}{extra}")

    @farm.command("scale-test")
    @click.option("--site", "site_ref", required=True)
    @click.option("--image", required=True, help="HOST/REPO:TAG or HOST/REPO@sha256:... of the package's image")
    @click.option("--tasks", type=int, required=True)
    @click.option("--package", help="whose verification workload (default: the image repository's last part)")
    @click.option("--sif", help="Apptainer sites: the SIF's ORAS reference (default: the image's REPO:TAG-sif)")
    @click.option("--report", "report_dir", type=click.Path(), help="folder for scale-test.json and scale-test.html")
    @click.option("--timeout", type=float, default=3600, show_default=True, help="seconds to wait for the tasks")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def scale_test_cmd(settings, site_ref, image, tasks, package, sif, report_dir, timeout, as_json):
        """N tasks of the package's verification workload at --site; each task's outputs compared with the
        reference; timeline, queue wait, start overhead against a bare run (exit 1 when a task fails or differs)."""
        from pathlib import Path

        from release_manager.farm.scale_test import run_scale_test, table
        from release_manager.spec import load_specs
        site = _site(site_ref)
        rep = run_scale_test(settings, load_specs(settings.specs_dir), site, image, tasks, package=package, sif=sif,
                             report_dir=Path(report_dir) if report_dir else None, timeout=timeout,
                             echo=lambda m: click.echo(m, err=True))
        if as_json:
            click.echo(json.dumps(rep.as_dict(), indent=2, default=str))
        else:
            click.echo("\n".join(table(rep)))
        raise SystemExit(0 if rep.verdict == "pass" else 1)


def _job_command(group, name):
    """JOB_ID --site SITE [--json], with the settings: what status and collect take."""
    def deco(fn):
        for d in (click.pass_obj, click.option("--json", "as_json", is_flag=True),
                  click.option("--site", "site_ref", required=True), click.argument("job_id"), group.command(name)):
            fn = d(fn)
        return fn
    return deco


def _num(v):
    return "-" if v is None else f"{v:.2f}"
