"""`relman layers`, `relman diff` and `relman status`: what is in the images and where every package stands.

Everything is read from the registry's v2 API (manifests, configs, layer blobs as streams) and the
release database; nothing is pulled or run. See docs/status.md.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from release_manager.errors import RelmanError


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

    @main.command("diff")
    @click.argument("image_a")
    @click.argument("image_b")
    @click.option("--json", "as_json", is_flag=True)
    @click.option("--limit", type=int, default=50, show_default=True,
                  help="files listed per kind (added, removed, changed) in the terminal view (0: all)")
    @click.pass_obj
    def diff_cmd(settings, image_a, image_b, as_json, limit):
        """What changed from IMAGE_A to IMAGE_B: labels, OS packages, files (with the layer they come from)."""
        from release_manager.imagediff import diff_images
        from release_manager.imagemeta import ImageReader
        reader = ImageReader(settings)
        a, b = (reader.image(reader.parse(x)) for x in (image_a, image_b))
        result = diff_images(reader, a, b)
        if as_json:
            click.echo(json.dumps(result, indent=2))
            return
        print_diff(result, limit)


    @main.command("status")
    @click.option("--json", "as_json", is_flag=True, help="the rows as JSON")
    @click.option("--html", "html_dir", type=click.Path(path_type=Path),
                  help="also write the static site (index.html, a page per package) into this folder")
    @click.option("--package", help="only this package")
    @click.pass_obj
    def status_cmd(settings, as_json, html_dir, package):
        """One row per package: platforms, readiness, latest images, verification, promotions, nightly, job."""
        import datetime as dt

        from release_manager.db.connection import for_settings
        from release_manager.db.queries import status_board
        from release_manager.spec import load_specs
        from release_manager.status import NIGHTLY_PREFIX, rows
        specs = load_specs(settings.specs_dir)
        with for_settings(settings).read() as s:
            # the terminal table needs no history: the database picks the shown images
            boards = status_board(s, latest_only=not (as_json or html_dir), nightly_prefix=NIGHTLY_PREFIX)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
        table = rows(settings, specs, boards, now, package)
        if html_dir is not None:
            from release_manager.status_site import write_site
            pages = write_site(table, boards, html_dir, now.isoformat() + "Z")
            click.echo(f"wrote {len(pages)} page(s) to {html_dir}", err=as_json)
        if as_json:
            click.echo(json.dumps(table, indent=2, default=str))
            return
        print_status(table)


def print_diff(d, limit=50):
    lay = d["layers"]
    click.echo(f"A {d['a']['image']}  {d['a']['digest'][:19]}  {d['a']['layers']} layers, {d['a']['files']} paths, "
               f"{_mb(d['a']['uncompressed'])}")
    click.echo(f"B {d['b']['image']}  {d['b']['digest'][:19]}  {d['b']['layers']} layers, {d['b']['files']} paths, "
               f"{_mb(d['b']['uncompressed'])}")
    click.echo(f"layers: {len(lay['shared'])} shared, {len(lay['only_a'])} only in A, {len(lay['only_b'])} only in B "
               f"({d['layers_streamed']} streamed from the registry, {d['layers_from_cache']} from the cache)")
    for section in ("labels", "packages"):
        part = d[section]
        if section == "packages":
            kinds = f"{part['kind_a']}" + (f" -> {part['kind_b']}" if part["kind_b"] != part["kind_a"] else "")
            counts = f", {part['count_a']} -> {part['count_b']} installed" if "count_a" in part else ""
            click.echo(f"packages ({kinds}{counts}):" + (f" {part['note']}" if part.get("note") else ""))
        else:
            click.echo("labels:")
        for mark, key in (("+", "added"), ("-", "removed"), ("~", "changed")):
            items = list((part.get(key) or {}).items())
            shown = items if not limit else items[:limit]
            for k, v in shown:
                click.echo(f"  {mark} {k} " + (f"{v[0]} -> {v[1]}" if key == "changed" else str(v)))
            if len(shown) < len(items):
                click.echo(f"  ... {len(items) - len(shown)} more {key} (--limit 0 or --json for all)")
    f = d["files"]
    click.echo(f"files: {len(f['added'])} added ({_mb(f['bytes_added'])}), {len(f['removed'])} removed "
               f"({_mb(f['bytes_removed'])}), {len(f['changed'])} changed")
    for mark, key in (("+", "added"), ("-", "removed")):
        rows = f[key] if not limit else f[key][:limit]
        for r in rows:
            click.echo(f"  {mark} {r['path']}  {r['size']} B  layer {r['layer']} {_short(r['layer_digest'])}")
        if len(rows) < len(f[key]):
            click.echo(f"  ... {len(f[key]) - len(rows)} more {key} (--limit 0 or --json for all)")
    rows = f["changed"] if not limit else f["changed"][:limit]
    for r in rows:
        click.echo(f"  ~ {r['path']}  {r['size_a']} -> {r['size_b']} B  ({', '.join(r['what'])})  "
                   f"layer {r['layer_a']} {_short(r['layer_digest_a'])} -> {r['layer_b']} {_short(r['layer_digest_b'])}")
    if len(rows) < len(f["changed"]):
        click.echo(f"  ... {len(f['changed']) - len(rows)} more changed (--limit 0 or --json for all)")


def nightly_diffs(settings, image_rows, echo=None):
    """`relman history PKG --diff`: the diff of each pair of consecutive nightlies (per variant)."""
    from release_manager.imagediff import consecutive, diff_images
    from release_manager.imagemeta import ImageReader
    reader = ImageReader(settings)
    out = []
    for old, new in consecutive(image_rows):
        pair = {"a": old["id"], "b": new["id"], "variant": new.get("variant")}
        try:
            a, b = (reader.image(reader.parse(f"{r['repository']}@{r['digest']}")) for r in (old, new))
            pair["diff"] = diff_images(reader, a, b)
        except RelmanError as exc:  # a nightly collected from the registry since: say so, go on
            pair["error"] = str(exc)
        out.append(pair)
        if echo:
            echo("")
            echo(f"=== nightly {old['id']} -> {new['id']} ({new.get('variant')}): "
                 f"{_nightly_tag(old)} -> {_nightly_tag(new)}")
            if "error" in pair:
                echo(f"  not comparable: {pair['error']}")
            else:
                print_diff(pair["diff"], limit=20)
    return out


def _nightly_tag(row):
    return next((t for t in row.get("tags") or [] if t.startswith("nightly-2")), "-")


def print_status(table):
    """The board: a rich table at a terminal, plain aligned columns in a pipe (greppable, no box drawing)."""
    import sys
    variants = sorted({v for r in table for v in r["latest"]})
    head = ["PACKAGE", "BUILD (AGENT)", "RUNS ON", "DEPS", "READY", *[v.upper() for v in variants], "PROMOTED",
            "NIGHTLY", "JOB"]
    lines = []
    for r in table:
        cells = [r["package"], f"{r.get('build_platform', '-')} ({r.get('agent_label', '-')})",
                 ",".join(r.get("run_platforms", [])) or "-", str(len(r.get("special_dependencies", []))),
                 "yes" if r.get("ready") else (f"{r['placeholders']} placeholders" if r.get("in_specs") else "-")]
        for v in variants:
            lt = r["latest"].get(v)
            ver = (lt or {}).get("verification")
            cells.append("-" if not lt else
                         f"{lt['tag']} {lt['digest_short'] or '-'} {_mb(lt['size'])} {(lt['date'] or '')[:10]} "
                         + (f"{ver['verdict']} {(ver.get('date') or '')[:10]}" if ver else "unverified")
                         + (f" +sif{' (signed)' if lt['sif']['signed'] else ''}" if lt.get("sif") else ""))
        n = r.get("nightly")
        chans = [f"{c}={m['tag']}" for c, m in r.get("channels", {}).items()]
        cells += [",".join(r["promoted_tags"] + chans) or "-",
                  f"{n['state']} {n['age_days']}d ({n['tag']})" if n else "-", r.get("jenkins_job") or "-"]
        lines.append(cells)
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table
        t = Table(pad_edge=False)
        for h in head:
            t.add_column(h, overflow="fold")
        for cells in lines:
            t.add_row(*cells)
        Console().print(t)
        return
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
    for cells in [head] + lines:
        click.echo("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
