"""A choice among candidate answers as a target: its log-odds (or log-probability), linearized at the input.

An answer's score is the sum of its tokens' log-probabilities after the prompt
(``S_c``), and the call is ``q = softmax(S)`` over the candidates, as the model's
own candidate scoring does. The target is the label's log-odds against all other
candidates, ``log q_label - log(1 - q_label) = S_label - logsumexp(S_rivals)``
(it does not saturate when the call is sure, as ``log q_label`` does), or
``log q_label = S_label - logsumexp(S)``.
It is not linear in the model's final hidden states, so, as circuit-tracer does
for its logit targets, it is replaced by its first-order expansion there: a
direction per read position, ``d T / d h_r``, and a constant that makes the
expansion equal the target at this input. The model is fed the prompt and the
label's own answer (without its last token); rival answers are read where they
share the label's path and at the token where they part from it. What a rival's
later tokens add (its score past that point, weighted by its probability
``q_c``, small when the call is right) is left out of the direction, but not
out of the value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._deprecations import renamed_keywords
from ..harvest import final_hidden
from ._candidates import shared_prefix_length


@dataclass(eq=False)
class Readout:
    """A linear function of the final hidden states: ``sum_r h[positions[r]] . vectors[r] + constant``."""

    positions: tuple
    vectors: torch.Tensor
    constant: float
    label: str = ""
    feature: tuple | None = None  # what Target has; a readout is never a feature target

    @property
    def position(self) -> int:
        return int(self.positions[-1])

    def scalar(self, linear) -> torch.Tensor:
        hidden = linear.final_hidden.float()
        vectors = self.vectors.to(hidden.device)
        return (hidden[list(self.positions)] * vectors).sum() + self.constant

    def read(self, final_hidden: torch.Tensor, *unused) -> torch.Tensor:
        """The readout from final hidden states ``(batch, tokens, d)`` of a real forward pass."""
        vectors = self.vectors.to(final_hidden.device)
        return ((final_hidden[:, list(self.positions)].float() * vectors).sum((1, 2)) + self.constant).detach()


@torch.no_grad()
def _scores(model, prompt: list, answers: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Each answer's summed token log-probabilities, and the log-probabilities along each answer."""
    device = next(model.parameters()).device
    sequences = [prompt + list(a[:-1]) for a in answers]
    width = max(len(s) for s in sequences)
    batch = torch.zeros(len(sequences), width, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        batch[row, : len(sequence)] = torch.tensor(sequence)
    logp = torch.log_softmax(model(batch.to(device), use_cache=False).logits.float(), -1).cpu()
    start = len(prompt) - 1
    scores = torch.stack([sum(logp[c, start + t, token] for t, token in enumerate(answer))
                          for c, answer in enumerate(answers)])
    return scores, logp


@renamed_keywords(model="lm")
def answer_logprob(lm, prompt_ids, answers, index: int, *, kind: str = "logodds", label: str = ""):
    """The target ``log P(answers[index] | candidates)`` (or its log-odds) after ``prompt_ids``, linearized.

    Parameters
    ----------
    lm
        A Hugging Face causal LM.
    prompt_ids
        The prompt's token ids.
    answers
        Each candidate's answer tokens (ending in its end token), as the model's scoring uses them.
    index
        Which candidate is the label.
    kind
        ``"logodds"`` (default): ``log q / (1 - q)``; ``"logprob"``: ``log q``.

    Returns
    -------
    ``(target, input_ids, info)``: a :class:`Readout`, the ids to trace (the prompt and the label's
    answer but its last token), and ``info`` with ``value`` (the target's), ``logprob``, ``logodds``, ``probabilities``
    (every candidate's, as the model's candidate scoring gives them) and ``scores`` (each ``S_c``).
    """
    prompt = [int(t) for t in prompt_ids]
    answers = [[int(t) for t in a] for a in answers]
    if len(answers) < 2:
        raise ValueError("A choice among candidates needs at least two candidate answers.")
    if kind not in ("logodds", "logprob"):
        raise ValueError(f"kind={kind!r} must be 'logodds' or 'logprob'.")
    if not 0 <= index < len(answers):
        raise IndexError(f"index {index} is not one of the {len(answers)} candidates.")
    mine = answers[index]
    scores, logp = _scores(lm, prompt, answers)
    scores64 = scores.double()
    q = torch.softmax(scores64, 0)
    rivals = torch.ones(len(answers), dtype=torch.bool)
    rivals[index] = False
    logprob = float(scores64[index] - torch.logsumexp(scores64, 0))
    logodds = float(scores64[index] - torch.logsumexp(scores64[rivals], 0))
    value = logodds if kind == "logodds" else logprob
    # d value / d S_c: 1 - q_c for the label's own score under log q, and -q_c for a rival; under the
    # log-odds, 1 and minus the rival's share among the rivals
    share = torch.softmax(scores64.masked_fill(~rivals, float("-inf")), 0) if kind == "logodds" else q
    fed = prompt + mine[:-1]
    start = len(prompt) - 1

    head = lm.get_output_embeddings()
    with torch.no_grad():
        hidden = final_hidden(lm, torch.tensor([fed], device=head.weight.device))[0].float().cpu()
    unembedding = head.weight.detach().float().cpu()
    bias = head.bias.detach().float().cpu() if getattr(head, "bias", None) is not None else None
    raw = hidden[start:] @ unembedding.T + (bias if bias is not None else 0)
    softcap = getattr(lm.config, "final_logit_softcapping", None)
    slope = 1 - torch.tanh(raw / softcap) ** 2 if softcap else torch.ones_like(raw)
    p = torch.softmax(logp[index, start : start + len(mine)], -1)  # the model's next-token distribution

    coefficients = torch.zeros(len(mine), unembedding.shape[0], dtype=torch.float64)
    for c, answer in enumerate(answers):
        weight = (1.0 if c == index else 0.0) - float(share[c])
        last = len(mine) - 1 if c == index else shared_prefix_length(answer, mine)
        for t in range(min(last + 1, len(answer))):
            coefficients[t, answer[t]] += weight
            coefficients[t] -= weight * p[t].double()
    vectors = ((coefficients * slope.double()) @ unembedding.double()).float()
    positions = tuple(range(start, start + len(mine)))
    linear_part = float((hidden[list(positions)] * vectors).sum())
    target = Readout(positions, vectors, value - linear_part, label=label or f"log P(candidate {index})")
    info = {"value": value, "logprob": logprob, "logodds": logodds, "probabilities": q.float().numpy(),
            "scores": scores.numpy()}
    return target, fed, info
