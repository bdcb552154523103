"""Shared fixtures. Integration tests use the real engine and registry (scripts/local-stack up);
they fail, never skip, when the engine is missing: `.ci/run` brings the stack up first."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from release_manager.config import PROJECT_ROOT, load_settings

SHARED = (PROJECT_ROOT.parent / "shared").resolve()
FERMI = SHARED / "data" / "fermi"
FT1_3FHL = FERMI / "ft1" / "3fhl-gc-events.fits.gz"


@pytest.fixture(scope="session")
def session_data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("relman-data")


@pytest.fixture(scope="session")
def settings(session_data_dir):
    """Settings on a private data folder, the local registry and SQLite."""
    os.environ["RELMAN_DATA_DIR"] = str(session_data_dir)
    return load_settings(data_dir=session_data_dir)


@pytest.fixture(scope="session")
def specs(settings):
    from release_manager.spec import load_specs
    return load_specs(PROJECT_ROOT / "image_specs")


@pytest.fixture(scope="session")
def demo_repo(settings) -> Path:
    """The evtselect git repository with tags v1.0.0 and v1.1.0 (fixed dates: stable commit ids)."""
    from release_manager.demo import init_repo
    path = settings.data_dir / "repos" / "evtselect"
    init_repo(path, echo=lambda m: None)
    return path


@pytest.fixture(scope="session")
def api(settings):
    from release_manager import engine
    return engine.connect(settings)


@pytest.fixture(scope="session")
def demo_build(settings, specs, demo_repo, api):
    """evtselect v1.1.0 built once per session (runtime, debug, full) and pushed to the local registry.
    Returns {target: BuildResult}."""
    from release_manager.build import Builder
    results = Builder(settings, specs, echo=lambda m: None, api=api).build(
        "evtselect", "v1.1.0", ["runtime", "debug", "full"], push=True)
    return {r.target: r for r in results}


@pytest.fixture(scope="session")
def st_settings(settings):
    """The session settings plus the Fermitools mirrors (made from ../shared/sources/fermitools) and the
    explicit override that builds rhel7's ScienceTools on the local Debian stand-in."""
    from release_manager import fermitools
    fermitools.init_mirrors(settings.data_dir, PROJECT_ROOT / "image_specs", SHARED / "sources" / "fermitools",
                            echo=lambda m: None)
    return load_settings(data_dir=settings.data_dir, git_mirrors=fermitools.mirror_setting(settings.data_dir),
                         platform_overrides={"rhel7": "debian12-local"})


@pytest.fixture(scope="session")
def sciencetools_build(st_settings, specs, api):
    """ScienceTools (the gtselect/gtmktime/gtbin subset) at the fixture tag: runtime, debug and full,
    built once per session and pushed. Returns {target: BuildResult}."""
    from release_manager.build import Builder
    from release_manager.fermitools import FIXTURE_TAG
    results = Builder(st_settings, specs, echo=lambda m: None, api=api).build(
        "sciencetools", FIXTURE_TAG, ["runtime", "debug", "full"], push=True)
    return {r.target: r for r in results}


def pytest_collection_modifyitems(config, items):
    """Every test that reaches the engine (through the `api` fixture, directly or through another
    fixture) carries the `engine` marker: scripts/test runs the others first."""
    for item in items:
        if "api" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("engine"):
            item.add_marker(pytest.mark.engine)
