"""The status board as a static, self-contained site: index.html (a sortable table) and one page per
package (history, verification reports, size and verification-duration plots as inline SVG).

Nothing is fetched at view time: CSS, the sorting script and the plots are inline, and verification
reports found on this machine are copied into the site (reports/run-<id>/) so that every link
resolves inside the folder. The site is written to a temporary folder and renamed into place, so a
reader never sees half a site.
"""
from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from release_manager.errors import UsageError

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eef;cursor:pointer;user-select:none}
th.asc:after{content:" \\25B2"}th.desc:after{content:" \\25BC"}
.passed,.verified,.promoted{background:#dfd}.failed,.verification-failed,.error{background:#fdd}
.small{font-size:11px;color:#555}code{font-size:12px}
svg{border:1px solid #ddd;margin:0.5em 0}
"""
# Sorts the table whose header is clicked: numbers (data-sort) numerically, the rest as text.
SORT_JS = r"""
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var table = th.closest('table'), body = table.tBodies[0];
    var asc = !th.classList.contains('asc');
    table.querySelectorAll('th').forEach(function(h){ h.classList.remove('asc', 'desc'); });
    th.classList.add(asc ? 'asc' : 'desc');
    var key = function(tr){ var td = tr.children[col]; return td.dataset.sort !== undefined ? td.dataset.sort : td.textContent; };
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function(a, b){
      var x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
// index.html#sort=N[-desc] opens the page sorted by column N (a link to a sorted view)
var m = /sort=(\d+)(-desc)?/.exec(location.hash);
if (m) { var th = document.querySelectorAll('table.sortable th')[+m[1]];
  if (th) { th.click(); if (m[2]) th.click(); } }
"""
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def e(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def page_name(package: str) -> str:
    return f"package-{package}.html"


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<style>{CSS}</style></head><body>\n{body}\n<script>{SORT_JS}</script></body></html>\n")


def _mb(n) -> str:
    return "-" if n is None else f"{n / 1e6:.0f} MB"


def _report_link(report: Optional[str], run: int, site: Path, copied: Dict[int, Optional[str]]) -> Optional[str]:
    """A link to a verification report: an http(s) URL as it is, a local report copied into the site."""
    if not report:
        return None
    if report.startswith(("http://", "https://")):
        return report
    if run in copied:
        return copied[run]
    if not os.path.exists(report):  # one stat for the common case: a report of another machine
        copied[run] = None
        return None
    src = Path(report)
    folder = src if src.is_dir() else src.parent
    pick = [p for p in (folder / "report.html", folder / "summary.json", src) if p.is_file()]
    if not pick:
        copied[run] = None
        return None
    dest = site / "reports" / f"run-{run}"
    dest.mkdir(parents=True, exist_ok=True)
    for p in dict.fromkeys(pick):
        shutil.copy2(p, dest / p.name)
    copied[run] = f"reports/run-{run}/{pick[0].name}"
    return copied[run]


def svg_plot(series: Dict[str, List[Tuple[str, float]]], ylabel: str, width=640, height=240) -> str:
    """A line plot per series over dates (ISO strings), as inline SVG."""
    points = [(d, y) for s in series.values() for d, y in s]
    if not points:
        return f"<p class=\"small\">no data for {e(ylabel)} yet</p>"
    dates = sorted({d for d, _ in points})
    ymax = max(y for _, y in points) or 1.0
    left, right, top, bottom = 60, 120, 15, 40
    pw, ph = width - left - right, height - top - bottom

    at = {d: i for i, d in enumerate(dates)}

    def x(d):
        return left + (pw * at[d] / (len(dates) - 1) if len(dates) > 1 else pw / 2)

    def y(v):
        return top + ph - ph * v / ymax

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{e(ylabel)}">',
           f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#444"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#444"/>',
           f'<text x="8" y="{top + 10}" font-size="11">{e(f"{ymax:.3g}")}</text>',
           f'<text x="8" y="{top + ph}" font-size="11">0</text>',
           f'<text x="{left}" y="{height - 8}" font-size="11">{e(dates[0][:10])}</text>',
           f'<text x="{left + pw}" y="{height - 8}" font-size="11" text-anchor="end">{e(dates[-1][:10])}</text>',
           f'<text x="{left + pw / 2}" y="{height - 8}" font-size="11" text-anchor="middle">{e(ylabel)}</text>']
    for n, (name, pts) in enumerate(sorted(series.items())):
        c = COLORS[n % len(COLORS)]
        coords = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in sorted(pts))
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{coords}"/>')
        out.extend(f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="3" fill="{c}"><title>{e(name)} {e(d)}: '
                   f'{v:.3g}</title></circle>' for d, v in sorted(pts))
        out.append(f'<text x="{left + pw + 8}" y="{top + 12 + 14 * n}" font-size="11" fill="{c}">{e(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _latest_cell(v: Optional[Dict[str, Any]], site: Path, copied) -> Tuple[str, str]:
    if not v:
        return "-", ""
    ver = v.get("verification")
    vtxt = "not verified"
    if ver:
        link = _report_link(ver.get("report"), ver["run"], site, copied)
        verdict = e(ver["verdict"])
        vtxt = (f'<a href="{e(link)}">{verdict}</a>' if link else verdict) + f" {e((ver.get('date') or '')[:10])}"
    return (f"<code>{e(v.get('tag'))}</code><br><span class=\"small\">{e(v.get('digest_short'))} "
            f"{_mb(v.get('size'))} {e((v.get('date') or '')[:10])}</span><br>{vtxt}",
            e((ver or {}).get("verdict") or ""))


def index_html(rows: List[Dict[str, Any]], site: Path, copied, generated: str) -> str:
    variants = sorted({v for r in rows for v in r.get("latest", {})})
    head = ["package", "build platform", "agent", "running", "special dependencies", "placeholders",
            *[f"latest {v}" for v in variants], "promoted", "nightly", "nightly age (days)", "Jenkins job"]
    body = []
    for r in rows:
        n = r.get("nightly") or {}
        cells = [f'<td><a href="{page_name(r["package"])}">{e(r["package"])}</a></td>',
                 f"<td>{e(r.get('build_platform', '-'))}</td>", f"<td>{e(r.get('agent_label', '-'))}</td>",
                 f"<td>{e(', '.join(r.get('run_platforms', [])))}</td>",
                 f"<td class=\"small\">{e(', '.join(r.get('special_dependencies', [])))}</td>",
                 f"<td data-sort=\"{r.get('placeholders', -1)}\">"
                 f"{'ready' if r.get('ready') else e(r.get('placeholders', '-'))}</td>"]
        for v in variants:
            cell, cls = _latest_cell(r["latest"].get(v), site, copied)
            cells.append(f'<td class="{cls}">{cell}</td>')
        chans = [f"{c}={m['tag']}" for c, m in r.get("channels", {}).items()]
        cells += [f"<td>{e(', '.join(r.get('promoted_tags', []) + chans))}</td>",
                  f"<td class=\"{e(n.get('state'))}\">{e(n.get('tag') or '-')} {e(n.get('state') or '')}</td>",
                  f"<td data-sort=\"{n.get('age_days') if n.get('age_days') is not None else ''}\">"
                  f"{e(n.get('age_days') if n else '-')}</td>",
                  f"<td><code>{e(r.get('jenkins_job') or '-')}</code></td>"]
        body.append(f"<tr data-package=\"{e(r['package'])}\">" + "".join(cells) + "</tr>")
    table = ("<table class=\"sortable\" id=\"status\"><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head)
             + "</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>")
    return _page("relman status", f"<h1>relman status</h1><p class=\"small\">{len(rows)} package(s); generated "
                                  f"{e(generated)} (click a header to sort)</p>{table}")


def package_html(r: Dict[str, Any], history: Optional[Dict[str, Any]], site: Path, copied) -> str:
    parts = [f"<p><a href=\"index.html\">all packages</a></p><h1>{e(r['package'])}</h1>"]
    facts = [("build platform", r.get("build_platform")), ("agent label", r.get("agent_label")),
             ("running platforms", ", ".join(r.get("run_platforms", []))),
             ("special dependencies", ", ".join(r.get("special_dependencies", []))),
             ("placeholders left", ", ".join(r.get("placeholder_fields", [])) or ("none" if r.get("in_specs") else "-")),
             ("promoted tags", ", ".join(r.get("promoted_tags", []))),
             ("channels", ", ".join(f"{c} = {m['tag']} ({m['digest']}), moved by {m['by']} at {m['at']}"
                                    for c, m in r.get("channels", {}).items()) or "-"),
             ("Jenkins jobs", ", ".join(r.get("jenkins_jobs", [])))]
    parts.append("<table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts) + "</table>")
    size: Dict[str, List[Tuple[str, float]]] = {}
    for p in r["series"]["size"]:
        size.setdefault(p["variant"], []).append((p["date"], p["size"] / 1e6))
    dur: Dict[str, List[Tuple[str, float]]] = {}
    for p in r["series"]["verification_seconds"]:
        dur.setdefault(p["variant"], []).append((p["date"], p["seconds"]))
    parts.append("<h2>Image size over the nightlies (MB)</h2>" + svg_plot(size, "size (MB)"))
    parts.append("<h2>Verification duration over the nightlies (s)</h2>" + svg_plot(dur, "verification (s)"))
    h = history or {"images": [], "verifications": [], "promotions": []}
    runs: Dict[int, List[Dict[str, Any]]] = {}
    for v in h["verifications"]:
        runs.setdefault(v["image"], []).append(v)
    promos: Dict[int, List[str]] = {}
    for p in h["promotions"]:
        promos.setdefault(p["image"], []).append(p["to_tag"])
    rows = []
    for img in reversed(h["images"]):
        vs = []
        for v in runs.get(img["id"], []):
            link = _report_link(v.get("report_location"), v["id"], site, copied)
            label = f"{v['verdict']} {(v.get('finished') or '')[:16]}"
            vs.append(f'<a href="{e(link)}">{e(label)}</a>' if link else e(label))
        rows.append(f"<tr><td data-sort=\"{img['id']}\">{img['id']}</td><td>{e(img.get('variant'))}</td>"
                    f"<td>{e(img.get('ref'))}</td><td><code>{e(', '.join(img.get('tags') or []))}</code></td>"
                    f"<td><code>{e((img.get('digest') or '')[7:19])}</code></td>"
                    f"<td data-sort=\"{img.get('size') or 0}\">{_mb(img.get('size'))}</td>"
                    f"<td class=\"{e(img.get('status'))}\">{e(img.get('status'))}</td>"
                    f"<td>{e(img.get('started'))}</td><td>{'<br>'.join(vs)}</td>"
                    f"<td>{e(', '.join(promos.get(img['id'], [])))}</td></tr>")
    parts.append("<h2>History</h2><table class=\"sortable\" id=\"history\"><thead><tr>"
                 + "".join(f"<th>{h}</th>" for h in ("image", "variant", "ref", "tags", "digest", "size", "status",
                                                     "built", "verification", "promoted to"))
                 + "</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>")
    return _page(f"relman status: {r['package']}", "\n".join(parts))


def write_site(rows: List[Dict[str, Any]], boards: Dict[str, Dict[str, Any]], out: Path, generated: str) -> List[Path]:
    """Write the site into out (replaced as a whole). Returns the pages written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--html {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / ".relman-status").is_file():
        raise UsageError(f"--html {out}: a folder with other content; give an empty or new folder "
                         "(or one relman status wrote before)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        copied: Dict[int, Optional[str]] = {}
        (tmp / ".relman-status").write_text("written by relman status --html; replaced as a whole\n")
        pages = [tmp / "index.html"]
        pages[0].write_text(index_html(rows, tmp, copied, generated))
        for r in rows:
            p = tmp / page_name(r["package"])
            p.write_text(package_html(r, boards.get(r["package"]), tmp, copied))
            pages.append(p)
        (tmp / "status.json").write_text(json.dumps(rows, default=str))  # compact: the C encoder
        os.chmod(tmp, 0o755)
        if out.exists():
            old = out.with_name(f".{out.name}-old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / p.name for p in pages]
