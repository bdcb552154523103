"""The build key is made of what the build uses: each spec (and platform) field changed in turn, the key
changes for exactly the build inputs, and stays for the cron, notes, rules, Jenkins settings, builder
label and descriptions. A target's key covers its own stages only: adding the env variant rebuilds no
runtime image."""
from __future__ import annotations

import copy
import shutil

import pytest
import yaml

from release_manager.build import Upstream, build_key, common_key, stage_closure
from release_manager.config import PROJECT_ROOT
from release_manager.plan import make_plan
from release_manager.render import render_dockerfile, support_files
from release_manager.sources import Revision
from release_manager.spec import load_specs

REV = Revision("https://example.org/evtselect.git", "v1.1.0", "a" * 40, "b" * 40, "tag", "v1.1.0")
BASE = "sha256:" + "c" * 64


def _keys(tmp_path, edit_spec=None, edit_platforms=None, name="k"):
    d = tmp_path / name
    d.mkdir()
    spec = yaml.safe_load((PROJECT_ROOT / "image_specs" / "evtselect.yaml").read_text())
    plats = yaml.safe_load((PROJECT_ROOT / "image_specs" / "platforms.yaml").read_text())
    if edit_spec:
        edit_spec(spec)
    if edit_platforms:
        edit_platforms(plats)
    (d / "evtselect.yaml").write_text(yaml.safe_dump(spec))
    (d / "platforms.yaml").write_text(yaml.safe_dump(plats))
    plan = make_plan(load_specs(d), "evtselect")
    dockerfile, support = render_dockerfile(plan), support_files(plan)
    return {t.name: build_key(dockerfile, support, REV, BASE, t) for t in plan.targets}


def _set(path, value):
    def edit(doc):
        cur = doc
        for p in path[:-1]:
            cur = cur.setdefault(p, {})
        cur[path[-1]] = copy.deepcopy(value)
    return edit


NOT_BUILD_INPUTS = {
    "cron": _set(("jenkins", "nightly", "cron"), "H 5 * * *"),
    "nightly variants": _set(("jenkins", "nightly", "variants"), ["runtime"]),
    "promote groups": _set(("jenkins", "promote_by"), ["l1-managers"]),
    "build timeout": _set(("jenkins", "build_timeout_minutes"), 60),
    "notes": _set(("notes",), ["a new note"]),
    "description": _set(("description",), "another description"),
    "verification rule": _set(("verification", "rules"), [{"pattern": "*.fits", "comparator": "fits"}]),
    "verification workload": _set(("verification", "workload"), [{"name": "x", "command": ["evtselect"]}]),
    "size budget": _set(("size_budget", "runtime"), {"max": "999MB", "on_exceed": "warn"}),
    "tag pattern": _set(("source", "tag_pattern"), "^release-.*$"),
}
BUILD_INPUTS = {
    "build steps": _set(("build", "steps"), ["make -j1", "make install PREFIX=/opt/evtselect"]),
    "cflags": _set(("build", "cflags"), "-g -O3"),
    "runtime packages": _set(("os_packages", "runtime"), ["libcfitsio10", "less"]),
    "build packages": _set(("os_packages", "build"), ["libcfitsio-dev", "pkg-config", "file"]),
    "image environment": _set(("environment",), {"EVTSELECT_HOME": "/opt/evtselect", "X": "1"}),
    "entrypoint environment": _set(("run",), {"environment": {"X": "{user_dir}/x"}}),
    "prefix": _set(("prefix",), "/opt/evtselect2"),
}


def test_fields_that_are_not_build_inputs_keep_every_key(tmp_path):
    base = _keys(tmp_path, name="base")
    for i, (what, edit) in enumerate(NOT_BUILD_INPUTS.items()):
        assert _keys(tmp_path, edit, name=f"n{i}") == base, f"changing the {what} changed a build key"
    builder = _keys(tmp_path, edit_platforms=_set(("platforms", "debian12-local", "builder_label"), "other-builder"),
                    name="label")
    assert builder == base, "changing the builder label changed a build key"


@pytest.mark.parametrize("what", sorted(BUILD_INPUTS))
def test_build_inputs_change_the_key(tmp_path, what):
    base = _keys(tmp_path, name="base")
    changed = _keys(tmp_path, BUILD_INPUTS[what], name="changed")
    assert changed["runtime"] != base["runtime"], f"changing the {what} kept the runtime key"


def test_a_target_key_covers_its_own_stages(tmp_path):
    def three(doc):
        doc["variants"] = ["full", "runtime", "debug"]
        doc["size_budget"].pop("env", None)
    base = _keys(tmp_path, three, name="three")
    more = _keys(tmp_path, _set(("variants",), ["full", "runtime", "debug", "env"]), name="four")
    assert more["runtime"] == base["runtime"] and more["debug"] == base["debug"] and more["full"] == base["full"]
    # the debugger is in the debug image only: the platform's debugger packages change its key alone
    gdb = _keys(tmp_path, edit_platforms=_set(("platforms", "debian12-local", "debugger_packages"), ["gdb", "strace"]),
                name="gdb")
    plain = _keys(tmp_path, name="plain")
    assert gdb["debug"] != plain["debug"] and gdb["runtime"] == plain["runtime"]


def test_stage_closure_follows_from_and_copy_from():
    df = "\n".join(["# comment", "FROM x AS base", "RUN a", "FROM base AS build", "COPY .relman/s.sh /s",
                    "FROM base AS other", "RUN b", "FROM base AS runtime", "COPY --from=build /p /p"])
    text, copied = stage_closure(df, "runtime")
    assert "RUN a" in text and "COPY .relman/s.sh /s" in text and "RUN b" not in text and "comment" not in text
    assert ".relman/s.sh" in copied


def test_stage_closure_follows_a_from_named_by_a_global_arg_default():
    # debug is `FROM ${RELMAN_RUNTIME_IMAGE}`: its key must still cover the runtime stage it defaults to
    df = "\n".join(["ARG RELMAN_RUNTIME_IMAGE=runtime", "FROM x AS base", "RUN a", "FROM base AS runtime", "RUN r",
                    "FROM base AS other", "RUN b", "FROM ${RELMAN_RUNTIME_IMAGE} AS debug", "COPY p /"])
    text, _ = stage_closure(df, "debug")
    assert "RUN r" in text and "RUN a" in text and "RUN b" not in text


def test_the_debug_key_follows_the_runtime_stage():
    specs = load_specs(PROJECT_ROOT / "image_specs")
    plan = make_plan(specs, "evtselect")
    df = render_dockerfile(plan)
    assert "FROM ${RELMAN_RUNTIME_IMAGE} AS debug" in df
    changed = df.replace("FROM base AS runtime\n", "FROM base AS runtime\nRUN true\n")
    assert changed != df
    debug = plan.target("debug")
    assert stage_closure(changed, debug.name)[0] != stage_closure(df, debug.name)[0]


def test_the_key_of_an_extending_spec_covers_the_extended_images():
    specs = load_specs(PROJECT_ROOT / "image_specs")
    plan = make_plan(specs, "l1-makeft1", "debian12-local")
    df = render_dockerfile(plan)
    rev = Revision(url="u", ref="v1", commit="c" * 40, tree="t" * 40, kind="tag", version="1")
    t = plan.target("runtime")
    one = Upstream("sciencetools", "v2.4.0-subset1", {"runtime": "a" * 64, "full": "b" * 64})
    other = Upstream("sciencetools", "v2.4.0-subset1", {"runtime": "a" * 64, "full": "c" * 64})
    keys = {build_key(df, {}, rev, "sha256:0", t, u.key_text) for u in (one, other)}
    assert len(keys) == 2 and build_key(df, {}, rev, "sha256:0", t) not in keys
    # every stage but env's starts from (or copies from) a stage on ScienceTools' images: the builder puts the
    # upstream keys into those keys only (env is the OS packages: a new ScienceTools image leaves it alone)
    uses = {t.name: "${RELMAN_UPSTREAM_" in stage_closure(df, t.name)[0] for t in plan.targets}
    assert uses == {"runtime": True, "debug": True, "full": True, "env": False}, uses


def test_specs_of_one_runtime_package_list_share_the_common_stage():
    """The common stage (base image, runtime packages, user) is the same text for ScienceTools and L1 on the same
    platform, so they share its pinned image (build.common_key); another runtime list (the demo's), another key.
    Every target's key still covers the common stage (its FROM names it by the global ARG's default)."""
    specs = load_specs(PROJECT_ROOT / "image_specs")
    dfs = {n: render_dockerfile(make_plan(specs, n, "debian12-local")) for n in ("sciencetools", "l1-makeft1", "evtselect")}
    keys = {n: common_key(df, {}, "sha256:" + "0" * 64) for n, df in dfs.items()}
    assert keys["sciencetools"] == keys["l1-makeft1"] != keys["evtselect"], keys
    assert common_key(dfs["evtselect"], {}, "sha256:" + "1" * 64) != keys["evtselect"]     # another base image
    assert common_key(dfs["evtselect"].replace("useradd -u 1000", "useradd -u 1001"), {}, "sha256:" + "0" * 64) \
        != keys["evtselect"]
    gr = render_dockerfile(make_plan(specs, "glastrelease"))
    assert common_key(gr, {}, "sha256:" + "0" * 64) != keys["evtselect"]
    for name in ("sciencetools", "evtselect"):
        for target in ("runtime", "debug", "full"):
            text, _ = stage_closure(dfs[name], target)
            assert "RUN useradd" in text and "FROM ${RELMAN_COMMON_IMAGE} AS base" in text, (name, target)
    # L1 is built on ScienceTools' images: its runtime and full stages start from them (their build keys are
    # part of L1's, build.Upstream), its debug payload from the common stage
    l1 = dfs["l1-makeft1"]
    assert "FROM ${RELMAN_COMMON_IMAGE} AS base" in l1
    assert "FROM ${RELMAN_UPSTREAM_RUNTIME} AS runtime" in stage_closure(l1, "runtime")[0]
    assert "FROM ${RELMAN_UPSTREAM_FULL} AS build" in stage_closure(l1, "full")[0]
    assert "RUN useradd" in stage_closure(l1, "debug")[0]
    # the L1 extras come after the common stage: in its base stage, not in the shared layers
    common_text, _ = stage_closure(l1, "common")
    assert "libxerces" not in common_text and "libxerces" in stage_closure(l1, "runtime")[0]


def test_no_change_nightly_skips_after_a_cron_change(tmp_path):
    """What the nightly compares is the key: a cron-only change gives the keys of the last nightly."""
    before = _keys(tmp_path, name="before")
    after = _keys(tmp_path, _set(("jenkins", "nightly", "cron"), "H 4 * * 1-5"), name="after")
    assert before == after
    shutil.rmtree(tmp_path / "before")
