"""The pieces of `relman layers`/`relman diff` that need no registry: image references, the layer stream
reader on real gzip'd tar bytes (long names, links, whiteouts), the merge of layers, the dpkg parser,
and which credentials go to which registry host."""
from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest

from release_manager.config import load_settings
from release_manager.errors import UsageError
from release_manager.imagediff import merge
from release_manager.imagemeta import (Image, ImageReader, ImageRef, Layer, _HashingReader, _index_tar,
                                       parse_dpkg_status, parse_image)


def test_image_references():
    assert parse_image("evtselect:v1.1.0-runtime", "reg:5000", "fermi-lat") == ImageRef(
        "reg:5000", "fermi-lat/evtselect", "v1.1.0-runtime")
    assert parse_image("other/pkg:x", "reg:5000", "ns") == ImageRef("reg:5000", "other/pkg", "x")
    d = "sha256:" + "a" * 64
    assert parse_image(f"host.example:5001/ns/pkg@{d}", "reg:5000", "ns") == ImageRef("host.example:5001", "ns/pkg", d)
    assert str(parse_image(f"pkg@{d}", "reg:5000", "ns")) == f"reg:5000/ns/pkg@{d}"
    for bad, why in (("pkg", "give a tag or digest"), ("pkg@sha256:12", "64 hex digits"),
                     ("Pkg:x", "name grammar"), ("pkg:bad tag", "tag")):
        with pytest.raises(UsageError, match=why):
            parse_image(bad, "reg:5000", "ns")


def _layer(members, compress=True) -> bytes:
    """A layer blob: a tar of (name, kind, data-or-target) members, gzip'd like the engine does."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "f":
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE, "h": tarfile.LNKTYPE}[kind]
            info.linkname = payload or ""
            tf.addfile(info)
    return gzip.compress(raw.getvalue()) if compress else raw.getvalue()


def _index(blob: bytes, compressed=True):
    reader = _HashingReader(io.BytesIO(blob), compressed)
    out = _index_tar(reader)
    reader.drain()
    return out, reader


LONG = "opt/" + "/".join(["very-long-folder-name"] * 8) + "/file.txt"
STATUS = (b"Package: libfoo\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.2-3\n\n"
          b"Package: gone\nStatus: deinstall ok config-files\nVersion: 0.1\n\n"
          b"Package: libbar\nStatus: install ok installed\nArchitecture: i386\nVersion: 2.0\n")


def test_layer_stream_index_long_names_links_and_dpkg():
    blob = _layer([("./etc", "d", None), ("./etc/os-release", "f", b'ID=debian\nVERSION_ID="12"\n'),
                   (LONG, "f", b"x" * 70000), ("var/lib/dpkg/status", "f", STATUS),
                   ("usr/bin/tool", "f", b"tool"), ("usr/bin/alias", "l", "tool"), ("usr/bin/hard", "h", "usr/bin/tool")])
    (entries, dpkg, os_release, rpm), reader = _index(blob)
    by = {e[0]: e for e in entries}
    assert set(by) == {"etc", "etc/os-release", LONG, "var/lib/dpkg/status", "usr/bin/tool", "usr/bin/alias",
                       "usr/bin/hard"}
    assert by[LONG][1:3] == ["f", 70000] and by[LONG][4] == hashlib.sha256(b"x" * 70000).hexdigest()
    assert by["usr/bin/alias"][1::3] == ["l", "tool"] and by["usr/bin/hard"][1::3] == ["h", "usr/bin/tool"]
    assert dpkg == {"libfoo": "1.2-3", "libbar:i386": "2.0"} and os_release["VERSION_ID"] == "12"
    assert rpm is False
    assert reader.compressed_hash.hexdigest() == hashlib.sha256(blob).hexdigest()
    assert reader.count == len(gzip.decompress(blob))
    plain = _layer([("var/lib/rpm/Packages", "f", b"\0" * 10)], compress=False)
    (entries, _, _, rpm), reader = _index(plain, compressed=False)
    assert rpm is True and reader.count == len(plain)


def test_the_stream_never_seeks_back():
    r = _HashingReader(io.BytesIO(gzip.compress(b"abcdef")), True)
    assert r.read(2) == b"ab" and r.seek(4) == 4 and r.read() == b"ef"
    with pytest.raises(io.UnsupportedOperation):
        r.seek(1)


def _img(*layers_entries):
    layers = [Layer(f"sha256:{i}", 1, "tar+gzip") for i in range(len(layers_entries))]
    indexes = {la.digest: {"entries": [[p, k, 1, 0o644, None] for p, k in ents]}
               for la, ents in zip(layers, layers_entries)}
    return Image(ImageRef("h", "ns/p", "t"), "sha256:x", "sha256:c", {}, layers), indexes


def test_merge_applies_whiteouts_and_opaque_folders():
    img, idx = _img(
        [("etc", "d"), ("etc/a", "f"), ("etc/b", "f"), ("srv", "d"), ("srv/x", "d"), ("srv/x/1", "f"), ("doc", "d"),
         ("doc/old", "f"), ("top", "f")],
        [("etc/.wh.a", "f"), ("srv/.wh.x", "f"), ("doc/.wh..wh..opq", "f"), ("doc/new", "f"), ("etc/c", "f")],
        [("srv/x", "d"), ("srv/x/2", "f")])
    tree = merge(img, idx)
    assert sorted(tree) == ["doc", "doc/new", "etc", "etc/b", "etc/c", "srv", "srv/x", "srv/x/2", "top"]
    assert tree["doc/new"][4] == 1 and tree["srv/x/2"][4] == 2 and tree["etc/b"][4] == 0


def test_dpkg_status_keeps_only_installed_packages():
    assert parse_dpkg_status(STATUS.decode()) == {"libfoo": "1.2-3", "libbar:i386": "2.0"}


def test_credentials_of_the_configured_registry_stay_with_it(tmp_path):
    creds = tmp_path / "creds.json"
    creds.write_text('{"other:5001": {"username": "u2", "password": "p2"}}')
    s = load_settings(data_dir=tmp_path, registry="reg:5000", registry_user="u", registry_password="secret")
    reader = ImageReader(s)
    assert reader.client("reg:5000").session.auth == ("u", "secret")
    assert reader.client("stranger:5000").session.auth is None
    s2 = s.model_copy(update={"registry_credentials_file": creds})
    assert ImageReader(s2).client("other:5001").session.auth == ("u2", "p2")
