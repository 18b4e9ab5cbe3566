"""The transcoder module: activations, sparse paths, decoder-norm handling, losses, dead-feature revival."""

import pytest
import torch

from sctranscoder import tc

D, H = 12, 48


def config(**kwargs):
    values = {"d_in": D, "d_out": D, "d_hidden": H, "k": 4, "batch_size": 64, "n_tokens": 64 * 500,
              "learning_rate": 1e-2, "warmup_steps": 10, "dead_window": 10_000}
    values.update(kwargs)
    return tc.TranscoderConfig(**values)


def sparse_data(n=4096, seed=0, d_in=D, d_out=D, true_features=24):
    """Outputs of a sparse ReLU layer of the inputs (each true feature fires on about 10% of rows), plus noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    enc = torch.randn(true_features, d_in, generator=g) / d_in**0.5
    dec = torch.randn(true_features, d_out, generator=g)
    f = torch.relu(x @ enc.T - 1.28)
    return x, f @ dec + 0.5 + 0.01 * torch.randn(n, d_out, generator=g)


@pytest.mark.parametrize("activation", tc.ACTIVATIONS)
@pytest.mark.parametrize("skip", [False, True])
def test_forward_shapes_and_loss_parts(activation, skip):
    x, y = sparse_data(256)
    t = tc.Transcoder(config(activation=activation, skip=skip))
    t.init_from_data(x, y)
    out = t(x, y, dead=torch.ones(H, dtype=torch.bool))
    assert out.output.shape == y.shape
    assert torch.allclose(out.loss, out.fvu + out.sparsity + out.auxk)
    assert out.auxk > 0  # every feature counted dead: they reconstruct the residual error
    assert (out.sparsity > 0) == (activation in ("relu", "jumprelu"))
    out.loss.backward()
    assert all(p.grad is not None for p in t.parameters())
    assert (t.W_skip is not None) == skip
    assert float(t(x, y, dead=torch.zeros(H, dtype=torch.bool)).auxk) == 0.0
    assert activation in repr(t)


def test_initialization_matches_the_data():
    x, y = sparse_data(2048)
    t = tc.Transcoder(config(activation="topk"))
    t.init_from_data(x, y)
    assert torch.allclose(t.b_in, x.mean(0)) and torch.allclose(t.b_dec, y.mean(0))
    with torch.no_grad():
        spread = (t(x).output - t.b_dec).pow(2).sum(-1).mean()
    assert torch.allclose(spread, t.target_variance, rtol=1e-4)  # outputs start at the targets' size


def test_topk_sparse_path_equals_the_dense_path():
    x, y = sparse_data(128)
    t = tc.Transcoder(config(activation="topk", skip=True))
    t.init_from_data(x, y)
    with torch.no_grad():
        t.W_skip.normal_()
        indices, values = t.encode_sparse(x)
        dense = t.encode(x)
        assert indices.shape == (128, 4) and ((dense > 0).sum(-1) <= 4).all()
        assert torch.allclose(t.decode_sparse(indices, values, x), t.decode(dense, x), atol=1e-5)
        out = t(x)
        assert out.features is None and torch.allclose(out.output, t.decode(dense, x), atol=1e-5)
    with pytest.raises(ValueError, match="needs activation='topk'"):
        tc.Transcoder(config(activation="relu")).encode_sparse(x)


def test_topk_training_gradients_equal_autograd_through_the_dense_pre_activations():
    """The sparse gradient of the chosen entries (and of AuxK's) is the dense autograd gradient, for the
    parameters and for the input (which circuits differentiate)."""
    x, y = sparse_data(96)
    t = tc.Transcoder(config(activation="topk", skip=True), dtype=torch.float64)
    x, y = x.double().requires_grad_(), y.double()
    t.init_from_data(x.detach(), y)
    dead = torch.arange(H) % 3 == 0
    t(x, y, dead=dead).loss.backward()
    sparse = {name: p.grad.clone() for name, p in t.named_parameters()} | {"x": x.grad.clone()}
    t.zero_grad()
    x.grad = None
    pre = t.pre_activations(x)  # the reference: autograd through every pre-activation
    values, indices = pre.topk(4, dim=-1, sorted=False)
    output = t.decode_sparse(indices, torch.relu(values), x)
    masked = torch.where(dead, pre, torch.full_like(pre, -torch.inf))
    aux_values, aux_indices = masked.topk(min(t.cfg.auxk_k, int(dead.sum())), dim=-1, sorted=False)
    estimate = torch.nn.functional.embedding_bag(aux_indices, t.W_dec, per_sample_weights=torch.relu(aux_values),
                                                 mode="sum")
    loss = (output - y).pow(2).sum(-1).mean() / t.target_variance + t.cfg.auxk_coefficient * \
        tc.fraction_of_variance_unexplained(estimate * t.output_scale, (y - output).detach())
    loss.backward()
    dense = {name: p.grad for name, p in t.named_parameters()} | {"x": x.grad}
    for name, grad in dense.items():
        assert torch.allclose(sparse[name], grad, rtol=1e-10, atol=1e-12), name
    assert sparse["W_enc"].abs().sum() > 0 and sparse["x"].abs().sum() > 0


def test_batchtopk_keeps_k_per_row_over_the_batch_and_a_threshold_after():
    x, y = sparse_data(256)
    t = tc.Transcoder(config(activation="batchtopk"))
    t.init_from_data(x, y)
    out = t(x, y)
    assert int((out.features > 0).sum()) == 4 * 256
    assert ((out.features > 0).sum(-1) != 4).any()  # rows differ in how many they keep
    before = float(t.threshold)
    t(x * 3, y)
    assert float(t.threshold) != before  # the running threshold moves in training
    t.eval()
    with torch.no_grad():
        features = t.encode(x)
    pre = t.pre_activations(x)
    assert torch.equal(features > 0, pre > t.threshold)


def test_unit_decoder_rows_and_no_sparsity_from_rescaling():
    x, y = sparse_data(256)
    t = tc.Transcoder(config(activation="topk"))
    t.init_from_data(x, y)
    with torch.no_grad():
        t.W_dec.mul_(3.0)
    t.normalize_decoder()
    assert torch.allclose(t.W_dec.norm(dim=1), torch.ones(H), atol=1e-6)
    t(x, y).loss.backward()
    t.remove_parallel_gradient()
    assert torch.allclose((t.W_dec.grad * t.W_dec).sum(1), torch.zeros(H), atol=1e-6)

    relu = tc.Transcoder(config(activation="relu"))
    relu.init_from_data(x, y)
    before = relu(x, y)
    with torch.no_grad():  # shrink the encoder, grow the decoder: same output, same penalty
        relu.W_enc.mul_(0.1)
        relu.b_enc.mul_(0.1)
        relu.W_dec.mul_(10.0)
    after = relu(x, y)
    assert torch.allclose(before.output, after.output, atol=1e-4)
    assert torch.allclose(before.sparsity, after.sparsity, rtol=1e-4)


def test_jumprelu_thresholds_learn_from_the_l0_penalty():
    x, y = sparse_data(256)
    t = tc.Transcoder(config(activation="jumprelu", l0_coefficient=1.0))
    t.init_from_data(x, y)
    out = t(x, y)
    assert out.features is not None and ((out.features == 0) | (out.features > t.log_threshold.exp())).all()
    out.sparsity.backward()
    assert t.log_threshold.grad is not None and (t.log_threshold.grad <= 0).all() and (t.log_threshold.grad < 0).any()


@pytest.mark.parametrize("activation", tc.ACTIVATIONS)
def test_training_recovers_sparse_structure(activation):
    x, y = sparse_data()
    store = tc_store(x, y)
    t = tc.train(store, 0, config(activation=activation, k=6, l1_coefficient=0.02, l0_coefficient=3e-3),
                 chunks=store.chunks[:-1], progress=False)
    xe, ye = store.read(0, chunks=store.chunks[-1:])
    metrics = tc.evaluate(t, [(xe, ye)])
    assert metrics["fvu"] < 0.25, metrics  # a linear map leaves 0.67, the initial transcoder 2.1
    assert metrics["l0"] <= {"topk": 6, "batchtopk": 10}.get(activation, 12), metrics  # ReLU starts at 24
    assert metrics["n_tokens"] == len(xe) and 0 <= metrics["dead_fraction"] < 1


def tc_store(x, y, shards=8):
    from sctranscoder.harvest import MemoryStore

    store = MemoryStore([0], {0: x.shape[1]}, {0: y.shape[1]})
    for i, (xs, ys) in enumerate(zip(x.chunk(shards), y.chunk(shards))):
        n = len(xs)
        store.write_shard(i, {"layer0.in": xs, "layer0.out": ys, "document": torch.full((n,), i),
                              "position": torch.arange(n, dtype=torch.int32),
                              "gene": torch.full((n,), -1, dtype=torch.int32),
                              "gene_id": torch.full((n,), -1, dtype=torch.int32),
                              "last_of_gene": torch.zeros(n, dtype=torch.bool),
                              "token_id": torch.zeros(n, dtype=torch.int32)})
    return store


def test_resampling_revives_dead_features():
    x, y = sparse_data(512)
    t = tc.Transcoder(config(activation="topk", revival="resample", dead_window=100))
    t.init_from_data(x, y)
    optimizer = torch.optim.Adam(t.parameters())
    t(x, y).loss.backward()
    optimizer.step()
    with torch.no_grad():
        t.tokens_since_fired[:10] = 1000
        before = t.W_dec.clone()
        out = t(x)
    from sctranscoder.tc._train import resample_dead

    assert resample_dead(t, optimizer, x, y, out.output, step=0) == 10
    assert not torch.allclose(t.W_dec[:10], before[:10]) and torch.equal(t.W_dec[10:], before[10:])
    assert (t.tokens_since_fired[:10] == 0).all()
    assert (optimizer.state[t.W_dec]["exp_avg"][:10] == 0).all()


def test_config_checks():
    with pytest.raises(ValueError, match="activation='gelu'"):
        config(activation="gelu")
    with pytest.raises(ValueError, match="k=99 is larger than d_hidden=48"):
        config(k=99)
    with pytest.raises(ValueError, match="Unknown transcoder settings"):
        tc.TranscoderConfig.from_dict({**config().to_dict(), "colour": 1})
    assert tc.TranscoderConfig.from_dict(config().to_dict()) == config()
    cfg = config(warmup_steps=10, n_tokens=64 * 110)
    factors = [tc.learning_rate_factor(s, cfg) for s in range(cfg.n_steps)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == 1.0 and factors[-1] == pytest.approx(0.1, abs=0.01)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
