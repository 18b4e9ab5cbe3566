"""Prompt settings: how a cell becomes a C2S prompt, in one object recorded with models and sentences."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, fields, replace

from ._sentences import LEGACY_TIE_KEY, PARAMS_KEY, RANKS_KEY, TIE_KEY

SETTINGS_KEY = "prompt"  # adata.uns['c2s']['prompt'] and sctranscoder.json's "prompt"


@dataclass(frozen=True)
class PromptSettings:
    """Everything that decides a cell's prompt: its sentence, the template around it, how it is tokenized.

    A model trained by :func:`sctranscoder.models.train_c2s` records these in
    ``sctranscoder.json``; every ``sct.tl`` function reads them back from the model
    (:meth:`of_model`), builds missing sentences with them, and refuses sentences
    made otherwise (:meth:`check_sentences`).
    """

    n_genes: int = 200
    """Genes per cell sentence (the top ``n_genes`` by expression)."""
    organism: str = "Homo sapiens"
    """Written into the prompt."""
    template: int | str = 0
    """Prompt template: an index into :data:`sctranscoder.pp.PREDICTION_TEMPLATES` or a format string."""
    tie_break: str = "random"
    """Order of genes with equal expression (see :func:`sctranscoder.pp.cell_sentences`)."""
    seed: int = 42
    """Seed of the random tie-break."""
    tie_key: str = TIE_KEY
    """What else seeds a cell's random tie-break: ``"name"`` (its obs name: the same sentence in any subset) or
    ``"row"`` (its row). Sentences and models recorded before this field existed used rows, and read back so."""
    layer: str | None = None
    """Expression layer sentences are built from (``None``: ``.X``, or ``.raw`` per ``use_raw``)."""
    use_raw: bool | None = None
    """Build sentences from ``adata.raw``; ``None``: when it exists and no layer is given."""
    gene_symbols: str | None = None
    """``var`` column holding the gene names to write (``None``: ``var_names``)."""
    uppercase: bool = True
    """Uppercase gene names, as cell2sentence does."""
    add_special_tokens: bool = False
    """Let the tokenizer add its special tokens (a BOS) to prompts; Gemma models expect one."""

    def __post_init__(self):
        if not isinstance(self.n_genes, numbers.Integral) or isinstance(self.n_genes, bool) or self.n_genes < 1:
            raise ValueError(f"n_genes={self.n_genes!r} must be a positive integer.")
        object.__setattr__(self, "n_genes", int(self.n_genes))
        object.__setattr__(self, "seed", int(self.seed))

    def updated(self, **overrides) -> PromptSettings:
        """A copy with the given fields changed; ``None`` values leave a field as it is."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> PromptSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown prompt settings {unknown}; known: {sorted(known)}.")
        return cls(**values)

    @classmethod
    def of_model(cls, model) -> PromptSettings:
        """The settings a model was trained with (``sctranscoder.json``); the defaults for other checkpoints.

        Models saved before the settings were one object recorded ``n_genes``,
        ``organism``, ``template``, ``tie_break`` and ``seed`` at the top level; models
        saved before ``tie_key`` existed keyed their ties on rows (``"row"``).
        """
        meta = getattr(model, "metadata", None) or {}
        if SETTINGS_KEY in meta:
            return cls.from_dict({"tie_key": LEGACY_TIE_KEY, **meta[SETTINGS_KEY]})
        legacy = {f.name: meta[f.name] for f in fields(cls) if f.name in meta}
        if legacy:  # a model sctranscoder trained before tie_key
            legacy.setdefault("tie_key", LEGACY_TIE_KEY)
        return cls(**legacy)

    @classmethod
    def of_sentences(cls, adata, **defaults) -> PromptSettings:
        """The settings ``adata``'s cell sentences were made with (prompt fields from ``defaults``, or as last
        recorded with them)."""
        stored = adata.uns[PARAMS_KEY]
        recorded = {k: (None if isinstance(v, str) and v == "" else v)
                    for k, v in dict(stored.get(SETTINGS_KEY, {})).items()}
        values = {**{k: v for k, v in recorded.items() if k in ("organism", "template", "add_special_tokens")},
                  **{k: v for k, v in defaults.items() if v is not None}}
        n_genes = int(stored.get("n_genes", -1))
        if n_genes != -1:
            values["n_genes"] = n_genes
        values.update(tie_break=str(stored.get("tie_break", "random")), seed=int(stored.get("seed", 42)),
                      tie_key=str(stored.get("tie_key", LEGACY_TIE_KEY)),
                      layer=str(stored.get("layer", "")) or None, use_raw=bool(stored.get("use_raw", False)),
                      gene_symbols=str(stored.get("gene_symbols", "")) or None,
                      uppercase=bool(stored.get("uppercase", True)))
        if isinstance(values.get("template"), str) and values["template"].isdigit():
            values["template"] = int(values["template"])
        return cls.from_dict(values)

    def sentence_options(self) -> dict:
        """Keyword arguments of :func:`sctranscoder.pp.cell_sentences`."""
        return {"n_genes": self.n_genes, "tie_break": self.tie_break, "seed": self.seed, "tie_key": self.tie_key,
                "layer": self.layer, "use_raw": self.use_raw, "gene_symbols": self.gene_symbols, "uppercase": self.uppercase}

    def prompt_options(self) -> dict:
        """Keyword arguments of :func:`sctranscoder.pp.prompts`."""
        return {"n_genes": self.n_genes, "organism": self.organism, "template": self.template}

    def sentence_mismatches(self, adata) -> dict:
        """``{setting: (in adata's sentences, in these settings)}`` for every difference that changes a prompt."""
        stored = adata.uns[PARAMS_KEY]
        differences = {}
        have = int(stored.get("n_genes", -1))
        if have != -1 and have < self.n_genes:
            differences["n_genes"] = (have, self.n_genes)
        if str(stored.get("tie_break")) != self.tie_break:
            differences["tie_break"] = (str(stored.get("tie_break")), self.tie_break)
        elif self.tie_break != "stable" and int(stored.get("seed", -1)) != self.seed:
            differences["seed"] = (int(stored.get("seed", -1)), self.seed)
        elif self.tie_break == "random" and str(stored.get("tie_key", LEGACY_TIE_KEY)) != self.tie_key:
            differences["tie_key"] = (str(stored.get("tie_key", LEGACY_TIE_KEY)), self.tie_key)
        use_raw = self.use_raw if self.use_raw is not None else (self.layer is None and adata.raw is not None)
        source = ("raw" if use_raw else f"layer {self.layer!r}" if self.layer else "X")
        stored_layer = str(stored.get("layer", "") or "")
        stored_source = "raw" if bool(stored.get("use_raw")) else f"layer {stored_layer!r}" if stored_layer else "X"
        if source != stored_source:
            differences["source"] = (stored_source, source)
        if str(stored.get("gene_symbols", "") or "") != (self.gene_symbols or ""):
            differences["gene_symbols"] = (stored.get("gene_symbols") or None, self.gene_symbols)
        if bool(stored.get("uppercase", True)) != self.uppercase:
            differences["uppercase"] = (bool(stored.get("uppercase", True)), self.uppercase)
        return differences

    def check_sentences(self, adata, *, whose: str = "the model") -> None:
        """Raise when ``adata``'s cell sentences were made with settings that give other prompts than these."""
        differences = self.sentence_mismatches(adata)
        if not differences:
            return
        found = ", ".join(f"{k}={v[0]!r}" for k, v in differences.items())
        wanted = ", ".join(f"{k}={v[1]!r}" for k, v in differences.items())
        options = ", ".join(f"{k}={v!r}" for k, v in self.sentence_options().items()
                            if v is not None and k not in ("uppercase", "tie_key") or (k == "uppercase" and not v)
                            or (k == "tie_key" and v != TIE_KEY))
        raise ValueError(
            f"adata's cell sentences were made with {found}, but {whose} reads prompts made with {wanted}. "
            f"Rebuild them with sct.pp.cell_sentences(adata, {options}), or delete adata.obsm[{RANKS_KEY!r}] and "
            "sctranscoder rebuilds them with the model's settings. (On the command line: drop the sentence "
            "options, or pass the model's.)"
        )

    def ensure_sentences(self, adata, *, progress: bool = True, whose: str = "the model",
                         model_name: str | None = None) -> None:
        """Build ``adata``'s cell sentences with these settings when it has none; check them when it has.

        Records these settings with the sentences (``adata.uns['c2s']['prompt']``, with ``model_name``), so
        later calls for the same model read them back (:meth:`recorded`).
        """
        from ._sentences import cell_sentences

        if RANKS_KEY not in adata.obsm or PARAMS_KEY not in adata.uns:
            cell_sentences(adata, progress=progress, **self.sentence_options())
        else:
            self.check_sentences(adata, whose=whose)
        if not adata.is_view:  # a view's uns is its parent's; writing would copy the view
            record = {k: ("" if v is None else v) for k, v in self.to_dict().items()}
            adata.uns[PARAMS_KEY][SETTINGS_KEY] = {**record, "model": model_name or ""}

    @classmethod
    def recorded(cls, adata, model_name: str) -> PromptSettings | None:
        """The settings last used on ``adata``'s sentences for the model ``model_name`` (``None``: none were)."""
        if RANKS_KEY not in adata.obsm or PARAMS_KEY not in adata.uns:
            return None
        record = dict(adata.uns[PARAMS_KEY].get(SETTINGS_KEY, {}))
        if not record or str(record.pop("model", "")) != model_name:
            return None
        values = {k: (None if isinstance(v, str) and v == "" else v) for k, v in record.items()}
        values = {k: (v.item() if hasattr(v, "item") else v) for k, v in values.items()}
        return cls.from_dict({"tie_key": LEGACY_TIE_KEY, **values})  # recorded before tie_key: rows
