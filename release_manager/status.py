"""The status board: one row per package, from the specs (image_specs/) and the release database.

rows() is the one place the facts are put together; the terminal table, the JSON and the static
site (status_site.py) only present them.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Dict, List, Optional

NIGHTLY_PREFIX = "nightly-2"  # dated nightly tags: nightly-YYYYMMDD-<variant>


def _parse(t: Optional[str]) -> Optional[dt.datetime]:
    if not t:
        return None
    return dt.datetime.fromisoformat(t.replace("Z", "+00:00")).replace(tzinfo=None)


def _short(d: Optional[str]) -> Optional[str]:
    return None if not d else d.split(":", 1)[-1][:12]


def special_dependencies(spec) -> List[str]:
    """What a package needs beyond its platform's base: runtime OS packages, data items, submodules."""
    os_pk = spec.os_packages
    runtime = list(dict.fromkeys(os_pk.runtime + os_pk.apt.runtime + os_pk.yum.runtime))
    return ([f"os:{p}" for p in runtime] + [f"data:{d.name}" for d in spec.data]
            + [f"submodule:{m}" for m in spec.source.submodules])


def _nightly_tag(img: Dict[str, Any]) -> Optional[str]:
    return next((t for t in img.get("tags") or [] if t.startswith(NIGHTLY_PREFIX)), None)


def _duration(v: Dict[str, Any]) -> Optional[float]:
    a, b = _parse(v.get("started")), _parse(v.get("finished"))
    return None if a is None or b is None else (b - a).total_seconds()


def _sif(f: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    return None if f is None else {"id": f["id"], "size": f.get("size"), "signed": bool(f.get("signer")),
                                   "registry_ref": f.get("registry_ref"), "date": f.get("created_at")}


def package_row(name: str, loaded, platforms, history: Optional[Dict[str, Any]], now: dt.datetime,
                job_names: Dict[str, List[str]]) -> Dict[str, Any]:
    spec = loaded.spec if loaded else None
    h = history or {"images": [], "verifications": [], "promotions": []}
    row: Dict[str, Any] = {"package": name, "in_specs": spec is not None, "in_database": history is not None}
    if spec is not None:
        plat = platforms.get(spec.build_platform)
        ph = spec.placeholders()
        row.update(build_platform=spec.build_platform, agent_label=plat.builder_label if plat else None,
                   run_platforms=list(spec.run_platforms), variants=list(spec.variants),
                   special_dependencies=special_dependencies(spec), placeholders=len(ph),
                   placeholder_fields=[p for p, _ in ph], ready=not ph, spec_path=str(loaded.path))
    runs_by_image: Dict[int, List[Dict[str, Any]]] = {}
    for v in h["verifications"]:
        runs_by_image.setdefault(v["image"], []).append(v)
    latest: Dict[str, Dict[str, Any]] = {}
    for img in h["images"]:  # oldest first: the last one of a variant wins
        if img.get("status") == "failed":
            continue
        latest[img["variant"]] = img
    sifs_of: Dict[Any, Dict[str, Any]] = {}
    for f in h.get("sifs") or []:  # oldest first: the newest SIF of an image wins
        for key in (f.get("image"), f.get("image_digest")):
            if key is not None:
                sifs_of[key] = f
    variants = {}
    for var, img in sorted(latest.items()):
        runs = runs_by_image.get(img["id"], [])
        last = runs[-1] if runs else None
        variants[var] = {"image": img["id"], "tag": (img.get("tags") or [None])[0],
                         "digest": img.get("digest"), "digest_short": _short(img.get("digest")),
                         "size": img.get("size"), "date": img.get("finished") or img.get("started"),
                         "status": img.get("status"),
                         "sif": _sif(sifs_of.get(img["id"]) or sifs_of.get(img.get("digest"))),
                         "verification": None if last is None else {
                             "run": last["id"], "verdict": last["verdict"], "date": last.get("finished"),
                             "report": last.get("report_location")}}
    row["latest"] = variants
    promoted: Dict[str, Dict[str, Any]] = {}
    for p in h["promotions"]:  # in time order: the last promotion to a tag is where it points
        promoted[p["to_tag"]] = {"tag": p["to_tag"], "image": p["image"], "at": p.get("promoted_at")}
    row["promoted_tags"] = sorted(promoted)
    # channels (the moving tags a pipeline runs from): where each points, by its newest recorded move
    moves = h.get("channels")
    if moves is None:   # history(): every move, oldest first
        moves = {}
        for m in h.get("channel_moves") or []:
            moves[m["channel"]] = m
    row["channels"] = {c: {"tag": m["from_tag"], "image": m["image"], "digest": m["digest"],
                           "by": m["moved_by"], "at": m["moved_at"]} for c, m in sorted(moves.items())}
    nightlies = [i for i in h["images"] if _nightly_tag(i)]
    if nightlies:
        last = nightlies[-1]
        when = _parse(last.get("finished") or last.get("started"))
        row["nightly"] = {"tag": _nightly_tag(last), "state": last.get("status"), "image": last["id"],
                          "date": last.get("finished") or last.get("started"),
                          "age_days": None if when is None else round((now - when).total_seconds() / 86400, 1)}
    else:
        row["nightly"] = None
    row["jenkins_jobs"] = job_names.get(name, [])
    row["jenkins_job"] = next((j for j in row["jenkins_jobs"] if j.endswith("/nightly")),
                              row["jenkins_jobs"][0] if row["jenkins_jobs"] else None)
    if h.get("partial"):  # the terminal view's board: the shown images only, no history to plot
        return row
    nightly_ids = {i["id"] for i in nightlies}
    row["series"] = {  # over the nightlies, for the plots
        "size": [{"date": i.get("started"), "variant": i["variant"], "size": i.get("size"), "tag": _nightly_tag(i)}
                 for i in nightlies if i.get("size")],
        "verification_seconds": [{"date": v.get("started"), "variant": v["variant"], "seconds": sec,
                                  "verdict": v["verdict"]}
                                 for v in h["verifications"] if v["image"] in nightly_ids
                                 for sec in [_duration(v)] if sec is not None],
    }
    return row


def rows(settings, specs, boards: Dict[str, Dict[str, Any]], now: Optional[dt.datetime] = None,
         package: Optional[str] = None) -> List[Dict[str, Any]]:
    """One row per package of the specs and of the database (a package only in one of them is shown too)."""
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    jobs = _job_names(settings, specs)
    names = sorted(set(specs.packages) | set(boards))
    if package:
        if package not in names:
            from release_manager.errors import UsageError
            raise UsageError(f"--package {package!r}: neither in the specs nor in the database; "
                             f"known: {', '.join(names)}")
        names = [package]
    return [package_row(n, specs.packages.get(n), specs.platforms, boards.get(n), now, jobs) for n in names]


def _job_names(settings, specs) -> Dict[str, List[str]]:
    from release_manager.jenkins.model import build_jobs
    out: Dict[str, List[str]] = {}
    for j in build_jobs(specs, settings).jobs:
        if j.package:
            out.setdefault(j.package, []).append(j.full_name)
    return out
