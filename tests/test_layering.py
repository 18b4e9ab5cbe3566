"""The layering, executable: no import circles (between modules or between subpackages), no private name
imported across subpackages, and the model-agnostic cores import nothing AnnData-facing.

Every import statement counts, also those inside functions (the package imports lazily), so the checks
read the source with ``ast`` rather than ``sys.modules``. Each rule is also run on a tiny synthetic package
that breaks it, so a checker that sees nothing cannot pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sctranscoder"
CORES = ("harvest", "tc", "circuits", "genesets")
ANNDATA_FACING = ("pp", "tl", "pl", "get", "report", "models", "prompt", "datasets", "cli")
THIRD_PARTY_ANNDATA = ("anndata", "scanpy")


# -- the import graph -----------------------------------------------------------------------------------------
def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> list[tuple[str, str | None]]:
    """``(module, name)`` for every import in ``path``, relative imports resolved; ``name`` is what a
    ``from module import name`` takes (``None`` for ``import module``)."""
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found += [(module, alias.name) for alias in node.names]
    return found


def modules_of(root: Path) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def resolve(module: str, name: str | None, known: dict) -> str | None:
    """The package module an import reaches: ``from pkg import sub`` reaches ``pkg.sub`` when that is a module."""
    if name is not None and f"{module}.{name}" in known:
        return f"{module}.{name}"
    while module and module not in known:
        module = module.rpartition(".")[0]
    return module or None


def module_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (a package's ``__init__`` counts as the package)."""
    known = modules_of(root)
    graph = {}
    for name, path in known.items():
        targets = {resolve(module, imported, known) for module, imported in imports_of(path, root)}
        graph[name] = {t for t in targets if t and t != name}
    return graph


def subpackage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def subpackage_graph(root: Path) -> dict[str, set[str]]:
    """Subpackage -> subpackages it imports (the top-level ``__init__`` and the package's own files excluded)."""
    graph: dict = {}
    for source, targets in module_graph(root).items():
        a = subpackage_of(source)
        if a is None:
            continue
        graph.setdefault(a, set())
        graph[a] |= {b for b in map(subpackage_of, targets) if b is not None and b != a}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one node (Tarjan), each sorted: the import circles."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(out)


def private_cross_imports(root: Path) -> list[str]:
    """Imports that take a private name (leading underscore: a function, a class, a constant or a module taken as
    a name) from another subpackage. Public names may come from the owner's files; private ones stay home."""
    known = modules_of(root)
    found = []
    for name, path in known.items():
        home = subpackage_of(name)
        for module, imported in imports_of(path, root):
            if not module.startswith(root.name + "."):
                continue
            if subpackage_of(resolve(module, imported, known) or module) in (None, home):
                continue
            taken = imported if imported is not None else module.rsplit(".", 1)[-1]
            if taken.startswith("_") and not taken.startswith("__"):
                found.append(f"{name} imports {module}.{taken}" if imported else f"{name} imports {module}")
    return sorted(found)


def core_violations(root: Path, cores=CORES) -> list[str]:
    """Imports of an AnnData-facing package (ours or anndata / scanpy) from inside a core subpackage."""
    known = modules_of(root)
    forbidden = {f"{root.name}.{p}" for p in ANNDATA_FACING} | set(THIRD_PARTY_ANNDATA)
    found = []
    for name, path in known.items():
        if subpackage_of(name) not in cores:
            continue
        for module, imported in imports_of(path, root):
            for reached in {module, f"{module}.{imported}" if imported else module}:
                if any(reached == f or reached.startswith(f + ".") for f in forbidden):
                    found.append(f"{name} imports {reached}")
    return sorted(set(found))


# -- the rules on sctranscoder ---------------------------------------------------------------------------------
def test_no_module_import_circles():
    assert cycles(module_graph(PACKAGE)) == []


def test_no_subpackage_import_circles():
    assert cycles(subpackage_graph(PACKAGE)) == []


def test_no_private_name_crosses_subpackages():
    assert private_cross_imports(PACKAGE) == []


def test_cores_import_nothing_anndata_facing():
    assert core_violations(PACKAGE) == []


# -- the checker sees what it must (a tiny package that breaks every rule) --------------------------------------
def _write(root: Path, files: dict) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _broken_package(tmp_path) -> Path:
    return _write(tmp_path / "pkg", {
        "__init__.py": "",
        "tc/__init__.py": "from ._a import a\n",
        "tc/_a.py": "def a():\n    from ._b import b\n    import anndata\n",
        "tc/_b.py": "from ._a import a\nb = 1\n",
        "tl/__init__.py": "",
        "tl/_x.py": "from ..tc._a import a\nfrom ..pl import _hidden\nfrom ..tc import _b\n",
        "pl/__init__.py": "_hidden = 1\n",
        "pl/_y.py": "def y():\n    from .. import tl\n",
        "harvest/__init__.py": "from ..tl._x import a\n",
    })


def test_checker_finds_a_module_circle_inside_functions(tmp_path):
    root = _broken_package(tmp_path)
    assert cycles(module_graph(root)) == [["pkg.tc._a", "pkg.tc._b"]]


def test_checker_finds_a_subpackage_circle(tmp_path):
    root = _broken_package(tmp_path)
    assert cycles(subpackage_graph(root)) == [["pl", "tl"]]


def test_checker_finds_private_cross_imports(tmp_path):
    root = _broken_package(tmp_path)
    assert private_cross_imports(root) == ["pkg.tl._x imports pkg.pl._hidden", "pkg.tl._x imports pkg.tc._b"]


def test_checker_finds_a_core_importing_anndata_facing_code(tmp_path):
    root = _broken_package(tmp_path)
    assert core_violations(root) == ["pkg.harvest imports pkg.tl._x", "pkg.harvest imports pkg.tl._x.a",
                                     "pkg.tc._a imports anndata"]


def test_a_clean_package_passes(tmp_path):
    root = _write(tmp_path / "pkg", {"__init__.py": "", "tc/__init__.py": "from ._a import a\n",
                                     "tc/_a.py": "a = 1\n", "tl/__init__.py": "from ..tc import a\n"})
    assert (cycles(module_graph(root)), cycles(subpackage_graph(root)), private_cross_imports(root),
            core_violations(root)) == ([], [], [], [])
