"""A harvest killed at any point resumes to exactly the rows of an uninterrupted run; two processes give the
rows of one."""

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sctranscoder.harvest import ActivationStore

WORKER = Path(__file__).with_name("harvest_worker.py")
N_CELLS = 24  # 6 chunks of 4 cells


def run_worker(store, *extra, torchrun=False):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(_free_port())] if torchrun else [sys.executable]
    return subprocess.run([*launcher, str(WORKER), str(store), str(N_CELLS), *extra], capture_output=True,
                          text=True, timeout=300)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    store = tmp_path_factory.mktemp("reference") / "store"
    result = run_worker(store)
    assert result.returncode == 0, result.stderr
    return ActivationStore(store)


def assert_same_rows(store, reference, atol=0.0):
    assert store.complete and store.chunks == reference.chunks == list(range(6))
    for name, column in reference.metadata().items():
        assert np.array_equal(store.metadata()[name], column), name
    for layer in reference.layers:
        for mine, theirs in zip(store.read(layer), reference.read(layer)):
            assert torch.allclose(mine, theirs, rtol=0, atol=atol) if atol else torch.equal(mine, theirs)


def test_killed_while_writing_a_shard_resumes_to_the_same_rows(tmp_path, reference):
    store = tmp_path / "store"
    killed = run_worker(store, "--die-while-writing", "3")
    assert killed.returncode == -9, killed.stderr
    interrupted = ActivationStore(store)
    assert not interrupted.complete and interrupted.chunks == [0, 1, 2]
    assert list(store.glob(".tmp-*"))  # the half-written shard is there, under a temporary name
    resumed = run_worker(store)
    assert resumed.returncode == 0, resumed.stderr
    assert "wrote chunk 2" not in resumed.stdout and "wrote chunk 3" in resumed.stdout  # done chunks are skipped
    assert not list(store.glob(".tmp-*"))
    assert_same_rows(ActivationStore(store), reference)


def test_killed_from_outside_resumes_to_the_same_rows(tmp_path, reference):
    store = tmp_path / "store"
    process = subprocess.Popen([sys.executable, str(WORKER), str(store), str(N_CELLS), "--slow", "0.4"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while len(list(store.glob("shard-*"))) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert process.returncode == -9
    done = len(list(store.glob("shard-*")))
    assert 2 <= done < 6
    resumed = run_worker(store)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_rows(ActivationStore(store), reference)


def test_two_processes_fill_one_store_with_the_rows_of_one(tmp_path, reference):
    store = tmp_path / "store"
    result = run_worker(store, torchrun=True)
    assert result.returncode == 0, result.stderr
    # the two processes share one stdout, so their lines may run together: read the messages, not the lines
    written = sorted(re.findall(r"rank \d wrote chunk \d+", result.stdout))
    assert written == [f"rank {c % 2} wrote chunk {c}" for c in (0, 2, 4, 1, 3, 5)]
    # torchrun runs each process with one thread: matrix products may sum in another order
    assert_same_rows(ActivationStore(store), reference, atol=1e-5)
