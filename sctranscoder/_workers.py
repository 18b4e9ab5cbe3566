"""Independent steps of a run, side by side in worker processes where that is faster: a small model on CPU.

A small model spends most of its time in Python and in kernels too small for a second thread to help (the bundled
default model runs its circuits only 1.3x faster on 2 threads than on 1), so on CPU, processes with one thread
each finish independent steps (cell types' circuits, the transcoders' evaluation, the feature controls) sooner
than one process with every thread. A large model, or one on a GPU, gains nothing from a copy per process: it runs
its steps one after another in this process, as it would without workers.

Workers are spawned (not forked: a fork of a process that has used OpenMP threads may hang), so each task and its
arguments are pickled; tasks are functions defined at module level.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os

# above this many parameters a model copy per process costs more memory than running side by side saves
MAX_WORKER_PARAMETERS = 50_000_000


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(model, requested: int | None = None) -> int:
    """How many worker processes to run a ``model``'s independent steps in: ``requested`` if given, else one per
    core for a small model on CPU, else 1 (everything in this process)."""
    if requested is not None:
        if int(requested) < 1:
            raise ValueError(f"workers={requested}: give 1 or more (1 runs every step in this process).")
        return int(requested)
    module = getattr(model, "model", model)
    parameters = list(module.parameters())
    if not parameters or parameters[0].device.type != "cpu":
        return 1
    if sum(p.numel() for p in parameters) > MAX_WORKER_PARAMETERS:
        return 1
    return max(1, available_cores())


def _one_thread_each(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class Workers:
    """``submit(fn, *args, **kwargs)`` returns a :class:`concurrent.futures.Future`: run in one of ``n`` spawned
    processes (the cores shared between them) when ``n > 1``, else at once, in this process."""

    def __init__(self, n: int = 1):
        self.n = max(1, int(n))
        self._pool = None
        if self.n > 1:
            threads = max(1, available_cores() // self.n)
            self._pool = cf.ProcessPoolExecutor(self.n, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_one_thread_each, initargs=(threads,))

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        if self._pool is not None:
            return self._pool.submit(fn, *args, **kwargs)
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # raised where the result is read, as from a worker
            future.set_exception(error)
        return future

    def close(self, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, kind, error, trace) -> None:
        self.close(cancel=error is not None)
