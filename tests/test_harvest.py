"""Harvesting the default C2S model into activation stores: rows, metadata, options, store rules."""

import numpy as np
import pytest
import torch

import sctranscoder as sct
from sctranscoder.harvest import ActivationStore, MemoryStore, MLPCapture


@pytest.fixture(scope="module")
def model():
    return sct.models.default()


@pytest.fixture(scope="module")
def cells(pbmc_template, model):
    adata = pbmc_template[:20].copy()
    sct.pp.cell_sentences(adata, **sct.pp.PromptSettings.of_model(model).sentence_options(), progress=False)
    return adata


@pytest.fixture(scope="module")
def full(cells, model):
    return sct.tl.harvest(cells, model, label_key="bulk_labels", dtype="float32", batch_size=6, chunk_size=8,
                          drop_special=False, progress=False)


def test_rows_are_the_mlp_activations_of_each_cells_prompt(cells, model, full):
    table = sct.pp.prompts(cells, n_genes=200, label_key="bulk_labels", template=0)
    meta = full.metadata()
    x, y = {}, {}
    for layer in full.layers:
        x[layer], y[layer] = full.read(layer)
    for cell in (0, 7, 19):  # first chunk, end of a forward batch, last (short) chunk
        tok = model.tokenizer
        ids = tok(table.prompt.iloc[cell], add_special_tokens=False)["input_ids"]
        ids += tok(table.response.iloc[cell], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        with MLPCapture(model.model) as capture, torch.no_grad():
            model.model(torch.tensor([ids]))
        rows = np.flatnonzero(meta["document"] == cell)
        assert np.array_equal(meta["position"][rows], np.arange(len(ids)))  # every token, padding never
        assert np.array_equal(meta["token_id"][rows], ids)
        for layer in full.layers:
            assert torch.allclose(x[layer][rows], capture.inputs[layer][0], atol=1e-5)
            assert torch.allclose(y[layer][rows], capture.outputs[layer][0], atol=1e-5)
    assert len(full) == sum(np.sum(meta["document"] == c) for c in range(cells.n_obs))
    assert full.n_shards == 3 and full.info["complete"]


def test_each_gene_token_names_its_gene(cells, model, full):
    meta = full.metadata()
    genes = np.asarray(full.info["genes"])
    sentences = sct.get.sentences(cells, n_genes=200)
    for cell in (3, 12):
        rows = np.flatnonzero(meta["document"] == cell)
        gene, gene_id, ids = meta["gene"][rows], meta["gene_id"][rows], meta["token_id"][rows]
        expected = sentences[cell].split(" ")
        assert gene.max() == len(expected) - 1
        for k, name in enumerate(expected):
            mine = gene == k
            assert model.tokenizer.decode(ids[mine]).strip() == name
            assert set(genes[gene_id[mine]]) == {name}
            last = meta["last_of_gene"][rows][mine]
            assert last[-1] and not last[:-1].any()
        outside = gene < 0
        assert (gene_id[outside] == -1).all() and not meta["last_of_gene"][rows][outside].any()
        # the answer and EOS follow the sentence and are not gene tokens
        assert model.tokenizer.decode(ids[-4:]).endswith("<|eos|>") and gene[-4:].max() == -1


def test_token_options(cells, model, full):
    meta = full.metadata()
    genes_only = sct.tl.harvest(cells, model, label_key="bulk_labels", only_genes=True, progress=False)
    g = genes_only.metadata()
    assert (g["gene"] >= 0).all() and len(g["gene"]) == int(np.sum(meta["gene"] >= 0))
    assert genes_only.read(0)[0].dtype == torch.float32 and genes_only.dtype == "float16"

    no_special = sct.tl.harvest(cells, model, label_key="bulk_labels", dtype="float32", batch_size=6, chunk_size=8,
                                progress=False)
    eos = meta["token_id"] == model.tokenizer.eos_token_id
    assert eos.sum() == cells.n_obs and len(no_special) == len(full) - cells.n_obs

    kwargs = dict(dtype="float32", batch_size=6, chunk_size=8, drop_special=False, subsample=0.25, progress=False)
    part = sct.tl.harvest(cells, model, label_key="bulk_labels", seed=1, **kwargs)
    again = sct.tl.harvest(cells, model, label_key="bulk_labels", seed=1, **kwargs)
    other = sct.tl.harvest(cells, model, label_key="bulk_labels", seed=2, **kwargs)
    p = part.metadata()
    assert 0.2 < len(part) / len(full) < 0.3
    assert np.array_equal(p["position"], again.metadata()["position"])
    assert not np.array_equal(p["position"], other.metadata()["position"])
    key = meta["document"] * 10_000 + meta["position"]
    index = np.searchsorted(key, p["document"] * 10_000 + p["position"])
    assert torch.equal(part.read(2)[1], full.read(2)[1][torch.from_numpy(index)])  # a subset of the same rows


def test_on_disk_store_holds_the_same_rows(cells, model, full, tmp_path):
    for dtype in ("float32", "bfloat16"):
        store = sct.tl.harvest(cells, model, out_dir=tmp_path / dtype, label_key="bulk_labels", dtype=dtype,
                               batch_size=6, chunk_size=8, drop_special=False, progress=False)
        reopened = ActivationStore(tmp_path / dtype)
        assert reopened.complete and reopened.n_shards == 3 and len(reopened) == len(full)
        assert reopened.info["genes"] == full.info["genes"] and reopened.dtype == dtype
        x, y = reopened.read(1)
        if dtype == "float32":
            assert torch.equal(x, full.read(1)[0]) and torch.equal(y, full.read(1)[1])
        else:
            assert torch.allclose(y, full.read(1)[1], rtol=1e-2, atol=1e-2)
        assert all(np.array_equal(a, b) for a, b in zip(reopened.metadata().values(), full.metadata().values()))
        assert "complete" in repr(store)
    assert not list(tmp_path.glob("*/.tmp-*"))


def test_store_refuses_mixing_settings_and_foreign_folders(cells, model, tmp_path):
    small = cells[:4].copy()
    sct.tl.harvest(small, model, layers=[0], out_dir=tmp_path / "s", progress=False)
    with pytest.raises(ValueError, match="other settings.*layers"):
        sct.tl.harvest(small, model, layers=[1], out_dir=tmp_path / "s", progress=False)
    with pytest.raises(ValueError, match="other settings.*info"):
        sct.tl.harvest(cells[4:8].copy(), model, layers=[0], out_dir=tmp_path / "s", progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an activation store"):
        sct.tl.harvest(small, model, out_dir=tmp_path / "other", progress=False)
    with pytest.raises(FileNotFoundError, match="no store.json"):
        ActivationStore(tmp_path / "other")
    with pytest.raises(KeyError, match="holds layers \\[0\\]"):
        ActivationStore(tmp_path / "s").read(2)
    with pytest.raises(ValueError, match="dtype='int8'"):
        sct.tl.harvest(small, model, dtype="int8", progress=False)
    with pytest.raises(ValueError, match="subsample=0"):
        sct.tl.harvest(small, model, subsample=0, progress=False)


def _rows_of(batches):
    """The batches' input rows as a multiset: sorted lexicographically over every column (a key built from a few
    columns collides)."""
    x = torch.cat([b[0] for b in batches]).numpy()
    return torch.from_numpy(x[np.lexsort(x.T[::-1])])


def test_shuffled_batches_cover_every_row_once(full):
    x_all = _rows_of([full.read(1)])
    batches = list(full.batches(1, 100, seed=3, shards_in_memory=1))
    assert all(len(b[0]) == 100 for b in batches[:-1]) and len(batches[-1][0]) <= 100
    assert torch.equal(_rows_of(batches), x_all)
    first = torch.cat([b[0] for b in batches])
    assert not torch.equal(first, full.read(1)[0])  # shuffled
    assert torch.equal(first, torch.cat([b[0] for b in full.batches(1, 100, seed=3, shards_in_memory=1)]))
    assert not torch.equal(first, torch.cat([b[0] for b in full.batches(1, 100, seed=3, epoch=1,
                                                                          shards_in_memory=1)]))
    ranks = [list(full.batches(1, 64, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert torch.equal(_rows_of(ranks[0] + ranks[1]), x_all)
    paired = next(full.batches(1, 50, seed=0))
    assert torch.equal(paired[1], full.read(1)[1][[torch.nonzero((full.read(1)[0] == r).all(1))[0, 0]
                                                   for r in paired[0]]])  # inputs stay paired with outputs
    assert sum(len(b[0]) for b in full.batches(1, 128, drop_last=True)) == len(full) // 128 * 128


def test_memory_store_for_notebooks():
    store = MemoryStore([0], {0: 4}, {0: 4})
    assert len(store) == 0 and store.n_shards == 0
    with pytest.raises(ValueError, match="no rows"):
        store.read(0)
