"""An offline English corpus that ships with every Python: the pydoc topics help text."""

from __future__ import annotations

import re


def pydoc_corpus(min_chars: int = 40):
    """The paragraphs of Python's own help topics (``pydoc_data.topics``), one row per paragraph.

    Paragraphs are split at blank lines, their whitespace collapsed; shorter ones than
    ``min_chars`` (headings, rules) are dropped. About 2,000 paragraphs, 125k BERT
    tokens of technical English with some code. Returns a DataFrame with ``topic``
    and ``text``; split by ``topic`` for held-out texts that share no topic with training.
    """
    from pydoc_data.topics import topics

    import pandas as pd

    rows = []
    for topic in sorted(topics):
        for paragraph in re.split(r"\n\s*\n", topics[topic]):
            text = " ".join(paragraph.split())
            if len(text) >= min_chars:
                rows.append((topic, text))
    return pd.DataFrame(rows, columns=["topic", "text"])


def split_by_topic(corpus, eval_fraction: float = 0.2, seed: int = 0):
    """``(train, held_out)`` lists of texts: a seeded ``eval_fraction`` of the topics is held out whole."""
    import numpy as np

    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction={eval_fraction} must be between 0 and 1.")
    topics = np.asarray(sorted(set(corpus.topic)))
    rng = np.random.default_rng(seed)
    held = set(rng.choice(topics, size=max(1, round(eval_fraction * len(topics))), replace=False))
    mask = corpus.topic.isin(held).to_numpy()
    return corpus.text[~mask].tolist(), corpus.text[mask].tolist()
