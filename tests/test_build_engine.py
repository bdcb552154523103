"""Builds on the real engine and registry (scripts/local-stack up): nothing here is mocked."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from astropy.io import fits

from release_manager import engine, tags
from release_manager.build import Builder
from release_manager.config import PROJECT_ROOT, load_settings
from release_manager.errors import BuildError, EngineError, RegistryError, UsageError
from release_manager.registry import Registry
from release_manager.spec import load_specs

from conftest import FT1_3FHL

AUTH_REGISTRY = "127.0.0.1:5001"
AUTH_USER, AUTH_PASSWORD = "relman-test", "relman-test-password"  # throw-away creds of scripts/local-stack


def variant_specs(tmp_path: Path, name: str, edit) -> object:
    """A copy of the evtselect spec under another package name, edited by `edit(text) -> text`."""
    d = tmp_path / "specs"
    d.mkdir(exist_ok=True)
    shutil.copy(PROJECT_ROOT / "image_specs" / "platforms.yaml", d)
    text = (PROJECT_ROOT / "image_specs" / "evtselect.yaml").read_text().replace("name: evtselect", f"name: {name}")
    (d / f"{name}.yaml").write_text(edit(text))
    return load_specs(d)


def quiet(_):
    pass


def test_variants_built_checked_and_pushed(demo_build):
    assert set(demo_build) == {"runtime", "debug", "full"}
    for target, r in demo_build.items():
        assert r.status in ("built", "skipped")
        assert r.pushed and r.digest.startswith("sha256:")
        if r.status == "built":
            assert r.checks and all(c["ok"] for c in r.checks), r.checks
    names = {c["name"] for c in demo_build["debug"].checks}
    if demo_build["debug"].status == "built":
        assert {"debug-files-by-build-id", "gdb-finds-symbols", "one-layer-over-runtime"} <= names


def test_debug_is_runtime_plus_one_layer(api, demo_build):
    rt = api.inspect_image(demo_build["runtime"].image_id)["RootFS"]["Layers"]
    dbg = api.inspect_image(demo_build["debug"].image_id)["RootFS"]["Layers"]
    assert dbg[:-1] == rt and len(dbg) == len(rt) + 1


def test_runtime_is_small(demo_build):
    ratio = demo_build["runtime"].size / demo_build["full"].size
    assert ratio <= 0.20, f"runtime is {ratio:.0%} of full"


def test_labels_read_back_from_registry_with_skopeo(demo_build, settings):
    r = demo_build["runtime"]
    ref = f"docker://{r.repository}:{r.tags[0]}"
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", ref], capture_output=True, text=True, check=True)
    labels = json.loads(out.stdout)["Labels"]
    for key in ("org.opencontainers.image.source", "org.opencontainers.image.revision", "org.opencontainers.image.version",
                "org.opencontainers.image.created", "org.opencontainers.image.title", "org.opencontainers.image.ref.name",
                "org.opencontainers.image.base.digest", "relman.package", "relman.variant", "relman.build-key",
                "relman.spec-hash", "relman.builder-host"):
        assert labels.get(key), f"label {key} empty or missing"
    assert labels["org.opencontainers.image.revision"] == r.commit
    assert labels["relman.build-key"] == r.build_key
    assert labels["relman.variant"] == "runtime"
    # the ref is part of the build key: a nightly of main on the same commit never lends its labels
    assert labels["org.opencontainers.image.ref.name"] == "v1.1.0"
    assert labels["org.opencontainers.image.version"] == "v1.1.0"


def test_full_image_runs_evtselect_on_3fhl(api, demo_build, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    rc, log = engine.run(api, demo_build["full"].image_id,
                         ["evtselect", "infile=/in/events.fits.gz", "outfile=/out/selected.fits",
                          "emin=20000", "emax=300000", "zmax=90"],
                         user="sas", binds={str(FT1_3FHL): {"bind": "/in/events.fits.gz", "mode": "ro"},
                                            str(out): {"bind": "/out", "mode": "rw"}})
    assert rc == 0, log
    with fits.open(out / "selected.fits") as sel, fits.open(FT1_3FHL) as src:
        n_sel, n_src = len(sel["EVENTS"].data), len(src["EVENTS"].data)
        assert 0 < n_sel < n_src
        e = sel["EVENTS"].data["ENERGY"]
        assert e.min() >= 20000 and e.max() <= 300000
        assert sel["EVENTS"].data["ZENITH_ANGLE"].max() <= 90
        assert "GTI" in [h.name for h in sel]


def test_image_pulled_back_by_digest_runs(api, demo_build):
    r = demo_build["runtime"]
    by_digest = f"{r.repository}@{r.digest}"
    for line in api.pull(by_digest, stream=True, decode=True):
        assert "error" not in line, line
    rc, out = engine.run(api, by_digest, ["evtselect", "--version"], user="sas")
    assert rc == 0 and "evtselect" in out


def test_package_manifest_written(demo_build):
    data = json.loads(Path(demo_build["runtime"].manifest_file).read_text())
    names = {p["name"] for p in data["packages"]}
    assert "libcfitsio10" in names and "g++" not in names


def test_result_json_written(demo_build, settings):
    p = settings.results_dir / "evtselect" / "v1.1.0" / "runtime.json"
    doc = json.loads(p.read_text())
    for k in ("package", "ref", "commit", "variant", "image_id", "digest", "tags", "size", "layers", "build_key",
              "labels", "manifest_file", "duration", "status"):
        assert k in doc


def test_unchanged_ref_is_skipped(settings, specs, demo_build, api):
    out = []
    again = Builder(settings, specs, echo=out.append, api=api).build("evtselect", "v1.1.0", ["runtime"], push=True)
    assert again[0].status == "skipped"
    assert again[0].build_key == demo_build["runtime"].build_key
    assert again[0].labels["relman.variant"] == "runtime" and again[0].size == demo_build["runtime"].size
    assert any("skipped" in line for line in out)


def test_fresh_agent_skips_from_registry(tmp_path, settings, demo_repo, api):
    specs = variant_specs(tmp_path, "evtskip", lambda t: t)
    b = Builder(settings, specs, echo=quiet, api=api)
    first = b.build("evtskip", "v1.0.0", ["runtime"], push=True)[0]
    assert first.status in ("built", "skipped") and first.pushed
    # a fresh agent: no local image carries the key
    for img in api.images(filters={"label": f"relman.build-key={first.build_key}"}):
        api.remove_image(img["Id"], force=True)
    again = b.build("evtskip", "v1.0.0", ["runtime"], push=True)[0]
    assert again.status == "skipped" and again.digest == first.digest


def test_cold_build_of_several_variants_layers_debug_on_this_runtime(tmp_path, settings, demo_repo, api):
    """--no-cache builds the first target cold; debug then sits on the runtime image just built (its
    one-layer-over-runtime check failed when every target was built without the cache)."""
    specs = variant_specs(tmp_path, "evtcold", lambda t: t)
    res = Builder(settings, specs, echo=quiet, api=api).build("evtcold", "v1.1.0", ["runtime", "debug"],
                                                              force=True, no_cache=True)
    assert [r.status for r in res] == ["built", "built"]
    assert all(c["ok"] for r in res for c in r.checks), [r.checks for r in res]
    rt = api.inspect_image(res[0].image_id)["RootFS"]["Layers"]
    assert api.inspect_image(res[1].image_id)["RootFS"]["Layers"][:-1] == rt


def test_debug_sits_on_the_runtime_image_even_with_a_newer_chain_in_the_cache(tmp_path, settings, demo_repo, api):
    """The engine's cache picks the newest of two cached chains of the same steps. After a cold build
    of another ref (a second, newer chain from the base up), a debug build whose runtime is found by
    its key must still extend that runtime image, not a runtime stage rebuilt on the newer chain
    (54 errors in a full run at stop 19, before the debug stage took the runtime image by id)."""
    specs = variant_specs(tmp_path, "evtpin", lambda t: t)
    b = Builder(settings, specs, echo=quiet, api=api)
    runtime = b.build("evtpin", "v1.1.0", ["runtime"], force=True)[0]
    other = b.build("evtpin", "v1.0.0", ["runtime"], force=True, no_cache=True)[0]
    rt = api.inspect_image(runtime.image_id)["RootFS"]["Layers"]
    cold = api.inspect_image(other.image_id)["RootFS"]["Layers"]
    # the common layers (base, runtime packages, user) are the engine's pinned ones; above them the cold build
    # made its own chain of every step
    assert cold[:3] == rt[:3] and cold[3:] != rt[3:], "the cold build shared layers above the common ones"
    lines: list = []
    # debug alone, as the Jenkins build-debug job asks: its runtime is added, found by its key, and extended
    res = Builder(settings, specs, echo=lines.append, api=api).build("evtpin", "v1.1.0", ["debug"])
    assert [(r.variant, r.status) for r in res] == [("runtime", "skipped"), ("debug", "built")]
    assert any("runtime added" in line for line in lines), lines
    assert res[0].image_id == runtime.image_id
    assert all(c["ok"] for c in res[1].checks), res[1].checks
    assert api.inspect_image(res[1].image_id)["RootFS"]["Layers"][:-1] == rt


def test_the_common_layers_stay_shared_after_a_cold_build_in_between(tmp_path, settings, demo_repo, api):
    """A cold build makes a newer cached chain of every step, and the classic builder takes the newest: before
    the common stage was pinned, every later build (of any spec with the same runtime packages) sat on the cold
    chain, sharing only the base image's layer with the images built before it (the L1 image and the ScienceTools
    image of the same session: 1 shared layer of 3). Now they keep sharing the base, runtime-packages and user
    layers."""
    specs = variant_specs(tmp_path, "evtshare", lambda t: t)
    b = Builder(settings, specs, echo=quiet, api=api)
    first = b.build("evtshare", "v1.1.0", ["runtime"], force=True)[0]
    b.build("evtshare", "v1.0.0", ["runtime"], force=True, no_cache=True)
    lines: list = []
    later = Builder(settings, specs, echo=lines.append, api=api).build("evtshare", "v1.0.0", ["runtime"], force=True,
                                                                       tag_prefix="later")[0]
    a, c = (api.inspect_image(r.image_id)["RootFS"]["Layers"] for r in (first, later))
    assert c[:3] == a[:3], "the common layers differ after a cold build"
    assert any(line.startswith("common layers: relman/common-layers:") for line in lines), lines
    # and the demo's own image (another spec, the same runtime packages) starts with them too
    from release_manager.build import COMMON_REPOSITORY
    pinned = [t for t in api.inspect_image(first.image_id)["RootFS"]["Layers"][:3]]
    commons = [img for img in api.images(name=COMMON_REPOSITORY)]
    assert any(api.inspect_image(img["Id"])["RootFS"]["Layers"] == pinned for img in commons)


def test_a_debug_image_left_on_a_replaced_runtime_is_built_again(tmp_path, settings, demo_repo, api):
    """One key can name two runtime images: a cold build of runtime (the benchmark makes one) tags new layers
    with the key and leaves the debug image of that key on the runtime it replaced. A later build found both by
    their keys and skipped debug: its one-layer-over-runtime check failed (CI of stop 21, ScienceTools and L1).
    Now such a debug image is built again, whether it is found on this engine or only in the registry."""
    specs = variant_specs(tmp_path, "evtstale", lambda t: t)
    b = Builder(settings, specs, echo=quiet, api=api)
    first = b.build("evtstale", "v1.1.0", ["runtime", "debug"], push=True, force=True)
    for where in ("local", "registry"):
        cold = b.build("evtstale", "v1.1.0", ["runtime"], push=True, force=True, no_cache=True)[0]
        assert cold.build_key == first[0].build_key and cold.image_id != first[0].image_id
        if where == "registry":   # the stale debug image only in the registry (built on another agent)
            api.remove_image(first[1].image_id, force=True)
        lines: list = []
        res = Builder(settings, specs, echo=lines.append, api=api).build("evtstale", "v1.1.0", ["runtime", "debug"],
                                                                        push=True)
        assert [(r.variant, r.status) for r in res] == [("runtime", "skipped"), ("debug", "built")], (where, lines)
        assert any("not over this runtime image" in line and f", {where})" in line for line in lines), lines
        assert res[0].image_id == cold.image_id and all(c["ok"] for c in res[1].checks), res[1].checks
        assert api.inspect_image(res[1].image_id)["RootFS"]["Layers"][:-1] == \
            api.inspect_image(cold.image_id)["RootFS"]["Layers"]
        first = res
    # and with nothing replaced, the next build skips both
    again = Builder(settings, specs, echo=quiet, api=api).build("evtstale", "v1.1.0", ["runtime", "debug"])
    assert [r.status for r in again] == ["skipped", "skipped"] and again[1].image_id == first[1].image_id


def test_debug_built_on_a_runtime_only_in_the_registry_extends_the_pushed_image(tmp_path, settings, demo_repo, api):
    """Runtime pushed from another agent (not on this engine): the debug build pulls it and extends it,
    so a node that has the runtime pulls one layer more for debug."""
    specs = variant_specs(tmp_path, "evtpull", lambda t: t)
    pushed = Builder(settings, specs, echo=quiet, api=api).build("evtpull", "v1.1.0", ["runtime"], push=True,
                                                                 force=True)[0]
    rt = api.inspect_image(pushed.image_id)["RootFS"]["Layers"]
    api.remove_image(pushed.image_id, force=True)
    lines: list = []
    res = Builder(settings, specs, echo=lines.append, api=api).build("evtpull", "v1.1.0", ["runtime", "debug"])
    assert [r.status for r in res] == ["skipped", "built"] and res[0].digest == pushed.digest
    assert any("pulling" in line and pushed.digest in line for line in lines), lines
    assert all(c["ok"] for c in res[1].checks), res[1].checks
    assert "one-layer-over-runtime" in {c["name"] for c in res[1].checks}
    assert api.inspect_image(res[1].image_id)["RootFS"]["Layers"][:-1] == rt


def test_unknown_ref_fails_before_any_build(settings, specs, demo_repo, api):
    with pytest.raises(UsageError, match="ref 'v9.9.9' not found"):
        Builder(settings, specs, echo=quiet, api=api).build("evtselect", "v9.9.9")


@pytest.mark.parametrize("ref", ["; rm -rf /", "$(id)", "`id`", "-rf", "a..b", "v1\nv2"])
def test_hostile_ref_refused(settings, specs, demo_repo, api, ref):
    with pytest.raises(UsageError, match="not a valid git ref"):
        Builder(settings, specs, echo=quiet, api=api).build("evtselect", ref)


def test_failing_step_fails_with_the_step_shown_and_nothing_tagged(tmp_path, settings, demo_repo, api):
    specs = variant_specs(tmp_path, "evtfail", lambda t: t.replace("    - make -j2\n", "    - make -j2\n    - test -e /no/such/file\n"))
    with pytest.raises(BuildError) as exc:
        Builder(settings, specs, echo=quiet, api=api).build("evtfail", "v1.1.0", ["runtime"])
    msg = str(exc.value)
    assert "test -e /no/such/file" in msg and "build failed at Step" in msg
    assert not api.images(name=f"{settings.registry}/{settings.namespace}/evtfail")


def test_over_budget_fails_and_untags(tmp_path, settings, demo_repo, api):
    specs = variant_specs(tmp_path, "evtbudget", lambda t: t.replace("runtime: {max: 150MB, on_exceed: fail}",
                                                                     "runtime: {max: 10MB, on_exceed: fail}"))
    with pytest.raises(BuildError, match="over budget"):
        Builder(settings, specs, echo=quiet, api=api).build("evtbudget", "v1.1.0", ["runtime"])
    assert not api.images(name=f"{settings.registry}/{settings.namespace}/evtbudget")


def test_push_with_credentials_to_auth_registry(tmp_path, demo_repo, api, capsys):
    base = load_settings(data_dir=demo_repo.parent.parent, registry=AUTH_REGISTRY)
    specs = variant_specs(tmp_path, "evtauth", lambda t: t)
    with pytest.raises(RegistryError):  # no credentials: refused, nothing reported as pushed
        Builder(base, specs, echo=quiet, api=api).build("evtauth", "v1.1.0", ["runtime"], push=True, force=True)
    authed = load_settings(data_dir=demo_repo.parent.parent, registry=AUTH_REGISTRY,
                           registry_user=AUTH_USER, registry_password=AUTH_PASSWORD)
    lines = []
    res = Builder(authed, specs, echo=lines.append, api=api).build("evtauth", "v1.1.0", ["runtime"], push=True)[0]
    assert res.pushed
    reg = Registry(AUTH_REGISTRY, credentials=None)
    r = requests.head(f"http://{AUTH_REGISTRY}/v2/fermi-lat/evtauth/manifests/{res.tags[0]}", auth=(AUTH_USER, AUTH_PASSWORD),
                      headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert r.headers["Docker-Content-Digest"] == res.digest
    assert AUTH_PASSWORD not in "\n".join(lines) + capsys.readouterr().out + json.dumps(res.as_dict())
    del reg


def test_unreachable_registry(tmp_path, demo_repo, api):
    s = load_settings(data_dir=demo_repo.parent.parent, registry="127.0.0.1:5999", push_retries=2)
    specs = variant_specs(tmp_path, "evtnoreg", lambda t: t)
    with pytest.raises(RegistryError, match="unreachable after 2 attempt"):
        Builder(s, specs, echo=quiet, api=api).build("evtnoreg", "v1.1.0", ["runtime"], push=True)


def test_engine_not_running_says_how_to_start_it(tmp_path):
    s = load_settings(data_dir=tmp_path, docker_host="unix:///nonexistent/docker.sock")
    with pytest.raises(EngineError, match="local-stack up"):
        engine.connect(s)


@pytest.mark.parametrize("bad", ["", "-x", "a" * 129, "v1;rm", "a b", "ä"])
def test_tag_grammar(bad):
    with pytest.raises(UsageError):
        tags.check_tag(bad)


def test_tag_scheme():
    import datetime as dt
    assert tags.release_tag("GlastRelease-20-10-04-gr07", "runtime") == "GlastRelease-20-10-04-gr07-runtime"
    assert tags.nightly_tag(dt.date(2026, 11, 27), "debug") == "nightly-20261127-debug"
    assert tags.debug_tag("alice", "v1.1.0") == "dev-alice-v1.1.0-debug"
    with pytest.raises(UsageError):
        tags.debug_tag("alice;id", "v1")
