"""The status site in a real browser: Debian's headless Chromium loads every page from disk (no server,
no network), the DOM it builds is checked (the table rows, the sorting script), and its console
must stay empty. Chromium comes from `apt-get install chromium` (.ci/run)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from test_db_helpers import result  # noqa: F401 - the board's fixture uses it
from test_status_board import board_db, run  # noqa: F401 - fixtures

CONSOLE = re.compile(r":CONSOLE(?:\(\d+\))?:?\d*\] (.*)")


def load(url: str, tmp: Path):
    """(DOM after the scripts ran, console messages) of url in headless Chromium."""
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed (apt-get install chromium; .ci/run does it)"
    p = subprocess.run([exe, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
                        f"--user-data-dir={tmp / 'chromium-profile'}", "--dump-dom", url],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout, [m.group(1) for m in CONSOLE.finditer(p.stderr)]


def test_console_errors_are_seen(tmp_path):
    """The check itself: a page with a script error and a missing file does report them."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="missing.png"><script>notDefined();</script></body></html>')
    dom, console = load(page.as_uri(), tmp_path)
    assert "<body>" in dom
    assert any("notDefined is not defined" in c for c in console), console


def test_every_page_loads_clean_with_its_rows_and_links(run, tmp_path):
    site = tmp_path / "site"
    r = run("status", "--html", str(site), "--json")
    assert r.exit_code == 0, r.output
    expected = sorted(re.findall(r'"package": "([^"]+)"', r.output))
    pages = sorted(site.glob("*.html"))
    assert len(pages) == len(expected) + 1
    for page in pages:
        dom, console = load(page.as_uri(), tmp_path)
        assert console == [], f"{page.name}: {console}"
        assert dom.rstrip().endswith("</html>")
        for href in re.findall(r'href="([^"]+)"', dom):
            if href.startswith("https://"):
                continue
            target = (page.parent / unquote(urlparse(href).path)).resolve()
            assert target.is_file() and site.resolve() in target.parents, f"{page.name}: {href}"
        if page.name == "index.html":
            assert re.findall(r'<tr data-package="([^"]+)"', dom) == expected
        elif page.name == "package-evtselect.html":
            assert dom.count("<svg") == 2
            assert len(re.findall(r"<tr><td data-sort=", dom)) == 6  # the six nightly images of the history


def test_sorting_script_runs_in_the_browser(run, tmp_path):
    site = tmp_path / "site"
    assert run("status", "--html", str(site)).exit_code == 0
    index = site / "index.html"
    down, console = load(index.as_uri() + "#sort=0-desc", tmp_path)
    assert console == []
    names = re.findall(r'<tr data-package="([^"]+)"', down)
    assert names == sorted(names, reverse=True) and len(names) > 2
    assert 'class="desc"' in down
    # column 5 (placeholders) sorts numerically: 10 after 7, not before 2 as text would
    up, _ = load(index.as_uri() + "#sort=5", tmp_path)
    counts = [int(v) for v in re.findall(r'<td data-sort="(-?\d+)">(?:ready|\d+)</td>', up)]
    assert counts == sorted(counts) and max(counts) >= 10
