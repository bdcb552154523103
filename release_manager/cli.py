"""The `relman` command line. Each command is a thin shell over a module that does the work."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import click

from release_manager.config import load_settings
from release_manager.errors import RelmanError


class _Group(click.Group):
    """Turns RelmanError into a one-line message and its exit code, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RelmanError as exc:
            click.echo(f"relman: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group)
@click.version_option(package_name="release_manager")
@click.pass_context
def main(ctx):
    """relman: build, verify, record and promote the Fermi LAT SAS container images."""
    ctx.obj = load_settings()


def _specs(settings, specs_dir: Optional[Path] = None):
    from release_manager.spec import load_specs
    return load_specs(specs_dir or settings.specs_dir)


# ---------------------------------------------------------------- specs

@main.group()
def specs():
    """Validate and list the image specs."""


@specs.command("check")
@click.option("--specs-dir", type=click.Path(path_type=Path), help="folder with platforms.yaml and the specs")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.pass_obj
def specs_check(settings, specs_dir, files):
    """Validate platforms.yaml and every package spec (or only FILES)."""
    from release_manager.spec import load_specs
    d = specs_dir or (files[0].parent if files else settings.specs_dir)
    loaded = load_specs(d, only=list(files) if files else None)
    for name, ls in sorted(loaded.packages.items()):
        ph = ls.spec.placeholders()
        note = f"; {len(ph)} placeholder(s) to fill before a real build" if ph else ""
        click.echo(f"ok  {name:16} {ls.path}  spec {ls.hash[:12]}  platform {ls.spec.build_platform}{note}")
        for path, value in ph:
            click.echo(f"      placeholder {path}: {value}")
    click.echo(f"{len(loaded.packages)} package spec(s) and {len(loaded.platforms)} platform(s) valid")


@specs.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def specs_list(settings, as_json):
    """List packages, their platforms and variants."""
    loaded = _specs(settings)
    rows = [{"package": n, "build_platform": s.spec.build_platform, "run_platforms": s.spec.run_platforms,
             "variants": s.spec.variants, "components": [c.name for c in s.spec.components],
             "agent": loaded.platforms[s.spec.build_platform].builder_label, "spec_hash": s.hash,
             "extends": s.spec.extends.model_dump() if s.spec.extends else None}
            for n, s in sorted(loaded.packages.items())]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['package']:16} {r['build_platform']:15} {r['agent']:15} {','.join(r['variants'])}"
                   + (f"  components: {','.join(r['components'])}" if r["components"] else "")
                   + (f"  on {r['extends']['package']} {r['extends']['ref']}" if r["extends"] else ""))


# ---------------------------------------------------------------- render

@main.command()
@click.argument("package")
@click.option("--variant", "variants", multiple=True, help="variant or component target (repeatable); default all")
@click.option("--out", type=click.Path(path_type=Path), help="folder to write into (default: print the Dockerfile)")
@click.option("--platform", help="render for this platform instead of the spec's (default: RELMAN_PLATFORM_OVERRIDES)")
@click.option("--digest", "digests", multiple=True, metavar="TARGET=sha256:...",
              help="registry digest of a pushed target: its Apptainer definition names the image by it (repeatable)")
@click.pass_obj
def render(settings, package, variants, out, platform, digests):
    """Render PACKAGE's Dockerfile, support files and Apptainer definitions."""
    from release_manager.plan import make_plan, platform_for
    from release_manager.render import render_package, write_files
    specs = _specs(settings)
    plan = make_plan(specs, package, platform_for(settings, specs, package, platform))
    pinned = {}
    for item in digests:
        name, sep, digest = item.partition("=")
        if not sep:
            raise click.UsageError(f"--digest {item!r}: expected TARGET=sha256:<64 hex digits>")
        pinned[name.strip()] = digest.strip()
    files = render_package(plan, settings.registry, settings.namespace, variants or None, digests=pinned)
    if out is None:
        click.echo(files["Dockerfile"], nl=False)
        return
    write_files(files, out)
    click.echo(f"wrote {len(files)} file(s) for {package} to {out}")


# ---------------------------------------------------------------- build

@main.command()
@click.argument("package")
@click.option("--ref", required=True, help="tag, branch or commit of the package repository")
@click.option("--variant", "variants", multiple=True, help="variant or component (repeatable); default: all")
@click.option("--push", is_flag=True, help="push to RELMAN_REGISTRY and confirm the digest")
@click.option("--force", is_flag=True, help="build even when an image with the same build key exists")
@click.option("--no-cache", is_flag=True,
              help="with --force: a cold build (the first variant without the engine's layer cache, the others on its layers)")
@click.option("--json", "as_json", is_flag=True, help="print the build results as JSON")
@click.option("--platform", help="build on this platform instead of the spec's build_platform (recorded in the "
                                 "labels and the database); default: RELMAN_PLATFORM_OVERRIDES")
@click.pass_obj
def build(settings, package, ref, variants, push, force, no_cache, as_json, platform):
    """Build PACKAGE at REF: every variant, checked, labelled, optionally pushed."""
    from release_manager.build import Builder
    results = Builder(settings, _specs(settings), echo=_progress(err=as_json)).build(
        package, ref, list(variants) or None, push=push, force=force, no_cache=no_cache, platform=platform)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in results], indent=2, default=str))
        return
    for r in results:
        size = f"{r.size / 1e6:.0f} MB" if r.size else "-"
        click.echo(f"{r.target:12} {r.status:8} {size:>8}  {r.repository}:{r.tags[0]}  {r.digest or r.image_id or ''}")
    sizes = {r.target: r.size for r in results if r.size}
    if "runtime" in sizes and "full" in sizes:
        click.echo(f"runtime/full size ratio: {sizes['runtime'] / sizes['full']:.2f}")


def _progress(err: bool = False):
    """Build output: at a terminal, steps stand out and command output is dimmed; in CI, plain lines."""
    import os
    stream = sys.stderr if err else sys.stdout
    if not stream.isatty() or os.environ.get("CI"):
        return lambda m: click.echo(m, err=err)

    def echo(m: str):
        if m.startswith("Step ") or m.startswith("---"):
            click.secho(m, bold=True, err=err)
        elif m.startswith(("check", "size", "pushed", "WARNING", "context")):
            click.secho(m, fg="red" if "FAIL" in m or "WARNING" in m else "green", err=err)
        else:
            click.secho("    " + m, dim=True, err=err)
    return echo


# ---------------------------------------------------------------- demo

@main.group()
def demo():
    """The demo package evtselect: its git repository and host build."""


@demo.command("init")
@click.pass_obj
def demo_init(settings):
    """Create the demo git repository (tags v1.0.0, v1.1.0) under the data folder."""
    from release_manager.demo import init_repo
    init_repo(settings.data_dir / "repos" / "evtselect", echo=click.echo)


@demo.command("host-build")
@click.option("--ref", default="v1.1.0")
@click.pass_obj
def demo_host_build(settings, ref):
    """Build evtselect on this machine: the bare-metal reference for verification."""
    from release_manager.demo import host_build
    from release_manager.validate import ref as validate_ref
    host_build(settings.data_dir / "repos" / "evtselect", validate_ref(ref),
               settings.data_dir / "host-build" / "evtselect", echo=click.echo)


@main.command("host-build")
@click.argument("package")
@click.option("--ref", help="tag, branch or commit of the package repository")
@click.option("--prefix", type=click.Path(path_type=Path), help="install prefix (default <data_dir>/host-build/PACKAGE)")
@click.option("--force", is_flag=True, help="build again even when the same inputs were built already")
@click.option("--platform", help="the platform whose packages this machine has (default: RELMAN_PLATFORM_OVERRIDES)")
@click.option("--list-missing", is_flag=True, help="only print the build OS packages this machine lacks")
@click.pass_obj
def host_build_cmd(settings, package, ref, prefix, force, platform, list_missing):
    """Build PACKAGE at REF on this machine with the image's recipe: the bare-metal reference."""
    from release_manager.hostbuild import host_build, missing_packages
    from release_manager.plan import make_plan, platform_for
    specs = _specs(settings)
    if list_missing:
        click.echo(" ".join(missing_packages(make_plan(specs, package, platform_for(settings, specs, package,
                                                                                      platform)))))
        return
    if not ref:
        raise click.UsageError("--ref is required (unless --list-missing)")
    from release_manager.build import Builder
    builder = Builder(settings, specs, echo=click.echo)
    builder.platform = platform
    host_build(builder, package, ref, prefix, force=force, echo=click.echo)


# ---------------------------------------------------------------- fermitools mirrors

@main.group()
def fermitools():
    """Local mirrors of the fermi-lat repositories (ScienceTools and its submodules)."""


@fermitools.command("init")
@click.option("--sources", type=click.Path(path_type=Path, file_okay=False),
              help="folder of the git bundles (default: ../shared/sources/fermitools beside the checkout)")
@click.option("--l1-sources", type=click.Path(path_type=Path, file_okay=False),
              help="folder of the L1 makeFT1 bundles (default: ../shared/sources/l1, used when present)")
@click.pass_obj
def fermitools_init(settings, sources, l1_sources):
    """Make the mirrors of the Fermitools subset (and the L1 makeFT1 packages) under the data folder (idempotent)."""
    from release_manager.fermitools import init_mirrors
    init_mirrors(settings.data_dir, Path(settings.specs_dir), sources, echo=click.echo, l1_sources=l1_sources)


from release_manager.commands import register_all  # noqa: E402

register_all(main)


@demo.command("run")
@click.option("--input", "input_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="FT1 file to select from (default: ../shared/data/fermi/ft1/3fhl-gc-events.fits.gz)")
@click.option("--demo-only", is_flag=True, help="the demo package alone, without the ScienceTools nightly")
@click.pass_obj
def demo_run(settings, input_file, demo_only):
    """The main job on embedded defaults: the demo package's nightly (build, verify, push, record), a run of
    its image, then the real ScienceTools nightly (Fermitools subset, verified against the host build)."""
    from release_manager.demo import run_demo, run_sciencetools
    specs = _specs(settings)
    report = run_demo(settings, specs, input_file, echo=_progress())
    if report.get("status") not in ("passed", "skipped"):
        raise RelmanError(f"the demo nightly ended {report.get('status')}: {report.get('message', '')}")
    if not demo_only:
        report = run_sciencetools(settings, specs, echo=_progress())
        if report.get("status") not in ("passed", "skipped"):
            raise RelmanError(f"the ScienceTools nightly ended {report.get('status')}: {report.get('message', '')}")


def run():  # pragma: no cover
    main(prog_name="relman")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
