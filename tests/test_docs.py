"""The docs: the site builds with warnings as errors, every public name is in the API reference, every
Python block of the README and the user guide runs (in order, on simulated data), and the pages hold
no links out of the repository."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
sys.path.insert(0, str(DOCS / "_ext"))

import sct_api  # noqa: E402  (docs/_ext: the generator the build uses)

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
NOT_RUN = "# not run:"  # a block that starts with this line is skipped, and says why


# --- the build -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The HTML site, built as CI builds it: warnings are errors."""
    out = tmp_path_factory.mktemp("html")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 0, f"sphinx-build -W failed:\n{run.stdout}\n{run.stderr}"
    return out


def test_docs_build_with_warnings_as_errors(built):
    for page in ["index", "install", "glossary", "design", "cli", "api/index", "guide/index", "benchmarks/index",
                 "tutorials/index"]:
        assert (built / f"{page}.html").exists(), page


def test_every_public_name_is_in_the_api_reference(built):
    missing = []
    for module_name in sct_api.subpackages():
        page = (built / "api" / f"{module_name.split('.')[-1]}.html").read_text()
        module = importlib.import_module(module_name)
        for name in sct_api.public_names(module_name):
            if getattr(module, name).__class__.__name__ == "module":
                continue  # a subpackage has its own page
            if f'id="{module_name}.{name}"' not in page:
                missing.append(f"{module_name}.{name}")
    assert not missing, f"not in the API reference: {missing}"


def test_api_pages_cover_every_subpackage():
    import sctranscoder

    names = {m.split(".")[-1] for m in sct_api.subpackages()}
    assert set(sctranscoder.__all__) <= names  # every subpackage the package exports has a page
    assert {"pp", "tl", "models", "circuits", "tc", "harvest", "genesets", "report", "llm", "cli"} <= names


def test_cli_reference_lists_every_subcommand(built):
    from sctranscoder.cli._parser import build_parser

    page = (built / "cli.html").read_text()
    _, subs = build_parser()
    for name, parser in subs.items():
        assert f"sctranscoder {name}" in page
        for action in parser._actions:
            for option in action.option_strings:
                assert option in page, f"{name} {option}"


def test_every_benchmark_script_has_a_page():
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_")}
    pages = {p.stem for p in (DOCS / "benchmarks").glob("*.md")} - {"index"}
    assert scripts == pages
    index = (DOCS / "benchmarks" / "index.md").read_text()
    assert all(f"({s}.md)" in index for s in scripts)


def test_executed_tutorials_match_the_notebooks():
    """The docs render executed copies (never run at build time); they must hold today's tutorial code."""
    sources = sorted((ROOT / "tutorials").glob("*.ipynb"))
    assert sources
    for source in sources:
        copy = DOCS / "tutorials" / source.name
        assert copy.exists(), f"run python docs/execute_tutorials.py ({copy} is missing)"
        code = [c.source for c in nbformat.read(source, 4).cells if c.cell_type == "code"]
        executed = nbformat.read(copy, 4)
        assert [c.source for c in executed.cells if c.cell_type == "code"] == code, \
            f"{copy.name} is stale: run python docs/execute_tutorials.py {source.name}"
        outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
        assert outputs and not [o for o in outputs if o.output_type == "error"]


# --- what the pages say ----------------------------------------------------------------------------------------

def _pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 150


@pytest.mark.parametrize("pattern", [r"\bissue \d", r"\bthe bar\b", r"\bnot met\b", r"\bsessions?\b",
                                     r"\brounds?\b", r"\bturn \d"])
def test_pages_describe_the_software_not_how_it_is_made(pattern):
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in _pages()
            for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(pattern, line, re.I)]
    assert not hits, hits


def test_links_stay_inside_the_repository():
    bad = []
    for page in _pages():
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address or an anchor on the same page
            path = (page.parent / target.split("#")[0]).resolve()
            if ROOT not in path.parents or not path.exists():
                bad.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not bad, bad


GLOSSARY = ROOT / "sctranscoder" / "report" / "glossary.md"  # one text: the docs page includes it, the report shows it


def test_glossary_defines_the_terms():
    text = GLOSSARY.read_text()
    for term in ["Transcoder", "Feature", "Circuit", "Supernode", "FVU", "L0", "Loss recovered", "It can exceed 1",
                 "Log-odds", "Replacement score", "Completeness score", "De-embedding", "Knockout"]:
        assert re.search(rf"^{re.escape(term)}|\*\*{re.escape(term)}", text, re.M), term


def test_report_links_to_its_own_glossary():
    from sctranscoder.report import ReportContent, render_html
    from sctranscoder.report._glossary import glossary_entries

    page = render_html(ReportContent(methods=["A method."]))
    methods = page[page.index('id="methods"'):]
    links = re.findall(r'<a href="([^"]+)"[^>]*>([^<]*)</a>', methods)
    assert ("#glossary", "glossary") in links  # within the page: the report is one file and links nowhere
    section = page[page.index('<h2 id="glossary">'):]
    terms = [term for _, term, _ in glossary_entries()]
    assert len(terms) >= 13 and all(f">{term}</dt>" in section for term in terms if "*" not in term)
    assert "Loss recovered" in terms and "can exceed 1" in section
    assert "HLA-D*" in section and "\\*" not in section and "glossary.md" not in page


# --- the examples run ------------------------------------------------------------------------------------------

def python_blocks(path: Path) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text()) if lang == "python"]


def guide_pages() -> list[Path]:
    index = (DOCS / "guide" / "index.md").read_text()
    toctree = re.search(r"```\{toctree\}\n(.*?)```", index, re.S).group(1)
    names = [line.strip() for line in toctree.splitlines() if line.strip() and not line.startswith(":")]
    return [DOCS / "guide" / f"{name}.md" for name in names]


def run_blocks(blocks: list[tuple[str, str]], workdir: Path) -> None:
    """Run blocks in order in one namespace, in ``workdir``; a DeprecationWarning from sctranscoder is an error."""
    import matplotlib

    matplotlib.use("Agg")
    # the namespace's module name starts with "sctranscoder", so a deprecation warned at the example's own call
    # (stacklevel 2) fails too, as does one warned inside the package
    namespace = {"__name__": "sctranscoder_docs_examples"}
    old = Path.cwd()
    os.chdir(workdir)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", category=DeprecationWarning, module=r"sctranscoder")
            for where, code in blocks:
                if code.lstrip().startswith(NOT_RUN):
                    reason = code.lstrip().splitlines()[0][len(NOT_RUN):].strip()
                    assert reason, f"{where}: a block that is not run must say why"
                    continue
                exec(compile(code, where, "exec"), namespace)  # noqa: S102
    finally:
        os.chdir(old)
        import matplotlib.pyplot as plt

        plt.close("all")


def test_every_python_block_of_the_guide_has_a_page_in_order():
    pages = guide_pages()
    assert all(p.exists() for p in pages)
    assert sum(len(python_blocks(p)) for p in pages) >= 10


def test_guide_examples_run_in_order(tmp_path):
    blocks = [(f"{page.relative_to(ROOT)} block {i + 1}", code)
              for page in guide_pages() for i, code in enumerate(python_blocks(page))]
    run_blocks(blocks, tmp_path)
    assert (tmp_path / "report.html").exists()


def test_readme_examples_run_in_order(tmp_path):
    blocks = [(f"README.md block {i + 1}", code) for i, code in enumerate(python_blocks(README))]
    assert blocks
    run_blocks(blocks, tmp_path)


def test_block_runner_fails_on_a_deprecation(tmp_path):
    code = ("import warnings\n"
            "def old():\n    warnings.warn('renamed', DeprecationWarning, stacklevel=2)\n"
            "old()\n")
    with pytest.raises(DeprecationWarning):
        run_blocks([("example", code)], tmp_path)
    with pytest.raises(AssertionError, match="must say why"):
        run_blocks([("example", "# not run:\nprint(1)\n")], tmp_path)


def test_glossary_anchors_that_pages_link_to_exist():
    text = GLOSSARY.read_text()
    anchors = set(re.findall(r"^\((glossary-[a-z-]+)\)=", text, re.M))
    links = {a for p in _pages() for a in re.findall(r"glossary\.md#(glossary-[a-z-]+)", p.read_text())}
    assert links <= anchors, links - anchors
