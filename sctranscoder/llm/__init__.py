"""The general LLM path: the same harvest, transcoder and evaluation core on plain text, with any supported
causal LM (GPT-NeoX, GPT-2, Llama, Qwen2, Mistral, Gemma-2) or BERT-style encoder.

>>> import sctranscoder as sct                                        # doctest: +SKIP
>>> model, tokenizer = sct.llm.minilm()                               # doctest: +SKIP
>>> store = sct.llm.harvest(model, tokenizer, train_texts, out_dir="acts")   # doctest: +SKIP
>>> tcs = sct.llm.train_transcoders(store, d_hidden=3072, k=32)       # doctest: +SKIP
>>> sct.llm.evaluate(model, tokenizer, tcs, test_texts)               # doctest: +SKIP
>>> sct.llm.top_activations(tcs[3], store, feature=7, tokenizer=tokenizer)   # doctest: +SKIP
>>> sct.llm.trace(causal_lm, tok, tcs, "The capital of France is", token=" Paris")   # doctest: +SKIP
"""

from ._circuits import trace
from ._corpus import pydoc_corpus, split_by_topic
from ._embedding import embedding_faithfulness, sentence_embeddings
from ._features import feature_activations, top_activations
from ._harvest import harvest
from ._minilm import minilm, minilm_path
from ._text import TextSource, document_tokens, token_strings, tokenize
from ._transcoders import evaluate, train_transcoders

__all__ = [
    "TextSource",
    "document_tokens",
    "embedding_faithfulness",
    "evaluate",
    "feature_activations",
    "harvest",
    "minilm",
    "minilm_path",
    "pydoc_corpus",
    "sentence_embeddings",
    "split_by_topic",
    "token_strings",
    "tokenize",
    "top_activations",
    "trace",
    "train_transcoders",
]
