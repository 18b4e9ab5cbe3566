"""Progress output: a bar on a terminal, one line per stage elsewhere, nothing when switched off.

Every progress bar in the package goes through :func:`progress_bar`. On a
terminal (or in a notebook) it is tqdm; when stderr is a file or a pipe (CI logs,
``nohup``, a batch job) a redrawn bar would fill the log with carriage returns,
so one line is written per stage instead (``scoring: 12 batches done in 3.1 s``).

transformers prints bars of its own ("Loading weights", "Writing model shards")
and its Trainer prints loss dicts, whatever our ``progress`` says:
:func:`transformers_progress` and :func:`quiet_trainer` bring them in line.
"""

from __future__ import annotations

import functools
import inspect
import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar

# set inside a scope that asked for no output, so that code deeper down (a model load
# inside training) stays quiet even where it was called with its default progress=True
_SILENCED: ContextVar[bool] = ContextVar("sctranscoder_silenced", default=False)


def interactive() -> bool:
    """Whether a redrawn bar is welcome: stderr is a terminal, or this runs in a Jupyter kernel."""
    if "ipykernel" in sys.modules:  # notebooks draw tqdm.auto as a widget (or one line of text)
        try:
            from IPython import get_ipython

            if get_ipython() is not None and "IPKernelApp" in get_ipython().config:
                return True
        except ImportError:
            pass
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


def wanted(progress: bool) -> bool:
    """``progress``, unless an enclosing scope asked for silence."""
    return bool(progress) and not _SILENCED.get()


class StageLine:
    """tqdm's interface (iterate, ``update``, ``set_postfix``, ``close``), written as one line at the end.

    Parameters
    ----------
    iterable
        What to iterate over, or None to count with :meth:`update`.
    total
        The expected count (``len(iterable)`` when it has one).
    desc
        The stage's name, first on the line.
    unit
        What is counted.
    initial
        Where the count starts (a resumed run).
    """

    def __init__(self, iterable=None, *, total=None, desc: str = "", unit: str = "it", initial: int = 0):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self.initial = initial
        self.postfix = ""
        self.closed = False
        self.start = time.perf_counter()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.n += 1
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        self.close(failed=kind is not None)

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = str(text)

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def write(self, text: str) -> None:
        """A line of its own now (a long stage's milestone)."""
        _emit(f"{self.desc}: {text}")

    def close(self, failed: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if failed and self.n == self.initial:
            return  # nothing was done: the error that follows says it all (an input error, not a failed run)
        count = f"{self.n - self.initial:,} {self.unit}"
        if self.initial:
            count += f" (from {self.initial:,})"
        if self.total is not None and self.n != self.total:
            count = f"{self.n:,} of {self.total:,} {self.unit}"
        verb = "failed after" if failed else "done in"
        postfix = f" ({self.postfix})" if self.postfix else ""
        _emit(f"{self.desc}: {count} {verb} {time.perf_counter() - self.start:.1f} s{postfix}")


def _emit(line: str) -> None:
    # progress is not a log record: it goes where tqdm's bar would, whatever logging is set to
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def progress_bar(iterable=None, *, total=None, desc: str = "", enabled: bool = True, unit: str = "it",
                 initial: int = 0, **tqdm_kwargs):
    """A progress bar for one stage.

    Parameters
    ----------
    iterable
        What to iterate over; None to count with ``update``.
    total
        The expected count.
    desc
        The stage's name.
    enabled
        False: nothing is written at all (also inside a silenced scope, see :func:`silenced`).
    unit
        What is counted.
    initial
        Where the count starts.
    **tqdm_kwargs
        Passed to tqdm on a terminal.

    Returns
    -------
    tqdm on a terminal or in a notebook, a :class:`StageLine` otherwise, a disabled tqdm when off.
    """
    from tqdm.auto import tqdm

    if not wanted(enabled):
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=True)
    if interactive():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, **tqdm_kwargs)
    return StageLine(iterable, total=total, desc=desc, unit=unit, initial=initial)


@contextmanager
def silenced(silence: bool = True):
    """Within: no progress output from the package (and, with :func:`transformers_progress`, transformers)."""
    token = _SILENCED.set(_SILENCED.get() or silence)
    try:
        yield
    finally:
        _SILENCED.reset(token)


@contextmanager
def transformers_progress(progress: bool = True):
    """transformers' and huggingface_hub's own bars and messages, brought in line with ``progress``.

    Their bars are kept only with progress on and on a terminal; with progress off,
    transformers' logging drops to errors and the package's own bars are off too
    (:func:`silenced`). Everything is restored on exit.
    """
    from transformers.utils import logging as hf_logging

    show = wanted(progress)
    bars_were_on, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    try:
        if not (show and interactive()):
            hf_logging.disable_progress_bar()  # also huggingface_hub's download bars
        if not show:
            hf_logging.set_verbosity_error()
        with silenced(not show):
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars_were_on:
            hf_logging.enable_progress_bar()


def honours_progress(function):
    """Decorator: the call runs inside :func:`transformers_progress` with its own ``progress`` argument."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        with transformers_progress(bound.arguments["progress"]):
            return function(*args, **kwargs)

    return wrapper


def quiet_trainer(trainer, progress: bool = True):
    """``trainer`` with transformers' printing callbacks swapped for one :func:`progress_bar` (returned).

    The Trainer prints each log dict (``PrinterCallback``, with ``disable_tqdm``) or
    redraws a bar and writes the dicts under it (``ProgressCallback``) regardless of
    whether anyone asked; this callback shows a bar with the latest loss on a
    terminal, a line per logged epoch elsewhere, and nothing with progress off.
    """
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    try:
        from transformers.utils.notebook import NotebookProgressCallback
    except ImportError:  # pragma: no cover - older layouts
        NotebookProgressCallback = ProgressCallback
    for callback in (PrinterCallback, ProgressCallback, NotebookProgressCallback):
        while any(isinstance(c, callback) for c in trainer.callback_handler.callbacks):
            trainer.remove_callback(callback)
    trainer.add_callback(_progress_callback(wanted(progress)))
    return trainer


def _progress_callback(show: bool):
    from transformers import TrainerCallback

    class TrainingProgress(TrainerCallback):
        """One bar over the training steps; the log dicts become its postfix (or milestone lines)."""

        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = progress_bar(total=state.max_steps, initial=state.global_step, desc="training",
                                    unit="steps", enabled=show)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is None or not logs:
                return
            shown = {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in logs.items()
                     if k in ("loss", "eval_loss", "eval_accuracy", "learning_rate")}
            if not shown:
                return
            self.bar.set_postfix(shown, refresh=False)
            if isinstance(self.bar, StageLine):  # a long stage: a line per logged epoch
                self.bar.write(f"epoch {state.epoch:g}, step {state.global_step:,} of {state.max_steps:,}: "
                               + ", ".join(f"{k}={v}" for k, v in shown.items()))

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return TrainingProgress()
