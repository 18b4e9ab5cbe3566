"""Train every layer of tests/test_tc_live.py's tiny model from one pass, alone or under torchrun.

    python tests/tc_live_worker.py OUT_DIR
    torchrun --nproc_per_node 2 tests/tc_live_worker.py OUT_DIR
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from test_tc_live import LIVE, config, documents, tiny_neox  # noqa: E402

from sctranscoder import tc  # noqa: E402

if "WORLD_SIZE" in os.environ:
    import torch.distributed as dist

    dist.init_process_group("gloo")
model, (encode, n) = tiny_neox(), documents()
result = tc.train_live(model, encode, n, None, config(), out_dir=sys.argv[1], precision="float32", progress=False,
                       **LIVE)
assert sorted(result) == [0, 1, 2], sorted(result)
if "WORLD_SIZE" in os.environ:
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # as tests/tc_worker.py: skip a teardown that once aborted in CI after the work was done
