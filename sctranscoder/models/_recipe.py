"""How a C2S model is trained (:class:`TrainConfig`): the split, the tokenizer and the optimisation, with defaults
that scale to the data's size."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

DEFAULT_EPOCHS = 10
VALIDATION_SIZE = 0.15
MIN_VALIDATION_CELLS = 20  # fewer validation cells measure an epoch too coarsely to choose it
MIN_STEPS = 800  # few cells give few steps an epoch; a model trained from scratch needs this many to pass chance well
MAX_AUTO_EPOCHS = 100
MAX_STEPS = 1000
"""Optimizer steps ``epochs=None`` runs at most (whole epochs, at least one). Measured on simulated atlases
(docs/benchmarks/train_recipe.md): about 850 steps reach the regression at every size from 2,000 cells, and
ten epochs of 20,000 cells would take over an hour on 2 CPU cores."""
MAX_VALIDATION_CELLS = 500  # enough to choose an epoch; scoring more every epoch costs time and tells no more
PATIENCE = 3  # epochs without a better validation accuracy before training stops
SMALL_DATA_CELLS = 500  # fewer training cells than this: a smaller model and dropout copies (see Recipe)
SMALL_CONFIG = {"hidden_size": 64, "layers": 2, "heads": 4}
SMALL_DATA_AUGMENT = 8
"""Dropout copies of each training cell on a small data set, each with :attr:`TrainConfig.augment_dropout` of
its expressed genes zeroed. Measured over 3 seeds at 200 cells (docs/benchmarks/train_recipe.md): 8 copies at 30%
dropout raised held-out accuracy from 0.92 to 0.97 on simulated atlases and from 0.71 to 0.77 on pbmc68k against
2 copies at 10%; the steps are fixed by ``min_steps``, so the copies cost no training time."""
DATA_GENES = 100
"""Genes per prompt of a model trained from scratch, at every size. Measured over 3 seeds
(docs/benchmarks/train_recipe.md): 50 genes fell 13 and 7 points behind the regression at 200 and 500 simulated
cells, 100 genes 3 and 1 (better in 6 of 6 paired runs), and on pbmc68k both stayed within 10 points. A step
costs about linearly in prompt length: 200 genes (real C2S prompts) would put 5,000 cells over 5 minutes on 2
CPU cores."""
TOKENIZER = "word"
"""The tokenizer a model trained from scratch learns: one token per gene. Measured on simulated atlases that a
regression separates at 0.99 or more (docs/benchmarks/train_recipe.md): with byte-level BPE and 200 genes a model
of 1,000 cells was still at chance (0.19) after 2 epochs at 8 s a step on 2 cores; with one token per gene, 2,000
cells reached 0.992 in 6 minutes. BPE also lets gene families (HLA-D*, RPL*) share inputs. Byte-level BPE stays
an option (``tokenizer="byte_bpe"``), to mimic real C2S checkpoints."""
SMALL_DATA_TOKENIZER = TOKENIZER  # the name before one token per gene was the default at every size


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`sctranscoder.models.train_c2s` trains: the split, the tokenizer and the optimisation.

    ``None`` fields are chosen from the data's size when training starts (the small-data recipe below
    :data:`SMALL_DATA_CELLS` training cells); every choice is logged and recorded in ``sctranscoder.json``
    (``"train_config"`` as given, ``"recipe"`` as resolved).
    """

    epochs: int | None = None
    """Passes over the training examples; ``None``: :data:`DEFAULT_EPOCHS`, or more to reach ``min_steps``."""
    min_steps: int = MIN_STEPS
    """Optimizer steps that ``epochs=None`` reaches at least (at most :data:`MAX_AUTO_EPOCHS` epochs)."""
    max_steps: int | None = MAX_STEPS
    """Optimizer steps that ``epochs=None`` runs at most, in whole epochs (at least one); ``None``: no cap."""
    batch_size: int = 16
    """Training examples per optimizer step."""
    learning_rate: float = 1e-3
    """Peak learning rate of AdamW (after a linear warmup)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_ratio: float = 0.05
    """Share of all steps spent warming the learning rate up linearly."""
    lr_scheduler: str = "linear"
    """A transformers scheduler name for the decay after warmup (``"linear"``, ``"cosine"``, ...)."""
    label_smoothing: float = 0.0
    """Label smoothing of the answer tokens' cross-entropy (0: none)."""
    test_size: float = 0.2
    """Fraction of each label held out, never trained on; scored at the end next to a logistic regression."""
    validation_size: float | None = None
    """Fraction of each label's training cells to choose the epoch on; ``None``: :data:`VALIDATION_SIZE` when
    that gives at least :data:`MIN_VALIDATION_CELLS` cells (at most :data:`MAX_VALIDATION_CELLS` cells), else
    none. 0: keep the last epoch."""
    patience: int | None = PATIENCE
    """With a validation split: stop when its accuracy has not improved for this many epochs (the best epoch is
    kept), never before ``min_steps`` optimizer steps. ``None`` or 0: run every epoch."""
    seed: int = 0
    """Seed of the split, the initialisation and the data order (and of the sentences' tie-break when no prompt
    settings are given)."""
    augment: int | None = None
    """Dropout copies of each training cell; ``None``: :data:`SMALL_DATA_AUGMENT` when the steps are set by
    ``min_steps`` (``epochs=None``: copies then cost no time) on fewer than :data:`SMALL_DATA_CELLS` cells, else 0."""
    augment_dropout: float = 0.3
    """Fraction of expressed genes zeroed in each dropout copy (simulated scRNA-seq dropout)."""
    generation_task: bool = False
    """Also train on cell-type-conditioned generation (type in, sentence out), as C2S models are multi-task."""
    tokenizer: str | None = None
    """Tokenizer learned for a model trained from scratch (see :func:`sctranscoder.models.train_tokenizer`'s
    kinds); ``None``: :data:`TOKENIZER`, one token per gene (``"byte_bpe"``, as GPT-NeoX / Pythia, mimics real
    C2S checkpoints)."""
    vocab_size: int = 600
    """Vocabulary of the tokenizer learned for a model trained from scratch."""

    def validation_fraction(self, n_cells: int) -> float:
        """The validation fraction for ``n_cells`` non-held-out cells."""
        if self.validation_size is not None:
            return float(self.validation_size)
        if VALIDATION_SIZE * n_cells < MIN_VALIDATION_CELLS:
            return 0.0
        return min(VALIDATION_SIZE, MAX_VALIDATION_CELLS / n_cells)

    def small(self, n_cells: int) -> bool:
        """Whether ``n_cells`` training cells are a small data set."""
        return n_cells < SMALL_DATA_CELLS

    def copies(self, n_cells: int) -> int:
        """Dropout copies of each of ``n_cells`` training cells."""
        if self.augment is not None:
            return int(self.augment)
        return SMALL_DATA_AUGMENT if self.epochs is None and self.small(n_cells) else 0

    def tokenizer_kind(self, n_cells: int) -> str:
        """The kind of tokenizer to learn on ``n_cells`` training cells."""
        if self.tokenizer is not None:
            return self.tokenizer
        return TOKENIZER

    def prompt_genes(self, n_cells: int) -> int:
        """Genes per sentence for a model trained from scratch on ``n_cells`` cells, where the user set none:
        :data:`DATA_GENES` at every size (``n_cells`` is kept for recipes that choose by size)."""
        return DATA_GENES

    def model_config(self, config, n_cells: int):
        """The architecture to train from scratch: ``config``, or for ``None`` the default one, narrower and
        shallower (:data:`SMALL_CONFIG`) on a small data set, where it overfits less and trains faster."""
        if config is not None:
            return config
        return dict(SMALL_CONFIG) if self.small(n_cells) else None

    def epochs_for(self, n_examples: int) -> int:
        """Epochs to run over ``n_examples`` training examples."""
        if self.epochs is not None:
            return int(self.epochs)
        steps_per_epoch = math.ceil(n_examples / self.batch_size)
        epochs = min(max(DEFAULT_EPOCHS, math.ceil(self.min_steps / steps_per_epoch)), MAX_AUTO_EPOCHS)
        if self.max_steps is not None:
            epochs = min(epochs, max(1, self.max_steps // steps_per_epoch))
        return epochs

    def stops_early(self) -> bool:
        """Whether a validation split may stop training before its last epoch."""
        return bool(self.patience)

    def to_dict(self) -> dict:
        return asdict(self)


Recipe = TrainConfig  # the name inside sctranscoder before the config was public
