"""Execute the tutorial notebooks and save the executed copies that the docs render.

``python docs/execute_tutorials.py`` runs every ``tutorials/*.ipynb`` top to bottom (about as long as
``tests/test_tutorials.py``) and writes it, outputs included, to ``docs/tutorials/``. The docs build
never runs a notebook (``nb_execution_mode = "off"``); ``tests/test_docs.py`` checks that the executed
copies hold the tutorials' current code, so rerun this script after changing a tutorial.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tutorials"
TARGET = ROOT / "docs" / "tutorials"


def scrub(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop this machine's checkout path from outputs (warnings name source files), so pages show package paths."""
    prefix = f"{ROOT}/"
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = output["text"].replace(prefix, "")
            for key, value in output.get("data", {}).items():
                if key.startswith("text/") and isinstance(value, str):
                    output["data"][key] = value.replace(prefix, "")
    return notebook


def execute(path: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as work:  # files the tutorial writes go to a scratch folder
        NotebookClient(notebook, timeout=1200, kernel_name="python3", resources={"metadata": {"path": work}}).execute()
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        raise RuntimeError(f"{path.name} raised: {errors[0].get('ename')}: {errors[0].get('evalue')}")
    return scrub(notebook)


def main(names: list[str]) -> None:
    paths = [SOURCE / n for n in names] if names else sorted(SOURCE.glob("*.ipynb"))
    for path in paths:
        print(f"executing {path.name}", flush=True)
        nbformat.write(execute(path), TARGET / path.name)


if __name__ == "__main__":
    main(sys.argv[1:])
