"""Training mechanics: exact resume, save and load, data-parallel training, live harvest, spliced-in metrics."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_tc_model import config, sparse_data, tc_store

import sctranscoder as sct
from sctranscoder import tc

WORKER = Path(__file__).with_name("tc_worker.py")


@pytest.fixture(scope="module")
def store():
    return tc_store(*sparse_data())


def assert_same_weights(a, b, atol=0.0):
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        if atol:
            assert torch.allclose(p.float(), q.float(), rtol=0, atol=atol), name
        else:
            assert torch.equal(p, q), name


@pytest.mark.parametrize("activation", ["topk", "jumprelu"])
def test_resuming_gives_the_weights_of_an_uninterrupted_run(store, tmp_path, activation):
    cfg = config(activation=activation, n_tokens=64 * 120, revival="auxk", dead_window=640)
    straight = tc.train(store, 0, cfg, out_dir=tmp_path / "straight", checkpoint_every=25, progress=False)
    stopped = tc.train(store, 0, cfg, out_dir=tmp_path / "resumed", checkpoint_every=25, stop_after=57,
                       progress=False)
    assert (tmp_path / "resumed" / "checkpoint.safetensors").exists()
    assert not (tmp_path / "resumed" / "config.json").exists()
    assert not torch.equal(stopped.W_enc, straight.W_enc)
    resumed = tc.train(store, 0, cfg, out_dir=tmp_path / "resumed", checkpoint_every=25, progress=False)
    assert_same_weights(resumed, straight)
    assert not (tmp_path / "resumed" / "checkpoint.safetensors").exists()
    again = tc.train(store, 0, cfg, out_dir=tmp_path / "resumed", progress=False)  # finished: loaded, not retrained
    assert_same_weights(again, straight)


def test_a_checkpoint_from_other_settings_is_refused(store, tmp_path):
    tc.train(store, 0, config(n_tokens=64 * 40), out_dir=tmp_path, stop_after=10, progress=False)
    with pytest.raises(ValueError, match="other settings \\(k differ"):
        tc.train(store, 0, config(n_tokens=64 * 40, k=5), out_dir=tmp_path, progress=False)


def test_save_and_load_round_trip(store, tmp_path):
    t = tc.train(store, 0, config(activation="batchtopk", skip=True, n_tokens=64 * 30), progress=False)
    folder = tc.save(t, tmp_path / "tc", model_name="tiny", layer=3, hook_point="mlp", metrics={"fvu": 0.1})
    meta = json.loads((folder / "config.json").read_text())
    assert meta["format"] == "sctranscoder.transcoder" and meta["version"] == 1 and meta["layer"] == 3
    assert meta["config"]["activation"] == "batchtopk" and meta["metrics"] == {"fvu": 0.1}
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "transcoder.safetensors"]
    loaded = tc.load(folder)
    assert_same_weights(loaded, t)
    assert loaded.metadata["model_name"] == "tiny" and not loaded.training
    x, _ = store.read(0)
    with torch.no_grad():
        assert torch.equal(loaded(x).output, t.eval()(x).output)
    tc.save(loaded, folder, layer=4)  # overwriting replaces the folder whole
    assert json.loads((folder / "config.json").read_text())["layer"] == 4
    assert not list(tmp_path.glob(".tc*"))
    with pytest.raises(FileNotFoundError, match="holds no transcoder"):
        tc.load(tmp_path)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("activation", ["topk", "relu"])
def test_two_processes_train_the_weights_of_one(tmp_path, activation):
    one = subprocess.run([sys.executable, str(WORKER), str(tmp_path / "one"), activation], capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(_free_port()), str(WORKER), str(tmp_path / "two"), activation],
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr
    # each process holds half of every batch and gradients are averaged: the same updates up to summation order
    assert_same_weights(tc.load(tmp_path / "two"), tc.load(tmp_path / "one"), atol=1e-4)


def test_token_batches_pad_and_mask():
    batches = tc.token_batches([[1, 2, 3], [4], [5, 6]], [[0, 1, 1], [1], [0, 1]], batch_size=2)
    assert len(batches) == 2
    ids, mask, loss = batches[0]
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert loss.tolist() == [[0, 1, 1], [1, 0, 0]]


def test_transcoders_spliced_into_the_default_model(pbmc_template):
    model = sct.models.default()
    held = pbmc_template.obs_names.isin(model.metadata["held_out_cells"])
    cells = pbmc_template[np.r_[np.flatnonzero(~held)[:60], np.flatnonzero(held)[:24]]].copy()
    transcoders = sct.tl.train_transcoders(cells, model, label_key="bulk_labels", activation="topk", k=16,
                                           d_hidden=512, batch_size=512, n_tokens=512 * 80, learning_rate=3e-3,
                                           warmup_steps=10, progress=False)
    assert len(cells.uns["transcoders"]["held_out_cells"]) == 24
    table = sct.tl.evaluate_transcoders(cells, model, transcoders, label_key="bulk_labels", progress=False)
    assert list(table.index) == ["0", "1", "2", "all"]
    for layer, row in table.iterrows():
        for kind in ("zero", "mean"):
            gap = row[f"ce_{kind}"] - row["ce_clean"]
            if layer in ("0", "all"):
                assert gap > 1  # layer 0's MLP carries the answer; on this model layers 1-2 alone barely do
            if gap > 0:
                assert row[f"recovered_{kind}"] == pytest.approx((row[f"ce_{kind}"] - row["ce"]) / gap)
            else:  # ablating the MLP does not hurt the answer: nothing to recover, so no ratio
                assert np.isnan(row[f"recovered_{kind}"])
        assert row["accuracy_kept"] == pytest.approx(row["accuracy"] / row["accuracy_clean"])
    assert table.loc["all", "recovered_zero"] > 0.5  # the transcoders explain most of what the MLPs do
    assert (table.l0[:3] == 16).all() and (table.fvu < 0.5).all()
    with sct.harvest.replace_mlp(model.model, {k: (lambda x: torch.zeros_like(x)) for k in range(3)}):
        ids, mask, loss = tc.token_batches([[5, 6, 7, 8]])[0]
        zeroed = model.model(input_ids=ids).logits
    assert not torch.allclose(zeroed, model.model(input_ids=ids).logits)


def test_live_training_from_the_model(pbmc_template):
    model = sct.models.default()
    cells = pbmc_template[:40].copy()
    encoded = sct.tl.encode_cells(cells, model, progress=False)
    batches = sct.harvest.stream(model.model, encoded.documents, cells.n_obs, 1, batch_size=512, buffer_rows=4096,
                                 epochs=1, seed=0)
    rows = torch.cat([x for x, _ in batches])
    stored = sct.tl.harvest(cells, model, [1], dtype="float32", progress=False).read(1)[0]
    assert len(stored) - 512 < len(rows) <= len(stored)  # one pass over every token, less a partial batch
    found = {tuple(r.tolist()) for r in stored[:, :4]}
    assert all(tuple(r.tolist()) in found for r in rows[:200, :4])
    transcoders = sct.tl.train_transcoders(cells, model, [1], live=True, activation="topk", k=16, d_hidden=512,
                                           batch_size=256, n_tokens=256 * 60, learning_rate=3e-3, progress=False)
    report = tc.evaluate(transcoders[1], [sct.tl.harvest(cells[:5].copy(), model, [1], progress=False).read(1)])
    assert report["fvu"] < 0.5 and report["l0"] == 16
