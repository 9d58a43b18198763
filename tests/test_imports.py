"""fastkan's modules import one another without a circle, and use no other module's private names."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fastkan"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def _imports(module: str) -> set[str]:
    """The package's modules that ``module`` imports when it is imported (not inside functions)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(alias.name for alias in node.names)
    return out & set(MODULES)


def test_no_import_circle():
    graph = {m: _imports(m) for m in MODULES}
    done, path = set(), []

    def visit(m):
        assert m not in path, f"import circle: {' -> '.join([*path[path.index(m) :], m])}"
        if m in done:
            return
        path.append(m)
        for n in graph[m]:
            visit(n)
        path.pop()
        done.add(m)

    for m in MODULES:
        visit(m)


def test_no_private_name_of_another_module():
    used = []
    for m in MODULES:
        text = (PACKAGE / f"{m}.py").read_text()
        imported = {n for n in _imports(m) if re.search(rf"from \. import [\w, ]*\b{n}\b", text)}
        for other in imported:
            used += [f"{m}: {hit}" for hit in re.findall(rf"\b{other}\._[a-z]\w*", text)]
        used += [f"{m}: {hit}" for hit in re.findall(r"from \.\w+ import _\w+", text)]
    assert not used
