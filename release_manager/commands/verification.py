"""`relman verify` and `relman compare`: science verification of an image against a reference.

Exit codes: 0 pass, 1 fail, 2 usage or spec error (missing reference, uncovered output, unreadable
file, a rule naming a column that does not exist).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import click


def _print_outcome(outcome, paths=None, verbose=False):
    counts = outcome.counts()
    for c in outcome.checks:
        if c.result != "pass" or verbose:
            tag = {"fail": "FAIL", "warning": "WARN", "known": "KNOWN", "pass": "ok"}[c.result]
            where = " ".join(p for p in (c.file, c.hdu, c.column) if p)
            click.echo(f"{tag:5} {where} [{c.test}] {c.message}"
                       + (f" (known difference: {c.known_reason})" if c.known_reason else ""))
    for s in outcome.steps:
        mem = f"{s['peak_memory_bytes'] / 1e6:.1f} MB" if s.get("peak_memory_bytes") else "-"
        click.echo(f"step  {s['side']:9} {s['step']}: exit {s['exit_code']}, {s['wall_seconds']:.3f} s, "
                   f"peak memory {mem} ({s['memory_source']})")
    for kind, p in (paths or {}).items():
        click.echo(f"report {kind}: {p}")
    click.echo(f"verdict: {outcome.verdict.upper()} ({counts['pass']} pass, {counts['warning']} warning, "
               f"{counts['fail']} fail, {counts['known']} known)")


def register(main):
    @main.command("verify")
    @click.argument("package")
    @click.option("--image", "image", required=True,
                  help="image reference, or a tag of the package's repository (e.g. v1.1.0-runtime)")
    @click.option("--report", "report", type=click.Path(path_type=Path),
                  help="folder for outputs, logs and reports (default: <data_dir>/results/<package>/verify/<time>)")
    @click.option("--no-html", is_flag=True, help="skip the HTML report (JUnit and JSON are always written)")
    @click.option("-v", "--verbose", is_flag=True, help="list passing checks too")
    @click.option("--apptainer", is_flag=True,
                  help="also run the workload with `apptainer exec --containall` from a SIF of the image; its "
                       "outputs must equal the Docker run's (needs scripts/farm/apptainer-image)")
    @click.pass_obj
    def verify_cmd(settings, package, image, report, no_html, verbose, apptainer):
        """Run PACKAGE's verification workload in IMAGE and in the reference, and compare the outputs."""
        from release_manager.spec import load_specs
        from release_manager.verify.report import write_reports
        from release_manager.verify.runner import verify_package
        specs = load_specs(settings.specs_dir)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        workdir = report or settings.results_dir / package / "verify" / stamp
        outcome = verify_package(settings, specs, package, image, workdir, echo=click.echo, plots=not no_html,
                                 apptainer=apptainer)
        paths = write_reports(outcome, workdir, html=not no_html)
        _print_outcome(outcome, paths, verbose)
        raise SystemExit(outcome.exit_code)

    @main.command("compare")
    @click.argument("reference", type=click.Path(path_type=Path))
    @click.argument("candidate", type=click.Path(path_type=Path))
    @click.option("--rules", "rules_file", type=click.Path(path_type=Path),
                  help="YAML list of rules (pattern, comparator, ...); default: reproducible, exact integers, "
                       "floats within 4 ULPs")
    @click.option("--mode", type=click.Choice(["reproducible", "statistical"]),
                  help="without --rules: compare row by row (a deterministic rerun) or as distributions "
                       "(a rerun with other seeds, family-wise false-alarm rate 1%)")
    @click.option("--profile", type=click.Choice(["ft1", "ft2", "merit"]),
                  help="without --rules: the documented LAT column tolerances (times in s, angles in deg)")
    @click.option("--report", "report", type=click.Path(path_type=Path), help="folder for JUnit, JSON and HTML")
    @click.option("-v", "--verbose", is_flag=True, help="list passing checks too")
    @click.pass_obj
    def compare_cmd(settings, reference, candidate, rules_file, mode, profile, report, verbose):
        """Compare REFERENCE with CANDIDATE: two files or two folders."""
        from release_manager.errors import UsageError
        from release_manager.verify.compare import compare_paths
        from release_manager.verify.report import write_reports
        from release_manager.verify.rules import default_rules, load_rules_file
        if rules_file and (mode or profile):
            raise UsageError("--mode and --profile apply to the default rules: with --rules, say them in the "
                             f"rules file {rules_file} (mode:, profile:)")
        rules = load_rules_file(rules_file) if rules_file else default_rules()
        if mode or profile:
            rules = [r.model_copy(update={k: v for k, v in (("mode", mode), ("profile", profile)) if v})
                     if r.comparator in ("fits", "root") else r for r in rules]
        outcome = compare_paths(reference, candidate, rules, plots=report is not None)
        outcome.title = f"{reference} vs {candidate}"
        paths = write_reports(outcome, report) if report else {}
        _print_outcome(outcome, paths, verbose)
        raise SystemExit(outcome.exit_code)
