"""sct.tl.feature_controls: a planted feature passes its controls, a random direction does not, and the
table says what was run."""

import numpy as np
import pandas as pd
import pytest
import torch

import sctranscoder as sct
from sctranscoder.tl._controls import _fisher_greater


def _pathway(genes, families, visible):
    """The Reactome set with the most visible genes that no name family dominates (not spelling)."""
    sets = sct.genesets.load("reactome")
    usable = {s: [g for g in sets[s] if g in visible] for s in sets}
    return max((s for s in usable if 12 <= len(usable[s]) <= 40),
               key=lambda s: (sct.genesets.family_share(usable[s], families) < 0.2) * len(usable[s]))


@pytest.fixture(scope="module")
def planted_feature(pbmc_template):
    """Layer-0 features of the default model: feature 0 points from other genes' tokens to a pathway's gene
    tokens and fires only on its most typical ones; the other 15 are random directions."""
    model = sct.models.default()
    cells = pbmc_template[:48].copy()
    store = sct.tl.harvest(cells, model, [0], None, dtype="float32", only_genes=True, progress=False)
    inputs, _ = store.read(0)
    meta = store.metadata()
    names = np.asarray(store.info["genes"], dtype=object)[meta["gene_id"]]
    visible = set(map(str.upper, names))
    families = sct.genesets.name_families(sorted(visible))
    pathway = _pathway(sorted(visible), families, visible)
    members = np.isin([n.upper() for n in names], sct.genesets.load("reactome")[pathway])
    cfg = sct.tc.TranscoderConfig(d_in=inputs.shape[1], d_out=inputs.shape[1], d_hidden=16, activation="jumprelu",
                                  seed=0)
    transcoder = sct.tc.Transcoder(cfg).eval()
    with torch.no_grad():
        # a least-squares read-out of "this token spells a pathway gene" (mean differences would read subwords)
        x = transcoder.normalized_input(inputs).double()
        x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
        target = torch.where(torch.from_numpy(members), 1.0, -1.0).double()
        direction = torch.linalg.lstsq(x, target[:, None]).solution[:-1, 0].float()
        transcoder.W_enc[0] = direction / direction.norm()
        projection = transcoder.pre_activations(inputs)[:, 0]
        cut = torch.quantile(projection[members], 0.5)  # fires on half of the pathway's gene tokens
        transcoder.b_enc[0] = -cut
        transcoder.log_threshold.fill_(np.log(1e-6))
        for f in range(1, 16):  # the rest fire on ~5% of tokens each
            transcoder.b_enc[f] = -torch.quantile(transcoder.pre_activations(inputs)[:, f], 0.95)
    return cells, model, {0: transcoder}, pathway


def test_a_planted_feature_passes_and_its_random_direction_does_not(planted_feature):
    cells, model, transcoders, pathway = planted_feature
    before = set(cells.uns) | set(cells.obsm)
    table = sct.tl.feature_controls(cells, model, transcoders, "reactome", untrained=False, n_null=200,
                                    progress=False)
    assert list(table.side) == ["trained", "random_directions", "untrained_model"]
    trained, random, untrained = (table.iloc[i] for i in range(3))
    enriched = table.attrs["enriched_features"]
    assert 0 in enriched["layer 0 trained"]  # the planted feature passes
    assert 0 not in enriched["layer 0 random_directions"]  # the random direction firing as often does not
    assert trained.n_enriched == len(enriched["layer 0 trained"]) and random.n_enriched <= 2
    assert trained.n_features == random.n_features  # each direction fires as often as the feature it replaces
    # shares and the test are over the features whose gene list can be tested, on both sides
    assert 0 < trained.n_listable <= trained.n_features and 0 < random.n_listable <= random.n_features
    assert trained.fraction_enriched == trained.n_enriched / trained.n_listable
    assert random.fraction_enriched == random.n_enriched / random.n_listable
    assert np.isnan(trained.p_value) and 0 < random.p_value <= 1
    assert random.p_value == _fisher_greater((trained.n_listable, trained.n_enriched),
                                             (random.n_listable, random.n_enriched))
    assert "skipped" in untrained.note and np.isnan(untrained.fraction_enriched)
    assert set(cells.uns) | set(cells.obsm) == before | {"feature_controls"}  # controls stay out of the user's data
    assert table.attrs["settings"]["cells"] == cells.n_obs


def test_activity_already_computed_gives_the_same_table_and_must_match_the_controls_settings(planted_feature):
    cells, model, transcoders, _ = planted_feature
    options = {"gene_sets": "reactome", "untrained": False, "n_null": 50, "progress": False}
    fresh = sct.tl.feature_controls(cells.copy(), model, transcoders, **options)
    read = cells.copy()
    sct.tl.feature_activity(read, model, transcoders, 0, key_added="mine", progress=False)
    read.uns["mine"]["gene_score"] = "contrast"  # the user's own choice; the controls rank by activity
    reused = sct.tl.feature_controls(read, model, transcoders, activity_keys={0: "mine"}, **options)
    pd.testing.assert_frame_equal(fresh, reused)
    assert fresh.attrs["enriched_features"] == reused.attrs["enriched_features"]
    assert read.uns["mine"]["gene_score"] == "contrast"  # the user's activity is read, not rewritten
    with pytest.raises(KeyError, match="no feature activity under 'nothing'"):
        sct.tl.feature_controls(read, model, transcoders, activity_keys={0: "nothing"}, **options)
    sct.tl.feature_activity(read, model, transcoders, 0, pool="mean", key_added="mean_pooled", progress=False)
    with pytest.raises(ValueError, match="made with pool='mean', the controls with pool='max'"):
        sct.tl.feature_controls(read, model, transcoders, activity_keys={0: "mean_pooled"}, **options)


def test_features_with_too_few_genes_to_test_fire_but_are_not_counted(planted_feature):
    cells, model, transcoders, _ = planted_feature
    # two genes a feature: no list is long enough to test, on any side
    table = sct.tl.feature_controls(cells, model, transcoders, "reactome", untrained=False, n_top=2, n_null=20,
                                    progress=False)
    ran = table[table.note == ""]
    assert list(ran.side) == ["trained", "random_directions"] and (ran.n_features > 0).all()
    assert (ran.n_listable == 0).all() and (ran.n_enriched == 0).all() and ran.fraction_enriched.isna().all()
    assert "none has 3 genes on its list to test" in sct.tl.control_headline(table, 0)


def test_fisher_p_says_when_trained_features_beat_a_control():
    assert _fisher_greater((100, 30), (100, 3)) < 1e-6
    assert _fisher_greater((100, 3), (100, 30)) > 0.99
    assert np.isnan(_fisher_greater((0, 0), (100, 3)))


def test_layers_without_a_transcoder_are_refused(planted_feature):
    cells, model, transcoders, _ = planted_feature
    with pytest.raises(ValueError, match=r"layers \[2\] have no transcoder"):
        sct.tl.feature_controls(cells, model, transcoders, layers=[2], untrained=False)


def test_the_untrained_model_side_trains_transcoders_with_the_same_settings(planted_feature):
    from dataclasses import replace

    cells, model, transcoders, _ = planted_feature
    quick = {0: sct.tc.Transcoder(replace(transcoders[0].cfg, n_tokens=2048, warmup_steps=2, batch_size=256))}
    quick[0].load_state_dict(transcoders[0].state_dict())
    with pytest.warns(UserWarning, match="may not have converged"):  # 8 steps: the side runs, not a quality check
        table = sct.tl.feature_controls(cells[:16].copy(), model, quick, "reactome", n_null=50, progress=False)
    untrained = table[table.side == "untrained_model"].iloc[0]
    assert untrained.note == "" and untrained.n_features > 0 and 0 < untrained.p_value <= 1
