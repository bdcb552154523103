"""What the ScienceTools benchmarks share: a throw-away data folder with the Fermitools mirrors, the
settings that build rhel7's ScienceTools on the local Debian stand-in, and a timer."""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from release_manager import fermitools  # noqa: E402
from release_manager.config import load_settings  # noqa: E402
from release_manager.spec import load_specs  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def sciencetools_setup(prefix: str):
    """(data folder, settings, specs): mirrors made from ../shared, the rhel7 -> debian12-local override."""
    data = Path(tempfile.mkdtemp(prefix=prefix))
    fermitools.init_mirrors(data, ROOT / "image_specs", echo=lambda m: None)
    settings = load_settings(data_dir=data, git_mirrors=fermitools.mirror_setting(data),
                             platform_overrides={"rhel7": "debian12-local"})
    return data, settings, load_specs(ROOT / "image_specs")
