"""Write the tutorial notebooks from the cell sources below (outputs are never committed).

    python tutorials/make_notebooks.py
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

CELL_SENTENCES = [
    new_markdown_cell(
        "# 1. Cell sentences from your AnnData\n\n"
        "Cell2sentence (C2S) models read a cell as a *sentence*: its gene names, most expressed first. "
        "This tutorial turns an AnnData into sentences, checks how much expression the ranking keeps "
        "(the inverse transform), and builds the prompts a C2S model reads. It runs offline on the "
        "PBMC data that scanpy ships."
    ),
    new_code_cell(
        "import matplotlib\nmatplotlib.use('Agg')\n"
        "import sctranscoder as sct\n\n"
        "adata = sct.datasets.pbmc68k_reduced()\nadata"
    ),
    new_markdown_cell(
        "`adata.X` is scaled (it has negative values), so sentences are built from `adata.raw`, "
        "which holds log-normalized expression; `use_raw=None` picks it, as scanpy does. "
        "`tie_break='c2s'` reproduces cell2sentence 1.2.0's sentences byte for byte."
    ),
    new_code_cell(
        "sct.pp.cell_sentences(adata, tie_break='c2s')\n"
        "sentences = sct.get.sentences(adata, n_genes=10)\n"
        "sentences[:3]"
    ),
    new_markdown_cell(
        "The rankings are stored compactly as integers in `adata.obsm['c2s_ranks']` and follow the "
        "cells when you subset:"
    ),
    new_code_cell(
        "b_cells = adata[adata.obs.bulk_labels == 'CD19+ B']\n"
        "sct.get.sentences(b_cells, n_genes=8)[:2]"
    ),
    new_markdown_cell(
        "## The inverse transform\n\nExpression falls roughly linearly with log10(1 + rank). "
        "Fit the line, then rebuild expression vectors from sentences."
    ),
    new_code_cell(
        "sct.pp.fit_rank_expression(adata)\n"
        "fit = adata.uns['c2s_rank_fit']\n"
        "print({k: round(v, 3) for k, v in fit.items() if isinstance(v, float)})\n"
        "sct.pl.rank_expression(adata, show=False)"
    ),
    new_code_cell(
        "import numpy as np\n"
        "rebuilt = sct.pp.reconstruct_expression(sct.get.sentences(adata), adata=adata)\n"
        "true = adata.raw.X.toarray()\n"
        "expressed = true > 0\n"
        "print('Pearson r on expressed genes:', np.corrcoef(rebuilt[expressed], true[expressed])[0, 1].round(3))"
    ),
    new_markdown_cell("## Prompts\n\nCell-type prediction prompts in the C2S format; the label is only needed for the answer."),
    new_code_cell(
        "prompts = sct.pp.prompts(adata, label_key='bulk_labels', n_genes=20, seed=0)\n"
        "print(prompts.prompt.iloc[0])\nprint('->', prompts.response.iloc[0])"
    ),
    new_markdown_cell("Export for Hugging Face training, or stream a large backed `.h5ad` to parquet:"),
    new_code_cell(
        "ds = sct.pp.to_dataset(adata, ['bulk_labels'], n_genes=100)\nds"
    ),
    new_code_cell(
        "import tempfile, pathlib, pandas as pd\n"
        "out = pathlib.Path(tempfile.mkdtemp()) / 'pbmc_sentences.parquet'\n"
        "sct.pp.write_sentences(adata, out, obs_columns=['bulk_labels'], n_genes=100)\n"
        "pd.read_parquet(out).head(3)"
    ),
]

NOTEBOOKS = {"01_cell_sentences.ipynb": CELL_SENTENCES}


def main():
    for name, cells in NOTEBOOKS.items():
        notebook = new_notebook(cells=cells)
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, HERE / name)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
