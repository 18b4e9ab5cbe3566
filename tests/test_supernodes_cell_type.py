"""result.supernodes of sct.tl.cell_type_circuit, and steering, on the bundled default model with few cells."""

import numpy as np
import pytest

import sctranscoder as sct
from sctranscoder.tc import Transcoder, TranscoderConfig


def _b_cell_circuit(**settings):
    """One B cell's circuit on the default model with untrained transcoders, 3 supernodes at most."""
    model = sct.models.default()
    d = model.model.config.hidden_size
    transcoders = {layer: Transcoder(TranscoderConfig(d_in=d, d_out=d, d_hidden=64, activation="topk", k=8,
                                                      seed=layer)).eval() for layer in range(3)}
    adata = sct.datasets.pbmc68k_reduced()
    result = sct.tl.cell_type_circuit(adata, model, transcoders, "CD19+ B", n_cells=1, max_supernodes=3,
                                      n_null=99, n_identity_cells=4, progress=False, **settings)
    return model, adata, transcoders, result


@pytest.fixture(scope="module")
def circuit():
    return _b_cell_circuit(max_feature_nodes=32, min_feature_share=None)


def test_supernodes_table_has_its_columns_and_cap(circuit):
    *_, result = circuit
    table = result.supernodes
    assert {"name", "n_features", "genes", "predicted_effect", "measured_effect", "measured_effect_unfrozen",
            "control_p"} <= set(table.columns)
    assert 1 <= len(table) <= 3
    assert table.measured_effect.is_monotonic_decreasing
    assert (table.control_p >= 1 / 100).all() and (table.control_p <= 1).all()  # the floor of 99 random lists
    assert table.name.is_unique and np.isfinite(table.predicted_effect).all()
    assert np.isfinite(result.supernode_share)
    # every unfolded circuit feature is in exactly one supernode, each once
    grouped = [f for features in table.features for f in features]
    unfolded = result.folded[~result.folded.folded]
    assert sorted(grouped) == sorted(f"L{a}/F{b}" for a, b in zip(unfolded.layer, unfolded.feature)
                                     if f"feature:{a}:{b}" in result.feature_circuit)
    assert table.n_features.sum() == len(grouped)
    groups = table.attrs["supernodes"]  # what circuit_view and circuit-tracer's qParams.supernodes take
    assert list(groups) == table.name.tolist()
    assert all(node in result.feature_circuit for nodes in groups.values() for node in nodes)


def test_token_identity_features_are_folded_into_gene_inputs(circuit):
    *_, result = circuit
    folded = result.folded
    # the default model is GPT-NeoX with a parallel residual: its layer-0 MLP reads the token embedding alone
    layer0 = folded[folded.layer == 0]
    assert len(layer0) and layer0.folded.all()
    assert folded.attrs["per_layer"][0] == len(layer0)
    graph = result.feature_circuit
    assert not any(d["kind"] == "feature" and d["layer"] == 0 for _, d in graph.nodes(data=True))
    assert any(d.get("folded") for _, d in graph.nodes(data=True) if d["kind"] == "input")
    kept = [d for _, d in graph.nodes(data=True) if d["kind"] == "feature"]
    assert all("positions" in d and "supernode" in d for d in kept)


def test_steering_returns_fractions(circuit):
    model, adata, transcoders, result = circuit
    steered = sct.tl.steer_supernode(adata, model, transcoders, result, "CD14+ Monocyte", n_cells=2, scale=2.0)
    assert len(steered) == 2 and 0.0 <= steered.attrs["fraction_moved"] <= 1.0
    assert ((steered.p_after >= 0) & (steered.p_after <= 1)).all()
    assert steered.attrs["supernode"] == result.supernodes.supernode.iloc[0]
    # the strongest supernode is the one whose switch-off lowers the call most, and its effect travels along
    assert steered.attrs["measured_effect"] == result.supernodes.measured_effect.max()
    assert (steered.n_changes > 0).all()
    # the control raises as many other features of the same layers at the same places
    features, control = steered.attrs["features"], steered.attrs["control_features"]
    assert len(control) == len(features) == len(set(control)) and not set(control) & set(features)
    assert [f.split("/")[0] for f in control] == [f.split("/")[0] for f in features]
    assert (steered.n_changes_control == steered.n_changes).all()
    assert 0.0 <= steered.attrs["fraction_moved_control"] <= 1.0
    assert (steered.moved_control == ((steered.call_after_control == "CD19+ B")
                                      & (steered.call_before != "CD19+ B"))).all()
    # its features were set: the call's probabilities move, and not as the supernode's move them
    assert (steered.p_after_control != steered.p_before).any()
    assert (steered.p_after_control != steered.p_after).any()
    with pytest.raises(ValueError, match="S99"):
        sct.tl.steer_supernode(adata, model, transcoders, result, "CD14+ Monocyte", supernode="S99", n_cells=1)


def test_steering_at_several_doses_gives_each_dose_as_alone(circuit):
    model, adata, transcoders, result = circuit
    doses = sct.tl.steer_supernode(adata, model, transcoders, result, "CD14+ Monocyte", n_cells=2, scale=(4.0, 1.0))
    assert doses.scale.tolist() == [1.0, 1.0, 4.0, 4.0] and doses.attrs["scale"] == [1.0, 4.0]
    assert doses.attrs["fraction_moved"] == [doses.moved[:2].mean(), doses.moved[2:].mean()]
    alone = sct.tl.steer_supernode(adata, model, transcoders, result, "CD14+ Monocyte", n_cells=2, scale=4.0)
    np.testing.assert_allclose(doses.p_after[2:], alone.p_after, rtol=1e-5)
    np.testing.assert_allclose(doses.p_after_control[2:], alone.p_after_control, rtol=1e-5)
    assert (doses.p_after[:2].to_numpy() != doses.p_after[2:].to_numpy()).all()


def test_control_features_are_drawn_from_each_layer_apart_from_the_supernodes():
    from sctranscoder.tl._steer import control_features

    class Width:
        def __init__(self, d_hidden):
            self.cfg = type("cfg", (), {"d_hidden": d_hidden})()

    transcoders = {1: Width(10), 2: Width(6)}
    own = {(1, 0), (1, 4), (1, 7), (2, 5)}
    swapped = control_features(own, transcoders, seed=3)
    assert set(swapped) == own
    drawn = list(swapped.values())
    assert len(set(drawn)) == len(own) and not set(drawn) & own
    assert all(at == layer and 0 <= f < transcoders[layer].cfg.d_hidden for (layer, _), (at, f) in swapped.items())
    assert control_features(own, transcoders, seed=3) == swapped  # seeded
    assert any(control_features(own, transcoders, seed=s) != swapped for s in range(4, 9))
    with pytest.raises(ValueError, match="too few to draw 3 random ones beside the supernode's 3; steer with a wider"):
        control_features({(1, 0), (1, 1), (1, 2)}, {1: Width(5)})  # 2 others


def test_features_over_the_node_budget_join_a_supernode():
    # a node budget of 8: most of the grown circuit's features have no node (no edges); each joins the module it
    # co-activates with, so the supernodes hold the whole circuit and carry what it carries
    *_, result = _b_cell_circuit(max_feature_nodes=8, min_feature_share=0.5)
    table, scores = result.supernodes, result.scores
    assert scores.n_features_over_budget.iloc[0] > 0 and table.n_over_budget.sum() > 0
    unfolded = result.folded[~result.folded.folded]
    assert table.n_features.sum() == len(unfolded)
    assert sorted(f for features in table.features for f in features) == sorted(
        f"L{a}/F{b}" for a, b in zip(unfolded.layer, unfolded.feature))
    assert result.supernode_share == pytest.approx(scores.feature_share.iloc[0], abs=1e-6)
    # steering reads every instance's activation, nodes or not, from the model's own pass
    instances = [a for cells in result.supernode_instances.values() for cell in cells for *_, a in cell]
    assert len(instances) >= table.n_features.sum() and np.isfinite(instances).mean() > 0.9
