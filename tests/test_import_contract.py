"""The layering rule, executable: the core knows nothing of AnnData or biology, models do not reach into tl,
plots draw what the tools computed.

Every import statement counts, also those inside functions (the package imports lazily), so the check
reads the source rather than ``sys.modules``.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sctranscoder"
ADAPTERS = {"pp", "tl", "pl", "report", "llm", "cli", "get", "datasets", "models", "prompt"}
CORE = ("harvest", "tc", "circuits", "genesets")

# (subpackage, what it must not import: top-level modules and sctranscoder subpackages)
RULES = [
    *[(core, {"anndata", "scanpy"} | {f"sctranscoder.{a}" for a in ADAPTERS}) for core in CORE],
    ("models", {"sctranscoder.tl", "sctranscoder.pl", "sctranscoder.report", "sctranscoder.cli"}),
    ("pl", {"torch", "sctranscoder.tl", "sctranscoder.tc", "sctranscoder.harvest", "sctranscoder.circuits",
            "sctranscoder.models", "sctranscoder.genesets"}),
]


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, relative imports resolved."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}  # `from .. import tl`
    return names


def violations(subpackage: str, forbidden: set[str]) -> list[str]:
    found = []
    for path in sorted((PACKAGE / subpackage).rglob("*.py")):
        for name in sorted(imports_of(path)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    return found


@pytest.mark.parametrize("subpackage, forbidden", RULES, ids=[rule[0] for rule in RULES])
def test_layering(subpackage, forbidden):
    assert violations(subpackage, forbidden) == []


def test_the_check_sees_imports_inside_functions(tmp_path, monkeypatch):
    fake = tmp_path / "sctranscoder" / "tc"
    fake.mkdir(parents=True)
    (fake / "_leak.py").write_text("def f():\n    from ..tl import harvest\n    import anndata\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "sctranscoder")
    assert violations("tc", RULES[1][1]) == ["sctranscoder/tc/_leak.py imports anndata",
                                            "sctranscoder/tc/_leak.py imports sctranscoder.tl",
                                            "sctranscoder/tc/_leak.py imports sctranscoder.tl.harvest"]
