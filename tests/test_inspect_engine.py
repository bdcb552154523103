"""`relman layers` and `relman diff` on the real engine and registry: the demo images (evtselect), two
nightlies of a clone of the demo that differ by a one-line code change, an image with whiteouts checked
against what the engine itself exports, and the ScienceTools runtime image next to the demo's."""
from __future__ import annotations

import io
import json
import tarfile
import uuid

import pytest
from click.testing import CliRunner

from test_workflows_helpers import drop_repository, own_package

from release_manager.cli import main
from release_manager.demo import add_commit
from release_manager.imagediff import diff_images, merge
from release_manager.imagemeta import ImageReader

TASK = "t13"


def cli(settings, *args):
    import os
    os.environ["RELMAN_DATA_DIR"] = str(settings.data_dir)
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r


@pytest.fixture(scope="module")
def two_nightlies(tmp_path_factory, demo_repo, settings, api):
    """A clone of the demo built twice: at its head, then after a one-line code change. Both pushed."""
    from release_manager.build import Builder
    name = f"{TASK}d{uuid.uuid4().hex[:6]}"
    repo, specs = own_package(tmp_path_factory.mktemp("pkg"), demo_repo, name)
    builder = Builder(settings, specs, echo=lambda m: None, api=api)
    first = builder.build(name, "main", ["runtime"], push=True)[0]
    add_commit(repo, "src/evtselect.cxx", '\n__attribute__((used)) static const char nightly_b[] = "nightly B";\n',
               "one-line change", "2026-11-02T03:00:00+00:00")
    second = builder.build(name, "main", ["runtime"], push=True)[0]
    yield {"name": name, "a": first, "b": second, "path": f"fermi-lat/{name}"}
    drop_repository(settings, f"fermi-lat/{name}", api)


def _ref(result):
    return f"{result.repository}@{result.digest}"


def test_one_line_change_is_one_changed_file_in_one_layer(two_nightlies, settings, tmp_path):
    a, b = two_nightlies["a"], two_nightlies["b"]
    assert a.digest != b.digest
    reader = ImageReader(settings, cache_dir=tmp_path / "cache")
    ia, ib = reader.image(reader.parse(_ref(a))), reader.image(reader.parse(_ref(b)))
    d = diff_images(reader, ia, ib)
    files = d["files"]
    assert files["added"] == [] and files["removed"] == []
    assert [f["path"] for f in files["changed"]] == ["/opt/evtselect/bin/evtselect"]
    changed = files["changed"][0]
    assert changed["what"][-1] == "content" and changed["layer_digest_b"] in d["layers"]["only_b"]
    assert d["packages"]["kind_a"] == "dpkg" and d["packages"]["added"] == d["packages"]["removed"] == {}
    assert d["packages"]["changed"] == {} and d["packages"]["count_a"] > 50
    old_rev, new_rev = d["labels"]["changed"]["org.opencontainers.image.revision"]
    assert old_rev != new_rev and len(new_rev) == 40
    assert len(d["layers"]["shared"]) >= 3  # the base, the OS packages, the user
    assert d["layers_streamed"] == len(set(d["layers"]["shared"]) | set(d["layers"]["only_a"]) |
                                       set(d["layers"]["only_b"]))
    # a second diff reads nothing from the registry, and agrees
    again = ImageReader(settings, cache_dir=tmp_path / "cache")
    d2 = diff_images(again, again.image(again.parse(_ref(a))), again.image(again.parse(_ref(b))))
    assert again.read_layers == [] and d2["files"] == d["files"]


def test_cli_diff_and_history_between_nightlies(two_nightlies, settings, tmp_path, monkeypatch):
    from release_manager.db import connect, migrate, record_build
    a, b = two_nightlies["a"], two_nightlies["b"]
    r = cli(settings, "diff", _ref(a), _ref(b))
    assert r.exit_code == 0, r.output
    assert "files: 0 added (0.0 MB), 0 removed (0.0 MB), 1 changed" in r.output
    assert "~ /opt/evtselect/bin/evtselect" in r.output
    # the same pair recorded as two nightlies: `relman history --diff` offers that diff
    url = f"sqlite:///{tmp_path / 'relman.db'}"
    db = connect(url, fresh=True)
    migrate.upgrade(db)
    for res, day in ((a, "20261101"), (b, "20261102")):
        doc = res.as_dict()
        doc["tags"] = [f"nightly-{day}-runtime"] + list(doc["tags"])
        doc["started"] = f"{day[:4]}-{day[4:6]}-{day[6:]}T03:00:00Z"
        record_build(doc, db=db)
    db.dispose()
    monkeypatch.setenv("RELMAN_DB_URL", url)
    r = cli(settings, "history", two_nightlies["name"], "--diff", "--json")
    assert r.exit_code == 0, r.output
    pairs = json.loads(r.output)["nightly_diffs"]
    assert len(pairs) == 1 and "error" not in pairs[0]
    assert [f["path"] for f in pairs[0]["diff"]["files"]["changed"]] == ["/opt/evtselect/bin/evtselect"]
    r = cli(settings, "history", two_nightlies["name"], "--diff")
    assert "=== nightly" in r.output and "nightly-20261101-runtime -> nightly-20261102-runtime" in r.output


@pytest.fixture(scope="module")
def whiteout_image(settings, api):
    """An image whose last layers delete a file and replace a folder (a whiteout and an opaque folder)."""
    repo = f"{settings.registry}/{settings.namespace}/{TASK}-whiteout"
    dockerfile = ("FROM relman/debian-base:bookworm\n"
                  "RUN rm /etc/debian_version && mkdir -p /srv/keep /srv/gone && touch /srv/keep/a /srv/gone/b\n"
                  "RUN rm -rf /srv/gone /usr/share/doc && mkdir /usr/share/doc && echo new > /usr/share/doc/NEW\n")
    lines = list(api.build(fileobj=io.BytesIO(dockerfile.encode()), tag=f"{repo}:w", rm=True, decode=True))
    lines += list(api.push(repo, tag="w", stream=True, decode=True))
    assert not [x for x in lines if "error" in x], lines[-3:]
    yield f"{repo}:w"
    drop_repository(settings, f"{settings.namespace}/{TASK}-whiteout")
    api.remove_image(f"{repo}:w", force=True, noprune=True)


def test_whiteouts_match_what_the_engine_exports(whiteout_image, settings, api, tmp_path):
    reader = ImageReader(settings, cache_dir=tmp_path / "cache")
    img = reader.image(reader.parse(whiteout_image))
    from release_manager.imagediff import load_indexes
    tree = merge(img, load_indexes(reader, [img]))
    raw = [e[0] for la in img.layers for e in reader.layer_index(img, la)["entries"]]
    assert any(p.endswith(".wh.debian_version") for p in raw)  # the layers really carry whiteouts
    # the engine's own view: the file system of a created (never started) container
    c = api.create_container(whiteout_image, command=["true"])
    try:
        stream = api.export(c["Id"])
        data = io.BytesIO(b"".join(stream))
    finally:
        api.remove_container(c["Id"], force=True)
    with tarfile.open(fileobj=data) as tf:
        exported = {m.name.rstrip("/") for m in tf.getmembers()}
    made_by_create = {".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab", "dev", "proc",
                      "sys"}
    exported = {p for p in exported if p.split("/")[0] not in ("dev", "proc", "sys") and p not in made_by_create}
    mine = {p for p in tree if p.split("/")[0] not in ("dev", "proc", "sys") and p not in made_by_create}
    assert mine == exported
    assert "etc/debian_version" not in mine and "srv/gone" not in mine and "srv/keep/a" in mine
    assert [p for p in mine if p.startswith("usr/share/doc/")] == ["usr/share/doc/NEW"]


def test_diff_reports_whiteouts_as_removals(whiteout_image, settings, tmp_path):
    r = cli(settings, "diff", "--json", f"{settings.registry}/{settings.namespace}/evtselect:v1.1.0-runtime",
            whiteout_image)
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    removed = {f["path"] for f in d["files"]["removed"]}
    assert "/etc/debian_version" in removed and "/usr/share/doc/bash/copyright" in removed
    assert "/usr/share/doc/NEW" in {f["path"] for f in d["files"]["added"]}


def test_layers_cache_plan_of_demo_and_sciencetools(demo_build, sciencetools_build, settings):
    demo, st = demo_build["runtime"], sciencetools_build["runtime"]
    refs = [_ref(demo), _ref(demo_build["full"]), _ref(st)]
    r = cli(settings, "layers", "--json", *refs)
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output)
    rows = {row["image"].split("@")[0].rsplit("/", 1)[1]: row for row in plan["images"]}
    assert set(rows) == {"evtselect", "sciencetools"} and len(plan["images"]) == 3
    layers = plan["layers"]
    all_layers = {la["digest"]: la for ls in layers.values() for la in ls}
    assert plan["distinct_layers"] == len(all_layers)
    assert plan["cold_node_pull"] == sum(la["size"] for la in all_layers.values())
    assert plan["cold_node_disk"] == sum(la["uncompressed"] for la in all_layers.values())
    assert plan["cold_node_pull"] < plan["sum_of_images"]  # the base is pulled once
    runtime_layers = {la["digest"] for la in layers[[k for k in layers if demo.digest in k][0]]}
    full_layers = {la["digest"] for la in layers[[k for k in layers if demo_build["full"].digest in k][0]]}
    st_layers = {la["digest"] for la in layers[[k for k in layers if st.digest in k][0]]}
    assert runtime_layers & full_layers & st_layers  # the common Debian base
    marginal = {r["image"]: r["marginal_compressed"] for r in plan["images"]}
    for img, own in ((_ref(st), st_layers), (_ref(demo), runtime_layers)):
        key = next(k for k in marginal if img.split("@")[1] in k)
        assert marginal[key] == sum(all_layers[d]["size"] for d in own - {
            x for k, ls in layers.items() if k != key for x in (la["digest"] for la in ls)})
    assert plan["within_budget"] is True
    # the same images against a budget they exceed: exit 1, said in the advice
    r = cli(settings, "layers", "--budget", "20MB", *refs)
    assert r.exit_code == 1 and "OVER budget" in r.output and "advice:" in r.output


def test_uncompressed_sizes_match_the_engine(demo_build, settings, api, tmp_path):
    reader = ImageReader(settings, cache_dir=tmp_path / "cache")
    img = reader.image(reader.parse(_ref(demo_build["runtime"])))
    reader.ensure_sizes(img)
    inspected = api.inspect_image(f"{demo_build['runtime'].repository}@{demo_build['runtime'].digest}")
    assert [la.diff_id for la in img.layers] == inspected["RootFS"]["Layers"]
    # the engine's size is the sum of the layers' file bytes; the tar streams are larger (headers, padding)
    assert inspected["Size"] <= img.uncompressed < inspected["Size"] * 1.1


def test_bad_references_are_refused(settings):
    r = cli(settings, "diff", "evtselect", "evtselect:v1.1.0-runtime")
    assert r.exit_code == 2 and "give a tag or digest" in r.output
    r = cli(settings, "layers", "evtselect:no-such-tag-t13")
    assert r.exit_code == 1 and "not found in the registry" in r.output
    r = cli(settings, "diff", "evtselect@sha256:1234", "evtselect:v1.1.0-runtime")
    assert r.exit_code == 2 and "sha256:<64 hex digits>" in r.output
