"""`relman sif PACKAGE --image TAG [--sign] [--push] [--json]`: a SIF built by Apptainer from the pushed
image (by digest), signed, pushed as an ORAS artifact and recorded. The work is in release_manager.sif."""
from __future__ import annotations

import json
from pathlib import Path

import click


def register(main):
    @main.command("sif")
    @click.argument("package")
    @click.option("--image", "image", required=True,
                  help="tag of the package's repository in the registry (e.g. v1.1.0-runtime), or sha256:DIGEST")
    @click.option("--sign", is_flag=True, help="sign with the PEM key of RELMAN_SIF_SIGNING_KEY")
    @click.option("--push", is_flag=True, help="push to oras://<registry>/<namespace>/PACKAGE:<TAG>-sif")
    @click.option("--out", type=click.Path(path_type=Path),
                  help="where to write the SIF (default: <data_dir>/results/PACKAGE/sif/<TAG>.sif)")
    @click.option("--no-record", is_flag=True, help="do not record the SIF in the release database")
    @click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
    @click.pass_obj
    def sif_cmd(settings, package, image, sign, push, out, no_record, as_json):
        """Build PACKAGE's SIF from IMAGE (pushed; pinned by its registry digest) with Apptainer."""
        from release_manager.sif import build_sif
        from release_manager.spec import load_specs
        specs = load_specs(settings.specs_dir)
        echo = (lambda m: click.echo(m, err=True)) if as_json else click.echo
        res = build_sif(settings, specs, package, image, sign=sign, push=push, out=out, record=not no_record,
                        echo=echo)
        if as_json:
            click.echo(json.dumps(res.as_dict(), indent=2))
            return
        ratio = f" (image layers {res.image_compressed_bytes / 1e6:.1f} MB compressed)" \
            if res.image_compressed_bytes else ""
        click.echo(f"sif: {res.path}\n  from:      {res.source}\n  sha256:    {res.sha256}\n"
                   f"  size:      {res.size / 1e6:.1f} MB{ratio}\n  apptainer: {res.apptainer_version}, "
                   f"built in {res.build_seconds:.1f} s")
        if res.signer:
            click.echo(f"  signer:    {res.signer} (verify: apptainer verify --key {res.public_key} SIF)")
        if res.registry_ref:
            click.echo(f"  pushed:    {res.registry_ref} ({res.registry_digest})")
        if res.record:
            click.echo(f"  recorded:  sif {res.record} (relman images show {res.image_digest[:19]})")
