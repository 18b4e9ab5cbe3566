"""Random-direction controls: same firing rates as the trained features, random directions, same pipeline."""

import pytest
import torch

from sctranscoder.tc import Transcoder, TranscoderConfig, firing_rates, random_directions


@pytest.fixture(scope="module")
def trained_and_inputs():
    torch.manual_seed(0)
    d = 16
    inputs = torch.randn(4000, d) @ torch.randn(d, d) + 0.5
    tc = Transcoder(TranscoderConfig(d_in=d, d_out=d, d_hidden=64, activation="topk", k=6, seed=1))
    with torch.no_grad():
        tc.W_enc[:8] = 0  # features that never fire keep never firing
        tc.b_enc[:8] = -1e3
    return tc.eval(), inputs


def test_each_direction_fires_as_often_as_the_feature_it_replaces(trained_and_inputs):
    trained, inputs = trained_and_inputs
    control = random_directions(trained, inputs, seed=3)
    expected, got = firing_rates(trained, inputs), firing_rates(control, inputs)
    assert (expected[:8] == 0).all() and (got[:8] == 0).all()
    assert torch.allclose(got, expected, atol=2 / len(inputs))
    held_out = torch.randn(3000, 16) @ torch.randn(16, 16)  # other data: rates are calibrated, not copied
    assert not torch.equal(firing_rates(control, held_out), firing_rates(trained, held_out))


def test_directions_are_random_not_the_trained_ones(trained_and_inputs):
    trained, inputs = trained_and_inputs
    control = random_directions(trained, inputs, seed=3)
    cosine = torch.nn.functional.cosine_similarity(control.W_enc[8:], trained.W_enc[8:], dim=1)
    assert cosine.abs().max() < 0.9 and cosine.abs().mean() < 0.4
    torch.testing.assert_close(control.W_enc.norm(dim=1)[8:], trained.W_enc.norm(dim=1)[8:])
    again = random_directions(trained, inputs, seed=3)
    assert torch.equal(again.W_enc, control.W_enc)
    assert not torch.equal(random_directions(trained, inputs, seed=4).W_enc, control.W_enc)
    acts = control.encode(inputs[:100])
    assert (acts >= 0).all() and acts.shape == (100, 64)


def test_inputs_of_the_wrong_shape_are_refused(trained_and_inputs):
    trained, _ = trained_and_inputs
    with pytest.raises(ValueError, match=r"inputs must be \(rows >= 2, d_in=16\)"):
        random_directions(trained, torch.randn(10, 8))
