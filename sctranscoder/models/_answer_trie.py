"""Candidate answers as a token trie, fed to a causal LM in one pass after a prompt's key/value cache.

Answers that share leading tokens ("CD4+/CD25 T Reg.", "CD4+/CD45RO+ Memory.") share the
positions that feed those tokens, so one pass over the trie's nodes gives every
candidate's next-token log-probabilities at every step of its answer, with each node
at its own place in the sequence and seeing only the prompt and its own ancestors.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AnswerTrie:
    """Nodes are answer prefixes of one or more tokens; node ``i`` feeds the last token of its prefix.

    ``firsts[j]``: candidate ``j``'s first token (scored from the prompt pass).
    ``feed[i]``, ``depth[i]``, ``parent[i]``: node ``i``'s token, its offset after the
    prompt (1 for the node feeding an answer's first token), its parent node (-1 at depth 1).
    ``steps``: ``(candidate, node, target)`` for every later answer token: the node
    whose output predicts it.
    ``children[i]``: ``{token: child node}``; ``roots``: ``{token: depth-1 node}``.
    """

    firsts: list[int]
    feed: list[int]
    depth: list[int]
    parent: list[int]
    steps: list[tuple[int, int, int]]
    children: list[dict[int, int]]
    roots: dict[int, int]

    @classmethod
    def build(cls, answers: list[list[int]]) -> AnswerTrie:
        index: dict[tuple[int, ...], int] = {}
        feed, depth, parent, steps, children, roots = [], [], [], [], [], {}
        for j, answer in enumerate(answers):
            for t in range(1, len(answer)):
                prefix = tuple(answer[:t])
                if prefix not in index:
                    index[prefix] = len(feed)
                    up = index.get(prefix[:-1], -1)
                    feed.append(answer[t - 1])
                    depth.append(t)
                    parent.append(up)
                    children.append({})
                    (children[up] if up >= 0 else roots)[answer[t - 1]] = index[prefix]
                steps.append((j, index[prefix], answer[t]))
        return cls([a[0] for a in answers], feed, depth, parent, steps, children, roots)

    def __len__(self) -> int:
        return len(self.feed)

    def sees(self):
        """``(n, n)`` boolean torch tensor: node ``i`` attends to node ``k`` (an ancestor of ``i``, or ``i``)."""
        import torch

        n = len(self)
        allowed = torch.eye(n, dtype=torch.bool)
        for i in range(n):
            up = self.parent[i]
            while up >= 0:
                allowed[i, up] = True
                up = self.parent[up]
        return allowed


def trie_pass(lm, trie: AnswerTrie, cache, lengths, width: int, cache_argument: str):
    """Log-probabilities ``(b, n_nodes, vocab)`` after every trie node, following right-padded prompts of
    ``lengths`` real tokens (padded to ``width``) whose key/value ``cache`` is given; and the cache, now
    holding the nodes' keys and values after the prompt's ``width`` columns."""
    import torch

    device = lengths.device
    b, n = lengths.shape[0], len(trie)
    feed = torch.tensor(trie.feed, device=device, dtype=torch.long)
    depth = torch.tensor(trie.depth, device=device, dtype=torch.long)
    prompt_columns = torch.arange(width, device=device)[None, :] < lengths[:, None]
    allowed = torch.cat([prompt_columns[:, None, :].expand(b, n, width),
                         trie.sees().to(device)[None].expand(b, -1, -1)], dim=2)
    dtype = lm.dtype if lm.dtype.is_floating_point else torch.float32
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, torch.finfo(dtype).min)
    out = lm(input_ids=feed[None].expand(b, -1), position_ids=lengths[:, None] - 1 + depth[None],
             attention_mask=mask[:, None], use_cache=True, **{cache_argument: cache})
    cache = getattr(out, "cache", None)
    return torch.log_softmax(out.logits.float(), dim=-1), cache if cache is not None else out.past_key_values
