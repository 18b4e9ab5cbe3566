"""The architecture of a C2S model trained from scratch: a small Pythia-shaped GPT-NeoX."""

from __future__ import annotations


def default_config(tokenizer, *, hidden_size: int = 128, layers: int = 4, heads: int = 4, max_positions: int = 1024,
                   dropout: float = 0.1):
    """A small GPT-NeoX with parallel residual, shaped like Pythia (the C2S-Pythia models)."""
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden_size,
        max_position_embeddings=max_positions,
        use_parallel_residual=True,
        rotary_pct=0.25,
        hidden_dropout=dropout,
        attention_dropout=dropout,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def config_for(config, tokenizer):
    """A model config sized to ``tokenizer``: from :func:`default_config` (``config`` None or a dict of its
    keyword arguments), or a given transformers config with its vocabulary and special tokens set."""
    if config is None or isinstance(config, dict):
        return default_config(tokenizer, **(config or {}))
    config.vocab_size = len(tokenizer)
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    return config
