import pytest

import sctranscoder as sct


@pytest.fixture
def ranked(pbmc):
    sct.pp.cell_sentences(pbmc, n_genes=50, progress=False)
    return pbmc


def test_canonical_prediction_prompt(ranked):
    table = sct.pp.prompts(ranked, label_key="bulk_labels", n_genes=3, template=0)
    first = sct.get.sentences(ranked, n_genes=3)[0]
    assert table.prompt.iloc[0] == (
        "The following is a list of 3 gene names ordered by descending expression level in a Homo sapiens "
        "cell. Your task is to give the cell type which this cell belongs to based on its gene expression.\n"
        f"Cell sentence: {first}.\nThe cell type corresponding to these genes is:"
    )
    assert table.response.iloc[0] == f"{ranked.obs.bulk_labels.iloc[0]}."
    assert list(table.index) == list(ranked.obs_names)


def test_prediction_needs_no_label(ranked):
    table = sct.pp.prompts(ranked, organism="Mus musculus")
    assert table.response.isna().all()
    assert all("Mus musculus" in p and "50" in p for p in table.prompt)


def test_template_choice_is_reproducible(ranked):
    a = sct.pp.prompts(ranked, label_key="bulk_labels", seed=1)
    b = sct.pp.prompts(ranked, label_key="bulk_labels", seed=1)
    c = sct.pp.prompts(ranked, label_key="bulk_labels", seed=2)
    assert a.equals(b) and not a.template.equals(c.template)
    assert set(a.template) == {0, 1, 2}


def test_generation_prompts(ranked):
    table = sct.pp.prompts(ranked, task="cell_type_generation", label_key="bulk_labels", n_genes=10, template=0)
    label = ranked.obs.bulk_labels.iloc[0]
    assert f"cell of cell type {label}.\nCell sentence:" in table.prompt.iloc[0]
    assert table.response.iloc[0] == sct.get.sentences(ranked, n_genes=10)[0] + "."
    with pytest.raises(ValueError, match="pass label_key"):
        sct.pp.prompts(ranked, task="cell_type_generation")


def test_custom_template_and_errors(ranked):
    table = sct.pp.prompts(ranked, template="{num_genes} genes: {cell_sentence} ->", n_genes=2)
    assert table.prompt.iloc[0] == "2 genes: " + sct.get.sentences(ranked, n_genes=2)[0] + " ->"
    assert (table.template == -1).all()
    with pytest.raises(ValueError, match="task='qa'"):
        sct.pp.prompts(ranked, task="qa")
    with pytest.raises(KeyError, match="label_key='celltype'"):
        sct.pp.prompts(ranked, label_key="celltype")
    with pytest.raises(ValueError, match="template=7"):
        sct.pp.prompts(ranked, template=7)


def test_sentence_start_points_at_the_cell_sentence(ranked):
    sentences = sct.get.sentences(ranked, n_genes=20)
    table = sct.pp.prompts(ranked, label_key="bulk_labels", n_genes=20)  # all templates, drawn per cell
    for prompt, start, sentence in zip(table.prompt, table.sentence_start, sentences):
        assert prompt[start : start + len(sentence)] == sentence
        assert prompt[start - 15 : start] == "Cell sentence: "
    custom = sct.pp.prompts(ranked, template="{num_genes} genes of a {organism} cell", n_genes=2)
    assert (custom.sentence_start == -1).all()
