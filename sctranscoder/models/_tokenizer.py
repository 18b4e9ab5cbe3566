"""Train small tokenizers on cell sentences and prompts, in the styles real C2S models use."""

from __future__ import annotations

from collections.abc import Iterable

SPECIAL_TOKENS = {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>", "unk_token": "<|unk|>"}
KINDS = ("byte_bpe", "sentencepiece", "word")


def train_tokenizer(texts: Iterable[str], *, kind: str = "byte_bpe", vocab_size: int = 600):
    """Train a fast tokenizer on ``texts``.

    Parameters
    ----------
    texts
        Training text: cell sentences and prompts.
    kind
        ``"byte_bpe"`` (byte-level BPE, as GPT-NeoX / Pythia), ``"sentencepiece"``
        (BPE over whitespace-marked pieces, as Gemma's SentencePiece), or ``"word"``
        (one token per whitespace-separated word, trailing punctuation split off).
    vocab_size
        Vocabulary size for the subword kinds; keep it below the number of genes
        so that most gene names take several tokens, as in real C2S models.

    Returns
    -------
    A :class:`transformers.PreTrainedTokenizerFast`.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}.")
    specials = list(SPECIAL_TOKENS.values())
    texts = list(texts)
    if kind == "byte_bpe":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    elif kind == "sentencepiece":
        tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"\s*\n\s*|[.,:;!?]+(?=\s|$)"), behavior="isolated"),
            pre_tokenizers.Metaspace(),
        ])
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    else:
        tokenizer = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk_token"]))
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(r"[.,:;!?]+$"), behavior="isolated"),
        ])
        tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
        trainer = trainers.WordLevelTrainer(special_tokens=specials, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)
