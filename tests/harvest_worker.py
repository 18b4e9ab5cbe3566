"""Harvest the first N pbmc68k cells with the default model, in a process of its own.

    python tests/harvest_worker.py STORE N [--die-while-writing CHUNK] [--slow SECONDS]
    torchrun --nproc_per_node 2 tests/harvest_worker.py STORE N

``--die-while-writing`` SIGKILLs this process after shard CHUNK's temporary file
is written and before it is renamed into place (the worst moment); ``--slow``
sleeps after each shard, so a test can kill it from outside at a random point.
"""

import argparse
import os
import signal
import time

import sctranscoder as sct
from sctranscoder.harvest import ActivationStore

parser = argparse.ArgumentParser()
parser.add_argument("store")
parser.add_argument("n", type=int)
parser.add_argument("--die-while-writing", type=int, default=None)
parser.add_argument("--slow", type=float, default=0.0)
args = parser.parse_args()

if "WORLD_SIZE" in os.environ:
    import torch.distributed as dist

    dist.init_process_group("gloo")

write = ActivationStore.write_shard


def write_shard(self, chunk, tensors):
    if chunk == args.die_while_writing:
        from safetensors.torch import save_file

        save_file(tensors, self.path / ".tmp-dying.safetensors")
        os.kill(os.getpid(), signal.SIGKILL)
    write(self, chunk, tensors)
    print(f"rank {os.environ.get('RANK', 0)} wrote chunk {chunk}", flush=True)
    time.sleep(args.slow)


ActivationStore.write_shard = write_shard
adata = sct.datasets.pbmc68k_reduced()[: args.n].copy()
sct.tl.harvest(adata, sct.models.default(), out_dir=args.store, dtype="float32", chunk_size=4, batch_size=4,
               label_key="bulk_labels", progress=False)
if "WORLD_SIZE" in os.environ:
    dist.destroy_process_group()
