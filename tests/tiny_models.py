"""Tiny configs of the real architectures, for tests that need a model."""

from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    BertConfig,
    Gemma2Config,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    Qwen2Config,
)

ARCHITECTURES = ("gpt_neox", "gpt_neox_sequential", "gpt2", "llama", "qwen2", "gemma2")
# bidirectional encoders: kept apart, as tests over ARCHITECTURES assume causal LMs (logits, next-token loss)
ENCODERS = ("bert",)


def tiny_config(arch: str, tokenizer, hidden: int = 32, layers: int = 2, positions: int = 512):
    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    if arch.startswith("gpt_neox"):
        return GPTNeoXConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                             intermediate_size=4 * hidden, max_position_embeddings=positions,
                             use_parallel_residual=(arch == "gpt_neox"), **ids)
    if arch == "gpt2":
        return GPT2Config(n_embd=hidden, n_layer=layers, n_head=4, n_positions=positions, **ids)
    if arch in ("llama", "qwen2"):
        return (LlamaConfig if arch == "llama" else Qwen2Config)(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                           intermediate_size=2 * hidden, max_position_embeddings=positions, **ids)
    if arch == "gemma2":
        return Gemma2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                            head_dim=hidden // 4, intermediate_size=2 * hidden, max_position_embeddings=positions, **ids)
    if arch == "bert":
        return BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                          num_attention_heads=4, intermediate_size=4 * hidden, max_position_embeddings=positions,
                          pad_token_id=tokenizer.pad_token_id)
    raise ValueError(arch)


def tiny_model(arch: str, tokenizer, seed: int = 0, **kwargs):
    """A randomly initialised tiny model in eval mode (a causal LM; for an encoder, its bare base model)."""
    import torch

    torch.manual_seed(seed)
    auto = AutoModel if arch in ENCODERS else AutoModelForCausalLM
    return auto.from_config(tiny_config(arch, tokenizer, **kwargs)).eval()


def save_tiny_model(arch: str, tokenizer, folder, seed: int = 0):
    """A randomly initialised tiny model and its tokenizer, saved in the Hugging Face layout."""
    model = tiny_model(arch, tokenizer, seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
