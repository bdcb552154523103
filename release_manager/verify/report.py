"""Reports: JUnit XML (a testcase per file, column and check; for Jenkins' junit step), a JSON summary
(for the release database), and one self-contained HTML file with embedded overlay plots."""
from __future__ import annotations

import datetime as dt
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict

from jinja2 import Environment, FileSystemLoader, select_autoescape

from release_manager.verify.result import FAIL, KNOWN, PASS, WARNING, Outcome

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
MAX_PLOTS = 48
ORDER = {FAIL: 0, WARNING: 1, KNOWN: 2, PASS: 3}


def _atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def junit_xml(outcome: Outcome) -> str:
    suites = ET.Element("testsuites", name=outcome.title)
    by_file: Dict[str, list] = {}
    for c in outcome.checks:
        by_file.setdefault(c.file, []).append(c)
    for s in outcome.steps:
        by_file.setdefault("workload", [])
    for file, checks in by_file.items():
        failures = sum(1 for c in checks if c.result == FAIL)
        suite = ET.SubElement(suites, "testsuite", name=file, tests=str(len(checks)), failures=str(failures),
                              errors="0", skipped="0")
        cls = "verify." + file.replace(".", "_").replace("/", ".")
        for c in checks:
            tc = ET.SubElement(suite, "testcase", classname=cls, name=c.name or c.test, time="0")
            if c.result == FAIL:
                f = ET.SubElement(tc, "failure", message=c.message[:500], type=c.test)
                f.text = c.message
            elif c.result in (WARNING, KNOWN):
                out = ET.SubElement(tc, "system-out")
                out.text = (f"WARNING: {c.message}" if c.result == WARNING
                            else f"KNOWN DIFFERENCE ({c.known_reason}): {c.message}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def json_summary(outcome: Outcome) -> dict:
    s = outcome.summary()
    s["generated"] = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    s["rows"] = [{"file": c.file, "hdu": c.hdu, "column": c.column, "test": c.test, "statistic": d["statistic"],
                  "pvalue": d["pvalue"], "thresholds": c.thresholds, "result": c.result, "grade": d["grade"],
                  "message": c.message} for c, d in ((c, c.as_dict()) for c in outcome.checks)]
    return s


def html_report(outcome: Outcome) -> str:
    from release_manager.verify.plots import overlay_png
    plots = sorted(outcome.plots.values(), key=lambda p: (ORDER.get(p["result"], 3), p["file"], p["hdu"]))
    shown = []
    for p in plots[:MAX_PLOTS]:
        if p["ref"].size == 0 and p["cand"].size == 0:
            continue
        title = f"{p['file']} {p['hdu']} {p['column']} ({p['test']}: {p['result']})"
        shown.append({**{k: p[k] for k in ("file", "hdu", "column", "result", "test")},
                      "png": overlay_png(p["ref"], p["cand"], title)})
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]))
    checks = sorted(outcome.checks, key=lambda c: ORDER[c.result])
    return env.get_template("report.html.j2").render(
        o=outcome, verdict=outcome.verdict, counts=outcome.counts(), checks=checks, plots=shown,
        hidden=max(0, len(plots) - MAX_PLOTS),
        generated=dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat())


def write_reports(outcome: Outcome, folder: Path, html: bool = True) -> Dict[str, Path]:
    folder = Path(folder)
    paths = {"junit": folder / "junit.xml", "json": folder / "summary.json"}
    _atomic(paths["junit"], junit_xml(outcome))
    _atomic(paths["json"], json.dumps(json_summary(outcome), indent=2, default=str) + "\n")
    if html:
        paths["html"] = folder / "report.html"
        _atomic(paths["html"], html_report(outcome))
    return paths
