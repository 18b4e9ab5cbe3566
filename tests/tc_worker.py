"""Train a transcoder on the synthetic rows of tests/test_tc_model.py, alone or under torchrun.

    python tests/tc_worker.py OUT_DIR ACTIVATION
    torchrun --nproc_per_node 2 tests/tc_worker.py OUT_DIR ACTIVATION
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from test_tc_model import config, sparse_data, tc_store  # noqa: E402

from sctranscoder import tc  # noqa: E402

if "WORLD_SIZE" in os.environ:
    import torch.distributed as dist

    dist.init_process_group("gloo")
x, y = sparse_data()
store = tc_store(x, y)
tc.train(store, 0, config(activation=sys.argv[2], n_tokens=64 * 200), out_dir=sys.argv[1], progress=False)
if "WORLD_SIZE" in os.environ:
    dist.barrier()
    dist.destroy_process_group()
    # Once in CI a rank aborted at interpreter exit, after training and saving ("terminate called without an active
    # exception": a C++ thread torn down at shutdown); what is tested is done by now, so skip the teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
