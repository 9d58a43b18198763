"""fastkan's modules import one another without a circle, use no other module's private names, and no
evaluation path imports another."""

import ast
import re
from pathlib import Path

from fastkan.explain import PATHS

PACKAGE = Path(__file__).resolve().parents[1] / "fastkan"
# Dotted names below the package: "layer", "paths.fused".
MODULES = sorted(
    ".".join(p.relative_to(PACKAGE).with_suffix("").parts) for p in PACKAGE.rglob("*.py") if p.stem != "__init__"
)


def _file(module: str) -> Path:
    return PACKAGE.joinpath(*module.split(".")).with_suffix(".py")


def _imports(module: str) -> set[str]:
    """The package's modules that ``module`` imports when it is imported (not inside functions)."""
    tree = ast.parse(_file(module).read_text())
    package = module.split(".")[:-1]
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            base = package[: len(package) - (node.level - 1)]
            if node.module:
                out.add(".".join([*base, *node.module.split(".")]))
                base = [*base, *node.module.split(".")]
            out.update(".".join([*base, alias.name]) for alias in node.names)
    return out & set(MODULES)


def test_no_import_circle():
    graph = {m: _imports(m) for m in MODULES}
    assert graph["layer"] >= {"dispatch", "modes", "paths.small"}  # the parser sees both kinds of import
    assert graph["paths.fused"] >= {"paths.common", "paths.one_output"}
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


def test_no_path_imports_another():
    paths = {".".join(Path(p.module).relative_to("fastkan").with_suffix("").parts) for p in PATHS}
    paths.discard("layer")  # the plain composition
    assert paths == {"paths.small", "paths.compiled", "paths.rows", "paths.local", "paths.triton_spline", "paths.fused"}
    crossing = {m: _imports(m) & paths for m in paths}
    assert not any(crossing.values()), crossing


def test_no_private_name_of_another_module():
    used = []
    for m in MODULES:
        text = _file(m).read_text()
        for other in _imports(m):
            name = other.split(".")[-1]
            if re.search(rf"from \.+[\w.]* import [\w, ]*\b{name}\b", text):
                used += [f"{m}: {hit}" for hit in re.findall(rf"\b{name}\._[a-z]\w*", text)]
        used += [f"{m}: {hit}" for hit in re.findall(r"from \.+[\w.]* import _\w+", text)]
    assert not used
