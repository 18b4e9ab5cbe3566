import anndata as ad
import numpy as np
import pytest

import sctranscoder as sct

TRICKY = ["HLA-DRA", "RP11-34P13.7", "MT-CO1", "C1orf56", "NKX2-1", "AC009.2", "H2AFZ", "IGHV3-23", "MIR155HG"]


@pytest.fixture(scope="module")
def corpus(pbmc_template):
    """PBMC sentences and prompts, plus a small matrix of tricky gene names (dashes, dots, digits)."""
    pbmc = pbmc_template.copy()
    sct.pp.cell_sentences(pbmc, progress=False)
    rng = np.random.default_rng(0)
    tricky = ad.AnnData(rng.poisson(1.5, size=(40, len(TRICKY))).astype(np.float32))
    tricky.var_names = TRICKY
    sct.pp.cell_sentences(tricky, progress=False)
    prompts = []
    for adata in (pbmc, tricky):
        prompts += list(sct.pp.prompts(adata, n_genes=60, seed=1).prompt)
    sentences = sct.get.sentences(pbmc, n_genes=60) + sct.get.sentences(tricky)
    return sentences, prompts


@pytest.fixture(scope="module", params=["byte_bpe", "sentencepiece", "word"])
def tokenizer(request, corpus):
    sentences, prompts = corpus
    return sct.models.train_tokenizer(sentences + prompts, kind=request.param, vocab_size=300)


def test_decoded_spans_are_the_gene_names(tokenizer, corpus):
    sentences, prompts = corpus
    checked = 0
    for sentence, prompt in zip(sentences, prompts):
        spans = sct.models.gene_spans(tokenizer, prompt, sentence)
        assert spans.genes == sentence.split(" ")
        for gene, (start, stop) in zip(spans.genes, spans.spans):
            assert tokenizer.decode(spans.input_ids[start:stop]).strip() == gene
            assert (spans.token_gene[start:stop] == spans.genes.index(gene)).all()
            checked += 1
        outside = np.ones(spans.token_gene.size, bool)
        for start, stop in spans.spans:
            outside[start:stop] = False
        assert (spans.token_gene[outside] == -1).all()
    assert checked > 700 * 50
    assert {g.upper() for g in TRICKY} <= {g for s in sentences for g in s.split(" ")}


def test_subword_tokenizers_split_genes(tokenizer, corpus):
    sentences, prompts = corpus
    spans = sct.models.gene_spans(tokenizer, prompts[0], sentences[0])
    lengths = spans.spans[:, 1] - spans.spans[:, 0]
    if tokenizer.backend_tokenizer.model.__class__.__name__ == "WordLevel":
        assert (lengths == 1).all()
    else:
        assert lengths.max() > 1
    last = spans.last_token_of_gene
    assert last.sum() == len(spans.genes) and last[spans.spans[:, 1] - 1].all()


def test_special_tokens_and_given_start(corpus):
    sentences, prompts = corpus
    tok = sct.models.train_tokenizer(sentences + prompts, kind="byte_bpe", vocab_size=300)
    prompt = tok.bos_token + prompts[0]
    start = prompt.find(sentences[0])
    spans = sct.models.gene_spans(tok, prompt, sentences[0], sentence_start=start)
    assert spans.input_ids[0] == tok.bos_token_id and spans.token_gene[0] == -1
    with pytest.raises(ValueError, match="does not hold the sentence"):
        sct.models.gene_spans(tok, prompt, sentences[0], sentence_start=start + 1)
    with pytest.raises(ValueError, match="does not occur"):
        sct.models.gene_spans(tok, "no genes here", sentences[0])


def test_token_across_two_genes_is_refused():
    from sctranscoder.models._spans import spans_from_offsets

    char_spans = np.array([[0, 3], [4, 7]])
    with pytest.raises(ValueError, match="two genes"):
        spans_from_offsets(np.array([[0, 2], [2, 5]]), char_spans)
    assert spans_from_offsets(np.array([[0, 3], [3, 7], [7, 8]]), char_spans).tolist() == [0, 1, -1]


def test_slow_tokenizer_is_refused():
    class Slow:
        is_fast = False

    with pytest.raises(TypeError, match="fast tokenizer"):
        sct.models.gene_spans(Slow(), "A B", "A B")
