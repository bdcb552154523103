"""Commands of the jenkins area: `relman jobs ...` (the server) and `relman pipeline ...` (the stages)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

_SPECS_DIR = click.option("--specs-dir", type=click.Path(path_type=Path),
                          help="folder with platforms.yaml and the specs (default: RELMAN_SPECS_DIR)")
_PARAM = click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="job parameter (repeatable)")


def _jobset(settings, specs_dir=None, mode=None):
    from release_manager.jenkins.model import build_jobs
    from release_manager.spec import load_specs
    if mode:
        settings = settings.model_copy(update={"jenkins_script_mode": mode})
    return build_jobs(load_specs(specs_dir or settings.specs_dir), settings)


def register(main):
    @main.group()
    def jobs():
        """Jenkins jobs generated from the specs: list, render, sync, trigger."""

    @jobs.command("list")
    @_SPECS_DIR
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def jobs_list(settings, specs_dir, as_json):
        """List every job the specs generate, with its agent, parameters and triggers."""
        js = _jobset(settings, specs_dir)
        rows = [{"job": j.full_name, "kind": j.kind, "agent": j.agent_label,
                 "parameters": [p.name for p in j.parameters], "cron": j.cron,
                 "timeout_minutes": j.timeout_minutes, "stages": [s.name for s in j.stages],
                 "allowed_groups": j.allowed_groups} for j in js.jobs]
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        for r in rows:
            extra = f"  cron {r['cron']}" if r["cron"] else ""
            extra += f"  for {','.join(r['allowed_groups'])}" if r["allowed_groups"] else ""
            click.echo(f"{r['job']:36} {r['kind']:12} {r['agent']:15} "
                       f"{','.join(r['parameters']) or '-':20}{extra}")
        click.echo(f"{len(rows)} job(s) in {len(js.folders)} folder(s)")

    @jobs.command("render")
    @_SPECS_DIR
    @click.option("--out", type=click.Path(path_type=Path), default=Path("jenkins-jobs"), show_default=True,
                  help="folder to write <folder>/<job>/{Jenkinsfile,config.xml} into")
    @click.option("--mode", type=click.Choice(["inline", "scm"]), help="override RELMAN_JENKINS_SCRIPT_MODE")
    @click.pass_obj
    def jobs_render(settings, specs_dir, out, mode):
        """Write every Jenkinsfile and config.xml (what `jobs sync` would send)."""
        from release_manager.jenkins.render import render_all, write_tree
        files = render_all(_jobset(settings, specs_dir, mode))
        write_tree(files, out)
        click.echo(f"wrote {len(files)} file(s) to {out}")

    @jobs.command("sync")
    @_SPECS_DIR
    @click.option("--dry-run", is_flag=True, help="print what would change (with diffs); write nothing")
    @click.option("--prune", is_flag=True, help="delete jobs that carry the relman marker but left the specs")
    @click.option("--only", "only", metavar="PACKAGE", help="only this package's folder and jobs")
    @click.option("--adopt", is_flag=True, help="take over existing jobs that lack the relman marker")
    @click.pass_obj
    def jobs_sync(settings, specs_dir, dry_run, prune, only, adopt):
        """Create, reconfigure (and with --prune delete) jobs on RELMAN_JENKINS_URL to match the specs."""
        from release_manager.jenkins.client import Client
        from release_manager.jenkins.sync import sync
        js = _jobset(settings, specs_dir)
        sync(Client(settings), js, dry_run=dry_run, prune=prune, adopt=adopt, only=only, echo=click.echo)

    @jobs.command("trigger")
    @click.argument("job")
    @_PARAM
    @click.option("--wait", is_flag=True, help="follow the build to its result and show the console's tail")
    @click.option("--timeout", type=float, default=3600, show_default=True, help="seconds to wait")
    @click.option("--poll", type=float, default=2.0, show_default=True, help="seconds between polls")
    @click.option("--tail", type=int, default=30, show_default=True, help="console lines shown")
    @_SPECS_DIR
    @click.pass_obj
    def jobs_trigger(settings, job, params, wait, timeout, poll, tail, specs_dir):
        """Trigger JOB (folder/name); parameters of relman's jobs are validated first."""
        from release_manager.errors import UsageError
        from release_manager.jenkins import params as P
        from release_manager.jenkins.client import Client
        from release_manager.jenkins.trigger import trigger
        given = P.parse_assignments(params)
        try:
            model_job = _jobset(settings, specs_dir).get(job)
        except UsageError:
            model_job = None
        values = P.validate(model_job, given) if model_job else given
        trigger(Client(settings), job, values, wait=wait, timeout=timeout, poll=poll, tail=tail, echo=click.echo)

    @main.group()
    def pipeline():
        """Run a generated pipeline's stages on this machine (what Jenkins runs)."""

    @pipeline.command("run")
    @click.argument("job")
    @click.option("--local", is_flag=True, required=True, help="run here (the only mode for now)")
    @_PARAM
    @click.option("--workspace", type=click.Path(path_type=Path), default=Path("."), show_default=True)
    @_SPECS_DIR
    @click.pass_obj
    def pipeline_run(settings, job, local, params, workspace, specs_dir):
        """Run JOB's stages in order, parameters as environment variables; stop at the first failure."""
        from release_manager.jenkins import params as P
        from release_manager.jenkins.runner import run_local
        j = _jobset(settings, specs_dir).get(job)
        run_local(j, P.parse_assignments(params), workspace, echo=click.echo)

    @pipeline.command("prepare")
    @click.argument("job")
    @click.option("--workspace", type=click.Path(path_type=Path), default=Path("."), show_default=True)
    @_SPECS_DIR
    @click.pass_obj
    def pipeline_prepare(settings, job, workspace, specs_dir):
        """First stage of every generated job: validate the parameters (from the environment), make
        the results/ and reports/ folders."""
        from release_manager.jenkins.runner import prepare
        j = _jobset(settings, specs_dir).get(job)
        prepare(j, os.environ, workspace, echo=click.echo, warn=lambda m: click.echo(m, err=True))

    @pipeline.command("show")
    @click.argument("job")
    @_SPECS_DIR
    @click.pass_obj
    def pipeline_show(settings, job, specs_dir):
        """Print JOB's Jenkinsfile."""
        from release_manager.jenkins.render import jenkinsfile
        click.echo(jenkinsfile(_jobset(settings, specs_dir).get(job)), nl=False)
