"""Where each supported architecture keeps its blocks, pre-MLP norm and MLP.

A transcoder replaces the map from the MLP's input (the pre-MLP norm's output)
to what the block adds to the residual stream. For most models that is the MLP
module itself; Gemma-2 normalizes the MLP output again before adding it, so its
"MLP" is ``post_feedforward_layernorm(mlp(x))``. BERT-style encoders (post-norm)
split their MLP over two modules, ``intermediate`` (dense + activation) and
``output`` (dense, dropout, then LayerNorm of the sum with the residual): their
"MLP" is ``output.dense(intermediate(x))``, read before the residual add and the
LayerNorm, so a transcoder stands in for exactly ``dense(act(dense(x)))``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """Module names of one architecture, relative to the causal LM and to each block."""

    blocks: str
    """Dotted path from the model to the list of blocks."""
    mlp: tuple[str, ...]
    """Modules of a block that make up the MLP, applied in order."""
    norm: str
    """The block's pre-MLP norm (its output is the MLP input)."""
    parallel_residual: str | None = None
    """Config attribute that says the MLP reads the block input, not the post-attention stream."""
    attention_out: str | None = None
    """The attention's output projection; its input is the heads' outputs side by side (circuits split it by head)."""
    encoder: bool = False
    """A bidirectional encoder (no next-token loss): judge it by its hidden states, not by cross-entropy."""


_DECODER = Layout(blocks="model.layers", mlp=("mlp",), norm="post_attention_layernorm", attention_out="self_attn.o_proj")

LAYOUTS: dict[str, Layout] = {
    "gpt_neox": Layout(blocks="gpt_neox.layers", mlp=("mlp",), norm="post_attention_layernorm",
                       parallel_residual="use_parallel_residual", attention_out="attention.dense"),
    "gpt2": Layout(blocks="transformer.h", mlp=("mlp",), norm="ln_2", attention_out="attn.c_proj"),
    "llama": _DECODER,
    "qwen2": _DECODER,
    "mistral": _DECODER,
    "gemma2": Layout(blocks="model.layers", mlp=("mlp", "post_feedforward_layernorm"), norm="pre_feedforward_layernorm",
                     attention_out="self_attn.o_proj"),
    # the MLP input is the attention output after its (post-)LayerNorm, which BertIntermediate reads
    "bert": Layout(blocks="bert.encoder.layer", mlp=("intermediate", "output.dense"),
                   norm="attention.output.LayerNorm", encoder=True),
}


def _get(root, path: str):
    for name in path.split("."):
        root = root[int(name)] if name.isdigit() else getattr(root, name)
    return root


def blocks_of(model):
    """The model's list of blocks, whether ``model`` has a head (``BertForMaskedLM``) or is the bare
    base model (``BertModel``), whose blocks path lacks the leading ``base_model_prefix``."""
    path = layout_of(model).blocks
    head, _, rest = path.partition(".")
    if rest and not hasattr(model, head) and getattr(model, "base_model_prefix", None) == head:
        path = rest
    return _get(model, path)


def layout_of(model) -> Layout:
    """The :class:`Layout` of a Hugging Face model, or a ``ValueError`` naming the supported ones."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in LAYOUTS:
        raise ValueError(
            f"Architecture {model_type!r} is not supported for MLP hooks; supported: {', '.join(sorted(LAYOUTS))}. "
            "Add its module names to sctranscoder.harvest.LAYOUTS."
        )
    return LAYOUTS[model_type]


@dataclass(frozen=True)
class MLPSite:
    """The MLP of one block: its modules, and the function a transcoder stands in for."""

    layer: int
    block: object
    modules: tuple
    norm: object
    parallel_residual: bool

    def __call__(self, x):
        """The MLP output for MLP input ``x`` (any leading shape)."""
        for module in self.modules:
            x = module(x)
        return x


def n_layers(model) -> int:
    return len(blocks_of(model))


def mlp_sites(model, layers=None) -> dict[int, MLPSite]:
    """The MLP of each requested layer (all layers when ``layers`` is None); negative indices count from the end."""
    layout = layout_of(model)
    blocks = blocks_of(model)
    count = len(blocks)
    wanted = range(count) if layers is None else layers
    sites = {}
    for layer in wanted:
        index = int(layer) + count if int(layer) < 0 else int(layer)
        if not 0 <= index < count:
            raise IndexError(f"Layer {layer} does not exist; the model has layers 0..{count - 1}.")
        block = blocks[index]
        parallel = bool(getattr(model.config, layout.parallel_residual, False)) if layout.parallel_residual else False
        sites[index] = MLPSite(index, block, tuple(_get(block, m) for m in layout.mlp), _get(block, layout.norm),
                               parallel)
    return dict(sorted(sites.items()))


def attention_outputs(model) -> dict[int, object]:
    """Each block's attention output projection (its input is the heads' outputs, concatenated)."""
    layout = layout_of(model)
    if layout.attention_out is None:
        raise ValueError(f"No attention output projection is known for {model.config.model_type!r}; "
                         "set Layout.attention_out in sctranscoder.harvest.LAYOUTS.")
    return {index: _get(block, layout.attention_out) for index, block in enumerate(blocks_of(model))}


def first_block(model):
    return blocks_of(model)[0]


def final_hidden(model, input_ids):
    """The hidden state the LM head reads, every position, from the decoder alone: a pass that needs no logits
    skips the head (at a 256k vocabulary its logits are the largest tensors of the pass)."""
    decoder = model.base_model
    if decoder is model:
        raise ValueError(f"{type(model).__name__} has no separate decoder (base_model); pass the causal LM.")
    return decoder(input_ids, use_cache=False).last_hidden_state
