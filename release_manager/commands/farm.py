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
    @click.option("--json", "as_json", is_flag=True)
    @click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
    @click.pass_obj
    def submit_cmd(settings, site_ref, image, sif, tasks, dry_run, workdir, as_json, command):
        """Submit PROGRAM ARGS... (after `--`) as an array job of --tasks tasks at --site."""
        import shutil
        from pathlib import Path

        from release_manager.errors import UsageError
        from release_manager.farm import launcher
        from release_manager.registry import Registry, load_credentials
        site = _site(site_ref)
        cmd = launcher.validate_command(command[0], command[1:])
        ph = site.placeholders()
        if ph and not dry_run:
            raise UsageError(f"site {site.name} still has {len(ph)} placeholder(s) to fill before submitting, e.g. "
                             f"{ph[0][0]}: {ph[0][1]} (use --dry-run to render the job script)")
        if ph and not workdir:
            raise UsageError(f"site {site.name}: its workdir is a placeholder; give --workdir for --dry-run")

        def registry_for(host):
            return Registry(host, load_credentials(settings, host), insecure=settings.registry_insecure)

        ref = launcher.resolve(image, registry_for)
        sif_ref = None
        if site.runtime == "apptainer":
            sif_ref = launcher.resolve(sif or launcher.default_sif_ref(image), registry_for, what="--sif")
        job = launcher.prepare(site, ref, cmd, tasks, sif=sif_ref, workdir=Path(workdir) if workdir else None)
        script = launcher.write(job)
        try:
            job_id = None if dry_run else launcher.submit(job, script)
        except Exception:
            shutil.rmtree(job.directory, ignore_errors=True)   # a refused job leaves nothing behind
            raise
        result = {"site": site.name, "scheduler": site.scheduler, "runtime": site.runtime, "job_id": job_id,
                  "tasks": tasks, "image": ref.pinned, "sif": sif_ref.pinned if sif_ref else None,
                  "script": str(script), "directory": str(job.directory)}
        if as_json:
            click.echo(json.dumps(result, indent=2))
        elif job_id:
            click.echo(f"submitted job {job_id} ({tasks} task(s)) to {site.name}: {ref.pinned}")
            click.echo(f"script {script}; task logs {job.directory}/task-N.out")
        else:
            click.echo(f"wrote {script} (dry run: nothing submitted)")

    def _print(rows, as_json, job_id, site):
        if as_json:
            click.echo(json.dumps({"site": site.name, "job_id": job_id, "tasks": [r.as_dict() for r in rows]}, indent=2))
            return
        click.echo(f"{'task':>5} {'state':10} {'exit':>4}  {'submit':20} {'start':20} {'end':20}")
        for r in rows:
            click.echo(f"{r.task:>5} {r.state:10} {'' if r.exit_code is None else r.exit_code:>4}  "
                       f"{r.submit or '-':20} {r.start or '-':20} {r.end or '-':20}")

    @farm.command("status")
    @click.argument("job_id")
    @click.option("--site", "site_ref", required=True)
    @click.option("--json", "as_json", is_flag=True)
    def status_cmd(job_id, site_ref, as_json):
        """Per-task state, exit code and times of JOB_ID (exit 1 when a finished task failed)."""
        from release_manager.farm import accounting
        site = _site(site_ref)
        rows = accounting.status(site, job_id)
        _print(rows, as_json, job_id, site)
        raise SystemExit(1 if any(r.state in ("failed", "cancelled", "timeout") for r in rows) else 0)

    @farm.command("wait")
    @click.argument("job_id")
    @click.option("--site", "site_ref", required=True)
    @click.option("--tasks", type=int, help="how many tasks the job has (else: until none is live)")
    @click.option("--timeout", type=float, default=3600, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    def wait_cmd(job_id, site_ref, tasks, timeout, as_json):
        """Wait until every task of JOB_ID has finished; print them (exit 1 when one failed)."""
        from release_manager.farm import accounting
        site = _site(site_ref)
        rows = accounting.wait(site, job_id, tasks=tasks, timeout=timeout,
                               echo=(lambda m: None) if as_json else (lambda m: click.echo(m, err=True)))
        _print(rows, as_json, job_id, site)
        raise SystemExit(1 if any(r.state != "done" for r in rows) else 0)
