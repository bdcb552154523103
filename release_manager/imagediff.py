"""What changed between two images: labels, OS packages and files, read from the registry's layer blobs.

Each image's file system is the union of its layers' file indexes (imagemeta.ImageReader.layer_index,
cached by layer digest) with the OCI whiteouts applied: `.wh.NAME` removes NAME from the layers
below, `.wh..wh..opq` hides everything the layers below put in its folder. Every path remembers
the layer it comes from, so a changed file names the layer that changed it.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

from release_manager.imagemeta import DPKG_STATUS, RPM_DB_DIRS, Image, ImageReader

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
# path -> [type, size, mode, sha256 or link target, layer number]
Tree = Dict[str, list]


def load_indexes(reader: ImageReader, images: List[Image], workers: int = 2) -> Dict[str, Dict[str, Any]]:
    """layer digest -> file index for every layer of images; layers not cached are streamed in parallel
    (zlib and hashlib release the GIL, so two streams use two cores)."""
    todo: Dict[str, Tuple[Image, Any]] = {}
    for img in images:
        for la in img.layers:
            todo.setdefault(la.digest, (img, la))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        got = dict(zip(todo, pool.map(lambda pair: reader.layer_index(*pair), todo.values())))
    for img in images:  # a layer shared by both images gets its size filled on both
        for la in img.layers:
            la.uncompressed = got[la.digest]["uncompressed"]
    return got


def merge(img: Image, indexes: Dict[str, Dict[str, Any]]) -> Tree:
    """The image's file system as path -> entry, whiteouts applied layer by layer."""
    tree: Tree = {}
    for n, la in enumerate(img.layers):
        entries = indexes[la.digest]["entries"]
        gone, opaque = set(), set()
        for path, *_ in entries:
            folder, _, name = path.rpartition("/")
            if name == OPAQUE:
                opaque.add(folder)
            elif name.startswith(WHITEOUT):
                gone.add(f"{folder}/{name[len(WHITEOUT):]}" if folder else name[len(WHITEOUT):])
        if gone or opaque:
            tree = {p: e for p, e in tree.items() if not _hidden(p, gone, opaque)}
        for path, kind, size, mode, extra in entries:
            if path.rpartition("/")[2].startswith(WHITEOUT):
                continue
            tree[path] = [kind, size, mode, extra, n]
    return tree


def _hidden(path: str, gone: set, opaque: set) -> bool:
    """Whether a lower layer's path is hidden: whited out itself, or under a whited-out or opaque folder."""
    if path in gone or "" in opaque:
        return True
    parts = path.split("/")
    return any("/".join(parts[:i]) in gone or "/".join(parts[:i]) in opaque for i in range(1, len(parts)))


def packages(img: Image, tree: Tree, indexes: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """The OS package manifest as the image's file system has it."""
    entry = tree.get(DPKG_STATUS)
    if entry:
        idx = indexes[img.layers[entry[4]].digest]
        return {"kind": "dpkg", "packages": idx.get("dpkg_status") or {}}
    if any(p.startswith(d) for p in tree for d in RPM_DB_DIRS):
        return {"kind": "rpm", "packages": None,
                "note": "rpm-based: the rpm database is binary (Berkeley DB or SQLite), package versions are not read"}
    return {"kind": "none", "packages": {}}


def _layer(img: Image, n: int) -> Dict[str, Any]:
    return {"layer": n, "layer_digest": img.layers[n].digest}


def _dict_diff(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    return {"added": {k: b[k] for k in sorted(set(b) - set(a))},
            "removed": {k: a[k] for k in sorted(set(a) - set(b))},
            "changed": {k: [a[k], b[k]] for k in sorted(set(a) & set(b)) if a[k] != b[k]}}


def diff_images(reader: ImageReader, a: Image, b: Image, workers: int = 2) -> Dict[str, Any]:
    indexes = load_indexes(reader, [a, b], workers)
    ta, tb = merge(a, indexes), merge(b, indexes)
    files_added, files_removed, files_changed = [], [], []
    for path in sorted(set(tb) - set(ta)):
        k, size, _, _, n = tb[path]
        files_added.append({"path": "/" + path, "type": k, "size": size, **_layer(b, n)})
    for path in sorted(set(ta) - set(tb)):
        k, size, _, _, n = ta[path]
        files_removed.append({"path": "/" + path, "type": k, "size": size, **_layer(a, n)})
    for path in sorted(set(ta) & set(tb)):
        ea, eb = ta[path], tb[path]
        if ea[0] == "d" and eb[0] == "d":
            continue  # a folder's own metadata is noise; its content is compared entry by entry
        what = [w for w, i in (("type", 0), ("content", 3), ("mode", 2)) if ea[i] != eb[i]]
        if ea[0] == "f" and eb[0] == "f" and ea[1] != eb[1]:
            what = ["size"] + [w for w in what if w != "content"] + (["content"] if "content" in what else [])
        if what:
            files_changed.append({"path": "/" + path, "type": eb[0], "size_a": ea[1], "size_b": eb[1],
                                  "what": what, "layer_a": ea[4], "layer_b": eb[4],
                                  "layer_digest_a": a.layers[ea[4]].digest,
                                  "layer_digest_b": b.layers[eb[4]].digest})
    pa, pb = packages(a, ta, indexes), packages(b, tb, indexes)
    pk: Dict[str, Any] = {"kind_a": pa["kind"], "kind_b": pb["kind"]}
    if pa["packages"] is not None and pb["packages"] is not None:
        pk.update(_dict_diff(pa["packages"], pb["packages"]))
        pk["count_a"], pk["count_b"] = len(pa["packages"]), len(pb["packages"])
    notes = [p["note"] for p in (pa, pb) if p.get("note")]
    if notes:
        pk["note"] = notes[0]
    da, db_ = [la.digest for la in a.layers], [la.digest for la in b.layers]
    return {
        "a": _side(a, ta), "b": _side(b, tb),
        "layers": {"shared": [d for d in da if d in db_], "only_a": [d for d in da if d not in db_],
                   "only_b": [d for d in db_ if d not in da]},
        "labels": _dict_diff(a.labels, b.labels),
        "packages": pk,
        "files": {"added": files_added, "removed": files_removed, "changed": files_changed,
                  "bytes_added": sum(f["size"] for f in files_added),
                  "bytes_removed": sum(f["size"] for f in files_removed)},
        "layers_streamed": len(set(reader.read_layers)), "layers_from_cache": len(set(reader.cached_layers)),
    }


def _side(img: Image, tree: Tree) -> Dict[str, Any]:
    return {"image": str(img.ref), "digest": img.digest, "layers": len(img.layers),
            "compressed": img.compressed, "uncompressed": img.uncompressed, "files": len(tree)}


def consecutive(rows: List[Dict[str, Any]]) -> List[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """Pairs (older, newer) of consecutive nightlies per variant, from image rows with digests."""
    by_variant: Dict[Optional[str], List[Dict[str, Any]]] = {}
    for r in rows:
        if r.get("digest") and any(t.startswith("nightly-2") for t in r.get("tags") or []):
            by_variant.setdefault(r.get("variant"), []).append(r)
    pairs = []
    for variant, rs in sorted(by_variant.items(), key=lambda kv: str(kv[0])):
        rs.sort(key=lambda r: (str(r.get("started") or ""), r.get("id") or 0))
        pairs.extend(zip(rs, rs[1:]))
    return pairs
