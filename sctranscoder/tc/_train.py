"""``train``: one layer's transcoder from (MLP input, MLP output) rows, through :class:`TranscoderTrainer`."""

from __future__ import annotations

from ._config import TranscoderConfig
from ._model import Transcoder
from ._revival import resample_dead
from ._schedule import learning_rate_factor
from ._trainer import TranscoderTrainer

__all__ = ["learning_rate_factor", "resample_dead", "train"]


def train(
    source,
    layer: int,
    cfg: TranscoderConfig,
    *,
    out_dir=None,
    chunks=None,
    checkpoint_every: int = 200,
    init_rows: int = 65_536,
    device=None,
    model_name: str | None = None,
    hook_point: str = "mlp",
    progress: bool = True,
    stop_after: int | None = None,
) -> Transcoder:
    """Train a transcoder for one layer.

    Parameters
    ----------
    source
        An activation store (:class:`sctranscoder.harvest.ActivationStore` or
        ``MemoryStore``), read in shuffled epochs; or any iterable of ``(mlp_in,
        mlp_out)`` batches (for example :func:`sctranscoder.harvest.stream`, which
        harvests on the fly into a shuffle buffer).
    layer
        The layer whose MLP the transcoder replaces.
    cfg
        Architecture and training settings. Automatic ones (``None``: learning
        rate, batch size, training length) are filled in by
        :meth:`TranscoderConfig.resolve` from the width and the store's row count;
        the transcoder's ``cfg`` and its saved ``config.json`` hold the values used.
    out_dir
        Folder of the trained transcoder (:func:`save` layout). Checkpoints go there
        too, every ``checkpoint_every`` steps, written atomically; training started
        again with the same settings resumes from the last one and, reading a store,
        ends with the same weights as an uninterrupted run.
    chunks
        Store chunks to train on (hold the others out for evaluation).
    init_rows
        Rows used to set the input centre and scale and the output bias.
    device
        Where to train (default: CPU, or the source's tensors' device).
    stop_after
        Stop after this many steps without finishing (to test resuming).

    Returns
    -------
    The trained transcoder, in inference mode; ``transcoder.metadata["metrics"]``
    holds running training metrics and, under ``"final"``, the FVU and dead
    fraction at the end (on the last training batches). When those show an
    unconverged transcoder (FVU above 0.1 or more than 20% of features dead), a
    ``UserWarning`` says what to change.

    Under ``torch.distributed`` every process reads the same global batches and
    trains on its share of the rows; gradients are averaged, so the result
    matches one process up to floating-point summation order (BatchTopK picks its
    top activations per process, so it matches less closely).
    """
    trainer = TranscoderTrainer(source, layer, cfg, out_dir=out_dir, chunks=chunks, checkpoint_every=checkpoint_every,
                                init_rows=init_rows, device=device, model_name=model_name, hook_point=hook_point,
                                progress=progress)
    return trainer.fit(stop_after=stop_after)
