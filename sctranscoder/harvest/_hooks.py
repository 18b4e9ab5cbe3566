"""Forward hooks that read, or replace, the MLP input and output of chosen layers."""

from __future__ import annotations

from contextlib import contextmanager

from ._architectures import mlp_sites


class MLPCapture:
    """Records the MLP input and output of each chosen layer during a forward pass.

    Use as a context manager; after a forward pass ``inputs[layer]`` and
    ``outputs[layer]`` hold the tensors of that pass (``(batch, tokens, d)``).

    Examples
    --------
    >>> with MLPCapture(model, [0, 1]) as capture:   # doctest: +SKIP
    ...     model(input_ids)
    >>> capture.inputs[0].shape                      # doctest: +SKIP
    """

    def __init__(self, model, layers=None):
        self.sites = mlp_sites(model, layers)
        self.inputs: dict = {}
        self.outputs: dict = {}
        self._handles: list = []

    @property
    def layers(self) -> list[int]:
        return list(self.sites)

    def clear(self) -> None:
        """Drop the tensors of the last pass."""
        self.inputs.clear()
        self.outputs.clear()

    def __enter__(self) -> MLPCapture:
        for layer, site in self.sites.items():
            self._handles.append(site.modules[0].register_forward_pre_hook(self._keep_input(layer)))
            self._handles.append(site.modules[-1].register_forward_hook(self._keep_output(layer)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _keep_input(self, layer):
        def hook(module, args):
            self.inputs[layer] = args[0].detach()
        return hook

    def _keep_output(self, layer):
        def hook(module, args, output):
            self.outputs[layer] = output.detach()
        return hook


@contextmanager
def replace_mlp(model, replacements: dict, *, where=None):
    """Run the model with some layers' MLP outputs replaced.

    Parameters
    ----------
    model
        A Hugging Face causal LM or BERT-style encoder of a supported architecture.
    replacements
        ``{layer: value}``: a tensor shaped like the MLP output, or a callable
        mapping the MLP input to the output to use instead (a transcoder, an
        ablation). A callable may run the layer's own MLP (to patch its output);
        that inner call is not replaced again.
    where
        Which positions to replace: a boolean ``(batch, tokens)`` tensor, or a
        callable returning one for the pass being run (``None`` from it: every
        position). The other positions keep the MLP's own output (for example BOS
        or [CLS], attention sinks that transcoders are usually not trained on).
        Default: every position.
    """
    handles, stash, busy = [], {}, set()
    for key, value in replacements.items():
        (layer, site), = mlp_sites(model, [key]).items()

        def keep_input(module, args, layer=layer):
            if layer not in busy:
                stash[layer] = args[0]

        def swap(module, args, output, layer=layer, value=value):
            if layer in busy:
                return None  # the replacement itself runs the MLP: let that call through unchanged
            if callable(value):
                busy.add(layer)
                try:
                    new = value(stash.pop(layer))
                finally:
                    busy.discard(layer)
            else:
                if value.shape != output.shape:
                    raise ValueError(f"Replacement for layer {layer} has shape {tuple(value.shape)}; "
                                     f"the MLP output has {tuple(output.shape)}.")
                new = value.to(output.dtype)
            return _only_at(where, new, output)

        handles.append(site.modules[0].register_forward_pre_hook(keep_input))
        handles.append(site.modules[-1].register_forward_hook(swap))
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


def _only_at(where, new, output):
    """``new`` at the chosen positions, the MLP's own ``output`` elsewhere."""
    import torch

    mask = where() if callable(where) else where
    if mask is None:
        return new
    if tuple(mask.shape) != tuple(output.shape[:-1]):
        raise ValueError(f"The positions mask has shape {tuple(mask.shape)}; the MLP output has "
                         f"{tuple(output.shape[:-1])} positions.")
    return torch.where(mask.to(output.device, torch.bool).unsqueeze(-1), new, output)
