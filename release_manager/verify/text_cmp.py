"""Text and log comparator: a diff after masking what legitimately changes between runs (time stamps,
dates, paths, host names, container ids, durations), plus the rule's own mask_patterns."""
from __future__ import annotations

import difflib
import re
import socket
from pathlib import Path
from typing import List

from release_manager.spec.model import CompareRule
from release_manager.verify.result import FAIL, PASS, Check
from release_manager.verify.rules import VerifyUsageError

DEFAULT_MASKS = [
    (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?", "<TIMESTAMP>"),
    (r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\w* +(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\w* +\d{1,2} "
     r"+\d{2}:\d{2}:\d{2}(?: +[A-Z]{2,5})? +\d{4}", "<DATE>"),
    (r"\b\d{4}-\d{2}-\d{2}\b", "<DATE>"),
    (r"\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b", "<TIME>"),
    (r"\b\d+(?:\.\d+)?\s*(?:ms|s|sec|seconds)\b", "<DURATION>"),
    (r"(?<![\w.])(?:/[\w.+-]+)+/?", "<PATH>"),
    (r"\b[0-9a-f]{12,64}\b", "<HEX>"),
    (r"\b[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:org|edu|gov|com|net|local|lan|internal)\b", "<HOST>"),
]
MAX_BYTES = 64 << 20


def normalise(text: str, extra: List[str]) -> List[str]:
    masks = [(re.compile(p), r) for p, r in DEFAULT_MASKS] + [(re.compile(p), "<MASKED>") for p in extra]
    host = socket.gethostname()
    out = []
    for line in text.splitlines():
        if host and len(host) > 2:
            line = line.replace(host, "<HOST>")
        for rx, rep in masks:
            line = rx.sub(rep, line)
        out.append(line.rstrip())
    return out


def _read(path: Path, relpath: str, side: str) -> str:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise VerifyUsageError(f"{relpath}: the {side} text file is larger than {MAX_BYTES >> 20} MB; "
                                   "compare it with the bytes comparator")
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise VerifyUsageError(f"{relpath}: cannot read the {side} file {path}: {exc}") from None


def compare_text(ref_path: Path, cand_path: Path, relpath: str, rule: CompareRule) -> List[Check]:
    a = normalise(_read(ref_path, relpath, "reference"), rule.mask_patterns)
    b = normalise(_read(cand_path, relpath, "candidate"), rule.mask_patterns)
    if a == b:
        return [Check(relpath, "text", PASS, "", "", f"{len(a)} line(s) equal after masking")]
    diff = list(difflib.unified_diff(a, b, "reference", "candidate", n=1, lineterm=""))
    changed = sum(1 for d in diff if d[:1] in "+-" and not d.startswith(("+++", "---")))
    return [Check(relpath, "text", FAIL, "", "", f"{changed} line(s) differ after masking: "
                  + " | ".join(diff[2:8]), statistic=float(changed), details={"diff": diff[:200]})]


def compare_bytes(ref_path: Path, cand_path: Path, relpath: str) -> List[Check]:
    # reached only when the fast path found a difference
    return [Check(relpath, "bytes", FAIL, "", "", f"files differ ({ref_path.stat().st_size} vs "
                  f"{cand_path.stat().st_size} bytes)")]
