"""A first-order estimate of token-group knockouts in the real model: gradients of attention masks.

Knocking a gene out of a prompt mostly means that no later token can read it.
Add a log-weight ``m_t`` to every attention score towards token ``t`` (in every
layer, head and query; ``m = 0`` is the model itself, ``m -> -inf`` hides the
token). The gradient of a target with respect to ``m``, summed over a group's
tokens, is the first-order effect of hiding the group, attention's
renormalisation included (which a linearization with frozen patterns leaves out).
One forward and one backward pass give every group's estimate.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .._deprecations import renamed_keywords
from ._frozen import eager_attention

_SOFTMAX = {F.softmax, torch.softmax, torch.Tensor.softmax}


class _KeyBias(TorchFunctionMode):
    """Add a bias over key positions to every attention softmax's input."""

    def __init__(self, bias: torch.Tensor):
        super().__init__()
        self.bias = bias

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _SOFTMAX:
            scores = args[0]
            width = scores.shape[-1]
            bias = torch.cat([self.bias, self.bias.new_zeros(max(0, width - self.bias.numel()))])[:width]
            args = (scores + bias.to(scores.dtype), *args[1:])
        return func(*args, **kwargs)


@renamed_keywords(model="lm", candidates="answer_ids")
def attention_mask_gradients(lm, input_ids, groups, answer_ids, label: int) -> dict:
    """Per group: d log P(candidate ``label``) / d (log-weight of attention to the group's tokens).

    Parameters
    ----------
    lm
        A causal LM (run with eager attention, so the softmax is visible).
    input_ids
        One prompt, ``(tokens,)``.
    groups
        Per prompt token, a group name (e.g. its gene) or ``None``.
    answer_ids
        Answers (token-id sequences) scored after the prompt; ``log P`` is normalized over them.
    label
        Index of the candidate whose log-probability is the target.

    Returns
    -------
    ``{group: gradient}``: positive where hiding the group would lower P(label) (to first order).
    """
    ids = [int(t) for t in torch.as_tensor(input_ids).reshape(-1).tolist()]
    if len(groups) != len(ids):
        raise ValueError(f"groups has {len(groups)} entries; the prompt has {len(ids)} tokens.")
    device = next(lm.parameters()).device
    answers = [list(map(int, a)) for a in answer_ids]
    width = len(ids) + max(len(a) for a in answers)
    batch = torch.full((len(answers), width), ids[0], dtype=torch.long)
    for row, answer in enumerate(answers):
        batch[row, : len(ids) + len(answer)] = torch.tensor(ids + answer)
    bias = torch.zeros(len(ids), device=device, requires_grad=True)
    with torch.enable_grad(), eager_attention(lm), _KeyBias(bias):
        keep = width - len(ids) + 1  # logits only where answer tokens are predicted
        logits = lm(batch.to(device), use_cache=False, logits_to_keep=keep).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        scores = torch.stack([sum(logp[row, j, t] for j, t in enumerate(answer)) for row, answer in enumerate(answers)])
        target = scores[label] - torch.logsumexp(scores, 0)
        (gradient,) = torch.autograd.grad(target, bias)
    per_group = defaultdict(float)
    for position, group in enumerate(groups):
        if group is not None:
            per_group[group] += float(gradient[position])
    return dict(per_group)


def group_names(token_gene: np.ndarray, sentence_genes, names) -> list:
    """Per token: the name of the gene it spells (``token_gene`` indexes ``sentence_genes``), else ``None``."""
    return [str(names[sentence_genes[g]]) if g >= 0 else None for g in token_gene]
