"""`relman layers`, `relman diff` and `relman status`: what is in the images and where every package stands.

Everything is read from the registry's v2 API (manifests, configs, layer blobs as streams) and the
release database; nothing is pulled or run. See docs/status.md.
"""
from __future__ import annotations

import json
from pathlib import Path

import click


def _mb(n):
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def _short(d):
    return "-" if not d else d.split(":", 1)[-1][:12]


def register(main):
    @main.command("layers")
    @click.argument("images", nargs=-1)
    @click.option("--site", "site_file", type=click.Path(path_type=Path),
                  help="YAML site file: the images a farm's nodes hold (see image_specs/cache-plans/)")
    @click.option("--budget", help="pull budget per image (bytes, or e.g. 1GB, 800MiB); default 1GB or the site's")
    @click.option("--compressed-only", is_flag=True,
                  help="do not stream layers to learn uncompressed sizes (only sizes already cached are shown)")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def layers_cmd(settings, images, site_file, budget, compressed_only, as_json):
        """Layers of IMAGES (and of the --site images), which layers they share, and the cache plan of a node."""
        from release_manager.cacheplan import DEFAULT_BUDGET, load_site, parse_size, plan
        from release_manager.imagemeta import ImageReader
        refs = list(images)
        per_image = DEFAULT_BUDGET
        name = "command line"
        if site_file:
            site = load_site(site_file)
            refs = site.images + [r for r in refs if r not in site.images]
            per_image, name = site.budget_per_image, site.name
        if budget is not None:
            per_image = parse_size(budget, "--budget")
        if not refs:
            raise click.UsageError("give IMAGE arguments or --site FILE")
        reader = ImageReader(settings)
        parsed = [reader.parse(r) for r in refs]
        imgs = [reader.image(p) for p in parsed]
        if not compressed_only:
            for img in imgs:
                reader.ensure_sizes(img)
        result = plan(imgs, per_image, name)
        result["layers"] = {str(img.ref): [la.as_dict() for la in img.layers] for img in imgs}
        result["layers_streamed"] = len(reader.read_layers)
        if as_json:
            click.echo(json.dumps(result, indent=2))
            return
        _print_plan(result, imgs)
        if not result["within_budget"]:
            raise SystemExit(1)

    def _print_plan(result, imgs):
        shared = {s["digest"]: s for s in result["shared_layers"]}
        for img in imgs:
            click.echo(f"{img.ref}  {img.digest[:19]}  {img.platform}  {len(img.layers)} layer(s), "
                       f"{_mb(img.compressed)} compressed, {_mb(img.uncompressed)} uncompressed")
            for i, la in enumerate(img.layers):
                users = shared.get(la.digest, {}).get("images", [])
                note = f"  shared with {len(users) - 1} other image(s)" if users else ""
                click.echo(f"  {i:2} {_short(la.digest)} {_mb(la.size):>11} {_mb(la.uncompressed):>11}  "
                           f"{(la.created_by or '')[:60]}{note}")
        click.echo("")
        click.echo(f"cache plan for {result['site']}: {len(imgs)} image(s), {result['distinct_layers']} distinct "
                   f"layer(s), {len(result['shared_layers'])} shared")
        click.echo(f"{'IMAGE':60} {'PULL':>11} {'DISK':>11} {'MARGINAL':>11} {'SHARED':>6}")
        for r in result["images"]:
            flag = "  OVER BUDGET" if r["over_budget"] else ""
            click.echo(f"{r['image'][:60]:60} {_mb(r['compressed']):>11} {_mb(r['uncompressed']):>11} "
                       f"{_mb(r['marginal_compressed']):>11} {r['shared_layers']:>6}{flag}")
        click.echo(f"cold node pulls {_mb(result['cold_node_pull'])} (stores {_mb(result['cold_node_disk'])}); "
                   f"the images one by one would be {_mb(result['sum_of_images'])}")
        verdict = "within" if result["within_budget"] else "OVER"
        click.echo(f"budget: {_mb(result['budget_per_image'])} per image, {_mb(result['budget_total'])} in all: "
                   f"{verdict} budget")
        for a in result["advice"]:
            click.echo(f"advice: {a}")
