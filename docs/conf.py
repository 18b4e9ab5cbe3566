"""Sphinx configuration: `sphinx-build -W --keep-going -b html docs docs/_build/html` (needs the `docs` extra)."""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the source tree's sctranscoder, as the tests import it
sys.path.insert(0, str(DOCS / "_ext"))

project = "sctranscoder"
author = "sctranscoder authors"
copyright = "sctranscoder authors, MIT licence"

extensions = [
    "myst_nb",  # Markdown pages and the executed tutorial notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # numpydoc docstrings
    "sct_api",  # docs/api/<subpackage>.md from each subpackage's __all__, at build time
    "sct_cli",  # the command-line reference, from sctranscoder.cli._parser
]

# the tutorials are rendered from their committed executed copies (docs/tutorials/, made by
# docs/execute_tutorials.py); nothing runs at build time
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autosummary_generate = False  # the API pages are written by sct_api, one per subpackage
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_ivar = True  # dataclass "Attributes" do not collide with autodoc's members
napoleon_use_rtype = False

exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "jupyter_execute"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}
html_theme = "furo"
html_title = "sctranscoder"
html_static_path = []
