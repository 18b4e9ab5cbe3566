"""Defaults that hold: automatic settings, pluggable activations, and a warning for an unconverged transcoder."""

import json
import logging
import math
import warnings

import pytest
import torch
from test_tc_model import config, sparse_data, tc_store

from sctranscoder import tc
from sctranscoder.cli import _parse
from sctranscoder.cli._parser import build_parser


def relu_topk(transcoder, pre):
    """ReLU first, then the k largest: a row with fewer than k positive pre-activations keeps fewer."""
    values, indices = torch.relu(pre).topk(transcoder.cfg.k, dim=-1, sorted=False)
    return None, indices, values


@pytest.fixture
def registered():
    activation = tc.register_activation(tc.Activation("relu_topk", relu_topk, "ReLU, then the k largest",
                                                      sparse=True, uses_k=True))
    yield activation
    tc.unregister_activation("relu_topk")


def planted(n=4096, seed=0, d=32, features=16):
    """Inputs and outputs that are both linear in the same sparse non-negative codes (about 1.6 active per row);
    ``seed`` draws the codes, the maps from codes to rows are the same for every sample."""
    maps = torch.Generator().manual_seed(0)
    encoder, decoder = torch.randn(features, d, generator=maps), torch.randn(features, d, generator=maps)
    g = torch.Generator().manual_seed(seed + 1)
    f = torch.rand(n, features, generator=g) * (torch.rand(n, features, generator=g) < 0.1)
    return f @ encoder, f @ decoder


@pytest.mark.filterwarnings("ignore:The transcoder of layer 0 may not have converged")
def test_a_registered_activation_trains_and_is_offered_by_the_cli(registered, tmp_path):
    assert "relu_topk" in tc.ACTIVATIONS and "relu_topk" in tc.activation_names()
    x, y = sparse_data()
    store = tc_store(x, y)
    t = tc.train(store, 0, config(activation="relu_topk", k=6), chunks=store.chunks[:-1], out_dir=tmp_path / "tc",
                 progress=False)
    assert t.activation is registered and "k=6" in repr(t)
    metrics = tc.evaluate(t, [store.read(0, chunks=store.chunks[-1:])])
    assert metrics["fvu"] < 0.25 and metrics["l0"] <= 6, metrics  # as the built-in TopK in test_tc_model
    out = t(x[:64])
    assert out.features is None and out.indices.shape == (64, 6)  # decoded sparsely, as declared
    assert torch.equal(tc.load(tmp_path / "tc").encode(x[:64]), t.encode(x[:64]))
    subcommands = build_parser()[1]
    for name in ("train", "quickstart"):
        option = next(a for a in subcommands[name]._actions if a.dest == "activation")
        assert "relu_topk" in option.choices and "ReLU, then the k largest" in option.help
    assert _parse(["train", "acts", "tc", "--activation", "relu_topk"]).activation == "relu_topk"
    with pytest.raises(ValueError, match="already registered"):
        tc.register_activation(registered)


def test_unknown_activations_are_refused_everywhere():
    assert "relu_topk" not in tc.ACTIVATIONS  # the fixture's registration did not leak
    with pytest.raises(ValueError, match="activation='relu_topk' must be one of"):
        config(activation="relu_topk")
    with pytest.raises(SystemExit):
        _parse(["train", "acts", "tc", "--activation", "relu_topk"])


def test_automatic_settings_follow_their_rules():
    cfg = tc.TranscoderConfig(d_in=128, d_out=128, d_hidden=2048)
    assert cfg.automatic == ("learning_rate", "batch_size", "n_tokens")
    with pytest.raises(ValueError, match="resolve the config first"):
        cfg.n_steps  # noqa: B018
    pbmc = cfg.resolve(292_776)  # the default model's training tokens
    assert pbmc.learning_rate == pytest.approx(2e-4 * math.sqrt(8))
    assert pbmc.batch_size == 1024 and pbmc.n_tokens == 1024 * 1000 and pbmc.n_steps == 1000
    assert pbmc.automatic == () and pbmc.resolve(10) == pbmc  # resolved values are kept
    assert cfg.resolve(None).batch_size == 4096 and cfg.resolve(10**9).batch_size == 4096
    assert cfg.resolve(1000).batch_size == 64  # never below 64
    assert cfg.resolve(None, world_size=3).batch_size % 3 == 0
    assert tc.TranscoderConfig(d_in=8, d_out=8, d_hidden=2**14).resolve().learning_rate == pytest.approx(2e-4)
    chosen = tc.TranscoderConfig(d_in=8, d_out=8, learning_rate=1e-3, batch_size=512, auto_steps=30).resolve(10**6)
    assert (chosen.learning_rate, chosen.batch_size, chosen.n_tokens) == (1e-3, 512, 512 * 30)


def test_training_records_and_logs_the_resolved_settings(tmp_path, caplog):
    x, y = planted(2048)
    store = tc_store(x, y)
    cfg = tc.TranscoderConfig(d_in=32, d_out=32, d_hidden=64, k=4, auto_steps=20, warmup_steps=2)
    with caplog.at_level(logging.INFO, logger="sctranscoder.tc"), \
            pytest.warns(UserWarning, match="raise auto_steps to 40 \\(or set n_tokens\\)"):  # 20 steps are too few
        t = tc.train(store, 0, cfg, out_dir=tmp_path / "tc", progress=False)
    assert (t.cfg.batch_size, t.cfg.n_tokens) == (64, 64 * 20)  # 2,048 rows: the smallest batch
    assert t.cfg.learning_rate == pytest.approx(2e-4 * 16)
    saved = json.loads((tmp_path / "tc" / "config.json").read_text())
    assert saved["config"] == t.cfg.to_dict() and saved["metrics"]["final"]["measured_on"] == "last training batches"
    assert "learning_rate 0.0032, batch_size 64, n_tokens 1,280 (automatic" in caplog.text
    with pytest.raises(ValueError, match="fewer than one batch \\(4096\\)"):
        tc.train(store, 0, tc.TranscoderConfig(d_in=32, d_out=32, batch_size=4096), progress=False)


def test_a_tiny_run_warns_and_a_converged_one_does_not():
    store = tc_store(*planted())
    with pytest.warns(UserWarning, match="may not have converged after 5 steps") as caught:
        tiny = tc.train(store, 0, config(d_in=32, d_out=32, k=4, n_tokens=64 * 5), progress=False)
    message = str(caught[0].message)
    assert "raise n_tokens to at least 64,000" in message and "FVU" in message
    assert tiny.metadata["metrics"]["final"]["fvu"] > 0.1
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        converged = tc.train(store, 0, config(d_in=32, d_out=32, k=4, n_tokens=64 * 150), progress=False)
    assert not [w for w in seen if "converged" in str(w.message)]
    final = converged.metadata["metrics"]["final"]
    assert final["fvu"] < 0.1 and final["dead_fraction"] <= 0.2
    # on held-out rows too, not only on the batches it was measured on
    assert tc.evaluate(converged, [planted(1024, seed=1)])["fvu"] < 0.1


def test_dead_features_warn_with_what_to_change():
    from sctranscoder.tc._convergence import advice

    cfg = config(revival="none").resolve()
    message = advice({"fvu": 0.02, "dead_fraction": 0.5, "n_tokens": 1000}, cfg, 3, 500)
    assert "layer 3" in message and "50% of features dead" in message and "revival='auxk'" in message
    assert "FVU" not in message
    auxk = advice({"fvu": 0.02, "dead_fraction": 0.5, "n_tokens": 1000}, config().resolve(), 3, 500)
    assert "lower learning_rate to 0.005 or use revival='resample'" in auxk
    assert advice({"fvu": 0.02, "dead_fraction": 0.1, "n_tokens": 1000}, cfg, 3, 500) is None
