"""Which layers images share, and what a farm's batch nodes pull to hold a set of images.

A node caches layers by digest, so a set of images costs the union of their layers. The plan gives
the bytes a cold node pulls (compressed) and stores (uncompressed), the marginal cost of each image
on top of all the others, and the budget check; advice is derived from the layers that nearly match.

Site file (YAML), e.g. image_specs/cache-plans/slac-batch.yaml:

    site: slac-batch                 # a name for the report
    budget_per_image: 1GB            # optional; bytes or a number with kB/MB/GB/KiB/MiB/GiB
    images:                          # what every node must hold
      - evtselect:v1.1.0-runtime
      - sciencetools:nightly-runtime
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from release_manager.errors import UsageError

DEFAULT_BUDGET = 10 ** 9  # per image: "~1 GB is best"
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]i?[bB]?|[bB])?\s*\Z")
_UNITS = {"": 1, "b": 1, "k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9, "t": 10 ** 12,
          "ki": 2 ** 10, "mi": 2 ** 20, "gi": 2 ** 30, "ti": 2 ** 40}


def parse_size(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise UsageError(f"{where}: {value!r} is not a size (bytes, or e.g. 1GB, 800MiB)")
    if isinstance(value, int) and value > 0:
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise UsageError(f"{where}: {value!r} is not a size (bytes, or e.g. 1GB, 800MiB)")
    unit = (m.group(2) or "").lower().rstrip("b")
    n = int(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise UsageError(f"{where}: {value!r} must be more than 0 bytes")
    return n


@dataclass
class Site:
    name: str
    images: List[str]
    budget_per_image: int


def load_site(path: Path) -> Site:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such site file") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping with 'images' (a list of image references)")
    unknown = sorted(set(data) - {"site", "images", "budget_per_image", "description"})
    if unknown:
        raise UsageError(f"{path}: unknown field(s) {', '.join(unknown)}; allowed: site, description, images, "
                         "budget_per_image")
    images = data.get("images")
    if not isinstance(images, list) or not images or not all(isinstance(i, str) and i for i in images):
        raise UsageError(f"{path}: field 'images' must be a non-empty list of image references, got {images!r}")
    budget = data.get("budget_per_image", DEFAULT_BUDGET)
    return Site(str(data.get("site") or Path(path).stem), images,
                parse_size(budget, f"{path}: field 'budget_per_image'"))


def plan(images, budget_per_image: int = DEFAULT_BUDGET, site: str = "command line") -> Dict[str, Any]:
    """The cache plan for images (imagemeta.Image, uncompressed sizes filled where known)."""
    layers: Dict[str, Any] = {}
    users: Dict[str, List[str]] = {}
    for img in images:
        for la in img.layers:
            layers.setdefault(la.digest, la)
            users.setdefault(la.digest, [])
            if str(img.ref) not in users[la.digest]:
                users[la.digest].append(str(img.ref))

    def total(digests, attr):
        vals = [getattr(layers[d], attr) for d in digests]
        return None if None in vals else sum(vals)

    all_digests = list(layers)
    rows = []
    for img in images:
        own = [la.digest for la in img.layers]
        others = {la.digest for o in images if o is not img for la in o.layers}
        unique = [d for d in dict.fromkeys(own) if d not in others]
        rows.append({
            "image": str(img.ref), "digest": img.digest, "platform": img.platform,
            "base": _base_name(img),
            "layers": len(img.layers), "compressed": img.compressed, "uncompressed": img.uncompressed,
            "marginal_compressed": total(unique, "size"), "marginal_uncompressed": total(unique, "uncompressed"),
            "shared_layers": len(set(own)) - len(unique),
            "over_budget": img.compressed > budget_per_image,
        })
    cold = total(all_digests, "size")
    budget = budget_per_image * len(images)
    shared = [{"digest": d, "size": layers[d].size, "uncompressed": layers[d].uncompressed, "images": users[d],
               "created_by": _short_cmd(layers[d].created_by)}
              for d in all_digests if len(users[d]) > 1]
    return {
        "site": site, "budget_per_image": budget_per_image, "budget_total": budget,
        "images": rows, "shared_layers": shared, "distinct_layers": len(all_digests),
        "cold_node_pull": cold, "cold_node_disk": total(all_digests, "uncompressed"),
        "sum_of_images": sum(r["compressed"] for r in rows),
        "within_budget": cold <= budget and not any(r["over_budget"] for r in rows),
        "advice": advice(images, budget_per_image),
    }


def _base_name(img) -> Optional[str]:
    labels = img.labels
    for key in ("org.opencontainers.image.base.name", "org.opencontainers.image.base.digest"):
        if labels.get(key):
            return labels[key]
    return None


def _short_cmd(cmd: Optional[str]) -> Optional[str]:
    if not cmd:
        return None
    cmd = cmd.replace("/bin/sh -c #(nop) ", "").replace("/bin/sh -c ", "RUN ")
    return cmd if len(cmd) <= 100 else cmd[:97] + "..."


def advice(images, budget_per_image: int) -> List[str]:
    """What to change so that the images share more, from what the layers show."""
    out: List[str] = []
    by_platform: Dict[str, List[Any]] = {}
    for img in images:
        by_platform.setdefault(img.platform + " " + ((img.config.get("os.version") or "")), []).append(img)
    for plat, imgs in sorted(by_platform.items()):
        if len(imgs) < 2:
            continue
        bases = {img.layers[0].digest if img.layers else None for img in imgs}
        if len(bases) > 1:
            names = ", ".join(f"{i.ref.repository}:{i.ref.reference}" for i in imgs)
            out.append(f"{plat.strip()}: {len(bases)} different first layers among {names}: build them "
                       "FROM one common base image per platform so that nodes pull the base once")
    # Layers made by the same instruction but with different digests: an earlier layer differs (order).
    seen: Dict[str, set] = {}
    for img in images:
        for la in img.layers:
            if la.created_by and la.size >= 10 ** 6:  # tiny layers cost nothing to pull twice
                seen.setdefault(la.created_by, set()).add(la.digest)
    for cmd, digests in seen.items():
        if len(digests) > 1:
            out.append(f"the step '{_short_cmd(cmd)}' gives {len(digests)} different layers: move steps that "
                       "are common to the images (OS packages, externals) before the package-specific ones, and "
                       "keep them identical, so that their layers are shared")
    for img in images:
        if img.compressed > budget_per_image:
            big = max(img.layers, key=lambda la: la.size)
            what = _short_cmd(big.created_by) or "the base image"
            out.append(f"{img.ref}: {img.compressed / 1e6:.0f} MB to pull is over the {budget_per_image / 1e6:.0f} "
                       f"MB budget; its largest layer ({big.size / 1e6:.0f} MB, '{what}') "
                       "is the first place to look (a runtime variant without build tools, or a split)")
    return out
