"""One process of a multi-process run (see tests/infra/test_distributed.py).

argv: out.npz ckpt_dir [coordinator num_processes process_id]. Trains the problem of
parallel_worker.py for 2 epochs on a mesh over every device of every process, saves the
sharded state with orbax and restores it, and (process 0 only) writes the gathered
epoch metrics, u, v and network params to out.npz.
"""

import pathlib
import sys
import types

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from sopjax.infra import distributed  # noqa: E402

if len(sys.argv) > 3:
    distributed.initialize(distributed.settings(environ={"JAX_COORDINATOR_ADDRESS": sys.argv[3],
                                                         "JAX_NUM_PROCESSES": sys.argv[4],
                                                         "JAX_PROCESS_ID": sys.argv[5]}))

import orbax.checkpoint as ocp  # noqa: E402
import parallel_worker as pw  # noqa: E402

from sopjax.infra import parallel  # noqa: E402
from sopjax.trainers import fit as fit_lib  # noqa: E402
from sopjax.trainers import state as tstate  # noqa: E402


def main(out, ckpt):
    cfg, arrays = pw.problem()
    with parallel.data_parallel() as mesh:
        state = tstate.create_train_state(cfg, pw.BNNet(), arrays.x_train, pw.N, pw.K, pw.N // cfg.batch_size)
        state = parallel.place_state(state, pw.N)
        _, data = fit_lib.device_arrays(arrays)
        run, ms = types.SimpleNamespace(last_epoch=None, path="(none)"), []
        for e in range(cfg.epochs):
            state, m = fit_lib.train_epoch(state, e, data, cfg, log_every=4, run=run)
            ms.append([m["train_loss"], m["train_ce"], m["train_mse"], m["train_acc"]])
        mgr = ocp.CheckpointManager(pathlib.Path(ckpt).resolve(), options=ocp.CheckpointManagerOptions(create=True))
        mgr.save(1, args=ocp.args.StandardSave(state))
        mgr.wait_until_finished()
        target = parallel.place_state(tstate.create_train_state(cfg, pw.BNNet(), arrays.x_train, pw.N, pw.K, 8), pw.N)
        back = mgr.restore(1, args=ocp.args.StandardRestore(target))
        res = {"n_devices": np.array(mesh.size), "n_processes": np.array(jax.process_count()), "metrics": np.array(ms),
               "u_sharded": np.array(back.params["u"].sharding.spec == state.params["u"].sharding.spec
                                     and len(back.params["u"].addressable_shards) == jax.local_device_count())}
        res.update({"state/" + k: v for k, v in pw.flat(state).items()})
        res.update({"restored/" + k: v for k, v in pw.flat(back).items()})
    if distributed.is_primary():
        np.savez(out, **res)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
