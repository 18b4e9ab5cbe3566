"""sct.tl.plan against what a real harvest writes, the disk-full refusal, and the plan command."""

import pytest
from safetensors import safe_open

import sctranscoder as sct
from sctranscoder.tl import _plan


@pytest.fixture(scope="module")
def model():
    return sct.models.default()


@pytest.fixture(scope="module")
def cells(pbmc_template):
    return pbmc_template[:12].copy()


def test_plan_sizes_match_a_real_harvest_within_ten_percent(cells, model, tmp_path):
    planned = sct.tl.plan(cells, model, label_key="bulk_labels", out_dir=tmp_path, measure_cells=4)
    store = sct.tl.harvest(cells, model, None, tmp_path / "store", label_key="bulk_labels", chunk_size=4,
                           progress=False)
    written = {layer: 0 for layer in store.layers}
    for shard in (tmp_path / "store").glob("shard-*.safetensors"):
        with safe_open(shard, framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118
                if key.startswith("layer"):
                    written[int(key[5:].split(".")[0])] += handle.get_tensor(key).nbytes
    assert planned.n_rows == len(store)
    for layer, size in written.items():
        assert abs(planned.store_bytes["float16"]["per_layer"] - size) <= 0.1 * size
    on_disk = sum(f.stat().st_size for f in (tmp_path / "store").iterdir())
    assert abs(planned.store_size("float16") - on_disk) <= 0.1 * on_disk
    assert planned.store_bytes["float32"]["per_layer"] == 2 * planned.store_bytes["float16"]["per_layer"]
    assert 0 < planned.tokens_per_cell["min"] <= planned.tokens_per_cell["mean"] <= planned.tokens_per_cell["max"]
    assert set(planned.seconds) == {"forward", "harvest", "train_stored", "train_live"}
    assert all(v > 0 for v in planned.seconds.values())
    text = str(planned)
    assert "tokens per cell" in text and "float16" in text and "live path" in text and "recommended" in text


def test_a_harvest_that_would_not_fit_stops_with_the_plan(cells, model, tmp_path, monkeypatch):
    monkeypatch.setattr(_plan, "free_disk_bytes", lambda path: (10_000, str(tmp_path)))
    with pytest.raises(OSError, match="would not fit") as error:
        sct.tl.harvest(cells, model, None, tmp_path / "store", progress=False)
    assert "Plan for 12 cells" in str(error.value) and "recommended: live training" in str(error.value)
    assert not (tmp_path / "store").exists()  # stopped before anything was written
    with pytest.raises(OSError, match="would not fit"):  # a stored training harvests first: it stops too
        sct.tl.train_transcoders(cells, model, [0], tmp_path / "run", progress=False)


def test_the_recommendation_follows_the_disk_and_the_memory(cells, model, tmp_path, monkeypatch):
    monkeypatch.setattr(_plan, "free_disk_bytes", lambda path: (10**15, str(tmp_path)))
    assert sct.tl.plan(cells, model, measure_cells=0).recommendation.startswith("a stored harvest")
    monkeypatch.setattr(_plan, "free_disk_bytes", lambda path: (1, str(tmp_path)))
    assert sct.tl.plan(cells, model, measure_cells=0).recommendation.startswith("live training")
    # neither the store of all layers nor the live path fits: as many layers as fit, first ones first
    planned = sct.tl.plan(cells, model, measure_cells=0)
    one_layer = planned.store_size(layers=[0])
    monkeypatch.setattr(_plan, "free_disk_bytes", lambda path: (int(one_layer / 0.9) + 1, str(tmp_path)))
    monkeypatch.setattr(_plan, "available_memory_bytes", lambda: 1)
    tight = sct.tl.plan(cells, model, measure_cells=0)
    assert tight.recommended_layers == [0] and "a stored harvest of 1 layers" in tight.recommendation


def test_plan_command(cells, model, tmp_path, capsys):
    from sctranscoder.cli import main
    from sctranscoder.models._default import default_model_path

    cells.write_h5ad(tmp_path / "cells.h5ad")
    code = main(["plan", str(tmp_path / "cells.h5ad"), str(default_model_path()), "--layers", "0,1",
                 "--measure-cells", "0", "--out", str(tmp_path / "run")])
    assert code == 0
    out = capsys.readouterr().out
    assert "Plan for 12 cells, layers 0,1" in out and "tokens per cell" in out and "recommended" in out
