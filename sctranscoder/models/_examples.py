"""Training examples for C2S prompts: token ids with the loss on the answer, batching, the answer loss,
and simulated-dropout copies of cells (augmentation)."""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = -100


def encode_examples(tokenizer, prompts, responses, *, add_special_tokens: bool = False):
    """Token ids of prompt + answer + EOS, with labels masked on the prompt.

    ``add_special_tokens`` lets the tokenizer add its special tokens (a BOS) to the prompt, as the model's
    prompt settings say; the answer never gets them.
    """
    prompt_ids = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    answer_ids = tokenizer(list(responses), add_special_tokens=False)["input_ids"]
    examples = []
    for p, a in zip(prompt_ids, answer_ids):
        answer = a + [tokenizer.eos_token_id]
        examples.append({"input_ids": p + answer, "labels": [IGNORE_INDEX] * len(p) + answer})
    return examples


def per_example_loss(outputs, labels, num_items_in_batch=None):
    """Cross-entropy averaged over each example's answer tokens, then over examples."""
    import torch.nn.functional as F

    logits = outputs["logits"][:, :-1].float()
    target = labels[:, 1:]
    token_loss = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE_INDEX, reduction="none")
    counts = (target != IGNORE_INDEX).sum(dim=1).clamp(min=1)
    return (token_loss.sum(dim=1) / counts).mean()


def pad_batch(examples, pad_id: int):
    """Right-pad a list of examples into tensors (labels padded with -100)."""
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def dropout_copy(adata, fraction: float, seed: int, *, layer=None, use_raw=None):
    """A copy of ``adata`` whose expression matrix has a random ``fraction`` of stored values zeroed."""
    from scipy import sparse

    from ..pp._matrix import select_expression

    source = select_expression(adata, layer=layer, use_raw=use_raw, uppercase=False)
    matrix = sparse.csr_matrix(source.matrix, copy=True)
    rng = np.random.default_rng(seed)
    matrix.data[rng.random(matrix.data.size) < fraction] = 0
    noisy = adata.copy()
    if source.use_raw:
        import anndata as ad

        noisy.raw = ad.AnnData(matrix, obs=noisy.obs[[]], var=adata.raw.var)
    elif layer is not None:
        noisy.layers[layer] = matrix
    else:
        noisy.X = matrix
    return noisy


def held_out_split(labels, test_size: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out cells, stratified by label (every label keeps a training cell)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = np.zeros(labels.size, bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n = int(round(test_size * members.size))
        n = min(n, members.size - 1)
        held[rng.choice(members, size=n, replace=False)] = True
    return held
