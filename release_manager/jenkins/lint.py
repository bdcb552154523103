"""A small Groovy scanner that finds what makes a generated pipeline injectable.

    - a double-quoted string ("..." or triple) holding `$`: GString interpolation, so a parameter or
      spec value would become Groovy/shell code;
    - an `sh` step whose script is not a single-quoted string literal (sh "...", sh(script: ...)).

It knows comments, single/double/triple-quoted strings and escapes; that is all a Jenkinsfile
relman generates can contain. Dollar-slashy and slashy strings are reported as unsupported.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List

_SH_WORD_RE = re.compile(r"(?<![\w.$])sh\b")


@dataclass(frozen=True)
class Token:
    kind: str      # code | sq | dq | comment
    text: str
    line: int


def tokenize(src: str) -> List[Token]:
    out: List[Token] = []
    i, n, line = 0, len(src), 1
    code_start, code_line = 0, 1

    def flush(end):
        if end > code_start:
            out.append(Token("code", src[code_start:end], code_line))

    while i < n:
        c = src[i]
        if src.startswith("//", i):
            flush(i)
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(Token("comment", src[i:j], line))
            i = j
        elif src.startswith("/*", i):
            flush(i)
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(Token("comment", src[i:j], line))
            line += src.count("\n", i, j)
            i = j
        elif c in "'\"":
            flush(i)
            triple = src.startswith(c * 3, i)
            quote = c * 3 if triple else c
            j = i + len(quote)
            start_line = line
            while j < n and not src.startswith(quote, j):
                if src[j] == "\\":
                    j += 1
                elif src[j] == "\n" and not triple:
                    break
                j += 1
            body = src[i + len(quote):j]
            line += src.count("\n", i, min(j + len(quote), n))
            out.append(Token("sq" if c == "'" else "dq", body, start_line))
            i = j + len(quote)
        elif src.startswith("$/", i):
            flush(i)
            out.append(Token("dq", "$/ dollar-slashy string (unsupported)", line))
            j = src.find("/$", i + 2)
            j = n if j < 0 else j + 2
            line += src.count("\n", i, j)
            i = j
        else:
            if c == "\n":
                line += 1
            i += 1
            continue
        code_start, code_line = i, line
    flush(n)
    return out


def problems(src: str, name: str = "Jenkinsfile") -> List[str]:
    toks = tokenize(src)
    found = []
    for k, t in enumerate(toks):
        if t.kind == "dq" and "$" in t.text:
            found.append(f"{name}:{t.line}: double-quoted Groovy string with '$' (GString interpolation): "
                         f"\"{t.text[:60]}\"")
        if t.kind == "code":
            for m in _SH_WORD_RE.finditer(t.text):
                at = f"{name}:{t.line + t.text[:m.start()].count(chr(10))}"
                after = t.text[m.end():]
                nxt = toks[k + 1] if k + 1 < len(toks) else None
                if after.lstrip().startswith("("):
                    found.append(f"{at}: sh(...) call: write sh '...' with a single-quoted literal")
                elif after.strip() or nxt is None or nxt.kind != "sq":
                    found.append(f"{at}: sh step whose script is not a single-quoted string")
    return found
