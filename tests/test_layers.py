"""The release database behind one door: only release_manager/db/ touches the ORM models; workflows and
commands write through db.records and read through db.queries."""
from __future__ import annotations

import ast
from pathlib import Path

from release_manager.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "release_manager"


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node.lineno


def test_no_module_outside_db_imports_the_models():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "db":
            continue
        for module, names, line in _imports(path):
            if module == "release_manager.db.models" or (module == "release_manager.db" and "models" in names):
                offenders.append(f"release_manager/{rel}:{line}")
    assert not offenders, f"import the models only inside release_manager/db/: {offenders}"


def test_the_check_would_see_an_offender(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from release_manager.db.models import Image\n")
    assert [m for m, _, _ in _imports(bad)] == ["release_manager.db.models"]
