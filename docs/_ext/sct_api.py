"""The API reference, generated at build time: one page per subpackage, every name in its ``__all__``.

Pages are written to ``docs/api/<subpackage>.md`` when the build starts (they are not committed), so a
name added to or moved between subpackages appears without editing the docs. Each page holds one
``sct-api`` directive (reStructuredText, inside ``eval-rst``), which expands to a summary table and the autodoc entry of every public name.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

PACKAGE = "sctranscoder"
API_DIR = Path(__file__).resolve().parents[1] / "api"
KEEP = {"index.md"}  # hand-written pages in docs/api/


def subpackages() -> list[str]:
    """Every public subpackage of sctranscoder (a folder with ``__init__.py`` whose name has no underscore)."""
    package = importlib.import_module(PACKAGE)
    return sorted(f"{PACKAGE}.{m.name}" for m in pkgutil.iter_modules(package.__path__)
                  if m.ispkg and not m.name.startswith("_"))


def public_names(module_name: str) -> list[str]:
    """The names a module exports: its ``__all__``."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        raise ValueError(f"{module_name} has no __all__; the API reference lists exactly __all__")
    return list(names)


def _page(module_name: str) -> str:
    return f"# `{module_name}`\n\n```{{eval-rst}}\n.. sct-api:: {module_name}\n```\n"


def write_pages(app=None) -> list[Path]:
    """Write ``docs/api/<subpackage>.md`` for every subpackage; remove pages of packages that are gone."""
    API_DIR.mkdir(exist_ok=True)
    wanted = {f"{name.split('.')[-1]}.md": _page(name) for name in subpackages()}
    for path in API_DIR.glob("*.md"):
        if path.name not in wanted and path.name not in KEEP:
            path.unlink()
    written = []
    for file_name, text in wanted.items():
        path = API_DIR / file_name
        if not path.exists() or path.read_text() != text:  # unchanged pages keep their time stamp
            path.write_text(text)
        written.append(path)
    return written


def _entry(module_name: str, name: str, obj) -> list[str]:
    target = f"{module_name}.{name}"
    if inspect.ismodule(obj):
        return []  # a subpackage: it has its own page
    if inspect.isclass(obj):
        home = _home(obj)
        if home is not None and home != module_name:  # one full entry per class, in the subpackage it lives in
            return [f".. py:class:: {name}", f"   :module: {module_name}", "",
                    f"   The same class as :class:`{home}.{name}` (re-exported here).", ""]
        return [f".. autoclass:: {target}", "   :members:", ""]
    if callable(obj):
        return [f".. autofunction:: {target}", ""]
    # a constant: autodoc would show its type's docstring (a dict's), so say what it is instead
    size = f", {len(obj)} entries" if hasattr(obj, "__len__") else ""
    return [f".. py:data:: {name}", f"   :module: {module_name}", "", f"   A constant (``{type(obj).__name__}``{size}); see the source.", ""]


def _home(cls) -> str | None:
    """The public subpackage that defines ``cls`` and exports it (``None`` when it exports it nowhere)."""
    parts = cls.__module__.split(".")
    if len(parts) < 2 or parts[0] != PACKAGE:
        return None
    home = ".".join(parts[:2])
    try:
        exported = getattr(importlib.import_module(home), "__all__", [])
    except ImportError:
        return None
    return home if cls.__name__ in exported and home in subpackages() else None


def _plain(text: str) -> str:
    """A docstring's first sentence as plain reStructuredText text (roles and markup dropped, rest escaped)."""
    text = re.sub(r":[a-z:]+:`~?([^`]+)`", r"\\1", " ".join(text.split()))
    text = text.replace("``", "").replace("`", "").replace("**", "")
    for char in "\\*|_":
        text = text.replace(char, "\\" + char)
    return text


def _first_sentence(obj) -> str:
    if not (inspect.isclass(obj) or callable(obj)):
        return f"A constant ({type(obj).__name__})."
    doc = inspect.getdoc(obj) or ""
    paragraph = doc.split("\n\n")[0]
    match = re.match(r"(.+?[.!?])(\s|$)", " ".join(paragraph.split()))
    return _plain(match.group(1) if match else paragraph)


def _summary_table(module_name: str, module, names: list[str]) -> list[str]:
    """A table of the public names (skipping subpackages, which have pages), each with its first sentence."""
    shown = [n for n in names if not inspect.ismodule(getattr(module, n))]
    if not shown:
        return []
    lines = [".. list-table::", "   :widths: 30 70", ""]
    for name in shown:
        lines += [f"   * - :py:obj:`~{module_name}.{name}`", f"     - {_first_sentence(getattr(module, name))}"]
    return lines + [""]


class ApiDirective(SphinxDirective):
    """``sct-api MODULE``: the module's docstring, a table of its ``__all__`` and each name's entry."""

    required_arguments = 1

    def run(self):
        module_name = self.arguments[0]
        module = importlib.import_module(module_name)
        names = public_names(module_name)
        lines = [f".. automodule:: {module_name}", ""]
        lines += _summary_table(module_name, module, names)
        for name in names:
            lines += _entry(module_name, name, getattr(module, name))
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source=f"<{module_name}.__all__>"), node)
        return node.children


def setup(app):
    app.add_directive("sct-api", ApiDirective)
    app.connect("builder-inited", write_pages, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
