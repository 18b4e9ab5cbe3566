"""How long and how much memory :func:`sctranscoder.models.train_c2s` will take, measured before it starts.

The plan runs the trainer's own setup (split, sentences, tokenizer, model, examples: the recipe resolved exactly
as training resolves it), then times a few optimizer steps on real batches and a few scoring passes, and scales
them by the run's steps, epochs and cells. Measuring on this machine, rather than from a table of constants,
keeps the estimate honest across CPUs, GPUs and recipes.
"""

from __future__ import annotations

import math
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass, field

PROBE_STEPS = 8  # timed optimizer steps, after one untimed warm-up step
PROBE_CELLS = 32  # cells whose candidate answers are scored to time validation and held-out scoring
TRAINER_OVERHEAD = 1.1  # transformers' Trainer around the same steps: collation, logging, per-epoch checkpoints


@dataclass
class TrainingPlan:
    """A :func:`sctranscoder.models.train_c2s` run, laid out before it starts (``print(plan)`` shows it)."""

    n_cells: int
    n_train_cells: int
    n_validation_cells: int
    n_held_out_cells: int
    n_examples: int
    n_genes: int
    tokenizer: str | None
    n_parameters: int
    epochs: int
    steps_per_epoch: int
    recipe: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    """Estimated seconds: ``setup`` (measured: sentences, tokenizer, model), ``training`` (every planned step),
    ``validation`` (every epoch's validation scoring), ``held_out`` (the final scoring and regression)
    and ``total``."""
    peak_memory_bytes: int = 0
    """Peak resident memory of this process while the plan trained and scored its probe batches."""

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def total_seconds(self) -> float:
        return float(self.seconds.get("total", float("nan")))

    def __str__(self) -> str:
        s = self.seconds
        lines = [
            f"train_c2s plan: {self.n_cells:,} cells -> {self.n_train_cells:,} training "
            f"({self.n_examples:,} examples), {self.n_validation_cells:,} validation, "
            f"{self.n_held_out_cells:,} held out",
            f"  recipe: {self.n_genes} genes per prompt, tokenizer {self.tokenizer or 'of the base model'}, "
            f"{self.n_parameters / 1e6:.2f} M parameters",
            f"  {self.epochs} epochs x {self.steps_per_epoch:,} steps = {self.steps:,} optimizer steps",
            f"  time: about {minutes_text(s['total'])} at most (setup {minutes_text(s['setup'])}, training "
            f"{minutes_text(s['training'])}, validation {minutes_text(s['validation'])}, held-out scoring "
            f"{minutes_text(s['held_out'])}); early stopping ends sooner when validation stops improving",
            f"  peak memory: about {self.peak_memory_bytes / 2**30:.1f} GiB",
        ]
        return "\n".join(lines)


def minutes_text(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _step_seconds(trainer, n_steps: int) -> float:
    """Seconds per optimizer step (forward, backward, AdamW) on the run's own batches."""
    import torch

    from ._examples import pad_batch, per_example_loss

    recipe, lm = trainer.recipe, trainer.lm
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lm.to(device).train()
    optimizer = torch.optim.AdamW(lm.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    rng = torch.Generator().manual_seed(recipe.seed)
    examples = trainer.train_examples

    def step():
        pick = torch.randint(len(examples), (recipe.batch_size,), generator=rng).tolist()
        batch = {k: v.to(device) for k, v in pad_batch([examples[i] for i in pick],
                                                       trainer.tokenizer.pad_token_id).items()}
        if recipe.generation_task:
            labels = batch.pop("labels")
            loss = per_example_loss(lm(**batch), labels)
        else:
            loss = lm(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def timed() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    step()  # warm-up: allocations and first-call setup
    # the median step: a step slowed by another process (steps of a small model take milliseconds) is not
    # scaled to the whole run
    return float(statistics.median(timed() for _ in range(n_steps)))


def _scoring_seconds_per_cell(trainer, n_cells: int) -> float:
    """Seconds to score one cell's candidate answers, from the first ``n_cells`` training cells' prompts."""
    from ._load import C2SModel
    from ._scoring import score_candidates

    trainer.lm.eval()
    ids = trainer._prompt_ids(trainer.prompts[:n_cells])
    model = C2SModel(trainer.lm, trainer.tokenizer, "plan")
    score_candidates(model, ids[:2], trainer.candidates, progress=False)  # warm-up
    start = time.perf_counter()
    score_candidates(model, ids, trainer.candidates, progress=False)
    return (time.perf_counter() - start) / max(len(ids), 1)


def plan_training(adata, label_key: str, *, settings=None, train_config=None, base_model=None, config=None,
                  probe_steps: int = PROBE_STEPS, probe_cells: int = PROBE_CELLS) -> TrainingPlan:
    """Estimate the time and memory of :func:`sctranscoder.models.train_c2s` on these cells, before training.

    Takes ``train_c2s``'s arguments. The recipe is resolved exactly as training resolves it (genes per prompt,
    tokenizer, architecture, epochs); then ``probe_steps`` optimizer steps and the scoring of ``probe_cells``
    cells are timed on this machine and scaled to the run. The estimate is for every planned epoch: a
    validation split that stops improving ends training sooner.

    Returns
    -------
    A :class:`TrainingPlan`; ``print(plan)`` shows it.
    """
    from dataclasses import replace

    from ._recipe import TrainConfig
    from ._train import training_prompt_settings
    from ._trainer import C2STrainer

    train_config = train_config or TrainConfig()
    genes_from_recipe = settings is None and base_model is None
    chosen = set(settings.to_dict()) if settings is not None else set()
    settings = training_prompt_settings(settings, seed=train_config.seed)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        trainer = C2STrainer(adata, label_key, out, settings, replace(train_config), base_model=base_model,
                             config=config, resume=False, progress=False, genes_from_recipe=genes_from_recipe,
                             chosen_settings=chosen)
        trainer.setup()
        setup = time.perf_counter() - start
        step = _step_seconds(trainer, probe_steps) * TRAINER_OVERHEAD
        per_cell = _scoring_seconds_per_cell(trainer, probe_cells)
    steps_per_epoch = math.ceil(len(trainer.train_examples) / train_config.batch_size)
    n_validation, n_held = len(trainer.validation_index), int(trainer.held.sum())
    # held-out sentences are made at the end as the training cells' were at setup
    held_share = n_held / max(len(trainer.train_index) * (1 + trainer.augment), 1)
    seconds = {"setup": setup,
               "training": step * steps_per_epoch * trainer.epochs,
               "validation": per_cell * n_validation * trainer.epochs,
               "held_out": per_cell * n_held + setup * held_share}
    seconds["total"] = sum(seconds.values())
    recipe = trainer.resolved_recipe()
    return TrainingPlan(
        n_cells=int(adata.n_obs), n_train_cells=len(trainer.train_index), n_validation_cells=n_validation,
        n_held_out_cells=n_held, n_examples=len(trainer.train_examples), n_genes=int(trainer.settings.n_genes),
        tokenizer=recipe.get("tokenizer"), n_parameters=sum(p.numel() for p in trainer.lm.parameters()),
        epochs=int(trainer.epochs), steps_per_epoch=steps_per_epoch, recipe=recipe, seconds=seconds,
        peak_memory_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
