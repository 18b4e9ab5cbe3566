"""The transcoder trainer, in named steps: setup, step, sync, checkpoint, finish (and fit, which runs them)."""

from __future__ import annotations

import logging
import warnings
from collections import deque
from pathlib import Path

import torch

from .._distributed import rank_and_world
from .._progress import progress_bar
from ._checkpoint import CHECKPOINT, load_checkpoint, move_final_into_place, save_checkpoint
from ._config import TranscoderConfig
from ._convergence import FINAL_ROWS, advice, final_quality
from ._data import global_batches, initialization_sample, prepend, training_rows
from ._io import CONFIG, load, save
from ._model import Transcoder
from ._revival import resample_dead
from ._schedule import learning_rate_factor

logger = logging.getLogger(__name__)


class TranscoderTrainer:
    """Trains one layer's transcoder: Adam, warmup and decay, revival of dead features, atomic checkpoints that
    resume exactly, data parallelism over ``torch.distributed``.

    Parameters are those of :func:`sctranscoder.tc.train`. :meth:`fit` runs the
    whole training; the steps it is made of can be run (or overridden) one by one:

    - :meth:`setup`: fill in the automatic settings, build the transcoder and its
      optimizer, and resume from a checkpoint or initialize from the data (it runs
      :meth:`prepare`, everything but the data, then :meth:`initialize` or skips the
      batches already trained on; :func:`sctranscoder.tc.train_live` calls those two
      itself, its batches coming from one forward pass shared by every layer);
    - :meth:`step`: one optimizer step on one global batch, calling :meth:`sync`
      between the backward pass and the update;
    - :meth:`sync`: what data-parallel processes share (gradients, fired features,
      averaged buffers such as BatchTopK's threshold);
    - :meth:`checkpoint`: an atomic checkpoint of the transcoder, the optimizer and the step;
    - :meth:`finish`: check convergence (warning when it falls short), then save
      the finished transcoder, or a checkpoint when training stopped early.
    """

    def __init__(self, source, layer: int, cfg: TranscoderConfig, *, out_dir=None, chunks=None,
                 checkpoint_every: int = 200, init_rows: int = 65_536, device=None, model_name: str | None = None,
                 hook_point: str = "mlp", progress: bool = True, data_parallel: bool = True,
                 autocast_dtype=None):
        self.source, self.layer, self.requested, self.chunks = source, layer, cfg, chunks
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.checkpoint_path = self.out_dir / CHECKPOINT if self.out_dir is not None else None
        self.checkpoint_every, self.init_rows = checkpoint_every, init_rows
        self.device = torch.device(device or "cpu")
        self.model_name, self.hook_point, self.progress = model_name, hook_point, progress
        # data_parallel=False: this process alone trains this layer (layers spread over processes)
        self.rank, self.world = rank_and_world() if data_parallel else (0, 1)
        self.autocast_dtype = autocast_dtype  # torch.bfloat16: the forward and loss in bf16, weights stay float32
        self.cfg: TranscoderConfig | None = None  # the resolved settings, after setup
        self.transcoder: Transcoder | None = None
        self.optimizer = None
        self.completed = 0  # optimizer steps done
        self.running: dict[str, float] = {}
        self.last_batches: deque = deque()  # bounded in setup, by rows

    @property
    def already_trained(self) -> bool:
        """``out_dir`` holds a finished transcoder (and no checkpoint of a newer run)."""
        return (self.out_dir is not None and (self.out_dir / CONFIG).exists()
                and not self.checkpoint_path.exists())

    # -- setup ---------------------------------------------------------------------------------
    def setup(self) -> None:
        """Resolve the automatic settings, build the transcoder and optimizer, then resume or initialize."""
        self.prepare(training_rows(self.source, self.chunks))
        cfg = self.cfg
        self.batches = global_batches(self.source, self.layer, cfg, self.chunks)
        if self.completed == 0:
            sample = initialization_sample(self.source, self.layer, cfg, self.chunks, self.init_rows)
            if sample is None:
                sample = next(self.batches)
                self.batches = prepend(sample, self.batches)
            self.initialize(*sample)
        else:
            for _ in range(self.completed):  # the same data order as an uninterrupted run
                next(self.batches)

    def prepare(self, rows: int | None) -> None:
        """Everything of :meth:`setup` but the data: settings, transcoder, optimizer, and the checkpoint's step
        (``completed``) when there is one. For trainers whose batches come from elsewhere (one forward pass
        feeding every layer's trainer)."""
        cfg = self.cfg = self.requested.resolve(rows, world_size=self.world)
        if cfg.batch_size % self.world:
            raise ValueError(f"batch_size={cfg.batch_size} must divide evenly over {self.world} processes.")
        if rows is not None and rows < cfg.batch_size:
            raise ValueError(f"The training data holds {rows:,} rows, fewer than one batch ({cfg.batch_size}); "
                             "pass a smaller batch_size or harvest more.")
        if self.requested.automatic:
            logger.info("Layer %d: %s (automatic; from d_hidden %d and %s training rows).", self.layer,
                        ", ".join(f"{name} {getattr(cfg, name):.3g}" if name == "learning_rate"
                                  else f"{name} {getattr(cfg, name):,}" for name in self.requested.automatic),
                        cfg.d_hidden, f"{rows:,}" if rows is not None else "unknown")
        self.transcoder = Transcoder(cfg, device=self.device).train()
        self.optimizer = torch.optim.Adam(list(self.transcoder.parameters()), lr=cfg.learning_rate,
                                          betas=(0.9, 0.999))
        self.completed = 0
        # the last tenth of training (at most FINAL_ROWS rows) is what the end's convergence check measures
        self.last_batches = deque(maxlen=max(1, min(FINAL_ROWS * self.world // cfg.batch_size, cfg.n_steps // 10)))
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            self.completed = load_checkpoint(self.checkpoint_path, self.transcoder, self.optimizer)
            logger.info("Resuming layer %d from step %d.", self.layer, self.completed)
        if self.out_dir is not None and self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)

    def initialize(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Set a new transcoder's centre, scales and output bias from a sample of rows."""
        self.transcoder.init_from_data(x, y)
        self.transcoder.normalize_decoder()

    # -- one step ------------------------------------------------------------------------------
    def step(self, x: torch.Tensor, y: torch.Tensor):
        """One optimizer step on a global batch, of which this process trains on its share of the rows."""
        cfg, transcoder, optimizer = self.cfg, self.transcoder, self.optimizer
        x = x[self.rank :: self.world].to(self.device, torch.float32)
        y = y[self.rank :: self.world].to(self.device, torch.float32)
        for group in optimizer.param_groups:
            group["lr"] = cfg.learning_rate * learning_rate_factor(self.completed, cfg)
        if self.autocast_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                out = transcoder(x, y, dead=transcoder.dead_features())
        else:
            out = transcoder(x, y, dead=transcoder.dead_features())
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        transcoder.remove_parallel_gradient()
        fired = self.sync(_fired(transcoder, out))
        optimizer.step()
        transcoder.normalize_decoder()
        with torch.no_grad():
            transcoder.tokens_since_fired += cfg.batch_size
            transcoder.tokens_since_fired[fired.bool()] = 0
        if cfg.revival == "resample" and (self.completed + 1) % max(1, cfg.dead_window // cfg.batch_size) == 0:
            resample_dead(transcoder, optimizer, x, y, out.output.detach(), self.completed)
        self.completed += 1
        _update_running(self.running, out, transcoder)
        self.last_batches.append((x, y))
        return out

    def sync(self, fired: torch.Tensor) -> torch.Tensor:
        """Share one step's results over data-parallel processes: average the gradients and the buffers the
        activation updates in the forward pass, and mark a feature fired when it fired in any process."""
        if self.world == 1:
            return fired
        import torch.distributed as dist

        for p in self.transcoder.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world
        fired = fired.to(torch.uint8)
        dist.all_reduce(fired, op=dist.ReduceOp.MAX)
        for name in self.transcoder.activation.averaged_buffers:
            buffer = getattr(self.transcoder, name)
            dist.all_reduce(buffer)
            buffer /= self.world
        return fired

    # -- checkpoints and the end ---------------------------------------------------------------
    def checkpoint(self) -> None:
        """Write the transcoder, optimizer state and step count atomically (process 0 only)."""
        if self.checkpoint_path is not None and self.rank == 0:
            save_checkpoint(self.checkpoint_path, self.transcoder, self.optimizer, self.completed)

    def finish(self) -> Transcoder:
        """Save the finished transcoder (or a checkpoint, when stopped early) and report whether it converged."""
        cfg = self.cfg
        finished = self.completed >= cfg.n_steps
        metrics = {"train": self.running, "steps": self.completed}
        if finished and self.last_batches:
            metrics["final"] = quality = final_quality(self.transcoder, list(self.last_batches),
                                                       self.completed * cfg.batch_size)
            message = advice(quality, cfg, self.layer, self.completed, self.requested.automatic)
            if message is not None and self.rank == 0:  # a warning, not also a log line: the CLI prints it once
                warnings.warn(message, UserWarning, stacklevel=4)
        if self.out_dir is not None and self.rank == 0:
            if finished:
                save(self.transcoder, self.out_dir.with_name(self.out_dir.name + ".final"),
                     hook_point=self.hook_point, model_name=self.model_name, layer=self.layer, metrics=metrics)
                move_final_into_place(self.out_dir)
            else:
                self.checkpoint()
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
        self.transcoder.metadata = {"hook_point": self.hook_point, "model_name": self.model_name,
                                    "layer": self.layer, "metrics": metrics}
        return self.transcoder.eval()

    # -- all of it -----------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> Transcoder:
        """Train to the end (or for ``stop_after`` steps in all, to test resuming); a finished ``out_dir`` is
        loaded instead."""
        if self.already_trained:
            logger.info("%s already holds a trained transcoder; loading it.", self.out_dir)
            return load(self.out_dir, device=self.device)
        self.setup()
        cfg = self.cfg
        bar = progress_bar(total=cfg.n_steps, initial=self.completed, desc=f"transcoder layer {self.layer}",
                           unit="steps", enabled=self.progress and not self.rank)
        while self.completed < cfg.n_steps:
            if stop_after is not None and self.completed >= stop_after:
                break
            x, y = next(self.batches, (None, None))
            if x is None:
                logger.warning("The data ran out after %d of %d steps.", self.completed, cfg.n_steps)
                break
            self.step(x, y)
            bar.update(1)
            running = self.running
            bar.set_postfix(loss=f"{running['loss']:.4f}", fvu=f"{running['fvu']:.4f}", l0=f"{running['l0']:.1f}",
                            dead=f"{running['dead']:.1%}", refresh=False)
            if self.completed % self.checkpoint_every == 0 and self.completed < cfg.n_steps:
                self.checkpoint()
        bar.close()
        return self.finish()


def _fired(transcoder: Transcoder, out) -> torch.Tensor:
    if out.indices is not None:
        fired = torch.zeros(transcoder.cfg.d_hidden, dtype=torch.bool, device=out.values.device)
        fired[out.indices[out.values > 0]] = True
        return fired
    return (out.features > 0).any(0)


def _update_running(running: dict, out, transcoder, decay: float = 0.9) -> None:
    values = {"loss": float(out.loss.detach()), "fvu": float(out.fvu.detach()), "l0": float(out.l0),
              "dead": float(transcoder.dead_features().float().mean())}
    for key, value in values.items():
        running[key] = value if key not in running else decay * running[key] + (1 - decay) * value
