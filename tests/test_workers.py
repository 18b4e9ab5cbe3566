"""Worker processes for independent steps: how many, and that a task's result or error comes back."""

import os

import pytest
import torch

from sctranscoder._workers import MAX_WORKER_PARAMETERS, Workers, available_cores, worker_count


def _where_and_threads(x):
    return os.getpid(), torch.get_num_threads(), x * 2


def _fails(message):
    raise ValueError(message)


def test_worker_count_follows_the_model_and_the_request():
    small = torch.nn.Linear(4, 4)
    assert worker_count(small) == available_cores()
    assert worker_count(small, 3) == 3
    with pytest.raises(ValueError, match="workers=0: give 1 or more"):
        worker_count(small, 0)

    class Large(torch.nn.Module):  # parameters counted, not allocated
        def parameters(self):
            return iter([torch.empty(MAX_WORKER_PARAMETERS + 1, device="meta")])

    assert worker_count(Large()) == 1
    on_meta = torch.nn.Linear(4, 4, device="meta")  # not on CPU: one process, as on a GPU
    assert worker_count(on_meta) == 1


def test_one_worker_runs_in_this_process_and_keeps_errors_for_the_reader():
    with Workers(1) as workers:
        pid, _, doubled = workers.submit(_where_and_threads, 21).result()
        failed = workers.submit(_fails, "bad cell")
    assert (pid, doubled) == (os.getpid(), 42)
    with pytest.raises(ValueError, match="bad cell"):
        failed.result()


def test_workers_run_in_other_processes_with_the_cores_shared():
    with Workers(2) as workers:
        results = [workers.submit(_where_and_threads, i) for i in range(4)]
        failed = workers.submit(_fails, "bad gene")
        pids = {f.result()[0] for f in results}
        assert [f.result()[2] for f in results] == [0, 2, 4, 6]
        assert os.getpid() not in pids
        assert {f.result()[1] for f in results} == {max(1, available_cores() // 2)}
        with pytest.raises(ValueError, match="bad gene"):
            failed.result()
